//! OFREP: the OpenFeature Remote Evaluation Protocol, exactly as
//! `conformance/ofrep/service/openapi.yaml`, plus its SSE change
//! notifications (ADR-0008, `event-streams.yaml`).
//!
//! Reasons are mapped onto the protocol's enum (`STATIC`,
//! `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `UNKNOWN`); where Sextant's own
//! reason differs (`DEFAULT`, `PREREQUISITE_FAILED`) it is kept in the
//! flag metadata as `sextant.reason`.

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
use sextant_core::{Context, ErrorCode, Reason, Resolution};
use sextant_store::{TokenGrant, TokenRecord, hash_token};
use sha2::{Digest, Sha256};

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
pub(crate) fn token_of(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    if let Some(t) = presented(headers) {
        return Some(t.to_owned());
    }
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.get("token").cloned())
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

/// The request's context, plus its canonical JSON (for the bulk ETag).
fn parse_context(body: &[u8]) -> Result<(Context, String), (&'static str, String)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ("PARSE_ERROR", format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(("PARSE_ERROR", "request body must be an object with a `context`".into()));
    };
    let context = fields.remove("context").unwrap_or_else(|| Value::Object(Map::new()));
    let canonical = context.to_string();
    let mut ctx = Context::from_json(context).map_err(|e| ("INVALID_CONTEXT", e.to_string()))?;
    ctx.now = Some(unix_now());
    Ok((ctx, canonical))
}

fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::Static => "STATIC",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Disabled | Reason::PrerequisiteFailed => "DISABLED",
        Reason::Default | Reason::Error => "UNKNOWN",
    }
}

fn error_details(code: ErrorCode, key: &str) -> String {
    match code {
        ErrorCode::FlagNotFound => format!("flag `{key}` was not found"),
        ErrorCode::TargetingKeyMissing => {
            "the context has no targetingKey (or bucketing attribute) this flag needs".into()
        }
        ErrorCode::InvalidContext => "the context cannot be used".into(),
        ErrorCode::TypeMismatch => "the flag has a different type".into(),
        ErrorCode::ParseError => "the flag definition could not be parsed".into(),
        ErrorCode::General => format!("flag `{key}` could not be evaluated"),
    }
}

/// One evaluation as OFREP JSON: success or failure.
fn evaluation(published: &Published, key: &str, r: &Resolution<'_>) -> Value {
    let mut metadata = Map::new();
    if let Some(m) = published.snapshot.metadata(key) {
        for (k, v) in m {
            // OFREP metadata values are booleans, strings or numbers only.
            if v.is_boolean() || v.is_string() || v.is_number() {
                metadata.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(code) = r.error {
        let mut out = json!({"key": key, "errorCode": code.as_str(), "errorDetails": error_details(code, key)});
        if !metadata.is_empty() {
            out["metadata"] = Value::Object(metadata);
        }
        return out;
    }
    let name = reason_name(r.reason);
    if name != r.reason.as_str() {
        metadata.insert("sextant.reason".into(), Value::String(r.reason.as_str().into()));
    }
    let mut out = json!({"key": key, "reason": name});
    if let Some(v) = r.value {
        out["value"] = v.clone();
    }
    if let Some(v) = r.variation {
        out["variant"] = Value::String(v.into());
    }
    if !metadata.is_empty() {
        out["metadata"] = Value::Object(metadata);
    }
    out
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
    let token = token_of(request.headers(), request.uri());
    let slot = match authorize(&state, token.as_deref()) {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(Some(&key)),
    };
    let (ctx, _) = match parse_context(&body) {
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
    (status, Json(evaluation(&published, &key, &r))).into_response()
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
    let token = token_of(request.headers(), request.uri());
    let slot = match authorize(&state, token.as_deref()) {
        Ok(slot) => slot,
        Err(r) => return r,
    };
    let headers = request.headers().clone();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(None),
    };
    let (ctx, canonical) = match parse_context(&body) {
        Ok(c) => c,
        Err((code, details)) => return failure(StatusCode::BAD_REQUEST, None, Some(code), details),
    };
    let published = slot.load();
    let digest = Sha256::digest(canonical.as_bytes());
    let etag = format!(
        "\"{}-{}-{}\"",
        published.environment_id,
        published.version(),
        hex::encode(&digest[..8])
    );
    let mut response = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let flags: Vec<Value> = published
            .snapshot
            .evaluate_all(&ctx)
            .enumerate()
            .map(|(i, (key, r))| {
                published.count(i, r.reason);
                evaluation(&published, key, &r)
            })
            .collect();
        let url = format!(
            "{}/ofrep/v1/events?token={}",
            base_url(&state, &headers),
            token.as_deref().unwrap_or_default()
        );
        let body = json!({
            "flags": flags,
            "metadata": {
                "version": published.version(),
                "workspace": published.workspace,
                "environment": published.environment,
            },
            "eventStreams": [{"type": "sse", "url": url, "inactivityDelaySec": INACTIVITY_DELAY_SEC}],
        });
        Json(body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
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
