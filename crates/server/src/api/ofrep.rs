//! OFREP: the OpenFeature Remote Evaluation Protocol, exactly as
//! `conformance/ofrep/service/openapi.yaml`, plus its SSE change
//! notifications (ADR-0008, `event-streams.yaml`).
//!
//! Reasons are mapped onto the protocol's enum (`STATIC`,
//! `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `UNKNOWN`); where Sextant's own
//! reason differs (`DEFAULT`, `PREREQUISITE_FAILED`) it is kept in the
//! flag metadata as `sextant.reason`.

mod wire;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sextant_core::{Context, ErrorCode};
use sextant_store::{TokenGrant, TokenRecord, hash_token};
use xxhash_rust::xxh3::Xxh3;

use super::sdk::none_match;
use crate::auth::presented;
use crate::live::{EnvSlot, LiveEvent, Published};
use crate::state::AppState;
use crate::stream::{StreamKind, follow, last_event_id};

/// Seconds a browser may keep an idle event stream open.
const INACTIVITY_DELAY_SEC: u64 = 120;

/// The OFREP router, with per-client-token CORS.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag).options(preflight))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags).options(preflight))
        .route("/ofrep/v1/events", get(events).options(preflight))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
}

/// CORS preflights are answered by the [`cors`] layer; this only gives
/// `OPTIONS` a route so the layer sees it.
pub(crate) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// An OFREP error body (`errorCode` + `errorDetails`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    error_details: String,
}

fn failure(status: StatusCode, key: Option<&str>, code: Option<&'static str>, details: impl Into<String>) -> Response {
    let body = Failure {
        key,
        error_code: code,
        error_details: details.into(),
    };
    (status, Json(body)).into_response()
}

/// The token of a request: header, or `?token=` for EventSource.
pub(crate) fn token_of<'a>(headers: &'a HeaderMap, uri: &axum::http::Uri) -> Option<Cow<'a, str>> {
    if let Some(t) = presented(headers) {
        return Some(Cow::Borrowed(t));
    }
    uri.query()?;
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .ok()
        .and_then(|mut q| q.0.remove("token"))
        .map(Cow::Owned)
}

fn lookup(state: &AppState, token: Option<&str>) -> Option<Arc<TokenRecord>> {
    token
        .filter(|t| !t.is_empty())
        .and_then(|t| state.tokens.get(&hash_token(t)))
}

/// The environment an OFREP request evaluates in; 401/403 otherwise.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response itself, built once per failed request"
)]
fn authorize(state: &AppState, token: Option<&str>) -> Result<Arc<EnvSlot>, Response> {
    let Some(token_value) = token.filter(|t| !t.is_empty()) else {
        return Err(failure(
            StatusCode::UNAUTHORIZED,
            None,
            None,
            "send an SDK token as `Authorization: Bearer <token>` or `X-API-Key`",
        ));
    };
    let Some(record) = lookup(state, Some(token_value)) else {
        return Err(failure(
            StatusCode::UNAUTHORIZED,
            None,
            None,
            "the token is unknown or was revoked",
        ));
    };
    match &record.grant {
        TokenGrant::Server { environment_id, .. } | TokenGrant::Client { environment_id, .. } => {
            state.live.slot(*environment_id).ok_or_else(|| {
                failure(
                    StatusCode::UNAUTHORIZED,
                    None,
                    None,
                    "the token's environment no longer exists",
                )
            })
        }
        TokenGrant::Admin { .. } => Err(failure(
            StatusCode::FORBIDDEN,
            None,
            None,
            "admin tokens cannot evaluate flags; use an SDK token",
        )),
    }
}

/// Largest accepted evaluation request body: a context, not a data set.
const MAX_BODY: usize = 1 << 20;

/// 413 for a body over [`MAX_BODY`] (or one that broke off while read).
fn too_large(key: Option<&str>) -> Response {
    failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        key,
        Some("PARSE_ERROR"),
        format!("the request body is larger than {MAX_BODY} bytes"),
    )
}

fn overloaded(state: &AppState) -> Response {
    state
        .metrics
        .overloaded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = failure(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        None,
        "too many evaluations in flight; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The request's context.
fn parse_context(body: &[u8]) -> Result<Context, (&'static str, String)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ("PARSE_ERROR", format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(("PARSE_ERROR", "request body must be an object with a `context`".into()));
    };
    let context = fields.remove("context").unwrap_or_else(|| Value::Object(Map::new()));
    let mut ctx = Context::from_json(context).map_err(|e| ("INVALID_CONTEXT", e.to_string()))?;
    ctx.now = Some(unix_now());
    Ok(ctx)
}

/// Feeds what is written to it into an XXH3 hasher.
struct HashWriter(Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A 128-bit hash of a context's canonical JSON (targeting key, then the
/// attributes in key order), for the bulk ETag. Streamed into the hasher:
/// no string is built. XXH3 rather than SHA-256 because the ETag only has
/// to tell contexts apart for one client, not resist forgery: a client
/// that forges a collision only gets a 304 for its own request.
fn context_hash(ctx: &Context) -> u128 {
    let mut w = HashWriter(Xxh3::new());
    // Serializing a string, `None` or a `Map` into a writer that never
    // fails cannot fail.
    let _ = serde_json::to_writer(&mut w, &ctx.targeting_key);
    let _ = serde_json::to_writer(&mut w, &ctx.attributes);
    w.0.digest128()
}

/// Evaluates one flag for a dynamic context.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "ofrep",
    params(("key" = String, Path, description = "Flag key")),
    request_body(content = Object, description = "`{\"context\": {\"targetingKey\": …}}`"),
    responses((status = 200, description = "evaluationSuccess"), (status = 400, description = "evaluationFailure"),
              (status = 404, description = "flagNotFound"), (status = 401), (status = 403),
              (status = 413, description = "Body larger than 1 MiB"),
              (status = 429, description = "Overloaded; see Retry-After")))]
pub async fn evaluate_flag(State(state): State<AppState>, Path(key): Path<String>, request: Request) -> Response {
    let Ok(_permit) = state.evaluations.try_acquire() else {
        return overloaded(&state);
    };
    let slot = match authorize(&state, token_of(request.headers(), request.uri()).as_deref()) {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(Some(&key)),
    };
    let ctx = match parse_context(&body) {
        Ok(c) => c,
        Err((code, details)) => return failure(StatusCode::BAD_REQUEST, Some(&key), Some(code), details),
    };
    let published = slot.load();
    let r = published.snapshot.evaluate(&key, &ctx);
    if let Some(&i) = published.index.get(key.as_str()) {
        published.count(i, r.reason);
    }
    let status = match r.error {
        None => StatusCode::OK,
        Some(ErrorCode::FlagNotFound) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
    };
    let mut out = Vec::with_capacity(256);
    wire::evaluation(&mut out, published.snapshot.metadata(&key), &key, &r);
    (status, json_body(out)).into_response()
}

/// A JSON response body that is already serialized.
fn json_body(body: Vec<u8>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
}

/// Evaluates every flag for a static context. `ETag` covers the
/// environment, its snapshot version and the context; `If-None-Match`
/// with it answers 304. `eventStreams` points at the change stream.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep",
    request_body(content = Object, description = "`{\"context\": {\"targetingKey\": …}}`"),
    params(("If-None-Match" = Option<String>, Header, description = "ETag of a previous response"),
           ("flagConfigEtag" = Option<String>, Query, description = "From an event stream message (informational)"),
           ("flagConfigLastModified" = Option<String>, Query, description = "From an event stream message (informational)")),
    responses((status = 200, description = "bulkEvaluationSuccess"), (status = 304, description = "Not modified"),
              (status = 400, description = "bulkEvaluationFailure"), (status = 401), (status = 403),
              (status = 413, description = "Body larger than 1 MiB"),
              (status = 429, description = "Overloaded; see Retry-After")))]
pub async fn evaluate_flags(State(state): State<AppState>, request: Request) -> Response {
    let Ok(_permit) = state.evaluations.try_acquire() else {
        return overloaded(&state);
    };
    let (parts, body) = request.into_parts();
    let token = token_of(&parts.headers, &parts.uri);
    let slot = match authorize(&state, token.as_deref()) {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(None),
    };
    let ctx = match parse_context(&body) {
        Ok(c) => c,
        Err((code, details)) => return failure(StatusCode::BAD_REQUEST, None, Some(code), details),
    };
    let published = slot.load();
    let etag = format!(
        "\"{}-{}-{:032x}\"",
        published.environment_id,
        published.version(),
        context_hash(&ctx)
    );
    let mut response = if none_match(&parts.headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let url = format!(
            "{}/ofrep/v1/events?token={}",
            base_url(&state, &parts.headers),
            token.as_deref().unwrap_or_default()
        );
        json_body(bulk(&published, &ctx, &url)).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// The `bulkEvaluationSuccess` body: every flag evaluated for `ctx` (each
/// counted), the snapshot's metadata and the change stream at `url`. Keys
/// in sorted order, as [`wire`] writes them.
fn bulk(published: &Published, ctx: &Context, url: &str) -> Vec<u8> {
    // About 110 bytes a flag for boolean flags; one allocation in the
    // common case.
    let mut out = Vec::with_capacity(256 + url.len() + published.snapshot.len() * 128);
    out.extend_from_slice(b"{\"eventStreams\":[{\"inactivityDelaySec\":");
    wire::number(&mut out, INACTIVITY_DELAY_SEC);
    out.extend_from_slice(b",\"type\":\"sse\",\"url\":");
    wire::string(&mut out, url);
    out.extend_from_slice(b"}],\"flags\":[");
    for (i, (key, r)) in published.snapshot.evaluate_all(ctx).enumerate() {
        published.count(i, r.reason);
        if i > 0 {
            out.push(b',');
        }
        wire::evaluation(&mut out, published.snapshot.metadata(key), key, &r);
    }
    out.extend_from_slice(b"],\"metadata\":{\"environment\":");
    wire::string(&mut out, &published.environment);
    out.extend_from_slice(b",\"version\":");
    wire::number(&mut out, published.version());
    out.extend_from_slice(b",\"workspace\":");
    wire::string(&mut out, &published.workspace);
    out.extend_from_slice(b"}}");
    out
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

fn refetch(environment_id: i64, e: &LiveEvent) -> Event {
    let data = json!({
        "type": "refetchEvaluation",
        "etag": format!("\"{environment_id}-{}\"", e.version),
        "lastModified": e.at,
    });
    Event::default()
        .event("message")
        .id(e.version.to_string())
        .data(data.to_string())
}

/// The change stream advertised in `eventStreams`: a `refetchEvaluation`
/// message per change, ids are snapshot versions; a client resuming with
/// an older `Last-Event-ID` gets one message at once.
#[utoipa::path(get, path = "/ofrep/v1/events", tag = "ofrep",
    params(("token" = Option<String>, Query, description = "SDK token, for EventSource clients that cannot send headers")),
    responses((status = 200, description = "text/event-stream of `refetchEvaluation` messages"), (status = 401), (status = 403)))]
pub async fn events(State(state): State<AppState>, request: Request) -> Response {
    let token = token_of(request.headers(), request.uri());
    let slot = match authorize(&state, token.as_deref()) {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let resume = last_event_id(request.headers());
    let environment_id = slot.load().environment_id;
    let initial = move |slot: &EnvSlot| {
        let current = slot.load();
        let missed = resume.is_some_and(|v| v != current.version());
        let event = LiveEvent {
            version: current.version(),
            sdk_change: String::new(),
            at: current.published_at,
        };
        let events = if missed {
            vec![refetch(environment_id, &event)]
        } else {
            vec![]
        };
        (events, current.version())
    };
    follow(
        &state,
        &slot,
        initial,
        move |e| refetch(environment_id, e),
        StreamKind::Ofrep,
    )
}

/// CORS for browser OFREP providers, per client token's allowed origins.
/// Preflights carry no token, so they are answered for any origin some
/// client token allows; the real request only gets
/// `Access-Control-Allow-Origin` if its own token allows the origin.
pub(crate) async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if state.tokens.any_allows(&origin) {
            let h = response.headers_mut();
            set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, &origin);
            set(h, header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS");
            set(
                h,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, x-api-key, if-none-match, last-event-id",
            );
            set(h, header::ACCESS_CONTROL_MAX_AGE, "600");
        }
        set(response.headers_mut(), header::VARY, "Origin");
        return response;
    }
    let token = token_of(request.headers(), request.uri());
    let allowed = match lookup(&state, token.as_deref()).as_deref() {
        Some(TokenRecord {
            grant: TokenGrant::Client { allowed_origins, .. },
            ..
        }) => allowed_origins.iter().any(|o| *o == origin || o == "*"),
        _ => false,
    };
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    set(h, header::VARY, "Origin");
    if allowed {
        set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, &origin);
        set(h, header::ACCESS_CONTROL_EXPOSE_HEADERS, "ETag, Retry-After");
    }
    response
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}
