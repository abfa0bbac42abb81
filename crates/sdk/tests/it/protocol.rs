//! The SDK against a recording peer that speaks the SDK protocol, to
//! check what goes over the wire.

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

/// First connection: a snapshot (id 5), then the stream ends. Later ones:
/// nothing but a heartbeat comment, held open.
async fn stream(State(peer): State<Arc<Peer>>, headers: HeaderMap) -> Response {
    if peer.refuse_streaming {
        return StatusCode::NOT_FOUND.into_response();
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let first = {
        let mut requests = peer.stream_requests.lock().unwrap();
        requests.push(last);
        requests.len() == 1
    };
    let text = if first {
        format!("event: snapshot\nid: 5\ndata: {}\n\n", body(5, true))
    } else {
        ":\n\n".to_owned()
    };
    let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(text) });
    let body = if first {
        axum::body::Body::from_stream(head)
    } else {
        axum::body::Body::from_stream(head.chain(futures_util::stream::pending()))
    };
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
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
    let peer = Arc::new(Peer {
        version: Mutex::new(1),
        ..Peer::default()
    });
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
