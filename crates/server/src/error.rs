//! The one table of error codes and the only mapping of errors to HTTP.
//!
//! Every admin-API error is an RFC 9457 `application/problem+json` body
//! with a stable snake_case `code`. A shipped code is never renamed.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sextant_store::{FieldError, Kind, StoreError};
use utoipa::ToSchema;

/// Every kind of error the API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The body is not JSON.
    BodyInvalidJson,
    /// The body is not `application/json`.
    BodyNotJson,
    /// The body is larger than allowed.
    BodyTooLarge,
    /// One or more fields are wrong; `errors` lists each.
    ValidationFailed,
    /// A query parameter is wrong.
    QueryInvalid,
    /// `If-Match` is not a version.
    IfMatchInvalid,
    /// No token was sent.
    TokenMissing,
    /// The token is unknown or revoked.
    TokenInvalid,
    /// The token is of the wrong kind for this API (SDK token on the admin API, …).
    TokenKindForbidden,
    /// The token's role or environment scope does not allow the action.
    PermissionDenied,
    /// No such route.
    RouteNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// No such workspace.
    WorkspaceNotFound,
    /// No such environment.
    EnvironmentNotFound,
    /// No such flag.
    FlagNotFound,
    /// No such segment.
    SegmentNotFound,
    /// No such token.
    TokenNotFound,
    /// No such metric.
    MetricNotFound,
    /// No such initiative.
    InitiativeNotFound,
    /// A workspace with that key exists.
    WorkspaceExists,
    /// An environment with that key exists.
    EnvironmentExists,
    /// A flag with that key exists.
    FlagExists,
    /// A segment with that key exists.
    SegmentExists,
    /// A token with that name or value exists.
    TokenExists,
    /// A metric with that key exists.
    MetricExists,
    /// An initiative with that key exists.
    InitiativeExists,
    /// The write carried a stale version; `current_version` has the current one.
    VersionMismatch,
    /// No rollout plan for that flag and environment.
    RolloutPlanNotFound,
    /// No such scheduled change.
    ScheduledChangeNotFound,
    /// No such experiment.
    ExperimentNotFound,
    /// An experiment with that key exists.
    ExperimentExists,
    /// An experiment has started: its definition cannot change without approval.
    ExperimentRunning,
    /// The resource's state does not allow the operation now (starting a
    /// running rollout, cancelling an applied change, …).
    StateConflict,
    /// Too many requests in flight.
    Overloaded,
    /// The token sent more requests than its rate limit allows.
    RateLimited,
    /// The server is starting or stopping.
    Unavailable,
    /// The database was migrated by a newer binary.
    DatabaseTooNew,
    /// No such change request.
    ChangeRequestNotFound,
    /// No such change record.
    ChangeNotFound,
    /// No such policy.
    PolicyNotFound,
    /// No such principle.
    PrincipleNotFound,
    /// No such violation.
    ViolationNotFound,
    /// No such 30-day review (the flag was not exposed in production yet).
    ReviewNotFound,
    /// No such learning.
    LearningNotFound,
    /// No such post-mortem.
    PostMortemNotFound,
    /// No such webhook.
    WebhookNotFound,
    /// No such webhook delivery.
    DeliveryNotFound,
    /// No such deploy.
    DeployNotFound,
    /// No stored events of that name (a deletion found nothing to delete).
    EventsNotFound,
    /// A principle with that key exists.
    PrincipleExists,
    /// The thing already exists.
    AlreadyExists,
    /// The change request was already approved or rejected.
    ChangeRequestNotPending,
    /// A change request must be decided by someone other than its requester.
    SelfApprovalRefused,
    /// The flag is archived; restore it (a gated change) first.
    FlagArchived,
    /// The change undoes an irreversible change; request a revert instead.
    RevertRequired,
    /// This change has no gated revert.
    ChangeNotRevertible,
    /// This server cannot apply this kind of change request.
    ChangeRequestUnsupported,
    /// Anything unexpected; details are logged, not returned.
    Internal,
}

impl Code {
    /// The code's wire name, HTTP status and title. One exhaustive match:
    /// a new code must decide its status here.
    pub fn meta(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Code::BodyInvalidJson => ("body_invalid_json", S::BAD_REQUEST, "Request body is not valid JSON"),
            Code::BodyNotJson => (
                "body_not_json",
                S::UNSUPPORTED_MEDIA_TYPE,
                "Request body must be application/json",
            ),
            Code::BodyTooLarge => ("body_too_large", S::PAYLOAD_TOO_LARGE, "Request body is too large"),
            Code::ValidationFailed => ("validation_failed", S::UNPROCESSABLE_ENTITY, "Validation failed"),
            Code::QueryInvalid => ("query_invalid", S::BAD_REQUEST, "Query parameters are invalid"),
            Code::IfMatchInvalid => ("if_match_invalid", S::BAD_REQUEST, "If-Match must be a version"),
            Code::TokenMissing => ("token_missing", S::UNAUTHORIZED, "Authentication required"),
            Code::TokenInvalid => ("token_invalid", S::UNAUTHORIZED, "Token is unknown or revoked"),
            Code::TokenKindForbidden => ("token_kind_forbidden", S::FORBIDDEN, "Token kind not allowed here"),
            Code::PermissionDenied => ("permission_denied", S::FORBIDDEN, "Permission denied"),
            Code::RouteNotFound => ("route_not_found", S::NOT_FOUND, "No such route"),
            Code::MethodNotAllowed => ("method_not_allowed", S::METHOD_NOT_ALLOWED, "Method not allowed"),
            Code::WorkspaceNotFound => ("workspace_not_found", S::NOT_FOUND, "Workspace not found"),
            Code::EnvironmentNotFound => ("environment_not_found", S::NOT_FOUND, "Environment not found"),
            Code::FlagNotFound => ("flag_not_found", S::NOT_FOUND, "Flag not found"),
            Code::SegmentNotFound => ("segment_not_found", S::NOT_FOUND, "Segment not found"),
            Code::TokenNotFound => ("token_not_found", S::NOT_FOUND, "Token not found"),
            Code::MetricNotFound => ("metric_not_found", S::NOT_FOUND, "Metric not found"),
            Code::InitiativeNotFound => ("initiative_not_found", S::NOT_FOUND, "Initiative not found"),
            Code::WorkspaceExists => ("workspace_exists", S::CONFLICT, "Workspace already exists"),
            Code::EnvironmentExists => ("environment_exists", S::CONFLICT, "Environment already exists"),
            Code::FlagExists => ("flag_exists", S::CONFLICT, "Flag already exists"),
            Code::SegmentExists => ("segment_exists", S::CONFLICT, "Segment already exists"),
            Code::TokenExists => ("token_exists", S::CONFLICT, "Token already exists"),
            Code::MetricExists => ("metric_exists", S::CONFLICT, "Metric already exists"),
            Code::InitiativeExists => ("initiative_exists", S::CONFLICT, "Initiative already exists"),
            Code::VersionMismatch => ("version_mismatch", S::PRECONDITION_FAILED, "Version mismatch"),
            Code::RolloutPlanNotFound => ("rollout_plan_not_found", S::NOT_FOUND, "Rollout plan not found"),
            Code::ScheduledChangeNotFound => ("scheduled_change_not_found", S::NOT_FOUND, "Scheduled change not found"),
            Code::ExperimentNotFound => ("experiment_not_found", S::NOT_FOUND, "Experiment not found"),
            Code::ExperimentExists => ("experiment_exists", S::CONFLICT, "Experiment already exists"),
            Code::StateConflict => ("state_conflict", S::CONFLICT, "Not allowed in the current state"),
            Code::ExperimentRunning => (
                "experiment_running",
                S::CONFLICT,
                "Experiment has started; its definition is frozen",
            ),
            Code::Overloaded => ("overloaded", S::TOO_MANY_REQUESTS, "Too many requests"),
            Code::RateLimited => ("rate_limited", S::TOO_MANY_REQUESTS, "Rate limit exceeded"),
            Code::Unavailable => ("unavailable", S::SERVICE_UNAVAILABLE, "Service unavailable"),
            Code::DatabaseTooNew => (
                "database_too_new",
                S::INTERNAL_SERVER_ERROR,
                "Database is newer than server",
            ),
            Code::ChangeRequestNotFound => ("change_request_not_found", S::NOT_FOUND, "Change request not found"),
            Code::ChangeNotFound => ("change_not_found", S::NOT_FOUND, "Change not found"),
            Code::PolicyNotFound => ("policy_not_found", S::NOT_FOUND, "Policy not found"),
            Code::PrincipleNotFound => ("principle_not_found", S::NOT_FOUND, "Principle not found"),
            Code::ViolationNotFound => ("violation_not_found", S::NOT_FOUND, "Violation not found"),
            Code::ReviewNotFound => ("review_not_found", S::NOT_FOUND, "Review not found"),
            Code::LearningNotFound => ("learning_not_found", S::NOT_FOUND, "Learning not found"),
            Code::PostMortemNotFound => ("post_mortem_not_found", S::NOT_FOUND, "Post-mortem not found"),
            Code::WebhookNotFound => ("webhook_not_found", S::NOT_FOUND, "Webhook not found"),
            Code::DeliveryNotFound => ("delivery_not_found", S::NOT_FOUND, "Delivery not found"),
            Code::DeployNotFound => ("deploy_not_found", S::NOT_FOUND, "Deploy not found"),
            Code::EventsNotFound => ("events_not_found", S::NOT_FOUND, "Events not found"),
            Code::PrincipleExists => ("principle_exists", S::CONFLICT, "Principle already exists"),
            Code::AlreadyExists => ("already_exists", S::CONFLICT, "Already exists"),
            Code::ChangeRequestNotPending => (
                "change_request_not_pending",
                S::CONFLICT,
                "Change request already decided",
            ),
            Code::SelfApprovalRefused => ("self_approval_refused", S::FORBIDDEN, "Self-approval refused"),
            Code::FlagArchived => ("flag_archived", S::CONFLICT, "Flag is archived"),
            Code::RevertRequired => ("revert_required", S::CONFLICT, "Revert required"),
            Code::ChangeNotRevertible => ("change_not_revertible", S::CONFLICT, "Change cannot be reverted"),
            Code::ChangeRequestUnsupported => (
                "change_request_unsupported",
                S::CONFLICT,
                "Change request cannot be applied",
            ),
            Code::Internal => ("internal", S::INTERNAL_SERVER_ERROR, "Internal error"),
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: &'static [Code] = &[
        Code::BodyInvalidJson,
        Code::BodyNotJson,
        Code::BodyTooLarge,
        Code::ValidationFailed,
        Code::QueryInvalid,
        Code::IfMatchInvalid,
        Code::TokenMissing,
        Code::TokenInvalid,
        Code::TokenKindForbidden,
        Code::PermissionDenied,
        Code::RouteNotFound,
        Code::MethodNotAllowed,
        Code::WorkspaceNotFound,
        Code::EnvironmentNotFound,
        Code::FlagNotFound,
        Code::SegmentNotFound,
        Code::TokenNotFound,
        Code::MetricNotFound,
        Code::InitiativeNotFound,
        Code::WorkspaceExists,
        Code::EnvironmentExists,
        Code::FlagExists,
        Code::SegmentExists,
        Code::TokenExists,
        Code::MetricExists,
        Code::InitiativeExists,
        Code::VersionMismatch,
        Code::RolloutPlanNotFound,
        Code::ScheduledChangeNotFound,
        Code::ExperimentNotFound,
        Code::ExperimentExists,
        Code::StateConflict,
        Code::ExperimentRunning,
        Code::Overloaded,
        Code::RateLimited,
        Code::Unavailable,
        Code::DatabaseTooNew,
        Code::ChangeRequestNotFound,
        Code::ChangeNotFound,
        Code::PolicyNotFound,
        Code::PrincipleNotFound,
        Code::ViolationNotFound,
        Code::ReviewNotFound,
        Code::LearningNotFound,
        Code::PostMortemNotFound,
        Code::WebhookNotFound,
        Code::DeliveryNotFound,
        Code::DeployNotFound,
        Code::EventsNotFound,
        Code::PrincipleExists,
        Code::AlreadyExists,
        Code::ChangeRequestNotPending,
        Code::SelfApprovalRefused,
        Code::FlagArchived,
        Code::RevertRequired,
        Code::ChangeNotRevertible,
        Code::ChangeRequestUnsupported,
        Code::Internal,
    ];
}

/// An API error: a code plus what the client needs to fix it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The kind.
    pub code: Code,
    /// Human detail (never internals for 5xx).
    pub detail: String,
    /// Field errors, for `validation_failed`.
    pub errors: Vec<FieldError>,
    /// For `version_mismatch`: the current version.
    pub current_version: Option<i64>,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

/// The problem+json body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the error kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Each wrong field (validation errors only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
    /// The current version (version mismatches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl ApiError {
    /// An error with a detail message.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            current_version: None,
            retry_after: match code {
                Code::Overloaded | Code::RateLimited | Code::Unavailable => Some(1),
                _ => None,
            },
        }
    }

    /// A validation error listing each wrong field.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        ApiError {
            errors,
            ..ApiError::new(
                Code::ValidationFailed,
                format!("{n} field{} invalid", if n == 1 { " is" } else { "s are" }),
            )
        }
    }

    /// A validation error for one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// An internal error: logged in full, returned without detail.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(Code::Internal, "an internal error occurred; it has been logged")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, ref key } => {
                let code = match kind {
                    Kind::Workspace => Code::WorkspaceNotFound,
                    Kind::Environment => Code::EnvironmentNotFound,
                    Kind::Flag => Code::FlagNotFound,
                    Kind::Segment => Code::SegmentNotFound,
                    Kind::Token => Code::TokenNotFound,
                    Kind::Metric => Code::MetricNotFound,
                    Kind::Initiative => Code::InitiativeNotFound,
                    Kind::RolloutPlan => Code::RolloutPlanNotFound,
                    Kind::ScheduledChange => Code::ScheduledChangeNotFound,
                    Kind::Experiment => Code::ExperimentNotFound,
                    Kind::ChangeRequest => Code::ChangeRequestNotFound,
                    Kind::Change => Code::ChangeNotFound,
                    Kind::Policy => Code::PolicyNotFound,
                    Kind::Principle => Code::PrincipleNotFound,
                    Kind::Violation => Code::ViolationNotFound,
                    Kind::Review => Code::ReviewNotFound,
                    Kind::Learning => Code::LearningNotFound,
                    Kind::PostMortem => Code::PostMortemNotFound,
                    Kind::Webhook => Code::WebhookNotFound,
                    Kind::Delivery => Code::DeliveryNotFound,
                    Kind::Deploy => Code::DeployNotFound,
                    Kind::Events => Code::EventsNotFound,
                };
                ApiError::new(code, format!("{kind} `{key}` does not exist"))
            }
            StoreError::Conflict { kind, ref key } => {
                let code = match kind {
                    Kind::Workspace => Code::WorkspaceExists,
                    Kind::Environment => Code::EnvironmentExists,
                    Kind::Flag => Code::FlagExists,
                    Kind::Segment => Code::SegmentExists,
                    Kind::Token => Code::TokenExists,
                    Kind::Metric => Code::MetricExists,
                    Kind::Initiative => Code::InitiativeExists,
                    Kind::Experiment => Code::ExperimentExists,
                    // Plans are replaced and scheduled changes get fresh ids: never a conflict.
                    Kind::RolloutPlan | Kind::ScheduledChange => Code::StateConflict,
                    Kind::Principle => Code::PrincipleExists,
                    Kind::ChangeRequest
                    | Kind::Change
                    | Kind::Policy
                    | Kind::Violation
                    | Kind::Review
                    | Kind::Learning
                    | Kind::PostMortem
                    | Kind::Webhook
                    | Kind::Delivery
                    | Kind::Deploy
                    | Kind::Events => Code::AlreadyExists,
                };
                ApiError::new(code, format!("{kind} `{key}` already exists"))
            }
            StoreError::VersionMismatch { current } => ApiError {
                current_version: Some(current),
                ..ApiError::new(
                    Code::VersionMismatch,
                    format!("the resource changed since it was read; the current version is {current}"),
                )
            },
            StoreError::Invalid(errors) => ApiError::invalid(errors),
            StoreError::State { .. } => ApiError::new(Code::StateConflict, e.to_string()),
            StoreError::NotPending { .. } => ApiError::new(Code::ChangeRequestNotPending, e.to_string()),
            StoreError::SelfApproval { .. } => ApiError::new(Code::SelfApprovalRefused, e.to_string()),
            StoreError::DatabaseTooNew { .. } => ApiError::new(Code::DatabaseTooNew, e.to_string()),
            StoreError::UnsupportedUrl(_) | StoreError::Corrupt(_) | StoreError::Database(_) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status, title) = self.code.meta();
        let body = Problem {
            kind: format!("urn:sextant:error:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail,
            code: code.to_owned(),
            errors: self.errors,
            current_version: self.current_version,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(v) = self.current_version
            && let Ok(etag) = HeaderValue::from_str(&format!("\"{v}\""))
        {
            headers.insert(header::ETAG, etag);
        }
        response
    }
}

/// `Json` whose rejections are problem+json.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::field("", e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(Code::BodyInvalidJson, e.body_text()),
        JsonRejection::MissingJsonContentType(e) => ApiError::new(Code::BodyNotJson, e.body_text()),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(Code::BodyTooLarge, other.body_text())
        }
        other => ApiError::new(Code::BodyInvalidJson, other.body_text()),
    }
}

/// `Query` whose rejections are problem+json.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(ApiQuery(q.0)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::new(Code::QueryInvalid, e.body_text()))
            }
            Err(e) => Err(ApiError::new(Code::QueryInvalid, e.body_text())),
        }
    }
}

/// `Path` whose rejections are problem+json: a segment that cannot be
/// what the route expects (an id past `i64`, letters for a number) names
/// a resource that cannot exist, so it is a 404 like any unknown id.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(ApiPath(p.0)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::new(
                Code::RouteNotFound,
                format!("no such resource: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::new(Code::RouteNotFound, e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let (name, status, _) = code.meta();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert!(status.is_client_error() || status.is_server_error());
        }
    }
}
