//! Flags: definitions, per-environment targeting, and the toggle (kill switch).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_core::{Flag, Targeting};
use sextant_store::{FieldError, FlagRecord};
use utoipa::ToSchema;

use super::{List, ReasonQuery, change_meta, changes, check, check_key, if_match, versioned, webhooks};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The flags router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces/{ws}/flags", get(list_flags).post(create_flag))
        .route(
            "/api/v1/workspaces/{ws}/flags/{key}",
            get(get_flag).put(update_flag).delete(delete_flag),
        )
        .route(
            "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}",
            put(set_targeting),
        )
        .route(
            "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/toggle",
            post(toggle),
        )
}

/// A stored flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagView {
    /// Flag key.
    pub key: String,
    /// Version, for `If-Match`.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The declarative flag (sextant-core `Flag`), with targeting per environment.
    #[schema(value_type = Object)]
    pub flag: Flag,
}

impl From<FlagRecord> for FlagView {
    fn from(r: FlagRecord) -> Self {
        FlagView {
            key: r.flag.key.clone(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            flag: r.flag,
        }
    }
}

/// A new flag, optionally with targeting per environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlag {
    /// The declarative flag (sextant-core `Flag`).
    #[schema(value_type = Object)]
    pub flag: Flag,
    /// Why.
    pub reason: Option<String>,
}

/// A replaced flag definition; targeting is changed per environment instead.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFlag {
    /// The flag without `environments`; its key must be the path's.
    #[schema(value_type = Object)]
    pub flag: Flag,
    /// Why.
    pub reason: Option<String>,
}

/// A flag's targeting in one environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTargeting {
    /// sextant-core `Targeting`: enabled, rules, default serve, …
    #[schema(value_type = Object)]
    pub targeting: Targeting,
    /// Why.
    pub reason: Option<String>,
}

/// Turns a flag on or off in one environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// `false` is the kill switch.
    pub enabled: bool,
    /// Why.
    pub reason: Option<String>,
}

/// Lists a workspace's flags.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flags", tag = "flags",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = List<FlagView>)))]
pub async fn list_flags(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<List<FlagView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state.store.list_flags(&ws).await?.into_iter().map(Into::into).collect();
    Ok(Json(List { items }))
}

/// Creates a flag (engineer, admin). Targeting included for an environment
/// also needs the right to change targeting (and turn on) there.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags", tag = "flags", request_body = NewFlag,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = FlagView), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn create_flag(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewFlag>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditFlag)?;
    if !body.flag.environments.is_empty() {
        let envs = state.store.list_environments(&ws).await?;
        for (key, targeting) in &body.flag.environments {
            if let Some(env) = envs.iter().find(|e| e.key == *key) {
                admin.require(Action::EditTargeting(env))?;
                if targeting.enabled {
                    admin.require(Action::TurnOn(env))?;
                }
            }
        }
    }
    let mut errors = Vec::new();
    check_key("/flag/key", &body.flag.key, &mut errors);
    changes::check_hypothesis(&body.flag, &mut errors);
    changes::check_hypothesis_metric(&state, &ws, &body.flag, &mut errors).await?;
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    changes::ensure_not_deleted(&state, &ws, &body.flag.key).await?;
    let rec = state.commit(state.store.create_flag(&ws, body.flag, &meta)).await?;
    webhooks::flag_changed(&state, &ws, &rec.flag.key, "create", None).await;
    Ok(versioned(StatusCode::CREATED, rec.version, &FlagView::from(rec)))
}

/// Reads a flag.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flags/{key}", tag = "flags",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key")),
    responses((status = 200, body = FlagView), (status = 404, body = crate::error::Problem)))]
pub async fn get_flag(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let rec = state.store.get_flag(&ws, &key).await?;
    Ok(versioned(StatusCode::OK, rec.version, &FlagView::from(rec)))
}

/// Replaces a flag's code-side definition (engineer, admin). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/flags/{key}", tag = "flags", request_body = UpdateFlag,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key")),
    responses((status = 200, body = FlagView), (status = 412, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn update_flag(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateFlag>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditFlag)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    if body.flag.key != key {
        errors.push(FieldError {
            field: "/flag/key".into(),
            message: format!("must be `{key}`, the flag in the path (flags cannot be renamed)"),
        });
    }
    if !body.flag.environments.is_empty() {
        errors.push(FieldError {
            field: "/flag/environments".into(),
            message: "set targeting per environment with PUT …/flags/{key}/environments/{env}".into(),
        });
    }
    changes::check_hypothesis(&body.flag, &mut errors);
    changes::check_hypothesis_metric(&state, &ws, &body.flag, &mut errors).await?;
    check(errors)?;
    changes::ensure_not_archived(&state, &ws, &key).await?;
    if changes::gated(&state, &ws, "flag.update").await? {
        state.store.get_flag(&ws, &key).await?;
        let mut request = changes::flag_request("flag.update", &key);
        request.payload = Some(serde_json::to_value(&body.flag).map_err(ApiError::internal)?);
        return changes::file(&state, &admin, &ws, request, body.reason).await;
    }
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.replace_flag(&ws, &key, expected, body.flag, &meta))
        .await?;
    webhooks::flag_changed(&state, &ws, &key, "update", None).await;
    Ok(versioned(StatusCode::OK, rec.version, &FlagView::from(rec)))
}

/// Requests the deletion of a flag (engineer, admin). Deleting is
/// irreversible: the answer is `202` with a change request that another
/// person with the product or admin role approves (`…/change-requests/{id}/approve`);
/// the deletion then applies, refused while another flag depends on it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/flags/{key}", tag = "flags",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"), ReasonQuery),
    responses((status = 202, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn delete_flag(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, ApiError> {
    admin.require(Action::DeleteFlag)?;
    let expected = if_match(&headers)?;
    let current = state.store.get_flag(&ws, &key).await?;
    if let Some(v) = expected
        && v != current.version
    {
        return Err(sextant_store::StoreError::VersionMismatch {
            current: current.version,
        }
        .into());
    }
    changes::file(
        &state,
        &admin,
        &ws,
        changes::flag_request("flag.delete", &key),
        q.reason,
    )
    .await
}

/// Replaces a flag's targeting in one environment (product, admin; engineers
/// outside production). Turning the flag on or off here also needs that right.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}", tag = "flags",
    request_body = SetTargeting,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = FlagView), (status = 412, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn set_targeting(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key, env)): Path<(String, String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetTargeting>,
) -> Result<Response, ApiError> {
    let environment = state.store.get_environment(&ws, &env).await?;
    admin.require(Action::EditTargeting(&environment))?;
    let current = state.store.get_flag(&ws, &key).await?;
    let was_on = current.flag.environments.get(&env).is_some_and(|t| t.enabled);
    match (was_on, body.targeting.enabled) {
        (false, true) => admin.require(Action::TurnOn(&environment))?,
        (true, false) => admin.require(Action::TurnOff(&environment))?,
        _ => {}
    }
    let expected = if_match(&headers)?;
    changes::ensure_not_archived(&state, &ws, &key).await?;
    if changes::gated(&state, &ws, "flag.targeting").await? {
        let mut request = changes::flag_request("flag.targeting", &key);
        request.environment = Some(env.clone());
        request.payload = Some(serde_json::to_value(&body.targeting).map_err(ApiError::internal)?);
        return changes::file(&state, &admin, &ws, request, body.reason).await;
    }
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(
            state
                .store
                .set_targeting(&ws, &key, &env, expected, body.targeting, &meta),
        )
        .await?;
    webhooks::flag_changed(&state, &ws, &key, "set_targeting", Some(&environment)).await;
    Ok(versioned(StatusCode::OK, rec.version, &FlagView::from(rec)))
}

/// Turns a flag on or off in one environment. Off is the kill switch
/// (engineer, product, admin anywhere); on in production needs product or admin.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/toggle", tag = "flags",
    request_body = Toggle,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Flag key"),
           ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = FlagView), (status = 403, body = crate::error::Problem),
              (status = 412, body = crate::error::Problem)))]
pub async fn toggle(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key, env)): Path<(String, String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Toggle>,
) -> Result<Response, ApiError> {
    let environment = state.store.get_environment(&ws, &env).await?;
    if body.enabled {
        admin.require(Action::TurnOn(&environment))?;
    } else {
        admin.require(Action::TurnOff(&environment))?;
    }
    let expected = if_match(&headers)?;
    if body.enabled {
        changes::ensure_not_archived(&state, &ws, &key).await?;
    }
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.toggle(&ws, &key, &env, expected, body.enabled, &meta))
        .await?;
    let action = if body.enabled { "turn_on" } else { "turn_off" };
    webhooks::flag_changed(&state, &ws, &key, action, Some(&environment)).await;
    Ok(versioned(StatusCode::OK, rec.version, &FlagView::from(rec)))
}
