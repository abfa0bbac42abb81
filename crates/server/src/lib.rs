//! Sextant's HTTP server: the admin API (`/api/v1`), OFREP (`/ofrep/v1`),
//! SDK sync (`/sdk/v1`), ops endpoints, the OpenAPI document and the web
//! dashboard (`/`, see [`dashboard`]).
//!
//! [`run`] serves an already-bound listener until `shutdown` completes,
//! then stops accepting, ends SSE streams and waits for in-flight requests.
//! [`router`] builds the same application without a socket.
//!
//! Evaluation reads an `Arc` of the environment's published snapshot
//! (swapped atomically on every committed change), so readers never see
//! half a change and the hot path takes no lock.

#![forbid(unsafe_code)]

pub mod api;
mod app;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod experiments;
pub mod live;
pub mod metrics;
mod openapi;
pub mod ratelimit;
mod replica;
pub mod reports;
pub mod scheduler;
pub mod state;
mod stream;

pub use app::router;
pub use openapi::ApiDoc;
pub use state::{AppState, Change, Config};

/// Serves `listener` until `shutdown` completes; then stops accepting,
/// closes event streams and finishes in-flight requests. The rollout
/// scheduler runs alongside and is awaited on the way out. On a shared
/// database (PostgreSQL) it also follows the changes other replicas commit
/// and publishes them to this replica's SSE clients.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let follower = match state.store.change_feed().await {
        Ok(Some(feed)) => Some(tokio::spawn(replica::follow(state.clone(), feed))),
        Ok(None) => None,
        Err(e) => return Err(std::io::Error::other(format!("cannot follow other replicas: {e}"))),
    };
    let app = router(state.clone());
    let stopping = state.clone();
    let scheduler = tokio::spawn(scheduler::run(
        state.clone(),
        scheduler::Clock::system(),
        state.config.evaluation_interval,
    ));
    // Webhook deliveries, first-exposure detection and due reviews; ends
    // with the shutdown signal and is awaited below.
    let worker = tokio::spawn(api::webhooks::worker(state.clone()));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing streams, finishing requests");
            stopping.begin_shutdown();
        })
        .await;
    // Queued event batches are committed before the writer stops.
    state.begin_shutdown();
    state.events.finish().await;
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "scheduler task failed");
    }
    let _ = worker.await;
    served
}
