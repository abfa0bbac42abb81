//! Event ingestion: `POST /events/v1/batch` with an SDK token.
//!
//! Each event is parsed and validated on its own: a batch with bad events
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
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sextant_store::{Appended, EventBatchBuilder, FieldError, TokenGrant};
use utoipa::ToSchema;

use crate::auth::{presented, resolve};
use crate::error::{ApiError, Code};
use crate::events::{IngestError, Refused};
use crate::state::AppState;

/// Largest accepted body.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// How far in the future an event timestamp may be (clock skew).
const MAX_FUTURE_MS: i64 = 3_600_000;

/// Longest event name, flag key, variation or targeting key.
const MAX_NAME: usize = 256;

/// Largest `properties` object, in bytes of JSON.
const MAX_PROPERTIES: usize = 8 * 1024;

/// The events router (browser clients get CORS as for OFREP).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/events/v1/batch", post(batch).options(super::ofrep::preflight))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::ofrep::cors))
}

/// The request envelope; events are parsed one by one afterwards.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    batch_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// One event on the wire: a track or an exposure, told apart by `kind`.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    flag: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    variation: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    targeting_key: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
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

/// Validates one event into `out`, or says which field is wrong.
fn add_event(
    out: &mut EventBatchBuilder,
    raw: &RawValue,
    now_ms: i64,
    oldest_ms: i64,
) -> Result<(), (&'static str, String)> {
    let e: WireEvent<'_> = serde_json::from_str(raw.get()).map_err(|err| ("", err.to_string()))?;
    let text = |field: &'static str, v: &Option<Cow<'_, str>>| -> Result<String, (&'static str, String)> {
        match v.as_deref() {
            None => Err((field, "is required".into())),
            Some(s) if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) => {
                Err((field, format!("must be 1-{MAX_NAME} bytes without control characters")))
            }
            Some(s) => Ok(s.to_owned()),
        }
    };
    let unit = text("targeting_key", &e.targeting_key)?;
    let ts = e.timestamp.as_deref().ok_or(("timestamp", "is required".to_owned()))?;
    let ts = chrono::DateTime::parse_from_rfc3339(ts)
        .map_err(|_| {
            (
                "timestamp",
                format!("`{ts}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        })?
        .timestamp_millis();
    if ts > now_ms + MAX_FUTURE_MS {
        return Err(("timestamp", "is more than an hour in the future".into()));
    }
    if ts < oldest_ms {
        return Err(("timestamp", "is older than the event retention".into()));
    }
    match e.kind.as_ref() {
        "track" => {
            let event = text("event", &e.event)?;
            let properties = match e.properties {
                None => None,
                Some(p) if p.get() == "null" => None,
                Some(p) if !p.get().starts_with('{') => return Err(("properties", "must be an object".into())),
                Some(p) if p.get().len() > MAX_PROPERTIES => {
                    return Err(("properties", format!("must be at most {MAX_PROPERTIES} bytes of JSON")));
                }
                Some(p) => Some(p.get()),
            };
            out.track(&event, &unit, e.value, ts, properties);
        }
        "exposure" => {
            let flag = text("flag", &e.flag)?;
            let variation = text("variation", &e.variation)?;
            out.exposure(&flag, &variation, &unit, ts);
        }
        other => return Err(("kind", format!("`{other}` is not an event kind (track, exposure)"))),
    }
    Ok(())
}

/// Reads and discards up to [`MAX_BODY`] bytes of a body.
async fn drain(body: Body) {
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
    let envelope: Envelope<'_> = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(Code::BodyInvalidJson, e.to_string())
        } else {
            ApiError::field("", format!("{e}; expected {{\"batch_id\": …, \"events\": [...]}}"))
        }
    })?;
    // A batch larger than the queue could never be admitted: refuse it as invalid.
    let max = state.config.max_events_per_batch.min(state.config.event_queue_capacity);
    let mut errors = Vec::new();
    if envelope.events.len() > max {
        errors.push(FieldError {
            field: "/events".into(),
            message: format!("{} events; a batch holds at most {max}", envelope.events.len()),
        });
    }
    if let Some(id) = envelope.batch_id.as_deref()
        && (id.is_empty() || id.len() > 128)
    {
        errors.push(FieldError {
            field: "/batch_id".into(),
            message: "must be 1-128 bytes (a UUID is typical)".into(),
        });
    }
    super::check(errors)?;

    let now_ms = chrono::Utc::now().timestamp_millis();
    let oldest_ms = now_ms.saturating_sub(state.config.event_retention.as_millis() as i64);
    let mut out = EventBatchBuilder::with_capacity(envelope.events.len());
    let mut rejected = Vec::new();
    for (index, raw) in envelope.events.iter().enumerate() {
        if let Err((field, message)) = add_event(&mut out, raw, now_ms, oldest_ms) {
            let field = if field.is_empty() {
                format!("/events/{index}")
            } else {
                format!("/events/{index}/{field}")
            };
            rejected.push(Rejected { index, field, message });
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
