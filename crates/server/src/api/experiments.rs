//! Experiments: create, list, read, change (drafts only), start, results
//! and decide.
//!
//! Changing a running experiment's criteria is an irreversible change:
//! it answers `202` with an `experiment.criteria` change request that
//! another product or admin person approves (the flag, environment and
//! arms cannot change while it runs). A decided experiment is refused with
//! `experiment_running`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sextant_store::{
    Decision, ExperimentDef, ExperimentRecord, ExperimentStatus, HOUR_MS, HourRange, NewLearning, StoreError,
};
use utoipa::{IntoParams, ToSchema};

use super::rollouts::Reason;
use super::{List, change_meta, check, if_match, versioned};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery, Code};
use crate::experiments::{Analysis, MetricInput, analyze};
use crate::state::AppState;

/// The experiments router.
pub fn router() -> Router<AppState> {
    let one = "/api/v1/workspaces/{ws}/experiments/{key}";
    Router::new()
        .route(
            "/api/v1/workspaces/{ws}/experiments",
            get(list_experiments).post(create_experiment),
        )
        .route(one, get(get_experiment).put(update_experiment))
        .route(&format!("{one}/start"), post(start_experiment))
        .route(&format!("{one}/results"), get(results))
        .route(&format!("{one}/decide"), post(decide_experiment))
}

/// A new or changed experiment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutExperiment {
    /// `key`, `environment`, `flag`, `name`, `arms` (`variation`, `weight`;
    /// control first), `primary_metric`, `guardrails`, `hypothesis`
    /// (`direction`: increase | decrease, `minimum_effect`: relative),
    /// `success_criteria`, `planned_sample_size`, `analysis`
    /// (fixed_horizon | sequential), `alpha`, `pre_period_days`.
    #[schema(value_type = Object)]
    pub experiment: ExperimentDef,
    /// Why; recorded in the audit log.
    pub reason: Option<String>,
}

/// A decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// `ship`, `kill` or `iterate`.
    #[schema(value_type = String)]
    pub decision: Decision,
    /// What was learnt (required); kept with the experiment as its learning.
    pub learning: String,
    /// Why; recorded in the audit log.
    pub reason: Option<String>,
}

/// `?status=` filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct StatusQuery {
    /// `draft`, `running` or `decided`.
    #[param(value_type = Option<String>)]
    pub status: Option<ExperimentStatus>,
}

/// An experiment's results.
#[derive(Debug, Serialize, ToSchema)]
pub struct Results {
    /// The experiment (definition and status, with the significance date
    /// and decision deadline).
    #[schema(value_type = Object)]
    pub experiment: ExperimentRecord,
    /// The analysis at this look.
    #[schema(value_type = Object)]
    pub analysis: Analysis,
    /// Whether a decision is overdue (a week after significance has passed).
    pub decision_overdue: bool,
}

fn view(rec: &ExperimentRecord, status: StatusCode) -> Response {
    versioned(status, rec.version, rec)
}

/// Lists a workspace's experiments (`?status=decided` is the learnings log).
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/experiments", tag = "experiments",
    params(("ws" = String, Path, description = "Workspace key"), StatusQuery),
    responses((status = 200, body = Object)))]
pub async fn list_experiments(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<List<ExperimentView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state
        .store
        .list_experiments(&ws, q.status)
        .await?
        .into_iter()
        .map(ExperimentView)
        .collect();
    Ok(Json(List { items }))
}

/// An experiment as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct ExperimentView(pub ExperimentRecord);

/// Creates an experiment as a draft (engineer, product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/experiments", tag = "experiments",
    request_body = PutExperiment, params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = Object), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn create_experiment(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<PutExperiment>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditExperiment)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state.store.create_experiment(&ws, body.experiment, &meta).await?.value;
    Ok(view(&rec, StatusCode::CREATED))
}

/// Reads an experiment.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/experiments/{key}", tag = "experiments",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Experiment key")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn get_experiment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let rec = state.store.get_experiment(&ws, &key).await?;
    Ok(view(&rec, StatusCode::OK))
}

/// Changes a draft's definition. A running experiment's criteria change
/// only by approval: `202` with an `experiment.criteria` change request. A
/// decided one is refused with `experiment_running`. Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/experiments/{key}", tag = "experiments",
    request_body = PutExperiment,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Experiment key")),
    responses((status = 200, body = Object), (status = 202, body = Object), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn update_experiment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PutExperiment>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditExperiment)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason.clone(), &mut errors);
    check(errors)?;
    let current = state.store.get_experiment(&ws, &key).await?;
    if current.status == ExperimentStatus::Running {
        if let Some(v) = expected
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            }
            .into());
        }
        state
            .store
            .check_experiment_criteria(&ws, &key, &body.experiment)
            .await?;
        let request = sextant_store::NewChangeRequest {
            action: "experiment.criteria".into(),
            kind: "experiment".into(),
            key: key.clone(),
            environment: Some(body.experiment.environment.clone()),
            payload: Some(serde_json::to_value(&body.experiment).map_err(ApiError::internal)?),
            reverts_change_id: None,
        };
        return super::changes::file(&state, &admin, &ws, request, body.reason).await;
    }
    match state
        .store
        .update_experiment(&ws, &key, body.experiment, expected, &meta)
        .await
    {
        Ok(c) => Ok(view(&c.value, StatusCode::OK)),
        Err(StoreError::State { detail, .. }) => Err(ApiError::new(
            Code::ExperimentRunning,
            format!(
                "experiment `{key}` {detail}: a decided experiment does not change; \
                 create a new experiment instead"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Starts a draft: its definition is frozen from now on.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/experiments/{key}/start", tag = "experiments",
    request_body = Reason,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Experiment key")),
    responses((status = 200, body = Object), (status = 409, body = crate::error::Problem)))]
pub async fn start_experiment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditExperiment)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state.store.start_experiment(&ws, &key, expected, &meta).await?.value;
    state.announce_in(&ws, "experiment", Some(key.clone()));
    Ok(view(&rec, StatusCode::OK))
}

/// Ends a running experiment with a decision and a written learning
/// (product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/experiments/{key}/decide", tag = "experiments",
    request_body = Decide,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Experiment key")),
    responses((status = 200, body = Object), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn decide_experiment(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<Decide>,
) -> Result<Response, ApiError> {
    admin.require(Action::DecideExperiment)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    // The learning joins the workspace's learnings log in the decision's
    // own transaction.
    let learning = NewLearning {
        source: "experiment".into(),
        source_ref: Some(key.clone()),
        what: body.learning,
        evidence: Some(format!("/api/v1/workspaces/{ws}/experiments/{key}/results")),
        owner: admin.actor(),
    };
    let rec = state
        .store
        .decide_experiment(&ws, &key, body.decision, &learning, &meta)
        .await?
        .value;
    state.announce_in(&ws, "experiment", Some(key.clone()));
    Ok(view(&rec, StatusCode::OK))
}

/// Analyses a running or decided experiment from the event rollups. The
/// first look at which the primary metric is significant records the
/// significance date and the decision deadline a week later.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/experiments/{key}/results", tag = "experiments",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Experiment key")),
    responses((status = 200, body = Results), (status = 409, body = crate::error::Problem)))]
pub async fn results(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
) -> Result<Json<Results>, ApiError> {
    admin.require(Action::Read)?;
    let mut rec = state.store.get_experiment(&ws, &key).await?;
    let Some(started) = rec.started_at.as_deref().and_then(sextant_store::parse_time) else {
        return Err(StoreError::State {
            kind: sextant_store::Kind::Experiment,
            key,
            detail: "is a draft; results exist once it has started".into(),
        }
        .into());
    };
    let now = Utc::now();
    let end = rec
        .decided_at
        .as_deref()
        .and_then(sextant_store::parse_time)
        .unwrap_or(now);
    let range = HourRange {
        from: started.timestamp_millis().div_euclid(HOUR_MS),
        to: end.timestamp_millis().div_euclid(HOUR_MS) + 1,
    };
    let def = &rec.definition;
    let pre_hours = i64::from(def.pre_period_days) * 24;
    // With a pre-period one read per metric gives both: the sums after
    // exposure are `metric_breakdown`'s, the pre-period's come with them.
    let input = async |metric: &str| -> Result<MetricInput, ApiError> {
        let m = state.store.get_metric(&ws, metric).await?;
        let (sums, cuped) = if def.pre_period_days == 0 {
            let sums = state
                .store
                .metric_breakdown(&ws, &def.environment, metric, &def.flag, range)
                .await?;
            (sums, Err("no pre-period configured (pre_period_days = 0)".to_owned()))
        } else {
            let cuped = state
                .store
                .metric_breakdown_cuped(&ws, &def.environment, metric, &def.flag, range, pre_hours)
                .await?;
            let sums = cuped.iter().map(|(v, s)| (v.clone(), s.post)).collect();
            (sums, Ok(cuped))
        };
        Ok(MetricInput {
            metric: metric.to_owned(),
            aggregation: m.metric.aggregation,
            good_direction: m.metric.good_direction,
            sums,
            cuped,
        })
    };
    let primary = input(&def.primary_metric).await?;
    let mut guardrails = Vec::with_capacity(def.guardrails.len());
    for g in &def.guardrails {
        guardrails.push(input(g).await?);
    }
    let analysis = analyze(def, &primary, &guardrails);
    if rec.status == ExperimentStatus::Running && rec.significant_at.is_none() && analysis.primary_significant() {
        rec = state.store.mark_experiment_significant(&ws, &key, now).await?;
    }
    let decision_overdue = rec.status == ExperimentStatus::Running
        && rec
            .decide_by
            .as_deref()
            .and_then(sextant_store::parse_time)
            .is_some_and(|by| now > by);
    Ok(Json(Results {
        experiment: rec,
        analysis,
        decision_overdue,
    }))
}
