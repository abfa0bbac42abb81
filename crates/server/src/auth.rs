//! Tokens and the role × action matrix.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sextant_store::{Environment, Role, TokenGrant, TokenRecord, hash_token};

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// The token sent with a request: `Authorization: Bearer …` or `X-API-Key`.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Resolves a presented token.
pub fn resolve(state: &AppState, token: Option<&str>) -> Result<Arc<TokenRecord>, ApiError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(Code::TokenMissing, "send a token as `Authorization: Bearer <token>`"))?;
    state
        .tokens
        .get(&hash_token(token))
        .ok_or_else(|| ApiError::new(Code::TokenInvalid, "the token is unknown or was revoked"))
}

/// What an admin request wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Read anything.
    Read,
    /// Create a flag or change its code-side definition (kind, variations, …).
    EditFlag,
    /// Delete a flag.
    DeleteFlag,
    /// Change a flag's targeting (rules, rollout %, default) in an environment.
    EditTargeting(&'a Environment),
    /// Turn a flag on in an environment.
    TurnOn(&'a Environment),
    /// Turn a flag off in an environment (kill switch).
    TurnOff(&'a Environment),
    /// Create, change or delete a segment.
    EditSegment,
    /// Create, change or delete environments and workspaces.
    ManageEnvironments,
    /// Create or revoke tokens.
    ManageTokens,
    /// Create, change or delete metrics (not the North Star) and initiatives.
    EditMetrics,
    /// Set or change the workspace's North Star (an irreversible change;
    /// admin only until approvals exist).
    ChangeNorthStar,
    /// Create, change (while a draft) or start an experiment.
    EditExperiment,
    /// Decide an experiment (ship, kill, iterate).
    DecideExperiment,
}

impl Action<'_> {
    /// The environment the action is confined to, if any.
    pub fn environment(&self) -> Option<&Environment> {
        match self {
            Action::EditTargeting(e) | Action::TurnOn(e) | Action::TurnOff(e) => Some(e),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Action::Read => "read".into(),
            Action::EditFlag => "create or change flag definitions".into(),
            Action::DeleteFlag => "delete flags".into(),
            Action::EditTargeting(e) => format!("change targeting in `{}`", e.key),
            Action::TurnOn(e) => format!("turn flags on in `{}`", e.key),
            Action::TurnOff(e) => format!("turn flags off in `{}`", e.key),
            Action::EditSegment => "change segments".into(),
            Action::ManageEnvironments => "manage workspaces and environments".into(),
            Action::ManageTokens => "manage tokens".into(),
            Action::EditMetrics => "change metrics or initiatives".into(),
            Action::ChangeNorthStar => "set or change the North Star".into(),
            Action::EditExperiment => "create, change or start experiments".into(),
            Action::DecideExperiment => "decide experiments".into(),
        }
    }
}

/// The role × action matrix (environment scope is checked separately).
///
/// Engineers create flags and code-side config, change targeting and turn
/// flags on outside production, and use the kill switch anywhere. Product
/// owns targeting, rollout percentages, segments and turning flags on in
/// production. Admins do everything, including tokens and environments.
pub fn allowed(role: Role, action: &Action<'_>) -> bool {
    use Role::*;
    match action {
        Action::Read => true,
        Action::EditFlag | Action::DeleteFlag => matches!(role, Engineer | Admin),
        Action::EditTargeting(env) | Action::TurnOn(env) => match role {
            Product | Admin => true,
            Engineer => !env.production,
            Viewer => false,
        },
        Action::TurnOff(_) => matches!(role, Engineer | Product | Admin),
        Action::EditSegment => matches!(role, Product | Admin),
        Action::ManageEnvironments | Action::ManageTokens | Action::ChangeNorthStar => role == Admin,
        Action::EditMetrics => matches!(role, Engineer | Product | Admin),
        Action::EditExperiment => matches!(role, Engineer | Product | Admin),
        Action::DecideExperiment => matches!(role, Product | Admin),
    }
}

/// An authenticated admin-API caller.
pub struct Admin {
    /// The token record.
    pub token: Arc<TokenRecord>,
    /// Its role.
    pub role: Role,
    /// Its environment scope; `None` = all.
    pub environments: Option<Vec<String>>,
}

impl Admin {
    /// The actor name recorded with changes.
    pub fn actor(&self) -> String {
        format!("{} (token {})", self.token.name, self.token.id)
    }

    /// Checks the role and the environment scope.
    pub fn require(&self, action: Action<'_>) -> Result<(), ApiError> {
        if !allowed(self.role, &action) {
            return Err(ApiError::new(
                Code::PermissionDenied,
                format!("role `{}` may not {}", self.role.as_str(), action.describe()),
            ));
        }
        if let (Some(env), Some(scope)) = (action.environment(), &self.environments)
            && !scope.contains(&env.key)
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                format!("this token is scoped to {scope:?}, not `{}`", env.key),
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = resolve(state, presented(&parts.headers))?;
        match &token.grant {
            TokenGrant::Admin { role, environments } => Ok(Admin {
                role: *role,
                environments: environments.clone(),
                token: token.clone(),
            }),
            _ => Err(ApiError::new(
                Code::TokenKindForbidden,
                "SDK tokens cannot use the admin API; use an admin token",
            )),
        }
    }
}
