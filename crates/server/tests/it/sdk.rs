use reqwest::Method;
use serde_json::json;

use crate::support::{Reply, TestServer};

#[tokio::test]
async fn snapshot_has_an_etag_and_answers_304() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    let token = s.server_token("production").await;
    let r = s.call(Method::GET, "/sdk/v1/snapshot", &token, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["environment"], "production");
    let version = r.body["version"].as_u64().unwrap();
    let flag = &r.body["document"]["flags"][0];
    assert_eq!(flag["key"], "a");
    assert!(flag["environments"]["production"].is_object());
    let etag = r.header("etag").unwrap().to_owned();
    let again = s
        .req(Method::GET, "/sdk/v1/snapshot", &token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    s.toggle("a", "production", false).await;
    let r = s.call(Method::GET, "/sdk/v1/snapshot", &token, None).await;
    assert_eq!(r.body["version"].as_u64(), Some(version + 1));
}

#[tokio::test]
async fn client_tokens_cannot_sync() {
    let s = TestServer::start().await;
    let client = s
        .token(json!({"kind": "client", "workspace": "default", "environment": "production"}))
        .await;
    s.call(Method::GET, "/sdk/v1/snapshot", &client, None)
        .await
        .assert_problem(403, "token_kind_forbidden");
    s.call(Method::GET, "/sdk/v1/stream", "", None)
        .await
        .assert_problem(401, "token_missing");
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_then_changes_and_resumes() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    let token = s.server_token("production").await;
    let mut stream = s.sse("/sdk/v1/stream", &token, None).await;
    let first = stream.next().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("snapshot"));
    let v0: u64 = first.id.clone().unwrap().parse().unwrap();
    assert_eq!(first.json()["version"], v0);

    s.toggle("a", "production", false).await;
    s.toggle("a", "production", true).await;
    let c1 = stream.next().await.unwrap();
    assert_eq!(
        (c1.event.as_deref(), c1.id.as_deref()),
        (Some("change"), Some((v0 + 1).to_string().as_str()))
    );
    assert_eq!(c1.json()["flags"][0]["environments"]["production"]["enabled"], false);
    let c2 = stream.next().await.unwrap();
    assert_eq!(c2.json()["version"], v0 + 2);

    // A client that saw only v0 gets both changes on reconnect.
    let mut resumed = s.sse("/sdk/v1/stream", &token, Some(&v0.to_string())).await;
    assert_eq!(resumed.next().await.unwrap().id, Some((v0 + 1).to_string()));
    assert_eq!(resumed.next().await.unwrap().id, Some((v0 + 2).to_string()));

    // One with an unknown version gets a fresh snapshot.
    let mut fresh = s.sse("/sdk/v1/stream", &token, Some("999999")).await;
    let e = fresh.next().await.unwrap();
    assert_eq!(
        (e.event.as_deref(), e.id),
        (Some("snapshot"), Some((v0 + 2).to_string()))
    );

    // A change reaches every connected client of the environment.
    s.toggle("a", "production", false).await;
    for client in [&mut stream, &mut resumed, &mut fresh] {
        assert_eq!(client.next().await.unwrap().id, Some((v0 + 3).to_string()));
    }
}

#[tokio::test]
async fn graceful_shutdown_closes_streams_and_returns() {
    let s = TestServer::start().await;
    let token = s.server_token("staging").await;
    let mut stream = s.sse("/sdk/v1/stream", &token, None).await;
    stream.next().await.unwrap();
    s.stop().await;
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn readers_see_the_new_snapshot_as_soon_as_the_write_returns() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    let token = s.server_token("production").await;
    for enabled in [false, true, false] {
        s.toggle("a", "production", enabled).await;
        let r: Reply = s
            .call(
                Method::POST,
                "/ofrep/v1/evaluate/flags/a",
                &token,
                Some(json!({"context": {"targetingKey": "u"}})),
            )
            .await;
        let expected = if enabled { "UNKNOWN" } else { "DISABLED" };
        assert_eq!(r.body["reason"], expected);
    }
}

/// Issue 4: a client that never reads its stream is dropped, and the
/// server holds at most `stream_buffer` changes for it. The response is
/// taken from the router without a socket and its body is not polled at
/// all while the changes are made, which is what a client that never
/// reads looks like to the server.
#[tokio::test]
async fn issue_4_a_client_that_never_reads_its_stream_is_dropped_with_a_bounded_backlog() {
    use axum::body::Body;
    use futures_util::StreamExt;
    use std::sync::atomic::Ordering;
    use tower::ServiceExt;

    let buffer = 4;
    let s = TestServer::start_with(sextant_server::Config {
        stream_buffer: buffer,
        ..sextant_server::Config::default()
    })
    .await;
    s.flag("a", "production").await;
    let token = s.server_token("production").await;
    let request = axum::http::Request::get("/sdk/v1/stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = sextant_server::router(s.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(s.state.metrics.sdk_streams.load(Ordering::Relaxed), 1);

    // Three backlogs' worth of changes while nobody reads.
    for i in 0..3 * buffer {
        s.toggle("a", "production", i % 2 == 1).await;
    }

    // The stream ends by itself: the initial snapshot, at most `buffer`
    // changes in version order, then nothing more.
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(text.matches("event: snapshot").count(), 1, "{text}");
    let versions: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    let changes = text.matches("event: change").count();
    assert!((1..=buffer).contains(&changes), "{changes} changes buffered: {text}");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // The forwarder left the gauge before it closed the stream.
    assert_eq!(s.state.metrics.sdk_streams.load(Ordering::Relaxed), 0);
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"sextant_sse_clients{stream="sdk"} 0"#), "{metrics}");
}
