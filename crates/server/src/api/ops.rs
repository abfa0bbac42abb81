//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// The ops router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers and snapshots are loaded (they are loaded before
/// the server accepts requests); 503 while shutting down or without a database.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let stopping = *state.shutdown_signal().borrow();
    let database = state.store.ping().await;
    let environments = state.live.all().len();
    let ready = !stopping && database.is_ok();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": if database.is_ok() { "ok" } else { "unreachable" },
        "environments": environments,
        "stopping": stopping,
    });
    if let Err(e) = database {
        tracing::warn!(error = %e, "readiness check: database unreachable");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(body)).into_response();
    if !ready {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(&state.live),
    )
        .into_response()
}
