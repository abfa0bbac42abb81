//! The audit log: list (filterable) and verify.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_store::{AuditEntry, AuditFilter, AuditVerification};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// The audit router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/audit/verify", get(verify_audit))
}

/// Audit filters; all optional and combined.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Workspace key.
    pub workspace: Option<String>,
    /// Kind: workspace, environment, flag, segment, token.
    pub kind: Option<String>,
    /// Key of the thing changed.
    pub key: Option<String>,
    /// Actor.
    pub actor: Option<String>,
    /// Action (create, update, delete, set_targeting, turn_on, turn_off).
    pub action: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Only entries after this sequence number (paging).
    pub after: Option<i64>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<u32>,
}

/// A page of audit entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page.
    pub next_after: Option<i64>,
}

/// Lists audit entries.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage)))]
pub async fn list_audit(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    admin.require(Action::Read)?;
    let filter = AuditFilter {
        workspace: q.workspace,
        kind: q.kind,
        key: q.key,
        actor: q.actor,
        action: q.action,
        environment: q.environment,
        after_seq: q.after,
        limit: q.limit,
    };
    let entries = state.store.list_audit(&filter).await?;
    let next_after = entries.last().map(|e| e.seq);
    Ok(Json(AuditPage { entries, next_after }))
}

/// Verifies the whole audit hash chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "`ok` is false when the chain was tampered with")))]
pub async fn verify_audit(State(state): State<AppState>, admin: Admin) -> Result<Json<AuditVerification>, ApiError> {
    admin.require(Action::Read)?;
    Ok(Json(state.store.verify_audit().await?))
}
