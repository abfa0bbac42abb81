//! Progressive delivery: rollout plans, the kill switch, scheduled changes
//! and restore events (DORA's time to restore).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_store::{
    FieldError, FlagChange, PlanProgress, PlanRecord, PlanStatus, RestoreEvent, RolloutPlan, ScheduleStatus,
    ScheduledChange, parse_time,
};
use utoipa::{IntoParams, ToSchema};

use super::flags::FlagView;
use super::{List, ReasonQuery, change_meta, check, if_match, versioned};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The rollouts router.
pub fn router() -> Router<AppState> {
    let plan = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout";
    Router::new()
        .route("/api/v1/workspaces/{ws}/rollouts", get(list_plans))
        .route(plan, put(put_plan).get(get_plan).delete(delete_plan))
        .route(&format!("{plan}/start"), post(start_plan))
        .route(&format!("{plan}/pause"), post(pause_plan))
        .route(&format!("{plan}/resume"), post(resume_plan))
        .route(
            "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/kill",
            post(kill),
        )
        .route(
            "/api/v1/workspaces/{ws}/scheduled-changes",
            get(list_scheduled).post(create_scheduled),
        )
        .route(
            "/api/v1/workspaces/{ws}/scheduled-changes/{id}",
            get(get_scheduled).delete(cancel_scheduled),
        )
        .route("/api/v1/workspaces/{ws}/restores", get(list_restores))
}

/// A rollout plan with its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// The stored plan: `plan`, `status`, `stage`, `stage_started_at`,
    /// `monitors` (guardrail sequential monitors), `status_reason`, `version`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub record: PlanRecord,
    /// Percentage of units on treatment at the current stage (0 before start).
    pub current_percent: f64,
}

impl From<PlanRecord> for PlanView {
    fn from(record: PlanRecord) -> Self {
        let current_percent = match record.status {
            PlanStatus::RolledBack => 0.0,
            _ => record
                .stage
                .and_then(|i| record.plan.stages.get(i))
                .map_or(0.0, |s| s.percent),
        };
        PlanView {
            record,
            current_percent,
        }
    }
}

/// A new or replaced plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPlan {
    /// Stages (`percent`, `min_hold_seconds`), `control` and `treatment`
    /// variations, `guardrails` (`metric`, `direction`, `tolerance`),
    /// `on_breach` (`pause` | `rollback`), optional `schedule`
    /// (`start_at`, `business_hours`), `bucket_by`.
    #[schema(value_type = Object)]
    pub plan: RolloutPlan,
    /// Why.
    pub reason: Option<String>,
}

/// A body with only a reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why; recorded in the audit log.
    pub reason: Option<String>,
}

/// Lists a workspace's rollout plans.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/rollouts", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = List<PlanView>)))]
pub async fn list_plans(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<List<PlanView>>, ApiError> {
    admin.require(Action::Read)?;
    state.store.get_workspace(&ws).await?;
    let items = state
        .store
        .list_rollout_plans(Some(&ws), None)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(List { items }))
}

/// Reads the rollout plan of a flag in an environment.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = PlanView), (status = 404, body = crate::error::Problem)))]
pub async fn get_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let rec = state.store.get_rollout_plan(&ws, &key, &env).await?;
    Ok(versioned(StatusCode::OK, rec.version, &PlanView::from(rec)))
}

/// Creates or replaces a plan as a draft (product, admin; engineers outside
/// production). Refused while it runs. Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout", tag = "rollouts",
    request_body = PutPlan,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = PlanView), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn put_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key, env)): Path<(String, String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutPlan>,
) -> Result<Response, ApiError> {
    let environment = state.store.get_environment(&ws, &env).await?;
    admin.require(Action::EditTargeting(&environment))?;
    let expected = if_match(&headers)?;
    let flag = state.store.get_flag(&ws, &key).await?;
    let mut errors = body.plan.problems(&flag.flag, "/plan");
    for (i, g) in body.plan.guardrails.iter().enumerate() {
        if let Err(sextant_store::StoreError::NotFound { .. }) = state.store.get_metric(&ws, &g.metric).await {
            errors.push(FieldError {
                field: format!("/plan/guardrails/{i}/metric"),
                message: format!("workspace `{ws}` has no metric `{}`", g.metric),
            });
        }
    }
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .store
        .put_rollout_plan(&ws, &key, &env, body.plan, expected, &meta)
        .await?
        .value;
    Ok(versioned(StatusCode::OK, rec.version, &PlanView::from(rec)))
}

/// Deletes a plan that is not running; the flag keeps its targeting.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key"), ReasonQuery),
    responses((status = 204), (status = 409, body = crate::error::Problem)))]
pub async fn delete_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key, env)): Path<(String, String, String)>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    let environment = state.store.get_environment(&ws, &env).await?;
    admin.require(Action::EditTargeting(&environment))?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state.store.delete_rollout_plan(&ws, &key, &env, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves a plan between states after checking the caller's rights.
async fn transition(
    state: &AppState,
    admin: &Admin,
    (ws, key, env): (String, String, String),
    reason: Option<String>,
    action: &'static str,
    next: impl FnOnce(&PlanRecord) -> Result<PlanProgress, ApiError>,
) -> Result<Response, ApiError> {
    let environment = state.store.get_environment(&ws, &env).await?;
    admin.require(Action::EditTargeting(&environment))?;
    if action == "rollout_start" || action == "rollout_resume" {
        // Starting serves treatment and turns the flag on.
        admin.require(Action::TurnOn(&environment))?;
    }
    let mut errors = Vec::new();
    let meta = change_meta(admin, reason, &mut errors);
    check(errors)?;
    let rec = state.store.get_rollout_plan(&ws, &key, &env).await?;
    let progress = next(&rec)?;
    let rec = state
        .store
        .set_rollout_progress(&ws, &key, &env, rec.version, progress, action, &meta)
        .await?
        .value;
    // Plan progress is not a flag write through `commit`: announce it here.
    state.announce_in(&ws, "rollout", Some(key.clone()));
    Ok(versioned(StatusCode::OK, rec.version, &PlanView::from(rec)))
}

fn refuse(rec: &PlanRecord, what: &str) -> ApiError {
    ApiError::from(sextant_store::StoreError::State {
        kind: sextant_store::Kind::RolloutPlan,
        key: rec.flag.clone(),
        detail: format!("is {}; {what}", rec.status.as_str()),
    })
}

/// Starts a plan from its first stage (from draft, completed, rolled back
/// or killed). The scheduler applies the first stage at its next
/// evaluation, turning the flag on.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout/start",
    tag = "rollouts", request_body = Reason,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = PlanView), (status = 409, body = crate::error::Problem)))]
pub async fn start_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(path): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Response, ApiError> {
    transition(&state, &admin, path, body.reason, "rollout_start", |rec| {
        if matches!(rec.status, PlanStatus::Running | PlanStatus::Paused) {
            return Err(refuse(rec, "use pause and resume"));
        }
        Ok(PlanProgress {
            status: PlanStatus::Running,
            stage: None,
            stage_started_at: None,
            monitors: serde_json::json!({}),
            status_reason: Some("started".into()),
        })
    })
    .await
}

/// Pauses a running plan at its stage.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout/pause",
    tag = "rollouts", request_body = Reason,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = PlanView), (status = 409, body = crate::error::Problem)))]
pub async fn pause_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(path): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Response, ApiError> {
    let reason = body.reason.clone();
    transition(&state, &admin, path, body.reason, "rollout_pause", |rec| {
        if rec.status != PlanStatus::Running {
            return Err(refuse(rec, "only a running plan can be paused"));
        }
        Ok(PlanProgress {
            status: PlanStatus::Paused,
            status_reason: Some(reason.unwrap_or_else(|| "paused".into())),
            ..rec.progress()
        })
    })
    .await
}

/// Resumes a paused plan; the next stage follows once the current stage's
/// hold (counted from when the stage began) has passed.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/rollout/resume",
    tag = "rollouts", request_body = Reason,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = PlanView), (status = 409, body = crate::error::Problem)))]
pub async fn resume_plan(
    State(state): State<AppState>,
    admin: Admin,
    Path(path): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Response, ApiError> {
    transition(&state, &admin, path, body.reason, "rollout_resume", |rec| {
        if rec.status != PlanStatus::Paused {
            return Err(refuse(rec, "only a paused plan can be resumed"));
        }
        Ok(PlanProgress {
            status: PlanStatus::Running,
            status_reason: Some("resumed".into()),
            ..rec.progress()
        })
    })
    .await
}

/// Kill switch: turns the flag off in the environment at once. Allowed for
/// engineers, product and admins in every environment (it is reversible);
/// ends a running plan there; reaches SDKs through SSE; counted as a
/// restore for DORA.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/kill", tag = "rollouts",
    request_body = Reason,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = FlagView), (status = 403, body = crate::error::Problem)))]
pub async fn kill(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key, env)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Response, ApiError> {
    let environment = state.store.get_environment(&ws, &env).await?;
    admin.require(Action::TurnOff(&environment))?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state.commit(state.store.kill(&ws, &key, &env, &meta)).await?;
    Ok(versioned(StatusCode::OK, rec.version, &FlagView::from(rec)))
}

/// A change to make later.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScheduledChange {
    /// Flag key.
    pub flag: String,
    /// Environment key.
    pub environment: String,
    /// When (RFC 3339).
    pub run_at: String,
    /// `{"kind": "toggle", "enabled": false}` or `{"kind": "targeting", "targeting": {…}}`.
    #[schema(value_type = Object)]
    pub change: FlagChange,
    /// Why.
    pub reason: Option<String>,
}

/// `?status=` filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct ScheduledQuery {
    /// `pending`, `applied`, `cancelled` or `failed`.
    #[param(value_type = Option<String>)]
    pub status: Option<ScheduleStatus>,
}

/// The right a scheduled change needs: the right to make it now.
fn require_for(admin: &Admin, change: &FlagChange, env: &sextant_store::Environment) -> Result<(), ApiError> {
    match change {
        FlagChange::Toggle { enabled: true } => admin.require(Action::TurnOn(env)),
        FlagChange::Toggle { enabled: false } => admin.require(Action::TurnOff(env)),
        FlagChange::Targeting { targeting } => {
            admin.require(Action::EditTargeting(env))?;
            if targeting.enabled {
                admin.require(Action::TurnOn(env))?;
            }
            Ok(())
        }
    }
}

/// Schedules a flag change; the caller needs the right to make it now.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/scheduled-changes", tag = "rollouts",
    request_body = NewScheduledChange,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = Object), (status = 422, body = crate::error::Problem)))]
pub async fn create_scheduled(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewScheduledChange>,
) -> Result<(StatusCode, Json<ScheduledChange>), ApiError> {
    let environment = state.store.get_environment(&ws, &body.environment).await?;
    require_for(&admin, &body.change, &environment)?;
    let mut errors = Vec::new();
    let run_at = parse_time(&body.run_at);
    if run_at.is_none() {
        errors.push(FieldError {
            field: "/run_at".into(),
            message: format!("`{}` is not an RFC 3339 time such as 2030-01-31T09:00:00Z", body.run_at),
        });
    }
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let Some(run_at) = run_at else {
        return Err(ApiError::field("/run_at", "not a time"));
    };
    let rec = state
        .store
        .schedule_change(&ws, &body.flag, &body.environment, run_at, &body.change, &meta)
        .await?
        .value;
    Ok((StatusCode::CREATED, Json(rec)))
}

/// Lists scheduled changes by time.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/scheduled-changes", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key"), ScheduledQuery),
    responses((status = 200, body = Object)))]
pub async fn list_scheduled(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<ScheduledQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin.require(Action::Read)?;
    let items = state.store.list_scheduled_changes(&ws, q.status).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

/// A scheduled change's id from the path: an id that is not a number (or
/// is out of range) names no scheduled change, so it is a problem+json 404
/// like any other unknown id, not axum's plain-text path rejection.
fn scheduled_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            crate::error::Code::ScheduledChangeNotFound,
            format!("scheduled change `{id}` does not exist"),
        )
    })
}

/// Reads one scheduled change.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/scheduled-changes/{id}", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn get_scheduled(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Json<ScheduledChange>, ApiError> {
    admin.require(Action::Read)?;
    let id = scheduled_id(&id)?;
    Ok(Json(state.store.get_scheduled_change(&ws, id).await?))
}

/// Cancels a pending change (with the right to make it).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/scheduled-changes/{id}", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Id"), ReasonQuery),
    responses((status = 200, body = Object), (status = 409, body = crate::error::Problem)))]
pub async fn cancel_scheduled(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Json<ScheduledChange>, ApiError> {
    let id = scheduled_id(&id)?;
    let rec = state.store.get_scheduled_change(&ws, id).await?;
    let environment = state.store.get_environment(&ws, &rec.environment).await?;
    require_for(&admin, &rec.change, &environment)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    Ok(Json(state.store.cancel_scheduled_change(&ws, id, &meta).await?.value))
}

/// Kill switches and automatic rollbacks, each with the time since the
/// change it undid went live (DORA: time to restore).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/restores", tag = "rollouts",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = Object)))]
pub async fn list_restores(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin.require(Action::Read)?;
    state.store.get_workspace(&ws).await?;
    let items: Vec<RestoreEvent> = state.store.restore_events(&ws).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}
