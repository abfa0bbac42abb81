//! Change propagation: N SDK clients follow `/sdk/v1/stream`; a toggle is
//! written through the admin API; measured is the time from the write's
//! acknowledgement to each client receiving the change.
//!
//! Run: `cargo bench -p sextant-server --bench propagation -- [CLIENTS] [ROUNDS]`
//! (defaults 1000 clients, 20 rounds; raise `ulimit -n` for 10,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use sextant_server::{AppState, Config};
use sextant_store::Store;
use tokio::sync::{Barrier, mpsc};

const ADMIN: &str = "sxa_bench_admin_token";

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let clients = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("sextant.db").to_string_lossy().into_owned();

    // The server gets its own runtime (and threads), like a separate process.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("server runtime");
        rt.block_on(async move {
            let store = Store::open(&db).await.expect("store");
            store.bootstrap(Some(ADMIN)).await.expect("bootstrap");
            let state = AppState::new(Arc::new(store), Config::default()).await.expect("state");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
            sextant_server::run(listener, state, std::future::pending())
                .await
                .expect("serve");
        });
    });
    let addr = addr_rx.recv().expect("server address");
    let rt = tokio::runtime::Runtime::new().expect("client runtime");
    rt.block_on(measure(format!("http://{addr}"), clients, rounds));
}

async fn measure(base: String, clients: usize, rounds: usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN);
    let flag = json!({"flag": {"key": "prop", "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "hypothesis": {"operational": true, "reason": "benchmark"},
        "environments": {"production": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}}}});
    let r = admin(http.post(format!("{base}/api/v1/workspaces/default/flags")))
        .json(&flag)
        .send()
        .await
        .expect("create");
    assert!(
        r.status().is_success(),
        "create flag: {}",
        r.text().await.unwrap_or_default()
    );
    let r = admin(http.post(format!("{base}/api/v1/tokens")))
        .json(&json!({"name": "bench", "kind": "server", "workspace": "default", "environment": "production"}))
        .send()
        .await
        .expect("token");
    let token: serde_json::Value = r.json().await.expect("token json");
    let token = token["token"].as_str().expect("token value").to_owned();

    // Each client reports the instant it reads every `change` event.
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let ready = Arc::new(Barrier::new(clients + 1));
    for _ in 0..clients {
        let (http, base, token, tx, ready) = (http.clone(), base.clone(), token.clone(), tx.clone(), ready.clone());
        tokio::spawn(async move {
            let response = http
                .get(format!("{base}/sdk/v1/stream"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("stream");
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
                        let _ = tx.send(Instant::now());
                    }
                }
            }
        });
    }
    ready.wait().await;
    println!("{clients} SSE clients connected");

    let mut latencies = Vec::with_capacity(clients * rounds);
    let mut last_client = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let enabled = round % 2 == 1;
        let r = admin(http.post(format!(
            "{base}/api/v1/workspaces/default/flags/prop/environments/production/toggle"
        )))
        .json(&json!({"enabled": enabled, "reason": "propagation benchmark"}))
        .send()
        .await
        .expect("toggle");
        let acked = Instant::now();
        assert!(r.status().is_success(), "toggle: {}", r.status());
        let mut worst = Duration::ZERO;
        for _ in 0..clients {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("a client did not receive the change within 30 s")
                .expect("channel open");
            // A client can receive the change before the writer reads its response.
            let latency = at.saturating_duration_since(acked);
            worst = worst.max(latency);
            latencies.push(latency);
        }
        last_client.push(worst);
    }
    latencies.sort();
    last_client.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1)]
    };
    println!(
        "per-client delivery after ack: p50 {:?}, p99 {:?}; last client per change: p50 {:?}, p99 {:?}, max {:?} ({rounds} changes)",
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&last_client, 0.50),
        pct(&last_client, 0.99),
        last_client[last_client.len() - 1],
    );
}
