//! Event ingestion: `POST /events/v1/batch` with an SDK token.
//!
//! The body is parsed once, envelope and events together, into borrowed
//! typed fields; each event is then validated on its own: a batch with bad
//! events stores the good ones and reports each bad one by index. The answer is
//! 202 only once the batch is durable; 429 with `Retry-After` when the
//! pipeline is full (see [`crate::events`]).

use std::borrow::Cow;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// The events router (browser clients get CORS as for OFREP).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/events/v1/batch", post(batch).options(super::ofrep::preflight))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::ofrep::cors))
}

/// The request body, parsed in one pass: the envelope and every event
/// together, each event into typed, borrowed fields (no copy of the
/// strings unless they hold escapes). A wrongly typed field does not fail
/// the parse: it is kept as [`Scalar::Other`] and reported by index when
/// the event is validated.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    batch_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    events: Vec<Item<'a>>,
}

/// One element of `events`: an object (maybe with wrong fields) or
/// something else, which is reported as such.
enum Item<'a> {
    Event(WireEvent<'a>),
    NotObject(&'static str),
}

/// One event on the wire: a track or an exposure, told apart by `kind`.
#[derive(Default)]
struct WireEvent<'a> {
    kind: Scalar<'a>,
    event: Scalar<'a>,
    flag: Scalar<'a>,
    variation: Scalar<'a>,
    targeting_key: Scalar<'a>,
    value: Scalar<'a>,
    timestamp: Scalar<'a>,
    properties: Option<&'a RawValue>,
}

/// A field's JSON value as far as validation cares.
#[derive(Default)]
enum Scalar<'a> {
    /// The field is absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    Str(Cow<'a, str>),
    Num(f64),
    /// Any other JSON type (named for the message).
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor(std::marker::PhantomData))
    }
}

struct ItemVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ItemVisitor<'a> {
    type Value = Item<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut e = WireEvent::default();
        // Keys are matched borrowed; an escaped key (rare) is owned.
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "kind" => &mut e.kind,
                "event" => &mut e.event,
                "flag" => &mut e.flag,
                "variation" => &mut e.variation,
                "targeting_key" => &mut e.targeting_key,
                "value" => &mut e.value,
                "timestamp" => &mut e.timestamp,
                "properties" => {
                    e.properties = Some(map.next_value::<&'de RawValue>()?);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(Item::Event(e))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::NotObject("an array"))
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a string"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a string"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a number"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Item::NotObject("null"))
    }
}

/// Parses RFC 3339 timestamps, remembering the last one: the events of a
/// batch usually share a handful of timestamps, so most are one compare.
#[derive(Default)]
struct Timestamps<'a> {
    last: Option<(&'a str, i64)>,
}

impl<'a> Timestamps<'a> {
    fn parse(&mut self, s: &'a str) -> Option<i64> {
        if let Some((text, ms)) = self.last
            && text == s
        {
            return Some(ms);
        }
        let ms = chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis();
        self.last = Some((s, ms));
        Some(ms)
    }
}

/// The limits an event is checked against.
struct Limits {
    now_ms: i64,
    oldest_ms: i64,
}

/// Validates one parsed event into `out`, or says which field is wrong.
fn add_event<'a>(
    out: &mut EventBatchBuilder,
    item: &'a Item<'a>,
    times: &mut Timestamps<'a>,
    limits: &Limits,
) -> Result<(), (&'static str, String)> {
    let e = match item {
        Item::Event(e) => e,
        Item::NotObject(what) => return Err(("", format!("is {what}; an event is an object"))),
    };
    let text = |field: &'static str, v: &'a Scalar<'a>| -> Result<&'a str, (&'static str, String)> {
        match v {
            Scalar::Missing | Scalar::Null => Err((field, "is required".into())),
            Scalar::Num(_) => Err((field, "must be a string, not a number".into())),
            Scalar::Other(what) => Err((field, format!("must be a string, not {what}"))),
            Scalar::Str(s) if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) => {
                Err((field, format!("must be 1-{MAX_NAME} bytes without control characters")))
            }
            Scalar::Str(s) => Ok(s.as_ref()),
        }
    };
    let kind = match &e.kind {
        Scalar::Str(k) => k.as_ref(),
        Scalar::Missing | Scalar::Null => return Err(("kind", "is required (track or exposure)".into())),
        Scalar::Num(_) => return Err(("kind", "must be a string (track or exposure), not a number".into())),
        Scalar::Other(what) => return Err(("kind", format!("must be a string (track or exposure), not {what}"))),
    };
    if kind != "track" && kind != "exposure" {
        return Err(("kind", format!("`{kind}` is not an event kind (track, exposure)")));
    }
    let unit = text("targeting_key", &e.targeting_key)?;
    let ts = match &e.timestamp {
        Scalar::Missing | Scalar::Null => return Err(("timestamp", "is required".into())),
        Scalar::Str(s) => times.parse(s).ok_or_else(|| {
            (
                "timestamp",
                format!("`{s}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        })?,
        _ => {
            return Err((
                "timestamp",
                "must be an RFC 3339 time string such as 2026-01-31T12:00:00Z".into(),
            ));
        }
    };
    if ts > limits.now_ms + MAX_FUTURE_MS {
        return Err(("timestamp", "is more than an hour in the future".into()));
    }
    if ts < limits.oldest_ms {
        return Err(("timestamp", "is older than the event retention".into()));
    }
    if kind == "track" {
        let event = text("event", &e.event)?;
        let value = match &e.value {
            Scalar::Missing | Scalar::Null => None,
            Scalar::Num(v) => Some(*v),
            Scalar::Str(_) => return Err(("value", "must be a number, not a string".into())),
            Scalar::Other(what) => return Err(("value", format!("must be a number, not {what}"))),
        };
        let properties = match e.properties {
            None => None,
            Some(p) if p.get() == "null" => None,
            // An object, bounded, and nothing a JSON store refuses (see core).
            Some(p) => Some(sextant_core::event::check_properties(p.get()).map_err(|e| (e.field, e.message))?),
        };
        out.track(event, unit, value, ts, properties);
    } else {
        let flag = text("flag", &e.flag)?;
        let variation = text("variation", &e.variation)?;
        out.exposure(flag, variation, unit, ts);
    }
    Ok(())
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
    let limits = Limits { now_ms, oldest_ms };
    let mut out = EventBatchBuilder::with_capacity(envelope.events.len());
    let mut times = Timestamps::default();
    let mut rejected = Vec::new();
    for (index, item) in envelope.events.iter().enumerate() {
        if let Err((field, message)) = add_event(&mut out, item, &mut times, &limits) {
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
