use reqwest::Method;
use serde_json::{Value, json};
use sextant_server::Config;
use sextant_store::Store;

use crate::support::{ADMIN, TestServer};

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn track(event: &str, unit: &str, value: f64) -> Value {
    json!({"kind": "track", "event": event, "targeting_key": unit, "value": value, "timestamp": now(),
           "properties": {"plan": "pro"}})
}

async fn post_batch(s: &TestServer, token: &str, body: Value) -> crate::support::Reply {
    s.call(Method::POST, "/events/v1/batch", token, Some(body)).await
}

async fn stored_events(s: &TestServer) -> i64 {
    s.state.store.event_totals(None).await.unwrap().events
}

#[tokio::test]
async fn good_events_are_stored_and_bad_ones_reported_by_index() {
    let s = TestServer::start().await;
    let token = s.server_token("production").await;
    let body = json!({"batch_id": "b-1", "events": [
        track("checkout", "u1", 12.5),
        {"kind": "track", "event": "checkout", "targeting_key": "u2", "timestamp": "yesterday"},
        {"kind": "exposure", "flag": "new-checkout", "variation": "on", "targeting_key": "u1", "timestamp": now()},
        {"kind": "click", "targeting_key": "u1", "timestamp": now()},
        {"kind": "track", "event": "checkout", "timestamp": now()},
        {"kind": "track", "event": "checkout", "targeting_key": "u3", "value": "12", "timestamp": now()},
        42,
        {"kind": "track", "event": "checkout", "targeting_key": 7, "timestamp": now()},
        {"kind": "track", "event": "check\"out", "targeting_key": "u\\4", "timestamp": now(), "extra": [1, {}]},
    ]});
    let r = post_batch(&s, &token, body).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["accepted"], 3);
    assert_eq!(r.body["duplicate"], false);
    let rejected: Vec<(u64, &str)> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "/events/1/timestamp"),
            (3, "/events/3/kind"),
            (4, "/events/4/targeting_key"),
            (5, "/events/5/value"),
            (6, "/events/6"),
            (7, "/events/7/targeting_key")
        ]
    );
    assert_eq!(stored_events(&s).await, 3);
}

#[tokio::test]
async fn a_batch_of_only_bad_events_is_a_validation_error_and_stores_nothing() {
    let s = TestServer::start().await;
    let token = s.server_token("production").await;
    let r = post_batch(
        &s,
        &token,
        json!({"events": [{"kind": "track", "timestamp": now(), "targeting_key": "u"}]}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/events/0/event");
    assert_eq!(stored_events(&s).await, 0);
}

#[tokio::test]
async fn a_retried_batch_is_not_counted_twice() {
    let s = TestServer::start().await;
    let token = s.server_token("production").await;
    let body = json!({"batch_id": "2f1c", "events": [track("a", "u1", 1.0), track("a", "u2", 1.0)]});
    assert_eq!(post_batch(&s, &token, body.clone()).await.body["accepted"], 2);
    let again = post_batch(&s, &token, body).await;
    assert_eq!(
        (again.status, &again.body["duplicate"], &again.body["accepted"]),
        (202, &json!(true), &json!(0))
    );
    assert_eq!(stored_events(&s).await, 2);
}

#[tokio::test]
async fn admin_tokens_cannot_send_events_and_client_tokens_can() {
    let s = TestServer::start().await;
    let body = json!({"events": [track("a", "u1", 1.0)]});
    post_batch(&s, ADMIN, body.clone())
        .await
        .assert_problem(403, "token_kind_forbidden");
    let client = s
        .token(json!({"kind": "client", "workspace": "default", "environment": "production", "allowed_origins": []}))
        .await;
    assert_eq!(post_batch(&s, &client, body).await.status, 202);
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_loses_nothing_acknowledged() {
    let s = TestServer::start_with(Config {
        event_queue_capacity: 4,
        ..Config::default()
    })
    .await;
    let token = s.server_token("production").await;
    // Hold SQLite's write lock so the writer cannot commit: batches queue up.
    let mut blocker = {
        use sqlx::ConnectOptions;
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(s.db_path())
            .connect()
            .await
            .unwrap()
    };
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();
    let first = {
        let http = s.http.clone();
        let url = s.url("/events/v1/batch");
        let token = token.clone();
        let body = json!({"events": [track("a", "u1", 1.0), track("a", "u2", 1.0), track("a", "u3", 1.0)]});
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    while s.state.events.queued() < 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let second = json!({"batch_id": "b2", "events": [track("a", "u4", 1.0), track("a", "u5", 1.0)]});
    let full = post_batch(&s, &token, second.clone()).await;
    full.assert_problem(429, "overloaded");
    assert_eq!(full.header("retry-after"), Some("1"));
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(first.await.unwrap(), 202);
    assert_eq!(post_batch(&s, &token, second).await.status, 202);
    assert_eq!(stored_events(&s).await, 5);
}

#[tokio::test]
async fn a_batch_larger_than_allowed_is_refused_whole() {
    let s = TestServer::start_with(Config {
        max_events_per_batch: 2,
        ..Config::default()
    })
    .await;
    let token = s.server_token("production").await;
    let r = post_batch(
        &s,
        &token,
        json!({"events": [track("a", "u", 1.0), track("a", "u", 1.0), track("a", "u", 1.0)]}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/events");
}

#[tokio::test]
async fn accepted_events_survive_shutdown() {
    let s = TestServer::start().await;
    let token = s.server_token("production").await;
    let r = post_batch(
        &s,
        &token,
        json!({"events": [track("a", "u1", 1.0), track("b", "u2", 2.0)]}),
    )
    .await;
    assert_eq!(r.status, 202);
    let path = s.db_path();
    let dir = s.stop_keeping_data().await;
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.event_totals(None).await.unwrap().events, 2);
    drop(dir);
}
