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

use sqlx::ConnectOptions;
use tokio::sync::{Barrier, mpsc};

/// The server, flag, stream reader and summary shared with `propagation`.
mod sse;

use sse::serve;

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
    let http = sse::http();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let key = format!("prop{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let token = sse::flag_and_token(&http, writer, &key, &format!("bench-{key}")).await;

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
                sse::follow(response, ready, tx).await;
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
        sse::toggle(&http, writer, &key, round % 2 == 1).await;
        let (each, worst) = sse::deliveries(&mut rx, total, sent).await;
        latencies.extend(each);
        last_client.push(worst);
    }
    let elapsed = started.elapsed();
    let [p50, p99, last_p50, last_p99, last_max] = sse::summary(latencies, last_client);
    println!(
        "{label}: {total} clients, {rounds} changes ({:.0} changes/s written and delivered): \
         per-client p50 {p50:?} p99 {p99:?}; last client p50 {last_p50:?} p99 {last_p99:?} max {last_max:?}",
        rounds as f64 / elapsed.as_secs_f64(),
    );
}
