//! Event ingestion and aggregation benchmark (results in BENCHMARKS.md).
//!
//! `cargo run --release -p sextant-server --example events_load [SECONDS] [AGG_EVENTS]`
//! (SECONDS = 0: only the aggregation part)
//!
//! 1. Starts the real server in a child process (this binary, `serve`
//!    mode) on 127.0.0.1:0 with a fresh SQLite file, so its memory is
//!    measured apart from the load generator. With
//!    `SEXTANT_BENCH_POSTGRES_URL=postgres://…` (a role that may create
//!    databases) steps 2 and 3 then run again in the same run against a
//!    fresh PostgreSQL database (dropped afterwards).
//! 2. Throughput: 8 keep-alive connections post batches of 1,000 events
//!    (unique `batch_id`s) for SECONDS (default 10); counts 202s (durable).
//!    The bodies are serialized once before the run; a request sends a
//!    shared body with only its `batch_id` spliced in (three chunks, no
//!    copy), so the generator spends its CPU on HTTP, not on JSON. The CPU
//!    time of both processes is printed (they share the machine's cores).
//! 3. Overload: 80 connections (10× the concurrency) for SECONDS, each
//!    retrying a 429 at once; counts 202s and 429s (and their share of the
//!    answers), the offered rate against the throughput of step 2, and
//!    the server's peak RSS. Then 8 connections again for SECONDS: the
//!    throughput after the overload, with nobody restarting anything.
//! 4. Aggregation: in this process, appends AGG_EVENTS (default 10M)
//!    events to a fresh SQLite file (then, with
//!    `SEXTANT_BENCH_POSTGRES_URL`, a fresh PostgreSQL database), then
//!    times the rollup (`ROLLUP_BATCHES` per run, as the server does),
//!    one metric's sufficient statistics, its breakdown, a tree node's
//!    two windows and the series; reports peak RSS. Each database is
//!    deleted right after.
//!
//! Loopback only; bounded in time and count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use sextant_server::{AppState, Config};
use sextant_store::{
    Aggregation, ChangeMeta, Direction, EventBatchBuilder, HOUR_MS, HourRange, MetricDef, NewGrant, Store,
};

const ADMIN: &str = "sxa_bench_admin";
const SDK: &str = "sxs_bench_server_token";
const BATCH: usize = 1000;

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(&args[2]).await;
        return;
    }
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let agg_events: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    if seconds == 0 {
        aggregate_everywhere(agg_events).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingest.db");
    println!("load average before: {}", loadavg());
    ingest("SQLite", &db.to_string_lossy(), seconds).await;
    if let Ok(admin) = std::env::var("SEXTANT_BENCH_POSTGRES_URL") {
        let (url, drop_db) = postgres_database(&admin).await;
        ingest("PostgreSQL", &url, seconds).await;
        drop_db.await;
    }
    println!("load average after: {}", loadavg());

    aggregate_everywhere(agg_events).await;
}

/// The aggregation part on a fresh SQLite file, then (with
/// `SEXTANT_BENCH_POSTGRES_URL`) on a fresh PostgreSQL database, each
/// deleted right after (10M events take GBs).
async fn aggregate_everywhere(total: u64) {
    if total == 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    aggregate("SQLite", &dir.path().join("agg.db").to_string_lossy(), total).await;
    drop(dir);
    if let Ok(admin) = std::env::var("SEXTANT_BENCH_POSTGRES_URL") {
        let (url, drop_db) = postgres_database(&admin).await;
        aggregate("PostgreSQL", &url, total).await;
        drop_db.await;
    }
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh database on the PostgreSQL server of `admin`, and a future
/// that drops it.
async fn postgres_database(admin: &str) -> (String, impl Future<Output = ()>) {
    use sqlx::ConnectOptions;
    let name = format!("sextant_bench_{}", std::process::id());
    let options: sqlx::postgres::PgConnectOptions = admin.parse().expect("SEXTANT_BENCH_POSTGRES_URL is not a URL");
    let mut conn = options.connect().await.expect("PostgreSQL does not answer");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    let url = format!("{base}/{name}");
    let drop_db = async move {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    };
    (url, drop_db)
}

/// Throughput and overload against a server on `db` (a file or a URL).
async fn ingest(label: &str, db: &str, seconds: u64) {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let addr = lines.next_line().await.unwrap().unwrap();
    let url = format!("http://{addr}/events/v1/batch");
    let bodies = Arc::new(bodies());
    println!(
        "[{label}] server pid {pid} at {addr}; idle RSS {} MiB",
        rss_kib(pid, "VmRSS") / 1024
    );

    let run = Duration::from_secs(seconds);
    let normal = load(&url, &bodies, 8, run, pid).await;
    println!(
        "[{label}] throughput: {:.0} events/s durable ({} batches of {BATCH} in {:.1} s, {} answered 429); peak RSS {} MiB; CPU: server {:.2} cores, load generator {:.2} cores; load average {}",
        normal.ok as f64 * BATCH as f64 / normal.secs,
        normal.ok,
        normal.secs,
        normal.refused,
        rss_kib(pid, "VmHWM") / 1024,
        normal.server_cpu / normal.secs,
        normal.client_cpu / normal.secs,
        loadavg()
    );
    let rss_before = rss_kib(pid, "VmRSS");
    let over = load(&url, &bodies, 80, run, pid).await;
    let offered = (over.ok + over.refused) as f64 / over.secs;
    println!(
        "[{label}] overload (80 connections, 429s retried at once): offered {:.0} batches/s = {:.1}x the durable rate above; {:.0} events/s durable; {:.0} requests/s answered 429 + Retry-After ({:.1} % of answers); RSS {} MiB before, peak {} MiB; CPU: server {:.2} cores, load generator {:.2} cores; load average {}",
        offered,
        offered / (normal.ok as f64 / normal.secs).max(1.0),
        over.ok as f64 * BATCH as f64 / over.secs,
        over.refused as f64 / over.secs,
        100.0 * over.refused as f64 / (over.ok + over.refused).max(1) as f64,
        rss_before / 1024,
        rss_kib(pid, "VmHWM") / 1024,
        over.server_cpu / over.secs,
        over.client_cpu / over.secs,
        loadavg()
    );
    let after = load(&url, &bodies, 8, run, pid).await;
    println!(
        "[{label}] after the overload (8 connections): {:.0} events/s durable, {} answered 429; RSS {} MiB; load average {}",
        after.ok as f64 * BATCH as f64 / after.secs,
        after.refused,
        rss_kib(pid, "VmRSS") / 1024,
        loadavg()
    );
    drop(child);
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// What one load phase saw.
struct Phase {
    ok: u64,
    refused: u64,
    secs: f64,
    server_cpu: f64,
    client_cpu: f64,
}

/// A prepared body: `{"batch_id":"` + the id + the rest, shared between requests.
struct Body {
    head: Bytes,
    tail: Bytes,
}

/// Posts batches on `connections` connections for `duration`.
async fn load(url: &str, bodies: &Arc<Vec<Body>>, connections: usize, duration: Duration, pid: u32) -> Phase {
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let (server_cpu, client_cpu) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
        let (url, bodies, ok, refused, failed, seq) = (
            url.to_owned(),
            bodies.clone(),
            ok.clone(),
            refused.clone(),
            failed.clone(),
            seq.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let body = &bodies[(n as usize) % bodies.len()];
                let id = Bytes::from(format!("{pid}-{n:016}"));
                let chunks = [body.head.clone(), id, body.tail.clone()];
                let length: usize = chunks.iter().map(Bytes::len).sum();
                let stream = futures_util::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>));
                let r = http
                    .post(&url)
                    .bearer_auth(SDK)
                    .header("content-type", "application/json")
                    .header("content-length", length)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(202) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(429) => {
                        tokio::task::yield_now().await;
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    Ok(status) => panic!("unexpected answer {status}"),
                    Err(e) => {
                        // Counted and reported, not hidden: the batch was not acknowledged.
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  {failed} requests failed without an answer (connection errors)");
    }
    Phase {
        ok: ok.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        secs,
        server_cpu: cpu_seconds(pid) - server_cpu,
        client_cpu: cpu_seconds(std::process::id()) - client_cpu,
    }
}

/// 16 batch bodies of 1,000 events (90 % track over 5 event names, 10 %
/// exposures) over 100,000 units, split where the `batch_id` goes.
fn bodies() -> Vec<Body> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..16)
        .map(|_| {
            let events: Vec<serde_json::Value> = (0..BATCH)
                .map(|_| {
                    let r = next();
                    let unit = format!("user-{}", r % 100_000);
                    if r.is_multiple_of(10) {
                        serde_json::json!({"kind": "exposure", "flag": "new-checkout",
                            "variation": if r.is_multiple_of(20) { "on" } else { "off" }, "targeting_key": unit, "timestamp": ts})
                    } else {
                        serde_json::json!({"kind": "track", "event": format!("event-{}", r % 5), "targeting_key": unit,
                            "value": (r % 10_000) as f64 / 100.0, "timestamp": ts})
                    }
                })
                .collect();
            let events = serde_json::to_string(&events).unwrap();
            Body {
                head: Bytes::from_static(br#"{"batch_id":""#),
                tail: Bytes::from(format!(r#"","events":{events}}}"#)),
            }
        })
        .collect()
}

/// Child mode: the real server on 127.0.0.1:0; prints its address; runs until killed.
async fn serve(db: &str) {
    let store = Arc::new(Store::open(db).await.unwrap());
    store.bootstrap(Some(ADMIN)).await.unwrap();
    let grant = NewGrant::Server {
        workspace: "default".into(),
        environment: "production".into(),
    };
    store
        .create_token_with_secret("bench", &grant, SDK, &ChangeMeta::new("bench", None))
        .await
        .unwrap();
    let state = AppState::new(store, Config::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    sextant_server::run(listener, state, std::future::pending())
        .await
        .unwrap();
}

/// Appends `total` events straight into a fresh store on `db`, then times
/// the rollup and the metric queries.
async fn aggregate(label: &str, db: &str, total: u64) {
    println!("== aggregation on {label}; load average {}", loadavg());
    let store = Store::open(db).await.unwrap();
    store.bootstrap(Some(ADMIN)).await.unwrap();
    let env = store.get_environment("default", "production").await.unwrap().id;
    let metric = MetricDef {
        key: "revenue".into(),
        name: "Revenue".into(),
        aggregation: Aggregation::Sum,
        event: Some("event-0".into()),
        numerator: None,
        denominator: None,
        good_direction: Direction::Increase,
        unit: None,
        description: None,
        owner: None,
        parent: None,
        north_star: true,
    };
    store
        .create_metric("default", metric, &ChangeMeta::new("bench", None))
        .await
        .unwrap();
    // Four children over the other events, so the tree has five nodes.
    for (i, aggregation) in [
        (1, Aggregation::Count),
        (2, Aggregation::Mean),
        (3, Aggregation::Conversion),
        (4, Aggregation::Sum),
    ] {
        let child = MetricDef {
            key: format!("m{i}"),
            name: format!("Metric {i}"),
            aggregation,
            event: Some(format!("event-{i}")),
            numerator: None,
            denominator: None,
            good_direction: Direction::Increase,
            unit: None,
            description: None,
            owner: None,
            parent: Some("revenue".into()),
            north_star: false,
        };
        store
            .create_metric("default", child, &ChangeMeta::new("bench", None))
            .await
            .unwrap();
    }
    let hour0 = chrono::Utc::now().timestamp_millis() / HOUR_MS - 24 * 7;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let start = Instant::now();
    let mut written = 0u64;
    while written < total {
        let mut group = Vec::new();
        for _ in 0..50 {
            let mut b = EventBatchBuilder::with_capacity(BATCH);
            for _ in 0..BATCH {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // A week of hours, 1M units, 5 event names, 10 % exposures.
                let ts = (hour0 + (written as i64 * 168 / total as i64)) * HOUR_MS + (x % 3_600_000) as i64;
                let unit = format!("user-{}", (x >> 8) % 1_000_000);
                if x.is_multiple_of(10) {
                    b.exposure(
                        "new-checkout",
                        if x.is_multiple_of(20) { "on" } else { "off" },
                        &unit,
                        ts,
                    );
                } else {
                    b.track(
                        &format!("event-{}", (x >> 4) % 5),
                        &unit,
                        Some((x % 10_000) as f64 / 100.0),
                        ts,
                        None,
                    );
                }
            }
            written += BATCH as u64;
            group.push(b.finish(env, None));
        }
        store.append_event_batches(&group).await.unwrap();
    }
    let pid = std::process::id();
    println!(
        "appended {written} events in {:.1} s (direct, no HTTP)",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    loop {
        if store
            .rollup_events(sextant_server::events::ROLLUP_BATCHES)
            .await
            .unwrap()
            .caught_up
        {
            break;
        }
    }
    let rollup = start.elapsed().as_secs_f64();
    println!(
        "rollup of {written} events into per-unit hourly and daily sums and bucket totals: {rollup:.1} s ({:.0} events/s); process peak RSS {} MiB; load average {}",
        written as f64 / rollup,
        rss_kib(pid, "VmHWM") / 1024,
        loadavg()
    );
    let now_h = chrono::Utc::now().timestamp_millis() / HOUR_MS + 1;
    let start = Instant::now();
    let sums = store
        .metric_sums(
            "default",
            "production",
            "revenue",
            HourRange {
                from: now_h - 24 * 8,
                to: now_h,
            },
        )
        .await
        .unwrap();
    println!(
        "sufficient statistics of one metric over the week (n = {}, Σx = {:.0}): {:.2} s",
        sums.n,
        sums.sum,
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let rows = store
        .metric_breakdown(
            "default",
            "production",
            "revenue",
            "new-checkout",
            HourRange {
                from: now_h - 24 * 8,
                to: now_h,
            },
        )
        .await
        .unwrap();
    println!(
        "breakdown by variation ({} variations): {:.2} s; peak RSS {} MiB",
        rows.len(),
        start.elapsed().as_secs_f64(),
        rss_kib(pid, "VmHWM") / 1024
    );
    let day = HourRange {
        from: now_h - 24,
        to: now_h,
    };
    let start = Instant::now();
    let sums = store
        .metric_sums("default", "production", "revenue", day)
        .await
        .unwrap();
    println!(
        "the same metric over the last 24 hours, as a tree node shows it (n = {}): {:.2} s",
        sums.n,
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let windows = store
        .metric_windows("default", "production", "revenue", now_h, 24 * 7, 2)
        .await
        .unwrap();
    println!(
        "a tree node: this week and the week before (n = {} and {}): {:.2} s",
        windows[1].n,
        windows[0].n,
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let tree = store
        .metric_windows_of(
            "default",
            "production",
            &["revenue", "m1", "m2", "m3", "m4"],
            now_h,
            24 * 7,
            2,
        )
        .await
        .unwrap();
    println!(
        "the whole tree (5 nodes, two weeks each, one pass; n = {}): {:.2} s; peak RSS {} MiB",
        tree[0][1].n,
        start.elapsed().as_secs_f64(),
        rss_kib(pid, "VmHWM") / 1024
    );
    for (series, bucket) in [("daily", 24), ("hourly", 1)] {
        let start = Instant::now();
        let points = store
            .metric_series(
                "default",
                "production",
                "revenue",
                HourRange {
                    from: now_h - 24 * 8,
                    to: now_h,
                },
                bucket,
            )
            .await
            .unwrap();
        println!(
            "{series} series over the week ({} points): {:.2} s; peak RSS {} MiB",
            points.len(),
            start.elapsed().as_secs_f64(),
            rss_kib(pid, "VmHWM") / 1024
        );
    }
}
