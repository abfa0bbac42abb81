//! Change propagation across replicas: SDK clients stream from replica A
//! and replica B (two servers on one PostgreSQL database); toggles are
//! written through A; measured is the time from sending the write to A to
//! each client receiving the change (write + commit + fan-out). The same run measures one server on SQLite
//! (the single-node default) and one on PostgreSQL, for comparison.
//!
//! Needs `SEXTANT_TEST_POSTGRES_URL` (scripts/postgres-up prints one).
//! Run: `cargo bench -p sextant-server --bench replicas -- [CLIENTS] [ROUNDS]`
//! (defaults: 200 clients per replica, 50 changes). Loopback only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use sextant_server::{AppState, Config};
use sextant_store::Store;
use sqlx::ConnectOptions;
use tokio::sync::{Barrier, mpsc};

const ADMIN: &str = "sxa_bench_admin_token";

/// Starts `sextant_server::run` on its own runtime and threads, like a
/// separate process; returns its base URL.
fn serve(database: String) -> String {
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

async fn fresh_postgres(admin: &str, name: &str) -> String {
    let mut conn = admin
        .parse::<sqlx::postgres::PgConnectOptions>()
        .expect("postgres URL")
        .connect()
        .await
        .expect("PostgreSQL answers");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut conn).await.expect("create database");
    }
    let scheme_end = admin.find("://").map_or(0, |i| i + 3);
    let end = admin[scheme_end..]
        .find(['/', '?'])
        .map_or(admin.len(), |i| scheme_end + i);
    format!("{}/{name}", &admin[..end])
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let clients = args.first().copied().unwrap_or(200);
    let rounds = args.get(1).copied().unwrap_or(50);
    let admin = std::env::var("SEXTANT_TEST_POSTGRES_URL").expect("set SEXTANT_TEST_POSTGRES_URL");
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("client runtime");

    let sqlite = serve(dir.path().join("sextant.db").to_string_lossy().into_owned());
    rt.block_on(measure("SQLite, one server", &sqlite, &[&sqlite], clients, rounds));

    let one = rt.block_on(fresh_postgres(&admin, "sextant_bench_one"));
    let single = serve(one);
    rt.block_on(measure("PostgreSQL, one server", &single, &[&single], clients, rounds));

    let shared = rt.block_on(fresh_postgres(&admin, "sextant_bench_two"));
    let a = serve(shared.clone());
    let b = serve(shared);
    rt.block_on(measure(
        "PostgreSQL, write on A, clients on A",
        &a,
        &[&a],
        clients,
        rounds,
    ));
    rt.block_on(measure(
        "PostgreSQL, write on A, clients on B",
        &a,
        &[&b],
        clients,
        rounds,
    ));
}

/// Creates a flag and a token through `writer`, connects `clients` SSE
/// clients to each of `readers`, then toggles `rounds` times through `writer`.
async fn measure(label: &str, writer: &str, readers: &[&str], clients: usize, rounds: usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN);
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let key = format!("prop{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let flag = json!({"flag": {"key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}}}});
    let r = admin(http.post(format!("{writer}/api/v1/workspaces/default/flags")))
        .json(&flag)
        .send()
        .await
        .expect("create");
    assert!(
        r.status().is_success(),
        "create flag: {}",
        r.text().await.unwrap_or_default()
    );
    let r = admin(http.post(format!("{writer}/api/v1/tokens")))
        .json(&json!({"name": format!("bench-{key}"), "kind": "server", "workspace": "default", "environment": "production"}))
        .send()
        .await
        .expect("token");
    let token: serde_json::Value = r.json().await.expect("token json");
    let token = token["token"].as_str().expect("token value").to_owned();

    let total = clients * readers.len();
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let ready = Arc::new(Barrier::new(total + 1));
    for reader in readers {
        for _ in 0..clients {
            let (http, base, token, tx, ready) = (
                http.clone(),
                reader.to_string(),
                token.clone(),
                tx.clone(),
                ready.clone(),
            );
            tokio::spawn(async move {
                // The token may still be on its way to another replica.
                let response = loop {
                    let r = http
                        .get(format!("{base}/sdk/v1/stream"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("stream");
                    if r.status().is_success() {
                        break r;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
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
    }
    ready.wait().await;

    let mut latencies = Vec::with_capacity(total * rounds);
    let mut last_client = Vec::with_capacity(rounds);
    let started = Instant::now();
    for round in 0..rounds {
        // Measured from the moment the write is sent: clients often get the
        // change before the writer has read its response.
        let sent = Instant::now();
        let r = admin(http.post(format!(
            "{writer}/api/v1/workspaces/default/flags/{key}/environments/production/toggle"
        )))
        .json(&json!({"enabled": round % 2 == 1, "reason": "propagation benchmark"}))
        .send()
        .await
        .expect("toggle");
        assert!(r.status().is_success(), "toggle: {}", r.status());
        let mut worst = Duration::ZERO;
        for _ in 0..total {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("a client did not receive the change within 30 s")
                .expect("channel open");
            let latency = at.saturating_duration_since(sent);
            worst = worst.max(latency);
            latencies.push(latency);
        }
        last_client.push(worst);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    last_client.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1)]
    };
    println!(
        "{label}: {total} clients, {rounds} changes ({:.0} changes/s written and delivered): \
         per-client p50 {:?} p99 {:?}; last client p50 {:?} p99 {:?} max {:?}",
        rounds as f64 / elapsed.as_secs_f64(),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&last_client, 0.50),
        pct(&last_client, 0.99),
        last_client[last_client.len() - 1],
    );
}
