//! Deploy events and the DORA figures computed from them together with
//! production kill switches (the toggle endpoint turning a flag off) and
//! rollbacks: deploy frequency, lead time for changes, change failure rate
//! and time to restore, per service and ISO week.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_store::{DeployStatus, FieldError, NewDeploy};
use utoipa::{IntoParams, ToSchema};

use super::{change_meta, check};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::reports;
use crate::state::AppState;

/// The deploys router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/deploys", post(record_deploy))
        .route("/api/v1/dora", get(dora))
}

/// A deploy event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// Workspace (default `default`).
    pub workspace: Option<String>,
    /// Service.
    pub service: String,
    /// Version deployed.
    pub version: String,
    /// RFC 3339: when the change was committed.
    pub commit_time: String,
    /// RFC 3339: when it was deployed (default: now).
    pub deploy_time: Option<String>,
    /// `success` (default), `failed` or `rollback`.
    #[schema(value_type = Option<String>)]
    pub status: Option<DeployStatus>,
}

fn time(field: &str, v: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(v) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            errors.push(FieldError {
                field: field.into(),
                message: format!("`{v}` is not an RFC 3339 time: {e}"),
            });
            None
        }
    }
}

/// Records a deploy (engineer, admin).
#[utoipa::path(post, path = "/api/v1/deploys", tag = "deploys", request_body = DeployBody,
    responses((status = 201, body = Object), (status = 422, body = crate::error::Problem)))]
pub async fn record_deploy(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<DeployBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditFlag)?;
    let mut errors = Vec::new();
    for (field, v) in [("/service", &body.service), ("/version", &body.version)] {
        if v.trim().is_empty() {
            errors.push(FieldError {
                field: field.into(),
                message: "required".into(),
            });
        }
    }
    let commit = time("/commit_time", &body.commit_time, &mut errors);
    let deployed = match &body.deploy_time {
        Some(t) => time("/deploy_time", t, &mut errors),
        None => Some(Utc::now()),
    };
    if let (Some(c), Some(d)) = (commit, deployed)
        && c > d
    {
        errors.push(FieldError {
            field: "/commit_time".into(),
            message: "is after the deploy time".into(),
        });
    }
    let meta = change_meta(&admin, None, &mut errors);
    check(errors)?;
    let fmt = |t: Option<DateTime<Utc>>| {
        t.unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let ws = body.workspace.unwrap_or_else(|| "default".into());
    let d = NewDeploy {
        service: body.service.trim().to_owned(),
        version: body.version.trim().to_owned(),
        commit_at: fmt(commit),
        deployed_at: fmt(deployed),
        status: body.status.unwrap_or(DeployStatus::Success),
    };
    let out = state.store.record_deploy(&ws, &d, &meta).await?.value;
    super::webhooks::notify(
        &state,
        &ws,
        "deploy.recorded",
        &serde_json::to_value(&out).unwrap_or_default(),
    )
    .await;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `?workspace=…&weeks=N` (default 12).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DoraQuery {
    /// Workspace (default `default`).
    pub workspace: Option<String>,
    /// Weeks back from now (default 12, at most 520).
    pub weeks: Option<i64>,
}

/// DORA figures per service and ISO week.
#[utoipa::path(get, path = "/api/v1/dora", tag = "deploys", params(DoraQuery),
    responses((status = 200, body = Object)))]
pub async fn dora(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<DoraQuery>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    let ws = q.workspace.unwrap_or_else(|| "default".into());
    let weeks = q.weeks.unwrap_or(12).clamp(1, 520);
    let now = Utc::now();
    let items = reports::dora_for(
        &state.store,
        &ws,
        now - Duration::weeks(weeks),
        now + Duration::seconds(1),
    )
    .await?;
    Ok(Json(json!({"workspace": ws, "weeks": weeks, "items": items})))
}
