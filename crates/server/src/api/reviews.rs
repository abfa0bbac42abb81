//! 30-day reviews and the generated reviews (daily, weekly, monthly,
//! quarterly) as JSON or Markdown.
//!
//! A flag's review opens at its first exposure in production: the first
//! OFREP evaluation there that served it (not `DISABLED`/`ERROR`), noticed
//! by [`sweep`] from the per-flag evaluation counters, or an exposure
//! reported through `Store::record_exposure`. It is due 30 days later.
//! The same sweep opens post-mortems for initiatives whose window ended
//! without their metric moving ([`reports::open_due_post_mortems`]).

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_store::{FieldError, ReviewDecision, ReviewOutcome};
use utoipa::{IntoParams, ToSchema};

use super::{change_meta, check};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery, Code};
use crate::live::{REASONS, reason_index};
use crate::reports::{self, Cadence};
use crate::state::AppState;

/// The reviews router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces/{ws}/flag-reviews", get(list_reviews))
        .route("/api/v1/workspaces/{ws}/flags/{key}/review", post(complete_review))
        .route("/api/v1/workspaces/{ws}/stale-flags", get(stale_flags))
        .route("/api/v1/workspaces/{ws}/flag-lifecycle", get(flag_lifecycle))
        .route("/api/v1/reviews/{cadence}", get(report))
}

/// Records first production exposures seen in the evaluation counters and
/// announces reviews that fell due (`review.due`, once per process run per
/// review). `seen` remembers what was already handled.
pub async fn sweep(state: &AppState, seen: &mut HashSet<String>) {
    let served = |c: &crate::live::FlagCounters| {
        (0..REASONS)
            .filter(|i| {
                *i != reason_index(sextant_core::Reason::Disabled) && *i != reason_index(sextant_core::Reason::Error)
            })
            .any(|i| c[i].load(std::sync::atomic::Ordering::Relaxed) > 0)
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut workspaces = HashSet::new();
    for slot in state.live.all() {
        let p = slot.load();
        workspaces.insert(p.workspace.clone());
        if !p.production {
            continue;
        }
        for (key, c) in p.snapshot.keys().zip(&p.counters) {
            let id = format!("exposed:{}:{key}", p.workspace);
            if seen.contains(&id) || !served(c) {
                continue;
            }
            match state
                .store
                .record_exposure(&p.workspace, &p.environment, key, &now)
                .await
            {
                Ok(_) => {
                    seen.insert(id);
                }
                Err(e) => tracing::warn!(error = %e, flag = key, "could not record first exposure"),
            }
        }
    }
    let hour = now.get(..13).unwrap_or_default().to_owned();
    for ws in workspaces {
        // Initiatives whose window ended without moving their metric get a
        // post-mortem; looked at once an hour (it reads metric values).
        if seen.insert(format!("post-mortems:{ws}:{hour}")) {
            match reports::open_due_post_mortems(&state.store, &ws, chrono::Utc::now()).await {
                Ok(opened) => {
                    for pm in opened {
                        let payload = serde_json::to_value(&pm).unwrap_or_default();
                        super::webhooks::notify(state, &ws, "post_mortem.due", &payload).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, workspace = ws, "could not open due post-mortems"),
            }
        }
        let Ok(reviews) = state.store.list_reviews(&ws).await else {
            continue;
        };
        for r in reviews.iter().filter(|r| r.decision.is_none() && r.due_at <= now) {
            if seen.insert(format!("due:{}", r.id)) {
                super::webhooks::notify(state, &ws, "review.due", &serde_json::to_value(r).unwrap_or_default()).await;
            }
        }
    }
}

/// Lists a workspace's 30-day reviews with an `overdue` mark.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flag-reviews", tag = "reviews",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = Object)))]
pub async fn list_reviews(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    state.store.get_workspace(&ws).await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let items: Vec<Value> = state
        .store
        .list_reviews(&ws)
        .await?
        .into_iter()
        .map(|r| {
            let overdue = r.decision.is_none() && r.due_at < now;
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["overdue"] = json!(overdue);
            v
        })
        .collect();
    let overdue = items.iter().filter(|v| v["overdue"] == true).count();
    Ok(Json(json!({"items": items, "overdue": overdue})))
}

/// A 30-day review's outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// `kill`, `iterate` or `keep`.
    #[schema(value_type = String)]
    pub decision: ReviewDecision,
    /// Relative movement of the hypothesis' metric observed (0.03 = +3%).
    pub observed_effect: Option<f64>,
    /// What we saw and why the decision.
    pub notes: Option<String>,
    /// Link to the evidence.
    pub evidence: Option<String>,
}

/// Records a flag's 30-day review (product, admin); writes a learning.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/review", tag = "reviews", request_body = ReviewBody,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn complete_review(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> Result<Json<Value>, ApiError> {
    super::changes::require_product(&admin, "record 30-day reviews")?;
    let mut errors = Vec::new();
    if body.observed_effect.is_some_and(|e| !e.is_finite()) {
        errors.push(FieldError {
            field: "/observed_effect".into(),
            message: "must be a finite number (0.03 = +3%)".into(),
        });
    }
    let meta = change_meta(&admin, body.notes.clone(), &mut errors);
    check(errors)?;
    let outcome = ReviewOutcome {
        decision: body.decision,
        observed_effect: body.observed_effect,
        notes: body.notes,
        evidence: body.evidence,
    };
    let review = state.store.complete_review(&ws, &key, &outcome, &meta).await?.value;
    Ok(Json(serde_json::to_value(review).unwrap_or_default()))
}

/// Lifecycle facts of the workspace's flags: archived, first production
/// exposure (`sextant scan` reads which flags are archived here).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flag-lifecycle", tag = "reviews",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = Object)))]
pub async fn flag_lifecycle(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    state.store.get_workspace(&ws).await?;
    let items = state.store.list_lifecycle(&ws).await?;
    Ok(Json(json!({ "items": items })))
}

/// `?days=N` (default 30).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StaleQuery {
    /// Days a flag must have served one variation to everyone.
    pub days: Option<i64>,
}

/// Flags at 0% or 100% in production for more than N days.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/stale-flags", tag = "reviews",
    params(("ws" = String, Path, description = "Workspace key"), StaleQuery), responses((status = 200, body = Object)))]
pub async fn stale_flags(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<StaleQuery>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    let days = q.days.unwrap_or(reports::STALE_AFTER_DAYS).max(0);
    let items = reports::stale_flags(&state.store, &ws, days, chrono::Utc::now()).await?;
    Ok(Json(json!({"days": days, "items": items})))
}

/// `?workspace=…&format=json|markdown`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Workspace key (default `default`).
    pub workspace: Option<String>,
    /// `json` (default) or `markdown`.
    pub format: Option<String>,
}

/// A review generated from data: daily (changes, kills, deploys), weekly
/// (learned / stop / start, velocity), monthly (learnings per owner,
/// initiatives) or quarterly (principles, violations, what was killed).
#[utoipa::path(get, path = "/api/v1/reviews/{cadence}", tag = "reviews",
    params(("cadence" = String, Path, description = "daily, weekly, monthly or quarterly"), ReportQuery),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn report(
    State(state): State<AppState>,
    admin: Admin,
    Path(cadence): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let cadence = Cadence::parse(&cadence).ok_or_else(|| {
        ApiError::new(
            Code::RouteNotFound,
            format!("no review `{cadence}`; use daily, weekly, monthly or quarterly"),
        )
    })?;
    let ws = q.workspace.unwrap_or_else(|| "default".into());
    state.store.get_workspace(&ws).await?;
    let r = reports::review(&state.store, &ws, cadence, chrono::Utc::now()).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(r).into_response()),
        Some("markdown" | "md") => {
            let mut response = reports::markdown(&r).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/markdown; charset=utf-8"),
            );
            Ok(response)
        }
        Some(other) => Err(ApiError::new(
            Code::QueryInvalid,
            format!("format `{other}` is not json or markdown"),
        )),
    }
}
