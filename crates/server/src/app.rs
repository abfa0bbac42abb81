//! Merges the area routers and adds the cross-cutting layers.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::api::ofrep::token_of;
use crate::error::{ApiError, Code};
use crate::openapi::ApiDoc;
use crate::ratelimit::retry_after_secs;
use crate::state::AppState;
use sextant_store::hash_token;

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
        .merge(api::changes::router())
        .merge(api::principles::router())
        .merge(api::reviews::router())
        .merge(api::learnings::router())
        .merge(api::webhooks::router())
        .merge(api::deploys::router())
        .merge(api::sdk::router())
        .merge(api::events::router(&state))
        .merge(api::metrics::router())
        .merge(api::ofrep::router(&state))
        .merge(api::ops::router())
        .merge(crate::dashboard::router())
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
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

/// Per-token rate limiting (see [`crate::ratelimit`]): a token over its
/// rate gets 429 with `Retry-After`, as problem+json on the admin API and
/// as an OFREP error body on OFREP routes. Runs inside [`observe`], so
/// refused requests are counted like any other.
async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.limiter else {
        return next.run(request).await;
    };
    let token = token_of(request.headers(), request.uri());
    let hash = match token.as_deref() {
        Some(t) if !t.is_empty() => hash_token(t),
        // No token: the handler answers 401; nothing to count against.
        _ => return next.run(request).await,
    };
    if state.tokens.get(&hash).is_none() {
        return next.run(request).await;
    }
    let Err(wait) = limiter.check(&hash, Instant::now()) else {
        return next.run(request).await;
    };
    state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
    let secs = retry_after_secs(wait);
    let detail = format!("this token exceeded its rate limit; retry in {secs} s");
    let mut response = if request.uri().path().starts_with("/ofrep/") {
        let body = serde_json::json!({"errorCode": "GENERAL", "errorDetails": detail});
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    } else {
        ApiError::new(Code::RateLimited, detail).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    // Answering before the body is read would close the connection under
    // a client still uploading (an event batch): it would see a reset, not
    // the 429 and its Retry-After.
    api::events::drain(request.into_body()).await;
    response
}

/// Request metrics and a log line per request.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    // `MatchedPath` is a shared string: cloning it does not allocate.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe(route, method.as_str(), status, elapsed);
    tracing::debug!(%method, %route, status, micros = elapsed.as_micros() as u64, "request");
    response
}
