//! The approval policy and change requests.
//!
//! Every change is classified by the workspace's [`Policy`]. Reversible
//! changes (toggle, rollout %, targeting, scheduling) apply at once for a
//! role allowed to make them. Irreversible ones (delete / archive / restore
//! a flag, change a running experiment's criteria, change the North Star,
//! revert an irreversible change, change the policy) become a
//! change request that a *different* person with the product or admin role
//! approves; the approval and the change commit in one transaction, and
//! both approvals and rejections are audited. Reverting an irreversible
//! change is itself a change request, and re-creating a deleted flag under
//! the same key is refused, so there is no back door.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use sextant_core::{Flag, Targeting};
use sextant_store::{
    ChangeClass, ChangeMeta, ChangeRequest, EVENT_DELETION_REVERT, EventDeletion, ExperimentDef, FieldError,
    NewChangeRequest, Policy, PolicyRecord, RequestStatus, Role,
};
use utoipa::{IntoParams, ToSchema};

use super::{change_meta, check};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, Code};
use crate::state::AppState;

/// The change-request router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces/{ws}/policy", get(get_policy).put(request_policy))
        .route("/api/v1/workspaces/{ws}/change-requests", get(list_requests))
        .route("/api/v1/workspaces/{ws}/change-requests/{id}", get(get_request))
        .route("/api/v1/workspaces/{ws}/change-requests/{id}/approve", post(approve))
        .route("/api/v1/workspaces/{ws}/change-requests/{id}/reject", post(reject))
        .route("/api/v1/workspaces/{ws}/flags/{key}/archive", post(archive))
        .route("/api/v1/workspaces/{ws}/flags/{key}/restore", post(restore))
        .route("/api/v1/workspaces/{ws}/changes/{id}/revert", post(revert))
        .route("/api/v1/workspaces/{ws}/event-deletions", post(request_event_deletion))
}

/// A reason-only body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Why.
    pub reason: Option<String>,
}

/// A new policy (becomes a change request).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// The policy.
    #[schema(value_type = Object)]
    pub policy: Policy,
    /// Why.
    pub reason: Option<String>,
}

/// A request to delete one track event's stored data in one environment
/// (becomes a change request; irreversible, with no revert).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDeletionRequest {
    /// Environment key.
    pub environment: String,
    /// The track event's name.
    pub event: String,
    /// First hour deleted (RFC 3339, on the hour); omitted = from the first event.
    pub from: Option<String>,
    /// End of the deleted hours (RFC 3339, on the hour, exclusive); omitted = no end.
    pub to: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// `?status=pending|applied|rejected`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Only requests with this status.
    pub status: Option<String>,
}

/// Validates a flag's hypothesis: the metric it should move, the direction,
/// the minimum effect and a one-line reason — or `operational` with a reason.
/// Each missing or wrong part is named.
pub fn check_hypothesis(flag: &Flag, errors: &mut Vec<FieldError>) {
    let mut err = |field: &str, message: &str| {
        errors.push(FieldError {
            field: format!("/flag/hypothesis{field}"),
            message: message.to_owned(),
        })
    };
    let Some(h) = &flag.hypothesis else {
        err(
            "",
            "required: the metric this flag should move (`metric`, `direction`, `minimum_effect`, `reason`), \
             or `{\"operational\": true, \"reason\": …}` for a kill switch or ops toggle",
        );
        return;
    };
    if h.reason.trim().is_empty() {
        err("/reason", "required: one line saying why this flag exists");
    } else if h.reason.contains('\n') || h.reason.len() > 280 {
        err("/reason", "must be one line of at most 280 bytes");
    }
    if h.operational {
        return;
    }
    if h.metric.as_deref().is_none_or(|m| m.trim().is_empty()) {
        err(
            "/metric",
            "required: the metric-tree node this flag should move (or mark the flag `operational`)",
        );
    }
    if h.direction.is_none() {
        err("/direction", "required: `increase` or `decrease`");
    }
    match h.minimum_effect {
        None => err(
            "/minimum_effect",
            "required: the smallest relative effect worth shipping (0.02 = 2%)",
        ),
        Some(e) if !e.is_finite() || e <= 0.0 => err("/minimum_effect", "must be a positive number (0.02 = 2%)"),
        Some(_) => {}
    }
}

/// Checks that a flag's hypothesis names a node of the workspace's metric
/// tree, once the workspace has one (a workspace without metrics has no
/// tree to check against yet). The error names the metric and the nodes
/// that exist.
pub async fn check_hypothesis_metric(
    state: &AppState,
    ws: &str,
    flag: &Flag,
    errors: &mut Vec<FieldError>,
) -> Result<(), ApiError> {
    let Some(metric) = flag
        .hypothesis
        .as_ref()
        .filter(|h| !h.operational)
        .and_then(|h| h.metric.as_deref())
        .filter(|m| !m.trim().is_empty())
    else {
        return Ok(());
    };
    let metrics = state.store.list_metrics(ws).await?;
    if metrics.is_empty() || metrics.iter().any(|m| m.metric.key == metric) {
        return Ok(());
    }
    let mut keys: Vec<&str> = metrics.iter().map(|m| m.metric.key.as_str()).collect();
    keys.sort_unstable();
    errors.push(FieldError {
        field: "/flag/hypothesis/metric".into(),
        message: format!(
            "metric `{metric}` is not in the metric tree of workspace `{ws}` (its nodes: {}); \
             add it first (`sextant metric add {metric} …`) or name an existing node",
            keys.join(", ")
        ),
    });
    Ok(())
}

/// Files a change request and answers `202 Accepted` with it.
pub async fn file(
    state: &AppState,
    admin: &Admin,
    ws: &str,
    request: NewChangeRequest,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let meta = change_meta(admin, reason, &mut errors);
    check(errors)?;
    let filed = state.store.create_change_request(ws, &request, &meta).await?.value;
    state.announce_in(ws, "change_request", Some(filed.id.to_string()));
    super::webhooks::notify(
        state,
        ws,
        "approval.requested",
        &serde_json::to_value(&filed).unwrap_or_default(),
    )
    .await;
    let location = format!("/api/v1/workspaces/{ws}/change-requests/{}", filed.id);
    let mut response = (StatusCode::ACCEPTED, Json(filed)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Whether `action` needs a change request in `ws`.
pub async fn gated(state: &AppState, ws: &str, action: &str) -> Result<bool, ApiError> {
    Ok(state.store.get_policy(ws).await?.policy.classify(action) == ChangeClass::Irreversible)
}

/// Refuses writes to an archived flag (restoring it is a gated change).
pub async fn ensure_not_archived(state: &AppState, ws: &str, key: &str) -> Result<(), ApiError> {
    let archived = state
        .store
        .list_lifecycle(ws)
        .await?
        .into_iter()
        .any(|l| l.flag == key && l.archived_at.is_some());
    if archived {
        return Err(ApiError::new(
            Code::FlagArchived,
            format!("flag `{key}` is archived; request POST /api/v1/workspaces/{ws}/flags/{key}/restore first"),
        ));
    }
    Ok(())
}

/// Refuses to re-create a flag whose last change was its (approved)
/// deletion: that would undo an irreversible change without approval.
pub async fn ensure_not_deleted(state: &AppState, ws: &str, key: &str) -> Result<(), ApiError> {
    if let Some(last) = state.store.last_change(ws, "flag", key).await?
        && last.action == "delete"
    {
        return Err(ApiError::new(
            Code::RevertRequired,
            format!(
                "flag `{key}` was deleted by an approved change (change {}); re-creating it is a revert: \
                 POST /api/v1/workspaces/{ws}/changes/{}/revert",
                last.id, last.id
            ),
        ));
    }
    Ok(())
}

/// Reads the workspace's approval policy.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/policy", tag = "changes",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = Object)))]
pub async fn get_policy(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<PolicyRecord>, ApiError> {
    admin.require(Action::Read)?;
    Ok(Json(state.store.get_policy(&ws).await?))
}

/// Requests a policy change (admin); it is itself irreversible, so 202.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/policy", tag = "changes", request_body = NewPolicy,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 202, body = Object), (status = 422, body = crate::error::Problem)))]
pub async fn request_policy(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewPolicy>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    check(body.policy.problems())?;
    state.store.get_workspace(&ws).await?;
    let request = NewChangeRequest {
        action: "policy.update".into(),
        kind: "policy".into(),
        key: ws.clone(),
        environment: None,
        payload: Some(serde_json::to_value(&body.policy).map_err(ApiError::internal)?),
        reverts_change_id: None,
    };
    file(&state, &admin, &ws, request, body.reason).await
}

/// Lists change requests, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/change-requests", tag = "changes",
    params(("ws" = String, Path, description = "Workspace key"), RequestQuery),
    responses((status = 200, body = Object)))]
pub async fn list_requests(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("pending") => Some(RequestStatus::Pending),
        Some("applied") => Some(RequestStatus::Applied),
        Some("rejected") => Some(RequestStatus::Rejected),
        Some(other) => {
            return Err(ApiError::new(
                Code::QueryInvalid,
                format!("status `{other}` is not one of pending, applied, rejected"),
            ));
        }
    };
    let items = state.store.list_change_requests(&ws, status).await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// Reads one change request.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/change-requests/{id}", tag = "changes",
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Request id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn get_request(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
) -> Result<Json<ChangeRequest>, ApiError> {
    admin.require(Action::Read)?;
    Ok(Json(state.store.get_change_request(&ws, id).await?))
}

/// Requires the product or admin role for `what`.
pub fn require_product(admin: &Admin, what: &str) -> Result<(), ApiError> {
    if matches!(admin.role, Role::Product | Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::PermissionDenied,
            format!(
                "role `{}` may not {what}; the product or admin role may",
                admin.role.as_str()
            ),
        ))
    }
}

/// Checks that `admin` may decide `request`: product or admin role, and
/// not its requester.
fn may_decide(admin: &Admin, request: &ChangeRequest) -> Result<(), ApiError> {
    require_product(admin, "decide change requests")?;
    if request.status != RequestStatus::Pending {
        return Err(ApiError::new(
            Code::ChangeRequestNotPending,
            format!("change request {} is {}", request.id, request.status.as_str()),
        ));
    }
    if let (Some(env), Some(scope)) = (&request.environment, &admin.environments)
        && !scope.contains(env)
    {
        return Err(ApiError::new(
            Code::PermissionDenied,
            format!(
                "change request {} is about environment `{env}`; this token is scoped to {scope:?}",
                request.id
            ),
        ));
    }
    if request.requested_by == admin.actor() {
        return Err(ApiError::new(
            Code::SelfApprovalRefused,
            format!(
                "change request {} was filed by you; another person with the product or admin role must decide it",
                request.id
            ),
        ));
    }
    Ok(())
}

/// The start of every decision: the request, checked that `admin` may
/// decide it ([`may_decide`]), and the decision's change metadata.
async fn deciding(
    state: &AppState,
    admin: &Admin,
    ws: &str,
    id: i64,
    reason: Option<String>,
) -> Result<(ChangeRequest, ChangeMeta), ApiError> {
    let request = state.store.get_change_request(ws, id).await?;
    may_decide(admin, &request)?;
    let mut errors = Vec::new();
    let meta = change_meta(admin, reason, &mut errors);
    check(errors)?;
    Ok((request, meta))
}

/// Tells webhook subscribers that a request was approved or rejected.
async fn announce_decision(state: &AppState, ws: &str, decided: &ChangeRequest) {
    super::webhooks::notify(
        state,
        ws,
        "approval.decided",
        &serde_json::to_value(decided).unwrap_or_default(),
    )
    .await;
}

/// Approves a change request (product, admin; not its requester) and
/// applies it in the same transaction.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/change-requests/{id}/approve", tag = "changes",
    request_body = Decision,
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Request id")),
    responses((status = 200, body = Object), (status = 403, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)))]
pub async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let (request, mut meta) = deciding(&state, &admin, &ws, id, body.reason).await?;
    meta.approves = Some(id);
    apply(&state, &ws, &request, &meta).await?;
    let decided = state.store.get_change_request(&ws, id).await?;
    announce_decision(&state, &ws, &decided).await;
    Ok(Json(decided))
}

/// Applies an approved request; `meta.approves` marks it applied in the
/// same transaction.
async fn apply(state: &AppState, ws: &str, r: &ChangeRequest, meta: &ChangeMeta) -> Result<(), ApiError> {
    let payload = |what: &str| -> Result<Value, ApiError> {
        r.payload
            .clone()
            .ok_or_else(|| ApiError::internal(format!("change request {} has no {what}", r.id)))
    };
    let store = &state.store;
    match r.action.as_str() {
        "flag.delete" => state.commit(store.delete_flag(ws, &r.key, None, meta)).await?,
        "flag.archive" => state.commit(store.archive_flag(ws, &r.key, meta)).await.map(drop)?,
        "flag.restore" => state.commit(store.restore_flag(ws, &r.key, meta)).await.map(drop)?,
        "flag.update" => {
            let flag: Flag = serde_json::from_value(payload("flag")?).map_err(ApiError::internal)?;
            state
                .commit(store.replace_flag(ws, &r.key, None, flag, meta))
                .await
                .map(drop)?
        }
        "flag.targeting" => {
            let targeting: Targeting = serde_json::from_value(payload("targeting")?).map_err(ApiError::internal)?;
            let env = r.environment.clone().unwrap_or_default();
            state
                .commit(store.set_targeting(ws, &r.key, &env, None, targeting, meta))
                .await
                .map(drop)?
        }
        "policy.update" => {
            let policy: Policy = serde_json::from_value(payload("policy")?).map_err(ApiError::internal)?;
            state.commit(store.set_policy(ws, &policy, meta)).await.map(drop)?
        }
        "north_star.update" => state.commit(store.set_north_star(ws, &r.key, meta)).await.map(drop)?,
        "experiment.criteria" => {
            let def: ExperimentDef = serde_json::from_value(payload("experiment")?).map_err(ApiError::internal)?;
            store.amend_experiment_criteria(ws, &r.key, def, meta).await.map(drop)?
        }
        "events.delete" => {
            let deletion: EventDeletion = serde_json::from_value(payload("deletion")?).map_err(ApiError::internal)?;
            state.commit(store.delete_events(ws, &deletion, meta)).await.map(drop)?
        }
        "change.revert" => {
            let id = r
                .reverts_change_id
                .ok_or_else(|| ApiError::internal(format!("revert request {} names no change", r.id)))?;
            let change = store.get_change(id).await?;
            match revert_plan(&change)? {
                Revert::Recreate(flag) => state.commit(store.create_flag(ws, *flag, meta)).await.map(drop)?,
                Revert::Restore => state
                    .commit(store.restore_flag(ws, &change.key, meta))
                    .await
                    .map(drop)?,
                Revert::Archive => state
                    .commit(store.archive_flag(ws, &change.key, meta))
                    .await
                    .map(drop)?,
                Revert::Policy(p) => state.commit(store.set_policy(ws, &p, meta)).await.map(drop)?,
                Revert::Definition(flag) => state
                    .commit(store.replace_flag(ws, &change.key, None, *flag, meta))
                    .await
                    .map(drop)?,
                Revert::NorthStar(key) => state.commit(store.set_north_star(ws, &key, meta)).await.map(drop)?,
                Revert::Criteria(def) => store
                    .amend_experiment_criteria(ws, &change.key, *def, meta)
                    .await
                    .map(drop)?,
            }
        }
        other => {
            return Err(ApiError::new(
                Code::ChangeRequestUnsupported,
                format!("this server cannot apply `{other}` change requests"),
            ));
        }
    }
    Ok(())
}

/// How a change is undone.
enum Revert {
    Recreate(Box<Flag>),
    Restore,
    Archive,
    Policy(Policy),
    Definition(Box<Flag>),
    NorthStar(String),
    Criteria(Box<ExperimentDef>),
}

fn revert_plan(c: &sextant_store::ChangeRecord) -> Result<Revert, ApiError> {
    let bad = || {
        ApiError::new(
            Code::ChangeNotRevertible,
            format!(
                "change {} ({} {} `{}`) has no gated revert; make the opposite change directly",
                c.id, c.action, c.kind, c.key
            ),
        )
    };
    let before = || c.before.clone().ok_or_else(bad);
    Ok(match (c.kind.as_str(), c.action.as_str()) {
        ("flag", "delete") => Revert::Recreate(Box::new(serde_json::from_value(before()?).map_err(|_| bad())?)),
        ("flag", "archive") => Revert::Restore,
        ("flag", "restore") => Revert::Archive,
        ("flag", "update") => {
            let mut flag: Flag = serde_json::from_value(before()?).map_err(|_| bad())?;
            flag.environments.clear();
            Revert::Definition(Box::new(flag))
        }
        ("policy", "update") => Revert::Policy(serde_json::from_value(before()?).map_err(|_| bad())?),
        ("metric", "change_north_star") => {
            let before = before()?;
            let old = before["north_star"].as_str().ok_or_else(bad)?;
            Revert::NorthStar(old.to_owned())
        }
        ("experiment", "criteria") => {
            let before = before()?;
            let def = serde_json::from_value(before["definition"].clone()).map_err(|_| bad())?;
            Revert::Criteria(Box::new(def))
        }
        ("events", "delete") => {
            return Err(ApiError::new(
                Code::ChangeNotRevertible,
                format!(
                    "change {} deleted `{}` events; its revert is {EVENT_DELETION_REVERT}",
                    c.id, c.key
                ),
            ));
        }
        _ => return Err(bad()),
    })
}

/// Rejects a change request (product, admin; not its requester). Audited.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/change-requests/{id}/reject", tag = "changes",
    request_body = Decision,
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Request id")),
    responses((status = 200, body = Object), (status = 403, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)))]
pub async fn reject(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let (_, meta) = deciding(&state, &admin, &ws, id, body.reason).await?;
    let decided = state.store.reject_change_request(&ws, id, &meta).await?.value;
    state.announce_in(&ws, "change_request", Some(id.to_string()));
    announce_decision(&state, &ws, &decided).await;
    Ok(Json(decided))
}

/// Requests archiving a flag (engineer, admin): on approval it is turned
/// off everywhere and marked archived.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/archive", tag = "changes",
    request_body = Decision,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key")),
    responses((status = 202, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn archive(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Response, ApiError> {
    admin.require(Action::DeleteFlag)?;
    state.store.get_flag(&ws, &key).await?;
    ensure_not_archived(&state, &ws, &key).await?;
    let request = flag_request("flag.archive", &key);
    file(&state, &admin, &ws, request, body.reason).await
}

/// Requests restoring an archived flag (the revert of an archive; gated too).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/restore", tag = "changes",
    request_body = Decision,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key")),
    responses((status = 202, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn restore(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Response, ApiError> {
    admin.require(Action::DeleteFlag)?;
    state.store.get_flag(&ws, &key).await?;
    let request = flag_request("flag.restore", &key);
    file(&state, &admin, &ws, request, body.reason).await
}

/// A change request about one flag.
pub fn flag_request(action: &str, key: &str) -> NewChangeRequest {
    NewChangeRequest {
        action: action.into(),
        kind: "flag".into(),
        key: key.into(),
        environment: None,
        payload: None,
        reverts_change_id: None,
    }
}

/// Requests the revert of an irreversible change (gated like the change).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/changes/{id}/revert", tag = "changes",
    request_body = Decision,
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Change record id")),
    responses((status = 202, body = Object), (status = 409, body = crate::error::Problem)))]
pub async fn revert(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Response, ApiError> {
    let change = state.store.get_change(id).await?;
    if change.workspace.as_deref() != Some(ws.as_str()) {
        return Err(ApiError::new(
            Code::ChangeNotFound,
            format!("change {id} is not in workspace `{ws}`"),
        ));
    }
    match change.kind.as_str() {
        "policy" => admin.require(Action::ManageEnvironments)?,
        "metric" => admin.require(Action::ChangeNorthStar)?,
        "experiment" => admin.require(Action::EditExperiment)?,
        "events" => admin.require(Action::EditMetrics)?,
        _ => admin.require(Action::DeleteFlag)?,
    }
    revert_plan(&change)?;
    let request = NewChangeRequest {
        action: "change.revert".into(),
        kind: change.kind.clone(),
        key: change.key.clone(),
        environment: change.environment.clone(),
        payload: None,
        reverts_change_id: Some(id),
    };
    file(&state, &admin, &ws, request, body.reason).await
}

/// Requests deleting one track event's stored data in one environment —
/// its raw events and hourly rollups, all hours or `[from, to)` — (engineer,
/// product, admin; within the token's environment scope). Irreversible:
/// another person with the product or admin role approves it, and it has
/// no revert (deleted events are not kept anywhere; the request's
/// `payload.revert` says so, and `POST …/changes/{id}/revert` on the
/// applied deletion answers `change_not_revertible`). The request shows
/// the events in the rollup at request time (`payload.rolled_up_events`);
/// `404 events_not_found` when there are none.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/event-deletions", tag = "changes",
    request_body = EventDeletionRequest,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 202, body = Object), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn request_event_deletion(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<EventDeletionRequest>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditMetrics)?;
    let deletion = EventDeletion {
        environment: body.environment,
        event: body.event,
        from: body.from,
        to: body.to,
    };
    check(deletion.hours().err().unwrap_or_default())?;
    if let Some(scope) = &admin.environments
        && !scope.contains(&deletion.environment)
    {
        return Err(ApiError::new(
            Code::PermissionDenied,
            format!("this token is scoped to {scope:?}, not `{}`", deletion.environment),
        ));
    }
    let rolled_up = state.store.count_rolled_up_events(&ws, &deletion).await?;
    if rolled_up == 0 {
        return Err(ApiError::new(
            Code::EventsNotFound,
            format!(
                "environment `{}` has no rolled-up `{}` events{}; nothing to delete",
                deletion.environment,
                deletion.event,
                if deletion.from.is_some() || deletion.to.is_some() {
                    " in those hours"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut payload = serde_json::to_value(&deletion).map_err(ApiError::internal)?;
    payload["rolled_up_events"] = rolled_up.into();
    payload["revert"] = EVENT_DELETION_REVERT.into();
    let request = NewChangeRequest {
        action: "events.delete".into(),
        kind: "events".into(),
        key: deletion.event.clone(),
        environment: Some(deletion.environment.clone()),
        payload: Some(payload),
        reverts_change_id: None,
    };
    file(&state, &admin, &ws, request, body.reason).await
}
