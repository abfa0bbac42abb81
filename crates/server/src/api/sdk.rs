//! SDK sync for server-side SDKs: the snapshot and its change stream.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sextant_store::TokenGrant;

use crate::auth::{presented, resolve};
use crate::error::{ApiError, Code};
use crate::live::EnvSlot;
use crate::state::AppState;
use crate::stream::{StreamKind, follow, last_event_id};

/// The SDK router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sdk/v1/snapshot", get(snapshot))
        .route("/sdk/v1/stream", get(stream))
}

/// The environment of a server-side SDK token.
fn server_slot(state: &AppState, headers: &HeaderMap) -> Result<Arc<EnvSlot>, ApiError> {
    let token = resolve(state, presented(headers))?;
    match &token.grant {
        TokenGrant::Server { environment_id, .. } => state
            .live
            .slot(*environment_id)
            .ok_or_else(|| ApiError::new(Code::TokenInvalid, "the token's environment no longer exists")),
        TokenGrant::Client { .. } => Err(ApiError::new(
            Code::TokenKindForbidden,
            "client-side tokens may only use OFREP evaluation; use a server-side token",
        )),
        TokenGrant::Admin { .. } => Err(ApiError::new(
            Code::TokenKindForbidden,
            "admin tokens cannot sync SDKs; use a server-side SDK token",
        )),
    }
}

fn etag(environment_id: i64, version: u64) -> String {
    format!("\"{environment_id}-{version}\"")
}

/// Whether `If-None-Match` lists `etag` (or `*`).
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
}

/// The environment's full ruleset (`{workspace, environment, version, document}`).
#[utoipa::path(get, path = "/sdk/v1/snapshot", tag = "sdk",
    responses((status = 200, description = "The snapshot; `ETag` names its version"),
              (status = 304, description = "Unchanged since `If-None-Match`"),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
pub async fn snapshot(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let published = server_slot(&state, &headers)?.load();
    let tag = etag(published.environment_id, published.version());
    let mut response = if none_match(&headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            published.sdk_body.to_string(),
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// Server-sent events: `snapshot` (full ruleset) first, then a `change`
/// per committed change, each with the version as its id. Reconnecting
/// with `Last-Event-ID` replays what was missed, or sends a fresh snapshot.
#[utoipa::path(get, path = "/sdk/v1/stream", tag = "sdk",
    responses((status = 200, description = "text/event-stream of `snapshot` and `change` events"),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
pub async fn stream(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let slot = server_slot(&state, &headers)?;
    let resume = last_event_id(&headers);
    let initial = move |slot: &EnvSlot| {
        let current = slot.load();
        let version = current.version();
        let full = || {
            vec![
                Event::default()
                    .event("snapshot")
                    .id(version.to_string())
                    .data(&*current.sdk_body),
            ]
        };
        match resume.map(|v| (v, slot.since(v))) {
            Some((_, Some(missed))) => {
                let events = missed
                    .iter()
                    .map(|e| {
                        Event::default()
                            .event("change")
                            .id(e.version.to_string())
                            .data(&e.sdk_change)
                    })
                    .collect::<Vec<_>>();
                let last = missed.last().map_or(version, |e| e.version.max(version));
                (events, last)
            }
            _ => (full(), version),
        }
    };
    let render = |e: &crate::live::LiveEvent| {
        Event::default()
            .event("change")
            .id(e.version.to_string())
            .data(&e.sdk_change)
    };
    Ok(follow(&state, &slot, initial, render, StreamKind::Sdk))
}
