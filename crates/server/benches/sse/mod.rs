//! What the SSE propagation benchmarks share: a server on its own runtime,
//! the flag and token they toggle and stream with, the SDK stream reader
//! and the latency summary. Each benchmark keeps its own measuring loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use sextant_server::{AppState, Config};
use sextant_store::Store;
use tokio::sync::{Barrier, mpsc};

/// The bootstrap admin token of every benchmark server.
pub const ADMIN: &str = "sxa_bench_admin_token";

/// Starts `sextant_server::run` on `database` on its own runtime and
/// threads, like a separate process; returns its base URL.
pub fn serve(database: String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("server runtime");
        rt.block_on(async move {
            let store = Store::open(&database).await.expect("store");
            store.bootstrap(Some(ADMIN)).await.expect("bootstrap");
            let state = AppState::new(Arc::new(store), Config::default()).await.expect("state");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            sextant_server::run(listener, state, std::future::pending())
                .await
                .expect("serve");
        });
    });
    format!("http://{}", rx.recv().expect("server address"))
}

/// An HTTP client that opens a connection per stream.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Creates the boolean flag `key` in production through `writer` and a
/// server-side SDK token named `token_name`; returns the token.
pub async fn flag_and_token(http: &reqwest::Client, writer: &str, key: &str, token_name: &str) -> String {
    let flag = json!({"flag": {"key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "hypothesis": {"operational": true, "reason": "benchmark"},
        "environments": {"production": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}}}});
    let r = http
        .post(format!("{writer}/api/v1/workspaces/default/flags"))
        .bearer_auth(ADMIN)
        .json(&flag)
        .send()
        .await
        .expect("create");
    assert!(
        r.status().is_success(),
        "create flag: {}",
        r.text().await.unwrap_or_default()
    );
    let r = http
        .post(format!("{writer}/api/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": token_name, "kind": "server", "workspace": "default", "environment": "production"}))
        .send()
        .await
        .expect("token");
    let token: serde_json::Value = r.json().await.expect("token json");
    token["token"].as_str().expect("token value").to_owned()
}

/// Toggles `key` in production through `writer`.
pub async fn toggle(http: &reqwest::Client, writer: &str, key: &str, enabled: bool) {
    let r = http
        .post(format!(
            "{writer}/api/v1/workspaces/default/flags/{key}/environments/production/toggle"
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"enabled": enabled, "reason": "propagation benchmark"}))
        .send()
        .await
        .expect("toggle");
    assert!(r.status().is_success(), "toggle: {}", r.status());
}

/// Reads an SDK stream: waits at `ready` once its first snapshot arrived,
/// then sends the instant each `change` event is read.
pub async fn follow(response: reqwest::Response, ready: Arc<Barrier>, changes: mpsc::UnboundedSender<Instant>) {
    let mut body = response.bytes_stream();
    let mut buf = Vec::new();
    let mut seen_snapshot = false;
    while let Some(Ok(chunk)) = body.next().await {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let has = |name: &[u8]| event.windows(name.len()).any(|w| w == name);
            if has(b"event: snapshot") {
                if !seen_snapshot {
                    seen_snapshot = true;
                    ready.wait().await;
                }
            } else if has(b"event: change") {
                let _ = changes.send(Instant::now());
            }
        }
    }
}

/// Waits for `clients` changes on `rx` (30 s at most each); returns each
/// client's latency after `since` and the worst of them.
pub async fn deliveries(
    rx: &mut mpsc::UnboundedReceiver<Instant>,
    clients: usize,
    since: Instant,
) -> (Vec<Duration>, Duration) {
    let mut latencies = Vec::with_capacity(clients);
    for _ in 0..clients {
        let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a client did not receive the change within 30 s")
            .expect("channel open");
        // A client can receive the change before the writer reads its response.
        latencies.push(at.saturating_duration_since(since));
    }
    let worst = latencies.iter().copied().max().unwrap_or_default();
    (latencies, worst)
}

/// p50 and p99 of every delivery, then p50, p99 and max of the last
/// client per change, as printed by both benchmarks.
pub fn summary(mut latencies: Vec<Duration>, mut last_client: Vec<Duration>) -> [Duration; 5] {
    latencies.sort();
    last_client.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1)]
    };
    [
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&last_client, 0.50),
        pct(&last_client, 0.99),
        last_client[last_client.len() - 1],
    ]
}
