//! The SDK against a recording peer that speaks the SDK protocol, to
//! check what goes over the wire.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::json;
use sextant_sdk::{Client, Context, Status};

use crate::support::{eventually, pro_flag};

#[derive(Default)]
struct Peer {
    /// `Last-Event-ID` of each stream request (None = absent).
    stream_requests: Mutex<Vec<Option<String>>>,
    /// `If-None-Match` of each snapshot request.
    snapshot_requests: Mutex<Vec<Option<String>>>,
    version: Mutex<u64>,
    refuse_streaming: bool,
    script: Mutex<VecDeque<(String, bool)>>,
}

impl Peer {
    fn scripted(answers: Vec<(String, bool)>) -> Arc<Peer> {
        Arc::new(Peer {
            version: Mutex::new(1),
            script: Mutex::new(answers.into()),
            ..Peer::default()
        })
    }
}

fn body(version: u64, enabled: bool) -> String {
    let mut flag = pro_flag("a", "production");
    flag["environments"]["production"]["enabled"] = json!(enabled);
    json!({"workspace": "default", "environment": "production", "version": version,
           "document": {"flags": [flag]}})
    .to_string()
}

async fn snapshot(State(peer): State<Arc<Peer>>, headers: HeaderMap) -> Response {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    peer.snapshot_requests.lock().unwrap().push(inm.clone());
    let version = *peer.version.lock().unwrap();
    let etag = format!("\"v{version}\"");
    if inm.as_deref() == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    // Version 1 has the flag on, later versions off.
    ([(header::ETAG, etag)], body(version, version == 1)).into_response()
}

/// Each connection plays the next scripted answer: some SSE text, then
/// either the end of the stream or silence held open. Without a script:
/// one heartbeat, then silence.
async fn stream(State(peer): State<Arc<Peer>>, headers: HeaderMap) -> Response {
    if peer.refuse_streaming {
        return StatusCode::NOT_FOUND.into_response();
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    peer.stream_requests.lock().unwrap().push(last);
    let (text, then_close) = peer
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| (":\n\n".to_owned(), false));
    let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(text) });
    let body = if then_close {
        axum::body::Body::from_stream(head)
    } else {
        axum::body::Body::from_stream(head.chain(futures_util::stream::pending()))
    };
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn snapshot_event(version: u64) -> String {
    format!("event: snapshot\nid: {version}\ndata: {}\n\n", body(version, true))
}

async fn start(peer: Arc<Peer>) -> String {
    let app = Router::new()
        .route("/sdk/v1/snapshot", get(snapshot))
        .route("/sdk/v1/stream", get(stream))
        .with_state(peer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_reconnect_sends_the_last_event_id() {
    // The first connection sends a snapshot (id 5) and ends.
    let peer = Peer::scripted(vec![(snapshot_event(5), true)]);
    let url = start(peer.clone()).await;
    let client = Client::builder(url, "sxs_token")
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .events(false)
        .build()
        .await
        .unwrap();
    eventually("a second stream connection", || {
        peer.stream_requests.lock().unwrap().len() >= 2
    })
    .await;
    let requests = peer.stream_requests.lock().unwrap().clone();
    // The first connection resumes from the initial snapshot (version 1);
    // the second from the stream's snapshot (id 5).
    assert_eq!(requests[0].as_deref(), Some("1"));
    assert_eq!(requests[1].as_deref(), Some("5"));
    assert_eq!(client.version(), Some(5));
}

#[tokio::test]
async fn when_streaming_is_refused_the_client_polls_with_etag() {
    let peer = Arc::new(Peer {
        version: Mutex::new(1),
        refuse_streaming: true,
        ..Peer::default()
    });
    let url = start(peer.clone()).await;
    let client = Client::builder(url, "sxs_token")
        .poll_interval(Duration::from_millis(20))
        .events(false)
        .build()
        .await
        .unwrap();
    let ctx = Context::with_key("u").attr("plan", "pro");
    assert!(client.bool("a", &ctx, false));
    let changes = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let sink = changes.clone();
    client.on_change(move |keys| sink.lock().unwrap().push(keys.to_vec()));

    eventually("a conditional poll", || {
        peer.snapshot_requests
            .lock()
            .unwrap()
            .iter()
            .any(|inm| inm.as_deref() == Some("\"v1\""))
    })
    .await;
    assert_eq!(client.status(), Status::Ready);
    assert_eq!(client.version(), Some(1), "304 keeps the snapshot");

    *peer.version.lock().unwrap() = 2;
    eventually("the polled change", || !changes.lock().unwrap().is_empty()).await;
    assert!(!client.bool("a", &ctx, true));
    assert_eq!(*changes.lock().unwrap(), [vec!["a".to_owned()]]);
    assert_eq!(
        peer.snapshot_requests.lock().unwrap()[0],
        None,
        "the first fetch is unconditional"
    );
    assert!(peer.stream_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_silent_stream_is_abandoned_after_the_read_timeout() {
    // Connection 1: a snapshot, then nothing at all, not even heartbeats.
    let peer = Peer::scripted(vec![(snapshot_event(5), false)]);
    let url = start(peer.clone()).await;
    let _client = Client::builder(url, "sxs_token")
        .stream_read_timeout(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .events(false)
        .build()
        .await
        .unwrap();
    eventually("a reconnect", || peer.stream_requests.lock().unwrap().len() >= 2).await;
    assert_eq!(peer.stream_requests.lock().unwrap()[1].as_deref(), Some("5"));
}

#[tokio::test]
async fn a_gap_in_versions_makes_the_client_ask_for_a_full_snapshot() {
    let gap = json!({"version": 7, "previous": 6, "flags": [], "deleted_flags": ["a"]});
    let first = format!("{}event: change\nid: 7\ndata: {gap}\n\n", snapshot_event(5));
    let peer = Peer::scripted(vec![(first, false), (snapshot_event(8), false)]);
    let url = start(peer.clone()).await;
    let client = Client::builder(url, "sxs_token")
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .events(false)
        .build()
        .await
        .unwrap();
    eventually("the full snapshot", || client.version() == Some(8)).await;
    let requests = peer.stream_requests.lock().unwrap().clone();
    assert_eq!(
        requests[..2],
        [Some("1".to_owned()), None],
        "no Last-Event-ID after a gap"
    );
    assert_eq!(client.flag_keys(), ["a"], "the change after the gap was not applied");
}
