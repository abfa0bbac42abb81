//! Merges the area routers and adds the cross-cutting layers.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::error::{ApiError, Code};
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// The whole application. Tests can drive it with `oneshot`, no socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::workspaces::router())
        .merge(api::flags::router())
        .merge(api::segments::router())
        .merge(api::tokens::router())
        .merge(api::audit::router())
        .merge(api::rollouts::router())
        .merge(api::experiments::router())
        .merge(api::sdk::router())
        .merge(api::events::router(&state))
        .merge(api::metrics::router())
        .merge(api::ofrep::router(&state))
        .merge(api::ops::router())
        .merge(crate::dashboard::router())
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::new(
        Code::RouteNotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

/// Request metrics and a log line per request.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe(&route, method.as_str(), status, elapsed);
    tracing::debug!(%method, %route, status, micros = elapsed.as_micros() as u64, "request");
    response
}
