use std::time::Duration;

use serde_json::json;
use sextant_sdk::{Client, ClientBuilder, Context, EventStats, FlushError};

use crate::support::{EventSink, eventually, split_flag};

/// A client whose events go to `sink`; it has no flags (the sink serves no
/// snapshot) unless a bootstrap file is given. Sizes and intervals are set
/// so nothing happens unless the test asks.
fn builder(sink: &EventSink) -> ClientBuilder {
    Client::builder(sink.url(), "sxs_events")
        .timeout(Duration::from_secs(5))
        .streaming(false)
        .poll_interval(Duration::from_secs(3600))
        .event_batch_size(100)
        .event_flush_interval(Duration::from_secs(3600))
        .event_retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
}

fn user(key: &str) -> Context {
    Context::with_key(key)
}

#[tokio::test]
async fn a_full_batch_is_sent_at_once_and_flush_sends_the_rest() {
    let sink = EventSink::start().await;
    let client = builder(&sink).event_batch_size(3).build().await.unwrap();
    for i in 0..7 {
        let props = json!({"i": i}).as_object().cloned();
        client.track("clicked", &user(&format!("u{i}")), Some(f64::from(i)), props);
    }
    sink.wait_requests(2).await;
    client.flush().await.unwrap();

    let received = sink.received();
    let sizes: Vec<usize> = received
        .iter()
        .map(|r| r.body["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(received[0].authorization.as_deref(), Some("Bearer sxs_events"));
    let ids: std::collections::HashSet<_> = received.iter().map(|r| r.body["batch_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "every batch has its own id");

    let events = sink.events();
    assert_eq!(events.len(), 7);
    let first = &events[0];
    assert_eq!(
        (
            &first["kind"],
            &first["event"],
            &first["targeting_key"],
            &first["value"],
            &first["properties"]
        ),
        (
            &json!("track"),
            &json!("clicked"),
            &json!("u0"),
            &json!(0.0),
            &json!({"i": 0})
        )
    );
    let ts = first["timestamp"].as_str().unwrap();
    assert!(chrono_like_rfc3339(ts), "{ts}");
    assert_eq!(
        client.event_stats(),
        EventStats {
            recorded: 7,
            sent: 7,
            ..EventStats::default()
        }
    );
}

fn chrono_like_rfc3339(ts: &str) -> bool {
    ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T"
}

#[tokio::test]
async fn buffered_events_are_sent_on_the_flush_interval() {
    let sink = EventSink::start().await;
    let client = builder(&sink)
        .event_flush_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    client.track("viewed", &user("u1"), None, None);
    sink.wait_requests(1).await;
    assert_eq!(sink.events()[0]["event"], "viewed");
    assert!(sink.events()[0].get("value").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_retry_after_with_the_same_batch_id() {
    let sink = EventSink::start().await;
    sink.answer(429, Some("2"));
    let client = builder(&sink).build().await.unwrap();
    client.track("clicked", &user("u1"), None, None);

    assert_eq!(client.flush().await, Err(FlushError::NotDelivered { pending: 1 }));
    sink.wait_requests(2).await;

    let received = sink.received();
    assert_eq!(received[0].body, received[1].body, "the retry is the same batch");
    assert!(received[1].at - received[0].at >= Duration::from_secs(2));
    eventually("the counters", || client.event_stats().sent == 1).await;
    assert_eq!(client.event_stats().failed_requests, 1);
}

#[tokio::test]
async fn when_the_server_is_down_longer_than_the_buffer_allows_new_events_are_dropped_and_counted() {
    let sink = EventSink::start().await;
    sink.always(503);
    let client = builder(&sink)
        .event_capacity(5)
        .event_batch_size(2)
        .build()
        .await
        .unwrap();
    for i in 0..10 {
        client.track("clicked", &user(&format!("u{i}")), None, None);
    }
    assert_eq!(client.flush().await, Err(FlushError::NotDelivered { pending: 5 }));
    let stats = client.event_stats();
    assert_eq!((stats.recorded, stats.dropped, stats.sent), (10, 5, 0));

    sink.always(202);
    client.flush().await.unwrap();
    let stats = client.event_stats();
    assert_eq!((stats.sent, stats.dropped), (5, 5));
    // The oldest events were kept, in order.
    let delivered: Vec<_> = sink
        .events()
        .iter()
        .map(|e| e["targeting_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&delivered[delivered.len() - 5..], ["u0", "u1", "u2", "u3", "u4"]);
}

#[tokio::test]
async fn a_batch_the_server_refuses_is_dropped_not_retried() {
    let sink = EventSink::start().await;
    sink.answer(400, None);
    let client = builder(&sink).build().await.unwrap();
    client.track("clicked", &user("u1"), None, None);
    assert_eq!(
        client.flush().await,
        Err(FlushError::Refused {
            dropped: 1,
            status: 400
        })
    );
    client.flush().await.unwrap();
    assert_eq!(sink.received().len(), 1);
    assert_eq!(client.event_stats().dropped, 1);
}

#[tokio::test]
async fn exposures_are_sent_only_for_units_in_an_experiment_once_per_window() {
    let sink = EventSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("flags.json");
    let mut fixed = split_flag("fixed", "production");
    fixed["environments"]["production"]["default_serve"] = json!({"variation": "on"});
    let doc = json!({"flags": [split_flag("experiment", "production"), fixed]});
    std::fs::write(&bootstrap, doc.to_string()).unwrap();
    let client = builder(&sink).bootstrap_file(&bootstrap).build().await.unwrap();

    for _ in 0..3 {
        client.bool("experiment", &user("u1"), false);
        client.bool("fixed", &user("u1"), false);
    }
    client.bool("experiment", &user("u2"), false);
    client.bool("experiment", &Context::default(), false);
    client.flush().await.unwrap();

    let exposures = sink.events();
    let units: Vec<_> = exposures.iter().map(|e| e["targeting_key"].as_str().unwrap()).collect();
    assert_eq!(units, ["u1", "u2"]);
    for e in &exposures {
        assert_eq!((&e["kind"], &e["flag"]), (&json!("exposure"), &json!("experiment")));
        let variation = e["variation"].as_str().unwrap();
        assert!(variation == "on" || variation == "off");
    }
    assert_eq!(client.event_stats().deduplicated, 2);
}

#[tokio::test]
async fn dropping_the_last_handle_flushes_buffered_events() {
    let sink = EventSink::start().await;
    let client = builder(&sink).build().await.unwrap();
    let clone = client.clone();
    client.track("a", &user("u1"), None, None);
    drop(client);
    clone.track("b", &user("u1"), None, None);
    drop(clone);
    sink.wait_requests(1).await;
    let names: Vec<_> = sink.events().iter().map(|e| e["event"].clone()).collect();
    assert_eq!(names, [json!("a"), json!("b")]);
}

#[tokio::test]
async fn shutdown_flushes_buffered_events() {
    let sink = EventSink::start().await;
    let client = builder(&sink).build().await.unwrap();
    client.track("a", &user("u1"), None, None);
    client.shutdown().await;
    assert_eq!(sink.events().len(), 1);
}
