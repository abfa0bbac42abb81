//! Strategic principles and their declared violations. A violation carries
//! a justification, an accountable owner and a review date; open ones are
//! listed and appear in the weekly review until resolved.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_store::{FieldError, NewViolation};
use utoipa::{IntoParams, ToSchema};

use super::{change_meta, check, check_key};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The principles router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{ws}/principles",
            get(list_principles).post(create_principle),
        )
        .route(
            "/api/v1/workspaces/{ws}/violations",
            get(list_violations).post(create_violation),
        )
        .route(
            "/api/v1/workspaces/{ws}/violations/{id}/resolve",
            post(resolve_violation),
        )
}

/// A new principle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrinciple {
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What it asks of everyone.
    pub description: String,
    /// Why.
    pub reason: Option<String>,
}

/// A declared violation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViolationBody {
    /// The principle's key.
    pub principle: Option<String>,
    /// What violates it (`flag:checkout`, `change:42`, …).
    pub subject: Option<String>,
    /// Why it is worth it.
    pub justification: Option<String>,
    /// The accountable owner.
    pub owner: Option<String>,
    /// When to look again (YYYY-MM-DD).
    pub review_date: Option<String>,
}

/// How a violation was resolved.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// What was done.
    pub resolution: String,
}

/// `?open=true` lists only unresolved violations.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ViolationQuery {
    /// Only unresolved ones.
    pub open: Option<bool>,
}

fn required(field: &str, v: &Option<String>, errors: &mut Vec<FieldError>) -> String {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => {
            errors.push(FieldError {
                field: format!("/{field}"),
                message: "required".into(),
            });
            String::new()
        }
    }
}

/// Lists principles.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/principles", tag = "principles",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = Object)))]
pub async fn list_principles(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    Ok(Json(json!({"items": state.store.list_principles(&ws).await?})))
}

/// Creates a principle (product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/principles", tag = "principles", request_body = NewPrinciple,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = Object), (status = 409, body = crate::error::Problem)))]
pub async fn create_principle(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewPrinciple>,
) -> Result<Response, ApiError> {
    super::changes::require_product(&admin, "define principles")?;
    let mut errors = Vec::new();
    check_key("/key", &body.key, &mut errors);
    let name = required("name", &Some(body.name), &mut errors);
    let description = required("description", &Some(body.description), &mut errors);
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let p = state
        .store
        .create_principle(&ws, &body.key, &name, &description, &meta)
        .await?
        .value;
    state.announce_in(&ws, "principle", Some(body.key.clone()));
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// Lists violations, most urgent review date first.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/violations", tag = "principles",
    params(("ws" = String, Path, description = "Workspace key"), ViolationQuery), responses((status = 200, body = Object)))]
pub async fn list_violations(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<ViolationQuery>,
) -> Result<Json<Value>, ApiError> {
    admin.require(Action::Read)?;
    let items = state.store.list_violations(&ws, q.open.unwrap_or(false)).await?;
    Ok(Json(json!({"items": items})))
}

/// Declares that a change violates a principle (engineer, product, admin).
/// Justification, owner and review date are required.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/violations", tag = "principles", request_body = ViolationBody,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = Object), (status = 422, body = crate::error::Problem)))]
pub async fn create_violation(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<ViolationBody>,
) -> Result<Response, ApiError> {
    admin
        .require(Action::EditFlag)
        .or_else(|_| super::changes::require_product(&admin, "declare violations"))?;
    let mut errors = Vec::new();
    let v = NewViolation {
        principle: required("principle", &body.principle, &mut errors),
        subject: required("subject", &body.subject, &mut errors),
        justification: required("justification", &body.justification, &mut errors),
        owner: required("owner", &body.owner, &mut errors),
        review_date: required("review_date", &body.review_date, &mut errors),
    };
    if !v.review_date.is_empty() && chrono::NaiveDate::parse_from_str(&v.review_date, "%Y-%m-%d").is_err() {
        errors.push(FieldError {
            field: "/review_date".into(),
            message: format!("`{}` is not a date like 2025-06-30", v.review_date),
        });
    }
    let meta = change_meta(&admin, None, &mut errors);
    check(errors)?;
    let out = state.store.create_violation(&ws, &v, &meta).await?.value;
    state.announce_in(&ws, "violation", None);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Resolves a violation (product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/violations/{id}/resolve", tag = "principles",
    request_body = Resolution,
    params(("ws" = String, Path, description = "Workspace key"), ("id" = i64, Path, description = "Violation id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn resolve_violation(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath((ws, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<Resolution>,
) -> Result<Json<Value>, ApiError> {
    super::changes::require_product(&admin, "resolve violations")?;
    let mut errors = Vec::new();
    let resolution = required("resolution", &Some(body.resolution), &mut errors);
    let meta = change_meta(&admin, None, &mut errors);
    check(errors)?;
    let v = state.store.resolve_violation(&ws, id, &resolution, &meta).await?.value;
    state.announce_in(&ws, "violation", None);
    Ok(Json(serde_json::to_value(v).unwrap_or_default()))
}
