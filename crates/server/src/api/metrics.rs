//! The metric tree: metric definitions, the North Star, initiatives, and
//! metric values (tree with trend, time series, breakdown by variation)
//! computed in SQL as per-unit sufficient statistics.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sextant_stats::{ProportionStats, RatioStats, SufficientStats};
use sextant_store::{
    Aggregation, Direction, HOUR_MS, HourRange, InitiativeDef, InitiativeRecord, MetricDef, MetricRecord, UnitSums,
};
use utoipa::{IntoParams, ToSchema};

use super::{List, ReasonQuery, change_meta, check, if_match, versioned};
use crate::auth::{Action, Admin};
use crate::error::{ApiError, ApiJson, ApiQuery, Code};
use crate::state::AppState;

/// The metrics router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/metrics/tree", get(tree))
        .route("/api/v1/workspaces/{ws}/metrics", get(list_metrics).post(create_metric))
        .route(
            "/api/v1/workspaces/{ws}/metrics/{key}",
            get(get_metric).put(update_metric).delete(delete_metric),
        )
        .route("/api/v1/workspaces/{ws}/metrics/{key}/north-star", post(set_north_star))
        .route("/api/v1/workspaces/{ws}/metrics/{key}/series", get(series))
        .route("/api/v1/workspaces/{ws}/metrics/{key}/breakdown", get(breakdown))
        .route(
            "/api/v1/workspaces/{ws}/initiatives",
            get(list_initiatives).post(create_initiative),
        )
        .route(
            "/api/v1/workspaces/{ws}/initiatives/{key}",
            get(get_initiative).put(update_initiative).delete(delete_initiative),
        )
}

// ---------------------------------------------------------------- values

/// A metric's value over a range with the sufficient statistics behind it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Value {
    /// The metric's value (count, sum, mean, conversion rate or ratio);
    /// `null` when no unit was active.
    pub value: Option<f64>,
    /// Units in the population.
    pub units: u64,
    /// Per-unit sufficient statistics, shaped as `sextant_stats`'s
    /// `SufficientStats` (count, sum, mean), `ProportionStats`
    /// (conversion) or `RatioStats` (ratio).
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
}

pub(crate) fn value_of(aggregation: Aggregation, s: &UnitSums) -> Value {
    let n = s.n as f64;
    let value = match aggregation {
        _ if s.n == 0 => None,
        Aggregation::Count | Aggregation::Sum => Some(s.sum),
        Aggregation::Mean | Aggregation::Conversion => Some(s.sum / n),
        Aggregation::Ratio if s.sum_den == 0.0 => None,
        Aggregation::Ratio => Some(s.sum / s.sum_den),
    };
    // Unvalidated on purpose: a display of the sums; analyses call `new`.
    let stats = match aggregation {
        Aggregation::Conversion => serde_json::to_value(ProportionStats {
            n: s.n,
            conversions: s.sum.round().max(0.0) as u64,
        }),
        Aggregation::Ratio => serde_json::to_value(RatioStats {
            n: s.n,
            sum_num: s.sum,
            sum_num_sq: s.sum_sq,
            sum_den: s.sum_den,
            sum_den_sq: s.sum_den_sq,
            sum_num_den: s.sum_cross,
        }),
        _ => serde_json::to_value(SufficientStats {
            n: s.n,
            sum: s.sum,
            sum_sq: s.sum_sq,
        }),
    }
    .unwrap_or_default();
    Value {
        value,
        units: s.n,
        stats,
    }
}

fn rfc3339(hour: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(hour.saturating_mul(HOUR_MS))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::new(Code::QueryInvalid, format!("`{field}={s}` is not an RFC 3339 time")))
}

/// `24h`, `7d`, … in hours.
fn parse_window(s: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::new(
            Code::QueryInvalid,
            format!("`window={s}` is not a window such as 24h or 7d"),
        )
    };
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| bad())?;
    let hours = match unit {
        "h" => n,
        "d" => n.saturating_mul(24),
        _ => return Err(bad()),
    };
    if !(1..=24 * 366).contains(&hours) {
        return Err(ApiError::new(
            Code::QueryInvalid,
            "`window` must be between 1h and 366d",
        ));
    }
    Ok(hours)
}

/// The hour containing `t`, plus one: ranges end after the current hour.
fn hour_end(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis().div_euclid(HOUR_MS) + 1
}

/// `?workspace=&environment=&window=&at=` of the tree.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TreeQuery {
    /// Workspace key (default `default`).
    pub workspace: Option<String>,
    /// Environment key (default `production`).
    pub environment: Option<String>,
    /// Current window, e.g. `24h` or `7d` (default `7d`); the trend compares
    /// it with the window before.
    pub window: Option<String>,
    /// End of the current window, RFC 3339 (default now).
    pub at: Option<String>,
}

/// Which way a value moved, and whether that is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Moved in the good direction.
    Improving,
    /// Moved in the bad direction.
    Worsening,
    /// Did not move.
    Flat,
    /// No value in one of the windows.
    Unknown,
}

/// A node of the metric tree with its current value and trend.
#[derive(Debug, Serialize, ToSchema)]
pub struct TreeNode {
    /// The definition.
    #[schema(value_type = Object)]
    pub metric: MetricDef,
    /// Over the current window.
    pub current: Value,
    /// Over the window before.
    pub previous: Value,
    /// Relative change current / previous − 1 (`null` without both values).
    pub change: Option<f64>,
    /// Direction judged against `good_direction`.
    pub trend: Trend,
    /// Initiatives declaring they will move this node.
    pub initiatives: Vec<String>,
    /// Children in the tree.
    #[schema(no_recursion)]
    pub children: Vec<TreeNode>,
}

/// The metric tree.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tree {
    /// Workspace key.
    pub workspace: String,
    /// Environment the values come from.
    pub environment: String,
    /// Current window start (RFC 3339).
    pub from: String,
    /// Current window end (exclusive).
    pub to: String,
    /// The North Star and everything under it (`null`: no metrics yet).
    pub north_star: Option<TreeNode>,
}

fn trend(direction: Direction, current: Option<f64>, previous: Option<f64>) -> (Option<f64>, Trend) {
    let (Some(c), Some(p)) = (current, previous) else {
        return (None, Trend::Unknown);
    };
    let change = if p != 0.0 { Some(c / p - 1.0) } else { None };
    let t = if c == p {
        Trend::Flat
    } else if (c > p) == (direction == Direction::Increase) {
        Trend::Improving
    } else {
        Trend::Worsening
    };
    (change, t)
}

/// The metric tree with each node's value over the window and its trend
/// against the window before.
#[utoipa::path(get, path = "/api/v1/metrics/tree", tag = "metrics", params(TreeQuery),
    responses((status = 200, body = Tree), (status = 404, body = crate::error::Problem)))]
pub async fn tree(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<TreeQuery>,
) -> Result<Json<Tree>, ApiError> {
    admin.require(Action::Read)?;
    let ws = q.workspace.unwrap_or_else(|| "default".into());
    let env = q.environment.unwrap_or_else(|| "production".into());
    let window = parse_window(q.window.as_deref().unwrap_or("7d"))?;
    let at =
        q.at.as_deref()
            .map(|s| parse_time("at", s))
            .transpose()?
            .unwrap_or_else(Utc::now);
    let to = hour_end(at);
    let current = HourRange { from: to - window, to };
    let store = &state.store;
    store.get_environment(&ws, &env).await?;
    let metrics = store.list_metrics(&ws).await?;
    let initiatives = store.list_initiatives(&ws).await?;
    let mut nodes = std::collections::HashMap::new();
    // Every node's current and previous window in one pass over the rollups.
    let keys: Vec<&str> = metrics.iter().map(|m| m.metric.key.as_str()).collect();
    let all = store.metric_windows_of(&ws, &env, &keys, to, window, 2).await?;
    for (m, sums) in metrics.iter().zip(all) {
        let key = &m.metric.key;
        let agg = m.metric.aggregation;
        let prev = value_of(agg, &sums[0]);
        let cur = value_of(agg, &sums[1]);
        let (change, trend) = trend(m.metric.good_direction, cur.value, prev.value);
        nodes.insert(
            key.clone(),
            TreeNode {
                metric: m.metric.clone(),
                current: cur,
                previous: prev,
                change,
                trend,
                initiatives: initiatives
                    .iter()
                    .filter(|i| i.initiative.metric == *key)
                    .map(|i| i.initiative.key.clone())
                    .collect(),
                children: Vec::new(),
            },
        );
    }
    // Attach children deepest first (the store guarantees one tree).
    let depth = |m: &MetricRecord| {
        let mut d = 0;
        let mut at = m.metric.parent.clone();
        while let Some(p) = at {
            d += 1;
            at = metrics
                .iter()
                .find(|x| x.metric.key == p)
                .and_then(|x| x.metric.parent.clone());
            if d > metrics.len() {
                break;
            }
        }
        d
    };
    let mut order: Vec<&MetricRecord> = metrics.iter().collect();
    order.sort_by_key(|m| std::cmp::Reverse(depth(m)));
    for m in order {
        if let Some(parent) = &m.metric.parent
            && let Some(node) = nodes.remove(&m.metric.key)
            && let Some(p) = nodes.get_mut(parent)
        {
            p.children.insert(0, node);
        }
    }
    let north_star = metrics
        .iter()
        .find(|m| m.metric.north_star)
        .and_then(|m| nodes.remove(&m.metric.key));
    Ok(Json(Tree {
        workspace: ws,
        environment: env,
        from: rfc3339(current.from),
        to: rfc3339(current.to),
        north_star,
    }))
}

/// `?environment=&granularity=&from=&to=` of a series.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// Environment key (default `production`).
    pub environment: Option<String>,
    /// `hour` or `day` (default `day`).
    pub granularity: Option<String>,
    /// Start, RFC 3339 (default 30 days before `to`).
    pub from: Option<String>,
    /// End, RFC 3339 (default now).
    pub to: Option<String>,
}

/// One point of a series.
#[derive(Debug, Serialize, ToSchema)]
pub struct Point {
    /// Bucket start (RFC 3339).
    pub start: String,
    /// The value in the bucket.
    #[serde(flatten)]
    pub value: Value,
}

/// A metric's time series.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    /// Metric key.
    pub metric: String,
    /// Environment.
    pub environment: String,
    /// `hour` or `day`.
    pub granularity: String,
    /// Buckets with activity, oldest first.
    pub points: Vec<Point>,
}

fn range(from: Option<&str>, to: Option<&str>) -> Result<HourRange, ApiError> {
    let to_t = to.map(|s| parse_time("to", s)).transpose()?.unwrap_or_else(Utc::now);
    let to_h = hour_end(to_t);
    let from_h = match from {
        Some(s) => parse_time("from", s)?.timestamp_millis().div_euclid(HOUR_MS),
        None => to_h - 30 * 24,
    };
    if from_h >= to_h {
        return Err(ApiError::new(Code::QueryInvalid, "`from` must be before `to`"));
    }
    if to_h - from_h > 24 * 3660 {
        return Err(ApiError::new(
            Code::QueryInvalid,
            "the range may span at most ten years",
        ));
    }
    Ok(HourRange { from: from_h, to: to_h })
}

/// A metric's values per hour or day.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/metrics/{key}/series", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Metric key"), SeriesQuery),
    responses((status = 200, body = Series), (status = 404, body = crate::error::Problem)))]
pub async fn series(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Json<Series>, ApiError> {
    admin.require(Action::Read)?;
    let env = q.environment.unwrap_or_else(|| "production".into());
    let granularity = q.granularity.unwrap_or_else(|| "day".into());
    let bucket = match granularity.as_str() {
        "hour" => 1,
        "day" => 24,
        other => {
            return Err(ApiError::new(
                Code::QueryInvalid,
                format!("`granularity={other}`: use hour or day"),
            ));
        }
    };
    let r = range(q.from.as_deref(), q.to.as_deref())?;
    let metric = state.store.get_metric(&ws, &key).await?;
    let rows = state.store.metric_series(&ws, &env, &key, r, bucket).await?;
    Ok(Json(Series {
        metric: key,
        environment: env,
        granularity,
        points: rows
            .into_iter()
            .map(|(h, s)| Point {
                start: rfc3339(h),
                value: value_of(metric.metric.aggregation, &s),
            })
            .collect(),
    }))
}

/// `?environment=&flag=&from=&to=` of a breakdown.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BreakdownQuery {
    /// Environment key (default `production`).
    pub environment: Option<String>,
    /// The flag whose variations split the units.
    pub flag: String,
    /// Start, RFC 3339 (default 30 days before `to`).
    pub from: Option<String>,
    /// End, RFC 3339 (default now).
    pub to: Option<String>,
}

/// A metric per variation of a flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct Breakdown {
    /// Metric key.
    pub metric: String,
    /// Flag key.
    pub flag: String,
    /// Environment.
    pub environment: String,
    /// One entry per variation units were exposed to.
    pub variations: Vec<VariationValue>,
}

/// The metric among units first exposed to one variation.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariationValue {
    /// Variation key.
    pub variation: String,
    /// The value and its sufficient statistics.
    #[serde(flatten)]
    pub value: Value,
}

/// A metric broken down by the variation each unit was first exposed to.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/metrics/{key}/breakdown", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Metric key"), BreakdownQuery),
    responses((status = 200, body = Breakdown), (status = 404, body = crate::error::Problem)))]
pub async fn breakdown(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<BreakdownQuery>,
) -> Result<Json<Breakdown>, ApiError> {
    admin.require(Action::Read)?;
    let env = q.environment.unwrap_or_else(|| "production".into());
    let r = range(q.from.as_deref(), q.to.as_deref())?;
    let metric = state.store.get_metric(&ws, &key).await?;
    let rows = state.store.metric_breakdown(&ws, &env, &key, &q.flag, r).await?;
    Ok(Json(Breakdown {
        metric: key,
        flag: q.flag,
        environment: env,
        variations: rows
            .into_iter()
            .map(|(variation, s)| VariationValue {
                variation,
                value: value_of(metric.metric.aggregation, &s),
            })
            .collect(),
    }))
}

// ----------------------------------------------------------- definitions

/// A stored metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricView {
    /// The definition.
    #[schema(value_type = Object)]
    pub metric: MetricDef,
    /// Version, for `If-Match`.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<MetricRecord> for MetricView {
    fn from(r: MetricRecord) -> Self {
        MetricView {
            metric: r.metric,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A metric to create or store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricBody {
    /// `key`, `name`, `aggregation` (count | sum | mean | conversion | ratio),
    /// `event` (or `numerator` + `denominator` for ratio), `good_direction`
    /// (increase | decrease), `unit`, `description`, `owner`, `parent`, `north_star`.
    #[schema(value_type = Object)]
    pub metric: MetricDef,
    /// Why.
    pub reason: Option<String>,
}

/// Lists a workspace's metrics.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/metrics", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = List<MetricView>)))]
pub async fn list_metrics(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<List<MetricView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state
        .store
        .list_metrics(&ws)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(List { items }))
}

/// Creates a metric (engineer, product, admin; the North Star: admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/metrics", tag = "metrics", request_body = MetricBody,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = MetricView), (status = 409, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn create_metric(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<MetricBody>,
) -> Result<Response, ApiError> {
    admin.require(if body.metric.north_star {
        Action::ChangeNorthStar
    } else {
        Action::EditMetrics
    })?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state.commit(state.store.create_metric(&ws, body.metric, &meta)).await?;
    Ok(versioned(StatusCode::CREATED, rec.version, &MetricView::from(rec)))
}

/// Reads a metric.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/metrics/{key}", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Metric key")),
    responses((status = 200, body = MetricView), (status = 404, body = crate::error::Problem)))]
pub async fn get_metric(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let rec = state.store.get_metric(&ws, &key).await?;
    Ok(versioned(StatusCode::OK, rec.version, &MetricView::from(rec)))
}

/// Replaces a metric (engineer, product, admin). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/metrics/{key}", tag = "metrics", request_body = MetricBody,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Metric key")),
    responses((status = 200, body = MetricView), (status = 412, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn update_metric(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MetricBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditMetrics)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.update_metric(&ws, &key, expected, body.metric, &meta))
        .await?;
    Ok(versioned(StatusCode::OK, rec.version, &MetricView::from(rec)))
}

/// Deletes a metric nothing depends on (engineer, product, admin).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/metrics/{key}", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Metric key"), ReasonQuery),
    responses((status = 204), (status = 422, body = crate::error::Problem)))]
pub async fn delete_metric(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::EditMetrics)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state
        .commit(state.store.delete_metric(&ws, &key, expected, &meta))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reason for a change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why; recorded in the audit log.
    pub reason: Option<String>,
}

/// Makes a metric the North Star (admin). The previous North Star becomes
/// its child. Changing an existing North Star is irreversible: `202` with a
/// `north_star.update` change request that another product or admin person
/// approves; naming the first one applies at once.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/metrics/{key}/north-star", tag = "metrics",
    request_body = ReasonBody,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Metric key")),
    responses((status = 200, body = MetricView), (status = 202, body = Object),
              (status = 403, body = crate::error::Problem)))]
pub async fn set_north_star(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::ChangeNorthStar)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason.clone(), &mut errors);
    check(errors)?;
    let target = state.store.get_metric(&ws, &key).await?;
    let current = state
        .store
        .list_metrics(&ws)
        .await?
        .into_iter()
        .find(|m| m.metric.north_star);
    if let Some(current) = current
        && current.metric.key != target.metric.key
    {
        let request = sextant_store::NewChangeRequest {
            action: "north_star.update".into(),
            kind: "metric".into(),
            key: key.clone(),
            environment: None,
            payload: Some(serde_json::json!({"from": current.metric.key, "to": key})),
            reverts_change_id: None,
        };
        return super::changes::file(&state, &admin, &ws, request, body.reason).await;
    }
    let rec = state.commit(state.store.set_north_star(&ws, &key, &meta)).await?;
    Ok(versioned(StatusCode::OK, rec.version, &MetricView::from(rec)))
}

// ----------------------------------------------------------- initiatives

/// A stored initiative.
#[derive(Debug, Serialize, ToSchema)]
pub struct InitiativeView {
    /// The definition.
    #[schema(value_type = Object)]
    pub initiative: InitiativeDef,
    /// Version, for `If-Match`.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<InitiativeRecord> for InitiativeView {
    fn from(r: InitiativeRecord) -> Self {
        InitiativeView {
            initiative: r.initiative,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// An initiative to create or store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiativeBody {
    /// `key`, `name`, `team`, `owner`, `description`, `metric`, `direction`,
    /// `expected_change` (relative, e.g. 0.05), `starts_on`, `ends_on`.
    #[schema(value_type = Object)]
    pub initiative: InitiativeDef,
    /// Why.
    pub reason: Option<String>,
}

/// Lists a workspace's initiatives.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/initiatives", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key")), responses((status = 200, body = List<InitiativeView>)))]
pub async fn list_initiatives(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
) -> Result<Json<List<InitiativeView>>, ApiError> {
    admin.require(Action::Read)?;
    let items = state
        .store
        .list_initiatives(&ws)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(List { items }))
}

/// Creates an initiative (engineer, product, admin).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/initiatives", tag = "metrics", request_body = InitiativeBody,
    params(("ws" = String, Path, description = "Workspace key")),
    responses((status = 201, body = InitiativeView), (status = 422, body = crate::error::Problem)))]
pub async fn create_initiative(
    State(state): State<AppState>,
    admin: Admin,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<InitiativeBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditMetrics)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.put_initiative(&ws, body.initiative, true, None, &meta))
        .await?;
    Ok(versioned(StatusCode::CREATED, rec.version, &InitiativeView::from(rec)))
}

/// Reads an initiative.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/initiatives/{key}", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Initiative key")),
    responses((status = 200, body = InitiativeView), (status = 404, body = crate::error::Problem)))]
pub async fn get_initiative(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.require(Action::Read)?;
    let rec = state.store.get_initiative(&ws, &key).await?;
    Ok(versioned(StatusCode::OK, rec.version, &InitiativeView::from(rec)))
}

/// Replaces an initiative (engineer, product, admin). Honours `If-Match`.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/initiatives/{key}", tag = "metrics", request_body = InitiativeBody,
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Initiative key")),
    responses((status = 200, body = InitiativeView), (status = 412, body = crate::error::Problem)))]
pub async fn update_initiative(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InitiativeBody>,
) -> Result<Response, ApiError> {
    admin.require(Action::EditMetrics)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    if body.initiative.key != key {
        errors.push(sextant_store::FieldError {
            field: "/initiative/key".into(),
            message: format!("must be `{key}`, the initiative in the path"),
        });
    }
    let meta = change_meta(&admin, body.reason, &mut errors);
    check(errors)?;
    let rec = state
        .commit(state.store.put_initiative(&ws, body.initiative, false, expected, &meta))
        .await?;
    Ok(versioned(StatusCode::OK, rec.version, &InitiativeView::from(rec)))
}

/// Deletes an initiative (engineer, product, admin).
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/initiatives/{key}", tag = "metrics",
    params(("ws" = String, Path, description = "Workspace key"), ("key" = String, Path, description = "Initiative key"), ReasonQuery),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn delete_initiative(
    State(state): State<AppState>,
    admin: Admin,
    Path((ws, key)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<StatusCode, ApiError> {
    admin.require(Action::EditMetrics)?;
    let expected = if_match(&headers)?;
    let mut errors = Vec::new();
    let meta = change_meta(&admin, q.reason, &mut errors);
    check(errors)?;
    state
        .commit(state.store.delete_initiative(&ws, &key, expected, &meta))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
