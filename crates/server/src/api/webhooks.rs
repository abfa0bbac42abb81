//! Webhooks: subscriptions per event type, signed (HMAC-SHA256) JSON POSTs
//! with retries and exponential backoff, a delivery log and redelivery.
//!
//! Events are queued in the database (`webhook_deliveries`) in the request
//! that causes them, so a restart loses none; the background [`worker`]
//! sends what is due. Each POST carries `X-Sextant-Event`,
//! `X-Sextant-Delivery` and `X-Sextant-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body under the webhook's secret.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_store::{AttemptOutcome, Delivery, FieldError, Webhook};
use sha2::Sha256;
use utoipa::ToSchema;

use super::{change_meta, check};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;

/// Event types a webhook may subscribe to (`*` = all).
pub const EVENTS: &[&str] = &[
    "flag.changed",
    "kill_switch",
    "guardrail.breach",
    "approval.requested",
    "approval.decided",
    "review.due",
    "significance.reached",
    "deploy.recorded",
    "post_mortem.due",
];

/// Deliveries sent per worker pass.
const BATCH: i64 = 50;

/// The webhooks router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{ws}/webhooks",
            get(list_webhooks).post(create_webhook),
        )
        .route("/api/v1/workspaces/{ws}/webhooks/{id}", delete(delete_webhook))
        .route("/api/v1/workspaces/{ws}/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/api/v1/workspaces/{ws}/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(redeliver),
        )
}

/// A new webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://` URL to POST to.
    pub url: String,
    /// The HMAC-SHA256 key (at least 16 bytes).
    pub secret: String,
    /// Event types (see `EVENTS`) or `*`.
    pub events: Vec<String>,
    /// Why.
    pub reason: Option<String>,
}

/// The HMAC-SHA256 signature header value of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails in practice.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Queues `event` for the workspace's subscribed webhooks and wakes the
/// worker. Failures are logged, never returned: a webhook problem must
/// not fail the change that caused it (which is already committed).
pub async fn notify(state: &AppState, ws: &str, event: &str, payload: &Value) {
    match state.store.enqueue_event(ws, event, payload).await {
        Ok(queued) if !queued.is_empty() => state.webhook_wakeup.notify_one(),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, event, "could not queue webhook event"),
    }
}

/// Sends every due delivery once; returns how many were attempted.
pub async fn deliver_due(state: &AppState, http: &reqwest::Client) -> usize {
    let now = chrono::Utc::now();
    let due = match state.store.due_deliveries(&rfc3339(now), BATCH).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "could not read due webhook deliveries");
            return 0;
        }
    };
    let n = due.len();
    for (hook, d) in due {
        let outcome = attempt(state, http, &hook, &d).await;
        if let Err(e) = state.store.record_attempt(d.id, &outcome).await {
            tracing::error!(error = %e, delivery = d.id, "could not record webhook attempt");
        }
    }
    n
}

async fn attempt(state: &AppState, http: &reqwest::Client, hook: &Webhook, d: &Delivery) -> AttemptOutcome {
    let sent = http
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("user-agent", "sextant-webhooks")
        .header("x-sextant-event", &d.event)
        .header("x-sextant-delivery", d.id.to_string())
        .header("x-sextant-signature", signature(&hook.secret, d.payload.as_bytes()))
        .body(d.payload.clone())
        .timeout(state.config.webhook_timeout)
        .send()
        .await;
    let (status, error) = match sent {
        Ok(r) if r.status().is_success() => {
            return AttemptOutcome {
                status: Some(i64::from(r.status().as_u16())),
                error: None,
                delivered: true,
                retry_at: None,
            };
        }
        Ok(r) => (Some(i64::from(r.status().as_u16())), format!("HTTP {}", r.status())),
        Err(e) => (None, e.to_string()),
    };
    // Attempt n (1-based) failed: wait backoff × 2^(n-1), up to the limit.
    let attempts = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
    let retry_at = (attempts < state.config.webhook_max_attempts).then(|| {
        let wait = backoff(state.config.webhook_backoff, attempts);
        rfc3339(chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default())
    });
    AttemptOutcome {
        status,
        error: Some(error),
        delivered: false,
        retry_at,
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The background worker: sends due deliveries, records first exposures
/// in production and announces due reviews. Wakes on new events and every
/// `alignment_tick`; ends on shutdown.
pub async fn worker(state: AppState) {
    let http = reqwest::Client::builder()
        .timeout(state.config.webhook_timeout)
        .build()
        .unwrap_or_default();
    let mut shutdown = state.shutdown_signal();
    let mut seen = std::collections::HashSet::new();
    loop {
        super::reviews::sweep(&state, &mut seen).await;
        while deliver_due(&state, &http).await as i64 == BATCH {}
        tokio::select! {
            _ = state.webhook_wakeup.notified() => {}
            _ = tokio::time::sleep(state.config.alignment_tick) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

fn validate(body: &NewWebhook, errors: &mut Vec<FieldError>) {
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        })
    };
    match reqwest::Url::parse(&body.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => err("/url", format!("`{}` is not an http(s) URL", body.url)),
    }
    if body.secret.len() < 16 {
        err("/secret", "must be at least 16 bytes".into());
    }
    if body.events.is_empty() {
        err("/events", format!("name at least one of {} or `*`", EVENTS.join(", ")));
    }
    for (i, e) in body.events.iter().enumerate() {
        if e != "*" && !EVENTS.contains(&e.as_str()) {
            err(
                &format!("/events/{i}"),
                format!("unknown event `{e}`; one of {} or `*`", EVENTS.join(", ")),
            );
        }
    }
}

/// Lists a workspace's webhooks (secrets are never returned).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/webhooks", tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = Object)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    Ok(Json(json!({"items": state.store.list_webhooks(&ws).await?})))
}

/// Subscribes a URL to event types (admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/webhooks", tag = "webhooks", request_body = NewWebhook,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = Object), (status = 422, body = crate::error::Problem)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewWebhook>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageTokens)?;
    let mut errors = Vec::new();
    validate(&body, &mut errors);
    let meta = change_meta(&admin, body.reason.clone(), &mut errors);
    check(errors)?;
    let hook = state
        .store
        .create_webhook(&ws, &body.url, &body.secret, &body.events, &meta)
        .await?
        .value;
    Ok((StatusCode::CREATED, Json(hook)).into_response())
}

/// Deletes a webhook and its delivery log (admin).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/webhooks/{id}", tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::ManageTokens)?;
    let meta = change_meta(&admin, None, &mut Vec::new());
    state.store.delete_webhook(&ws, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/webhooks/{id}/deliveries", tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    Ok(Json(json!({"items": state.store.list_deliveries(&ws, id).await?})))
}

/// Sends a delivery again, as a new delivery with the same body (admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/webhooks/{id}/deliveries/{delivery}/redeliver",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Webhook id"),
           ("delivery" = i64, Path, description = "Delivery id")),
    responses((status = 202, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn redeliver(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id, delivery)): ApiPath<(String, i64, i64)>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageTokens)?;
    let d = state.store.redeliver(&ws, id, delivery).await?;
    state.webhook_wakeup.notify_one();
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}

/// The backoff before attempt `n + 1` after `n` failures, for docs and tests.
pub fn backoff(base: Duration, failures: u32) -> Duration {
    base.saturating_mul(1 << failures.saturating_sub(1).min(16))
}

/// Announces a committed flag change: `flag.changed`, plus `kill_switch`
/// when a flag was turned off in a production environment.
pub async fn flag_changed(
    state: &AppState,
    ws: &str,
    key: &str,
    action: &str,
    env: Option<&sextant_store::Environment>,
) {
    let payload = json!({"flag": key, "action": action, "environment": env.map(|e| &e.key)});
    notify(state, ws, "flag.changed", &payload).await;
    if action == "turn_off" && env.is_some_and(|e| e.production) {
        notify(state, ws, "kill_switch", &payload).await;
    }
}
