//! Workspaces and their environments.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_store::{Environment, EnvironmentInput, Workspace};
use utoipa::ToSchema;

use super::{List, ReasonQuery, change_meta, check, check_key, if_match, versioned};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The workspaces router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces", get(list_workspaces).post(create_workspace))
        .route(
            "/api/v1/workspaces/{ws}",
            get(get_workspace).put(update_workspace).delete(delete_workspace),
        )
        .route(
            "/api/v1/workspaces/{ws}/environments",
            get(list_environments).post(create_environment),
        )
        .route(
            "/api/v1/workspaces/{ws}/environments/{env}",
            get(get_environment).put(update_environment).delete(delete_environment),
        )
}

/// A workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    /// Unique key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Version, for `If-Match`.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Workspace> for WorkspaceView {
    fn from(w: Workspace) -> Self {
        WorkspaceView {
            key: w.key,
            name: w.name,
            version: w.version,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// An environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentView {
    /// Key, unique in its workspace.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Production environments restrict who may turn flags on.
    pub production: bool,
    /// Version, for `If-Match`.
    pub version: i64,
    /// Current snapshot version (what SDKs see).
    pub snapshot_version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Environment> for EnvironmentView {
    fn from(e: Environment) -> Self {
        EnvironmentView {
            key: e.key,
            name: e.name,
            production: e.production,
            version: e.version,
            snapshot_version: e.snapshot_version,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A new workspace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    /// Unique key.
    pub key: String,
    /// Display name (defaults to the key).
    pub name: Option<String>,
    /// Environments to create with it.
    #[serde(default)]
    pub environments: Vec<NewEnvironment>,
    /// Why.
    pub reason: Option<String>,
}

/// Changes to a workspace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    /// Display name.
    pub name: String,
    /// Why.
    pub reason: Option<String>,
}

/// A new environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    /// Key, unique in the workspace.
    pub key: String,
    /// Display name (defaults to the key).
    pub name: Option<String>,
    /// Whether it is production.
    #[serde(default)]
    pub production: bool,
    /// Why.
    pub reason: Option<String>,
}

/// Changes to an environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    /// Display name.
    pub name: String,
    /// Whether it is production.
    pub production: bool,
    /// Why.
    pub reason: Option<String>,
}

/// Lists workspaces.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces",
    responses((status = 200, body = List<WorkspaceView>), (status = 401, body = crate::error::Problem)))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<List<WorkspaceView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state
        .store
        .list_workspaces()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(List { items }))
}

/// Creates a workspace (admin).
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = NewWorkspace,
    responses((status = 201, body = WorkspaceView), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn create_workspace(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<NewWorkspace>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    let mut errors = Vec::new();
    check_key("/key", &body.key, &mut errors);
    for (i, e) in body.environments.iter().enumerate() {
        check_key(&format!("/environments/{i}/key"), &e.key, &mut errors);
    }
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let envs: Vec<EnvironmentInput> = body
        .environments
        .into_iter()
        .map(|e| EnvironmentInput {
            name: e.name.unwrap_or_else(|| e.key.clone()),
            key: e.key,
            production: e.production,
        })
        .collect();
    let name = body.name.unwrap_or_else(|| body.key.clone());
    let ws = state
        .commit(state.store.create_workspace(&body.key, &name, &envs, &meta))
        .await?;
    Ok(versioned(StatusCode::CREATED, ws.version, &WorkspaceView::from(ws)))
}

/// Reads a workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = WorkspaceView), (status = 404, body = crate::error::Problem)))]
pub async fn get_workspace(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let w = state.store.get_workspace(&ws).await?;
    Ok(versioned(StatusCode::OK, w.version, &WorkspaceView::from(w)))
}

/// Renames a workspace (admin). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}", tag = "workspaces", request_body = UpdateWorkspace,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = WorkspaceView), (status = 412, body = crate::error::Problem)))]
pub async fn update_workspace(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateWorkspace>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let w = state
        .commit(state.store.update_workspace(&ws, expected, &body.name, &meta))
        .await?;
    Ok(versioned(StatusCode::OK, w.version, &WorkspaceView::from(w)))
}

/// Deletes a workspace and everything in it (admin).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace key"), ReasonQuery),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn delete_workspace(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state.commit(state.store.delete_workspace(&ws, expected, &meta)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a workspace's environments.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/environments", tag = "environments",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = List<EnvironmentView>)))]
pub async fn list_environments(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<List<EnvironmentView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state
        .store
        .list_environments(&ws)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(List { items }))
}

/// Creates an environment (admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/environments", tag = "environments",
    request_body = NewEnvironment, params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = EnvironmentView), (status = 409, body = crate::error::Problem)))]
pub async fn create_environment(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewEnvironment>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    let mut errors = Vec::new();
    check_key("/key", &body.key, &mut errors);
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let input = EnvironmentInput {
        name: body.name.unwrap_or_else(|| body.key.clone()),
        key: body.key,
        production: body.production,
    };
    let env = state.commit(state.store.create_environment(&ws, &input, &meta)).await?;
    Ok(versioned(StatusCode::CREATED, env.version, &EnvironmentView::from(env)))
}

/// Reads an environment.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/environments/{env}", tag = "environments",
    params(("ws" = String, Path, description = "Workspace key"), ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = EnvironmentView), (status = 404, body = crate::error::Problem)))]
pub async fn get_environment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let e = state.store.get_environment(&ws, &env).await?;
    Ok(versioned(StatusCode::OK, e.version, &EnvironmentView::from(e)))
}

/// Changes an environment (admin). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/environments/{env}", tag = "environments",
    request_body = UpdateEnvironment,
    params(("ws" = String, Path, description = "Workspace key"), ("env" = String, Path, description = "Environment key")),
    responses((status = 200, body = EnvironmentView), (status = 412, body = crate::error::Problem)))]
pub async fn update_environment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, env)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateEnvironment>,
) -> Result<Response, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let e = state
        .commit(
            state
                .store
                .update_environment(&ws, &env, expected, &body.name, body.production, &meta),
        )
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &EnvironmentView::from(e)))
}

/// Deletes an environment, its targeting and its SDK tokens (admin).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/environments/{env}", tag = "environments",
    params(("ws" = String, Path, description = "Workspace key"), ("env" = String, Path, description = "Environment key"), ReasonQuery),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn delete_environment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, env)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::ManageEnvironments)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state
        .commit(state.store.delete_environment(&ws, &env, expected, &meta))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
