//! The metric tree and initiatives: definitions stored per workspace.
//!
//! Invariants, checked in the store inside each write's transaction:
//! a workspace with metrics has exactly one North Star, which has no
//! parent; every other metric has a parent that exists; parents form no
//! cycle; a ratio metric divides two non-ratio metrics; a metric that is a
//! parent, a ratio component or an initiative's target cannot be deleted.
//! Every write is an admin mutation with a change record and audit entry.

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, Result, StoreError};
use crate::model::{ChangeMeta, Committed};
use crate::{Backend, Store};

/// How a metric turns a unit's events into one number per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Number of events (total over units).
    Count,
    /// Sum of event values (total over units).
    Sum,
    /// Sum of event values per unit, averaged over units.
    Mean,
    /// Share of units with at least one event.
    Conversion,
    /// Σ numerator metric / Σ denominator metric over units.
    Ratio,
}

impl Aggregation {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Mean => "mean",
            Aggregation::Conversion => "conversion",
            Aggregation::Ratio => "ratio",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "count" => Aggregation::Count,
            "sum" => Aggregation::Sum,
            "mean" => Aggregation::Mean,
            "conversion" => Aggregation::Conversion,
            "ratio" => Aggregation::Ratio,
            _ => return None,
        })
    }
}

/// Which way is good for a metric, or which way a change expects to move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Up is good / expected.
    Increase,
    /// Down is good / expected.
    Decrease,
}

impl Direction {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "increase" => Direction::Increase,
            "decrease" => Direction::Decrease,
            _ => return None,
        })
    }
}

/// A metric definition as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDef {
    /// Key, unique in the workspace.
    pub key: String,
    /// Display name.
    pub name: String,
    /// How events become a value.
    pub aggregation: Aggregation,
    /// The event counted (every aggregation but ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Ratio metrics: the numerator metric's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerator: Option<String>,
    /// Ratio metrics: the denominator metric's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<String>,
    /// Which way is good.
    pub good_direction: Direction,
    /// Unit of the value (`EUR`, `ms`, …), for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// What it measures and why it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Parent in the tree (`None` only for the North Star).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether this is the workspace's North Star.
    #[serde(default)]
    pub north_star: bool,
}

/// A stored metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRecord {
    /// The definition.
    #[serde(flatten)]
    pub metric: MetricDef,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// An initiative: a team declares which metric node it will move, which
/// way, by how much, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiativeDef {
    /// Key, unique in the workspace.
    pub key: String,
    /// Display name.
    pub name: String,
    /// The team doing it.
    pub team: String,
    /// The accountable person.
    pub owner: String,
    /// What and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The metric node it will move.
    pub metric: String,
    /// Which way.
    pub direction: Direction,
    /// Expected relative change, e.g. `0.05` for 5 %.
    pub expected_change: f64,
    /// First day (`YYYY-MM-DD`).
    pub starts_on: String,
    /// Last day (`YYYY-MM-DD`), not before `starts_on`.
    pub ends_on: String,
}

/// A stored initiative.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitiativeRecord {
    /// The definition.
    #[serde(flatten)]
    pub initiative: InitiativeDef,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

macro_rules! dispatch {
    ($self:ident, $db:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call,
        }
    };
}

impl Store {
    /// A workspace's metrics in creation order.
    pub async fn list_metrics(&self, ws: &str) -> Result<Vec<MetricRecord>> {
        dispatch!(self, db => db.list_metrics(ws).await)
    }

    /// One metric.
    pub async fn get_metric(&self, ws: &str, key: &str) -> Result<MetricRecord> {
        dispatch!(self, db => db.get_metric(ws, key).await)
    }

    /// Creates a metric. The first metric of a workspace must be its North
    /// Star; every later one needs an existing parent.
    pub async fn create_metric(&self, ws: &str, def: MetricDef, meta: &ChangeMeta) -> Result<Committed<MetricRecord>> {
        dispatch!(self, db => db.create_metric(ws, def, meta).await)
    }

    /// Replaces a metric's definition (not its key, nor whether it is the
    /// North Star: see [`Store::set_north_star`]). Rejects parent cycles.
    pub async fn update_metric(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        def: MetricDef,
        meta: &ChangeMeta,
    ) -> Result<Committed<MetricRecord>> {
        dispatch!(self, db => db.update_metric(ws, key, expected, def, meta).await)
    }

    /// Deletes a metric nothing depends on (no children, ratio or initiative).
    pub async fn delete_metric(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        dispatch!(self, db => db.delete_metric(ws, key, expected, meta).await)
    }

    /// Makes `key` the North Star: it loses its parent and the previous
    /// North Star becomes its child, so the tree stays one tree.
    pub async fn set_north_star(&self, ws: &str, key: &str, meta: &ChangeMeta) -> Result<Committed<MetricRecord>> {
        dispatch!(self, db => db.set_north_star(ws, key, meta).await)
    }

    /// A workspace's initiatives in creation order.
    pub async fn list_initiatives(&self, ws: &str) -> Result<Vec<InitiativeRecord>> {
        dispatch!(self, db => db.list_initiatives(ws).await)
    }

    /// One initiative.
    pub async fn get_initiative(&self, ws: &str, key: &str) -> Result<InitiativeRecord> {
        dispatch!(self, db => db.get_initiative(ws, key).await)
    }

    /// Creates or replaces an initiative (`create` = must not exist yet).
    pub async fn put_initiative(
        &self,
        ws: &str,
        def: InitiativeDef,
        create: bool,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<InitiativeRecord>> {
        dispatch!(self, db => db.put_initiative(ws, def, create, expected, meta).await)
    }

    /// Deletes an initiative.
    pub async fn delete_initiative(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        dispatch!(self, db => db.delete_initiative(ws, key, expected, meta).await)
    }
}

/// Longest accepted free text (names, descriptions, event names).
const MAX_TEXT: usize = 2000;

fn push(errors: &mut Vec<FieldError>, field: &str, message: impl Into<String>) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

/// Whether `key` is a valid key: 1–128 of `A-Za-z0-9._-`, starting alphanumeric.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_key(errors: &mut Vec<FieldError>, field: &str, key: &str) {
    if !valid_key(key) {
        push(
            errors,
            field,
            format!(
                "`{key}` is not a valid key: use 1-128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
            ),
        );
    }
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, text: &str, required: bool) {
    if required && text.trim().is_empty() {
        push(errors, field, "must not be empty");
    } else if text.len() > MAX_TEXT {
        push(errors, field, format!("must be at most {MAX_TEXT} bytes"));
    }
}

/// Checks a metric against the workspace's other metrics (`others`
/// excludes the metric itself). Reports every problem.
pub(crate) fn check_metric(def: &MetricDef, others: &[MetricRecord]) -> Result<()> {
    let mut errors = Vec::new();
    let find = |k: &str| others.iter().find(|m| m.metric.key == k);
    check_key(&mut errors, "/key", &def.key);
    check_text(&mut errors, "/name", &def.name, true);
    for (field, text) in [
        ("/unit", &def.unit),
        ("/description", &def.description),
        ("/owner", &def.owner),
    ] {
        if let Some(t) = text {
            check_text(&mut errors, field, t, false);
        }
    }
    if def.aggregation == Aggregation::Ratio {
        if def.event.is_some() {
            push(
                &mut errors,
                "/event",
                "a ratio metric has no event: it divides two metrics",
            );
        }
        for (field, part) in [("/numerator", &def.numerator), ("/denominator", &def.denominator)] {
            match part.as_deref() {
                None => push(&mut errors, field, "required for a ratio metric"),
                Some(k) if k == def.key => push(&mut errors, field, "a ratio cannot divide itself"),
                Some(k) => match find(k) {
                    None => push(&mut errors, field, format!("metric `{k}` does not exist")),
                    Some(m) if m.metric.aggregation == Aggregation::Ratio => push(
                        &mut errors,
                        field,
                        format!("`{k}` is itself a ratio; use a count, sum, mean or conversion metric"),
                    ),
                    Some(_) => {}
                },
            }
        }
    } else {
        match def.event.as_deref() {
            None => push(
                &mut errors,
                "/event",
                format!("required for a {} metric", def.aggregation.as_str()),
            ),
            Some(e) if e.is_empty() || e.len() > 200 || e.chars().any(char::is_control) => push(
                &mut errors,
                "/event",
                "must be 1-200 characters without control characters",
            ),
            Some(_) => {}
        }
        for (field, part) in [("/numerator", &def.numerator), ("/denominator", &def.denominator)] {
            if part.is_some() {
                push(
                    &mut errors,
                    field,
                    "only ratio metrics have a numerator and a denominator",
                );
            }
        }
    }
    if def.north_star {
        if def.parent.is_some() {
            push(
                &mut errors,
                "/parent",
                "the North Star is the root of the tree and has no parent",
            );
        }
        if let Some(ns) = others.iter().find(|m| m.metric.north_star) {
            push(
                &mut errors,
                "/north_star",
                format!(
                    "the workspace's North Star is `{}`; changing it is an irreversible change made with POST .../metrics/{{key}}/north-star",
                    ns.metric.key
                ),
            );
        }
    } else {
        match def.parent.as_deref() {
            None if others.is_empty() => push(
                &mut errors,
                "/north_star",
                "the first metric of a workspace must be its North Star (`north_star: true`)",
            ),
            None => push(&mut errors, "/parent", "every metric but the North Star has a parent"),
            Some(p) if p == def.key => push(&mut errors, "/parent", "a metric cannot be its own parent"),
            Some(p) if find(p).is_none() => push(&mut errors, "/parent", format!("metric `{p}` does not exist")),
            Some(p) => {
                // Walk up from the new parent; reaching this metric is a cycle.
                let mut path = vec![def.key.clone(), p.to_owned()];
                let mut at = find(p).and_then(|m| m.metric.parent.clone());
                while let Some(k) = at {
                    path.push(k.clone());
                    if k == def.key {
                        push(
                            &mut errors,
                            "/parent",
                            format!("would create a cycle: {}", path.join(" → ")),
                        );
                        break;
                    }
                    if path.len() > others.len() + 2 {
                        break;
                    }
                    at = find(&k).and_then(|m| m.metric.parent.clone());
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(errors))
    }
}

/// Why a metric cannot be deleted, if anything depends on it.
pub(crate) fn check_metric_delete(key: &str, all: &[MetricRecord], initiatives: &[InitiativeRecord]) -> Result<()> {
    let mut errors = Vec::new();
    let this = all.iter().find(|m| m.metric.key == key);
    if this.is_some_and(|m| m.metric.north_star) && all.len() > 1 {
        push(
            &mut errors,
            "/key",
            "the North Star cannot be deleted while other metrics exist; make another metric the North Star first",
        );
    }
    let children: Vec<&str> = all
        .iter()
        .filter(|m| m.metric.parent.as_deref() == Some(key))
        .map(|m| m.metric.key.as_str())
        .collect();
    if !children.is_empty() {
        push(
            &mut errors,
            "/key",
            format!("metrics {children:?} have it as parent; move them first"),
        );
    }
    let ratios: Vec<&str> = all
        .iter()
        .filter(|m| m.metric.numerator.as_deref() == Some(key) || m.metric.denominator.as_deref() == Some(key))
        .map(|m| m.metric.key.as_str())
        .collect();
    if !ratios.is_empty() {
        push(&mut errors, "/key", format!("ratio metrics {ratios:?} use it"));
    }
    let users: Vec<&str> = initiatives
        .iter()
        .filter(|i| i.initiative.metric == key)
        .map(|i| i.initiative.key.as_str())
        .collect();
    if !users.is_empty() {
        push(&mut errors, "/key", format!("initiatives {users:?} target it"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(errors))
    }
}

/// Checks an initiative against the workspace's metrics.
pub(crate) fn check_initiative(def: &InitiativeDef, metrics: &[MetricRecord]) -> Result<()> {
    let mut errors = Vec::new();
    check_key(&mut errors, "/key", &def.key);
    check_text(&mut errors, "/name", &def.name, true);
    check_text(&mut errors, "/team", &def.team, true);
    check_text(&mut errors, "/owner", &def.owner, true);
    if let Some(d) = &def.description {
        check_text(&mut errors, "/description", d, false);
    }
    if !metrics.iter().any(|m| m.metric.key == def.metric) {
        push(
            &mut errors,
            "/metric",
            format!("metric `{}` does not exist", def.metric),
        );
    }
    if !(def.expected_change.is_finite() && def.expected_change > 0.0) {
        push(
            &mut errors,
            "/expected_change",
            "must be a positive relative change such as 0.05 (5 %); the sign is `direction`",
        );
    }
    let day = |field: &str, s: &str, errors: &mut Vec<FieldError>| {
        let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        if d.is_none() {
            push(errors, field, format!("`{s}` is not a date such as 2026-03-31"));
        }
        d
    };
    let start = day("/starts_on", &def.starts_on, &mut errors);
    let end = day("/ends_on", &def.ends_on, &mut errors);
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        push(&mut errors, "/ends_on", "must not be before starts_on");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(errors))
    }
}
