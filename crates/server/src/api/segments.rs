//! Segments: reusable sets of conditions.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_core::Segment;
use sextant_store::{FieldError, SegmentRecord};
use utoipa::ToSchema;

use super::{List, ReasonQuery, change_meta, check, check_key, if_match, versioned};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The segments router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{ws}/segments",
            get(list_segments).post(create_segment),
        )
        .route(
            "/api/v1/workspaces/{ws}/segments/{key}",
            get(get_segment).put(update_segment).delete(delete_segment),
        )
}

/// A stored segment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    /// Segment key.
    pub key: String,
    /// Version, for `If-Match`.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The declarative segment (sextant-core `Segment`).
    #[schema(value_type = Object)]
    pub segment: Segment,
}

impl From<SegmentRecord> for SegmentView {
    fn from(r: SegmentRecord) -> Self {
        SegmentView {
            key: r.segment.key.clone(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            segment: r.segment,
        }
    }
}

/// A segment to create or store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentBody {
    /// The declarative segment.
    #[schema(value_type = Object)]
    pub segment: Segment,
    /// Why.
    pub reason: Option<String>,
}

/// Lists segments.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/segments", tag = "segments",
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 200, body = List<SegmentView>)))]
pub async fn list_segments(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<List<SegmentView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state
        .store
        .list_segments(&ws)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(List { items }))
}

/// Creates a segment (product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/segments", tag = "segments", request_body = SegmentBody,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = SegmentView), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn create_segment(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<SegmentBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditSegment)?;
    let mut errors = Vec::new();
    check_key("/segment/key", &body.segment.key, &mut errors);
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.create_segment(&ws, body.segment, &meta))
        .await?;
    Ok(versioned(StatusCode::CREATED, rec.version, &SegmentView::from(rec)))
}

/// Reads a segment.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/segments/{key}", tag = "segments",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Segment key")),
    responses((status = 200, body = SegmentView), (status = 404, body = crate::error::Problem)))]
pub async fn get_segment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let rec = state.store.get_segment(&ws, &key).await?;
    Ok(versioned(StatusCode::OK, rec.version, &SegmentView::from(rec)))
}

/// Replaces a segment (product, admin). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/segments/{key}", tag = "segments", request_body = SegmentBody,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Segment key")),
    responses((status = 200, body = SegmentView), (status = 412, body = crate::error::Problem)))]
pub async fn update_segment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SegmentBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditSegment)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    if body.segment.key != key {
        errors.push(FieldError {
            field: "/segment/key".into(),
            message: format!("must be `{key}`, the segment in the path"),
        });
    }
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.update_segment(&ws, body.segment, expected, &meta))
        .await?;
    Ok(versioned(StatusCode::OK, rec.version, &SegmentView::from(rec)))
}

/// Deletes a segment (product, admin); refused while a flag uses it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/segments/{key}", tag = "segments",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Segment key"), ReasonQuery),
    responses((status = 204), (status = 422, body = crate::error::Problem)))]
pub async fn delete_segment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::EditSegment)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state
        .commit(state.store.delete_segment(&ws, &key, expected, &meta))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
