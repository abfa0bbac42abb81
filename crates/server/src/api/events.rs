//! Event ingestion: `POST /events/v1/batch` with an SDK token.
//!
//! The body is parsed once by `sextant_core::event::Batch` (the one parser,
//! fuzzed there), envelope and events together, into borrowed typed
//! fields; each event is then validated on its own: a batch with bad events
//! stores the good ones and reports each bad one by index. The answer is
//! 202 only once the batch is durable; 429 with `Retry-After` when the
//! pipeline is full (see [`crate::events`]).

use std::borrow::Cow;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use sextant_core::event::{Batch, Event};
use sextant_store::{Appended, EventBatchBuilder, FieldError, TokenGrant};
use utoipa::ToSchema;

use crate::auth::{presented, resolve};
use crate::error::{ApiError, Code};
use crate::events::{IngestError, Refused};
use crate::state::AppState;

/// Largest accepted body.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// The events router (browser clients get CORS as for OFREP).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/events/v1/batch", post(batch).options(super::ofrep::preflight))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::ofrep::cors))
}

/// A refused event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// Position in `events`.
    pub index: usize,
    /// The wrong field (`/events/3/timestamp`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The answer to an accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAccepted {
    /// The batch id sent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Events stored by this request (0 for a duplicate).
    pub accepted: u32,
    /// True when a batch with this id was stored before: nothing was stored again.
    pub duplicate: bool,
    /// Events refused, by index.
    pub rejected: Vec<Rejected>,
}

/// Reads and discards up to [`MAX_BODY`] bytes of a body, so a client
/// still uploading reads the refusal instead of a reset connection.
pub(crate) async fn drain(body: Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > MAX_BODY {
            break;
        }
    }
}

fn refused(state: &AppState, r: Refused) -> ApiError {
    match r {
        Refused::Full => {
            state
                .metrics
                .overloaded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError::new(Code::Overloaded, "the event queue is full; retry after the delay given")
        }
        Refused::Closed => ApiError::new(
            Code::Unavailable,
            "the server is shutting down; retry elsewhere or later",
        ),
    }
}

/// Ingests a batch of track and exposure events (server- or client-side
/// SDK token). 202 once durable; bad events are listed by index.
#[utoipa::path(post, path = "/events/v1/batch", tag = "events",
    request_body(content = Object, description = "`{\"batch_id\": \"<uuid>\", \"events\": [{\"kind\": \"track\", \"event\", \"targeting_key\", \"value\", \"timestamp\", \"properties\"} | {\"kind\": \"exposure\", \"flag\", \"variation\", \"targeting_key\", \"timestamp\"}]}`"),
    responses((status = 202, body = BatchAccepted), (status = 413, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem), (status = 429, body = crate::error::Problem)))]
pub async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let token = resolve(&state, presented(&headers))?;
    let environment_id = match &token.grant {
        TokenGrant::Server { environment_id, .. } | TokenGrant::Client { environment_id, .. } => *environment_id,
        TokenGrant::Admin { .. } => {
            return Err(ApiError::new(
                Code::TokenKindForbidden,
                "events are sent with an SDK token (server- or client-side), not an admin token",
            ));
        }
    };
    // Admission before buffering the body: bounded memory under overload.
    // A refused body is drained chunk by chunk (nothing kept) so the client
    // reads the 429 and its Retry-After instead of a reset connection.
    let _slot = match state.events.slot() {
        Ok(slot) => slot,
        Err(r) => {
            drain(body).await;
            return Err(refused(&state, r));
        }
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            Code::BodyTooLarge,
            format!("an event batch must be at most {MAX_BODY} bytes; send smaller batches"),
        )
    })?;
    // A batch larger than the queue could never be admitted: refuse it as
    // invalid. Events past the limit are only counted by the parser.
    let max = state.config.max_events_per_batch.min(state.config.event_queue_capacity);
    let envelope = Batch::parse(&bytes, max).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(Code::BodyInvalidJson, e.to_string())
        } else {
            ApiError::field("", format!("{e}; expected {{\"batch_id\": …, \"events\": [...]}}"))
        }
    })?;
    super::check(
        envelope
            .check(max)
            .into_iter()
            .map(|(field, message)| FieldError {
                field: field.into(),
                message,
            })
            .collect(),
    )?;

    let now_ms = chrono::Utc::now().timestamp_millis();
    let oldest_ms = now_ms.saturating_sub(state.config.event_retention.as_millis() as i64);
    let mut out = EventBatchBuilder::with_capacity(envelope.len());
    let mut rejected = Vec::new();
    for (index, event) in envelope.events(now_ms, oldest_ms).enumerate() {
        match event {
            Ok(Event::Track {
                event,
                unit,
                value,
                timestamp_ms,
                properties,
            }) => out.track(event, unit, value, timestamp_ms, properties),
            Ok(Event::Exposure {
                flag,
                variation,
                unit,
                timestamp_ms,
            }) => out.exposure(flag, variation, unit, timestamp_ms),
            Err(e) => {
                let field = if e.field.is_empty() {
                    format!("/events/{index}")
                } else {
                    format!("/events/{index}/{}", e.field)
                };
                rejected.push(Rejected {
                    index,
                    field,
                    message: e.message,
                });
            }
        }
    }
    let counters = &state.events.counters;
    counters
        .rejected
        .fetch_add(rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if out.is_empty() && !rejected.is_empty() {
        return Err(ApiError::invalid(
            rejected
                .into_iter()
                .map(|r| FieldError {
                    field: r.field,
                    message: r.message,
                })
                .collect(),
        ));
    }
    let batch_id = envelope.batch_id.map(Cow::into_owned);
    let mut reply = BatchAccepted {
        batch_id: batch_id.clone(),
        accepted: out.len(),
        duplicate: false,
        rejected,
    };
    if !out.is_empty() {
        let batch = out.finish(environment_id, batch_id);
        match state.events.submit(batch).await.map_err(|r| refused(&state, r))? {
            Ok(Appended::Stored) => {}
            Ok(Appended::Duplicate) => {
                reply.accepted = 0;
                reply.duplicate = true;
            }
            Err(IngestError::Closed) => return Err(refused(&state, Refused::Closed)),
            Err(IngestError::Store(e)) => return Err(ApiError::internal(e)),
        }
    }
    Ok((StatusCode::ACCEPTED, axum::Json(reply)).into_response())
}
