//! One router per area; `app.rs` merges them.

pub mod audit;
pub mod changes;
pub mod deploys;
pub mod events;
pub mod experiments;
pub mod flags;
pub mod learnings;
pub mod metrics;
pub mod ofrep;
pub mod ops;
pub mod principles;
pub mod reviews;
pub mod rollouts;
pub mod sdk;
pub mod segments;
pub mod tokens;
pub mod webhooks;
pub mod workspaces;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_store::{ChangeMeta, FieldError};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, Code};

/// Longest accepted `reason`.
const MAX_REASON: usize = 2000;

/// `?reason=` for writes without a body (DELETE).
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct ReasonQuery {
    /// Why the change is made; recorded in the audit log.
    pub reason: Option<String>,
}

/// The version a write read, from `If-Match` (`"3"`, `W/"3"`, `3`; `*` = any).
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::new(
            Code::IfMatchInvalid,
            format!("If-Match `{text}` is not a version such as \"3\" (send the ETag you read)"),
        )
    })
}

/// The change metadata of a write by `admin`, validating the reason.
pub fn change_meta(admin: &Admin, reason: Option<String>, errors: &mut Vec<FieldError>) -> ChangeMeta {
    if let Some(r) = &reason
        && r.len() > MAX_REASON
    {
        errors.push(FieldError {
            field: "/reason".into(),
            message: format!("must be at most {MAX_REASON} bytes"),
        });
    }
    ChangeMeta::new(admin.actor(), reason.filter(|r| !r.trim().is_empty()))
}

/// Fails with every collected field error, if any.
pub fn check(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// Validates a key: 1–128 of `A-Za-z0-9._-`, starting alphanumeric.
pub fn check_key(field: &str, key: &str, errors: &mut Vec<FieldError>) {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        errors.push(FieldError {
            field: field.into(),
            message: format!("`{key}` is not a valid key: use 1-128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"),
        });
    }
}

/// A JSON response with `ETag: "<version>"`.
pub fn versioned<T: Serialize>(status: StatusCode, version: i64, body: &T) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// A list wrapper.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    /// The items.
    pub items: Vec<T>,
}
