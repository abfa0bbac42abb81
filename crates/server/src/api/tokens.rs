//! Admin and SDK tokens (admin only). A token is shown once, at creation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_store::{FieldError, NewGrant, Role, TokenGrant, TokenRecord};
use utoipa::ToSchema;

use super::{List, ReasonQuery, change_meta, check};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The tokens router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(delete_token))
}

/// Token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Admin API, with a role and an environment scope.
    Admin,
    /// Server-side SDK: snapshot, stream and OFREP for one environment.
    Server,
    /// Client-side SDK: OFREP evaluation only, for one environment.
    Client,
}

/// A token (never its value).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Id.
    pub id: i64,
    /// Name; the actor recorded for changes made with it.
    pub name: String,
    /// Kind.
    pub kind: TokenKind,
    /// Role (admin tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Environment scope (admin tokens; absent = all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    /// Workspace (SDK tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Environment (SDK tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Allowed browser origins (client tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    /// The token's first characters.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        let mut v = TokenView {
            id: t.id,
            name: t.name.clone(),
            kind: TokenKind::Admin,
            role: None,
            environments: None,
            workspace: None,
            environment: None,
            allowed_origins: None,
            prefix: t.prefix.clone(),
            created_at: t.created_at.clone(),
        };
        match &t.grant {
            TokenGrant::Admin { role, environments } => {
                v.role = Some(role.as_str().into());
                v.environments = environments.clone();
            }
            TokenGrant::Server {
                workspace, environment, ..
            } => {
                v.kind = TokenKind::Server;
                v.workspace = Some(workspace.clone());
                v.environment = Some(environment.clone());
            }
            TokenGrant::Client {
                workspace,
                environment,
                allowed_origins,
                ..
            } => {
                v.kind = TokenKind::Client;
                v.workspace = Some(workspace.clone());
                v.environment = Some(environment.clone());
                v.allowed_origins = Some(allowed_origins.clone());
            }
        }
        v
    }
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: TokenKind,
    /// Role: viewer, engineer, product or admin (admin tokens).
    pub role: Option<String>,
    /// Environment keys an admin token may act on (absent = all).
    pub environments: Option<Vec<String>>,
    /// Workspace (SDK tokens).
    pub workspace: Option<String>,
    /// Environment (SDK tokens).
    pub environment: Option<String>,
    /// Origins allowed to call from a browser (client tokens), e.g. `https://app.example.com`, or `*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Why.
    pub reason: Option<String>,
}

/// A created token: the only response that contains its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token's value. Store it now: it is not shown again.
    pub token: String,
    /// The token's record.
    #[serde(flatten)]
    pub info: TokenView,
}

/// Lists tokens (admin).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = List<TokenView>)))]
pub async fn list_tokens(State(state): State<AppState>, admin: Admin) -> Result<Json<List<TokenView>>, ApiError> {
    admin.require(Action::ManageTokens)?;
    let items = state.store.list_tokens().await?.iter().map(Into::into).collect();
    Ok(Json(List { items }))
}

/// Creates a token (admin). The response holds the value, once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = crate::error::Problem)))]
pub async fn create_token(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    admin.require(Action::ManageTokens)?;
    let mut errors = Vec::new();
    let mut missing = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    if body.name.trim().is_empty() {
        missing("/name", "must not be empty");
    }
    let grant = match body.kind {
        TokenKind::Admin => {
            let role = body.role.as_deref().and_then(Role::parse);
            if role.is_none() {
                missing("/role", "admin tokens need a role: viewer, engineer, product or admin");
            }
            if body.workspace.is_some() || body.environment.is_some() {
                missing(
                    "/environment",
                    "admin tokens are scoped with `environments`, not `environment`",
                );
            }
            role.map(|role| NewGrant::Admin {
                role,
                environments: body.environments.clone(),
            })
        }
        TokenKind::Server | TokenKind::Client => {
            if body.workspace.is_none() {
                missing("/workspace", "SDK tokens need a workspace");
            }
            if body.environment.is_none() {
                missing("/environment", "SDK tokens need an environment");
            }
            if body.role.is_some() {
                missing("/role", "SDK tokens have no role");
            }
            if body.kind == TokenKind::Server && !body.allowed_origins.is_empty() {
                missing("/allowed_origins", "only client tokens are used from browsers");
            }
            match (&body.workspace, &body.environment) {
                (Some(workspace), Some(environment)) if body.kind == TokenKind::Server => Some(NewGrant::Server {
                    workspace: workspace.clone(),
                    environment: environment.clone(),
                }),
                (Some(workspace), Some(environment)) => Some(NewGrant::Client {
                    workspace: workspace.clone(),
                    environment: environment.clone(),
                    allowed_origins: body.allowed_origins.clone(),
                }),
                _ => None,
            }
        }
    };
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let Some(grant) = grant else {
        return Err(ApiError::field("/kind", "incomplete token"));
    };
    let (rec, token) = state
        .commit(state.store.create_token(body.name.trim(), &grant, &meta))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: (&rec).into(),
        }),
    ))
}

/// Revokes a token (admin).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id"), ReasonQuery),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn delete_token(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::ManageTokens)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            crate::error::Code::TokenNotFound,
            format!("token `{id}` does not exist"),
        )
    })?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state.commit(state.store.delete_token(id, &meta)).await?;
    Ok(StatusCode::NO_CONTENT)
}
