//! The learnings log (searchable; a monthly report per owner) and
//! post-mortems of initiatives whose declared metric did not move.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_store::{FieldError, LearningFilter, NewLearning};
use utoipa::{IntoParams, ToSchema};

use super::{change_meta, check};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The post-mortem template: the questions every post-mortem answers.
pub const TEMPLATE: [&str; 3] = ["What we expected", "What happened", "What we learned"];

/// The learnings router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{ws}/learnings",
            get(list_learnings).post(create_learning),
        )
        .route(
            "/api/v1/workspaces/{ws}/post-mortems",
            get(list_post_mortems).post(open_post_mortem),
        )
        .route(
            "/api/v1/workspaces/{ws}/post-mortems/{initiative}",
            post(complete_post_mortem),
        )
}

/// A learning written by a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearningBody {
    /// What was learned.
    pub what: String,
    /// Link to the evidence.
    pub evidence: Option<String>,
    /// Who owns it (default: the token's name).
    pub owner: Option<String>,
    /// `manual` (default) or `experiment`, `review`, `post_mortem`.
    pub source: Option<String>,
    /// What it came from.
    pub source_ref: Option<String>,
}

/// `?q=text&owner=…&source=…&since=…&until=…`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LearningQuery {
    /// Text searched in what, evidence and source (case-insensitive).
    pub q: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// RFC 3339 lower bound.
    pub since: Option<String>,
    /// RFC 3339 upper bound.
    pub until: Option<String>,
}

/// Searches the learnings log, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/learnings", tag = "learnings",
    params(("ws" = String, Path, description = "Workspace key"), LearningQuery), responses((status = 200, body = Object)))]
pub async fn list_learnings(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<LearningQuery>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    let filter = LearningFilter {
        text: q.q.filter(|t| !t.trim().is_empty()),
        owner: q.owner,
        source: q.source,
        since: q.since,
        until: q.until,
    };
    Ok(Json(json!({"items": state.store.list_learnings(&ws, &filter).await?})))
}

/// Records a learning (engineer, product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/learnings", tag = "learnings", request_body = LearningBody,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = Object), (status = 422, body = crate::error::Problem)))]
pub async fn create_learning(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<LearningBody>,
) -> Result<Response, ApiError> {
    admin
        .require(Action::EditFlag)
        .or_else(|_| super::changes::require_product(&admin, "record learnings"))?;
    let mut errors = Vec::new();
    if body.what.trim().is_empty() {
        errors.push(FieldError {
            field: "/what".into(),
            message: "required: what was learned".into(),
        });
    }
    let source = body.source.unwrap_or_else(|| "manual".into());
    if !matches!(source.as_str(), "manual" | "experiment" | "review" | "post_mortem") {
        errors.push(FieldError {
            field: "/source".into(),
            message: format!("`{source}` is not one of manual, experiment, review, post_mortem"),
        });
    }
    let meta = change_meta(&admin, None, &mut errors);
    check(errors)?;
    let learning = NewLearning {
        source,
        source_ref: body.source_ref,
        what: body.what.trim().to_owned(),
        evidence: body.evidence,
        owner: body.owner.unwrap_or_else(|| admin.token.name.clone()),
    };
    let out = state.store.record_learning(&ws, &learning, &meta).await?.value;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A post-mortem to open: an initiative whose metric did not move.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPostMortem {
    /// Initiative key.
    pub initiative: String,
    /// Owner.
    pub owner: String,
    /// RFC 3339 due date.
    pub due_at: String,
    /// What we expected (the initiative's declared metric movement).
    pub expected: String,
}

/// A written post-mortem.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMortemBody {
    /// What we expected (optional; kept from opening otherwise).
    pub expected: Option<String>,
    /// What happened.
    pub happened: String,
    /// What we learned (becomes a learning).
    pub learned: String,
}

/// Lists post-mortems with the template.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/post-mortems", tag = "learnings",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = Object)))]
pub async fn list_post_mortems(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    state.store.get_workspace(&ws).await?;
    Ok(Json(
        json!({"template": TEMPLATE, "items": state.store.list_post_mortems(&ws).await?}),
    ))
}

/// Opens a post-mortem for an initiative (product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/post-mortems", tag = "learnings", request_body = OpenPostMortem,
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 201, body = Object)))]
pub async fn open_post_mortem(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<OpenPostMortem>,
) -> Result<Response, ApiError> {
    super::changes::require_product(&admin, "open post-mortems")?;
    let mut errors = Vec::new();
    super::check_key("/initiative", &body.initiative, &mut errors);
    if chrono::DateTime::parse_from_rfc3339(&body.due_at).is_err() {
        errors.push(FieldError {
            field: "/due_at".into(),
            message: format!("`{}` is not an RFC 3339 time", body.due_at),
        });
    }
    let meta = change_meta(&admin, None, &mut errors);
    check(errors)?;
    let pm = state
        .store
        .open_post_mortem(&ws, &body.initiative, &body.owner, &body.due_at, &body.expected, &meta)
        .await?
        .value;
    Ok((StatusCode::CREATED, Json(pm)).into_response())
}

/// Writes a post-mortem (product, admin); what we learned is logged.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/post-mortems/{initiative}", tag = "learnings",
    request_body = PostMortemBody,
    params(("ws" = String, Path, description = "Workspace key"), ("initiative" = String, Path, description = "Initiative")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn complete_post_mortem(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, initiative)): Path<(String, String)>,
    ApiJson(body): ApiJson<PostMortemBody>,
) -> Result<Json<Value>, ApiError> {
    super::changes::require_product(&admin, "write post-mortems")?;
    let mut errors = Vec::new();
    for (field, v) in [("/happened", &body.happened), ("/learned", &body.learned)] {
        if v.trim().is_empty() {
            errors.push(FieldError {
                field: field.into(),
                message: "required".into(),
            });
        }
    }
    let meta = change_meta(&admin, None, &mut errors);
    check(errors)?;
    let pm = state
        .store
        .complete_post_mortem(
            &ws,
            &initiative,
            body.expected.as_deref(),
            &body.happened,
            &body.learned,
            &meta,
        )
        .await?
        .value;
    Ok(Json(serde_json::to_value(pm).unwrap_or_default()))
}
