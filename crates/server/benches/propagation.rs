//! Change propagation: N SDK clients follow `/sdk/v1/stream`; a toggle is
//! written through the admin API; measured is the time from the write's
//! acknowledgement to each client receiving the change.
//!
//! Run: `cargo bench -p sextant-server --bench propagation -- [CLIENTS] [ROUNDS]`
//! (defaults 1000 clients, 20 rounds; raise `ulimit -n` for 10,000).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Barrier, mpsc};

/// The server, flag, stream reader and summary shared with `replicas`.
mod sse;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let clients = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let base = sse::serve(dir.path().join("sextant.db").to_string_lossy().into_owned());
    let rt = tokio::runtime::Runtime::new().expect("client runtime");
    rt.block_on(measure(base, clients, rounds));
}

async fn measure(base: String, clients: usize, rounds: usize) {
    let http = sse::http();
    let token = sse::flag_and_token(&http, &base, "prop", "bench").await;

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
            sse::follow(response, ready, tx).await;
        });
    }
    ready.wait().await;
    println!("{clients} SSE clients connected");

    let mut latencies = Vec::with_capacity(clients * rounds);
    let mut last_client = Vec::with_capacity(rounds);
    for round in 0..rounds {
        sse::toggle(&http, &base, "prop", round % 2 == 1).await;
        let acked = Instant::now();
        let (each, worst) = sse::deliveries(&mut rx, clients, acked).await;
        latencies.extend(each);
        last_client.push(worst);
    }
    let [p50, p99, last_p50, last_p99, last_max] = sse::summary(latencies, last_client);
    println!(
        "per-client delivery after ack: p50 {p50:?}, p99 {p99:?}; last client per change: p50 {last_p50:?}, p99 {last_p99:?}, max {last_max:?} ({rounds} changes)",
    );
}
