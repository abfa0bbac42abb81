//! Experiments: a flag's variations bound to arms, a primary metric,
//! guardrail metrics, a hypothesis, success criteria and a planned sample
//! size, frozen when the experiment starts.
//!
//! Lifecycle: `draft` → `running` → `decided` (ship, kill or iterate, with
//! a written learning). Only a draft's definition can change; the store
//! refuses to change a running or decided one, so a definition that was
//! analysed is the one that was pre-registered. The first time the primary
//! metric reaches significance is recorded once, with the deadline for a
//! decision a week later.
//!
//! The same on SQLite and PostgreSQL: the statements are written once
//! (`experiment_sql!`) and instantiated for each backend.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sextant_core::Flag;

use crate::alignment::NewLearning;
use crate::doc::{ColumnRead, NewChange, check_version, committed, corrupt, json, not_found, state_error};
use crate::error::{FieldError, Kind, Result, StoreError};
use crate::metrics::{Direction, MetricRecord, valid_key};
use crate::model::{ChangeMeta, Committed};
use crate::rollouts::format_time;
use crate::{Backend, Store};

/// How long after significance a decision is due.
pub const DECIDE_WITHIN_DAYS: i64 = 7;

/// What an experiment tests, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentDef {
    /// Key, unique in the workspace.
    pub key: String,
    /// Environment whose exposures decide membership.
    pub environment: String,
    /// The flag whose variations are the arms.
    pub flag: String,
    /// Human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arms, control first; each binds one variation with its configured
    /// traffic weight (any positive scale), the reference of the SRM check.
    pub arms: Vec<Arm>,
    /// The metric (a node of the metric tree) the hypothesis is about.
    pub primary_metric: String,
    /// Metrics that must not get worse.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// Expected direction and minimum effect on the primary metric.
    pub hypothesis: Hypothesis,
    /// What result counts as success, in words.
    pub success_criteria: String,
    /// Units (all arms) the experiment plans to expose; a fixed-horizon
    /// analysis reports significance only once it is reached.
    pub planned_sample_size: u64,
    /// Fixed horizon (p-values valid at the planned size) or sequential
    /// (always-valid p-values, any number of looks).
    #[serde(default)]
    pub analysis: AnalysisMethod,
    /// Significance level (default 0.05).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Days before each unit's first exposure used as the CUPED
    /// pre-period (0: no variance reduction).
    #[serde(default)]
    pub pre_period_days: u32,
}

fn default_alpha() -> f64 {
    0.05
}

/// One arm: a variation of the flag and its configured weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Variation key.
    pub variation: String,
    /// Configured share of traffic (relative; positive).
    pub weight: f64,
}

/// The pre-registered hypothesis about the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// Which way treatment is expected to move the primary metric.
    pub direction: Direction,
    /// Smallest relative change worth detecting (0.02 = 2%).
    pub minimum_effect: f64,
}

/// Which inference the analysis uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMethod {
    /// Classical tests, valid when read once at the planned sample size.
    #[default]
    FixedHorizon,
    /// Confidence sequences: valid at every look.
    Sequential,
}

impl ExperimentDef {
    /// Every problem of the definition against the flag and the workspace's
    /// metrics, with paths under `prefix`.
    pub fn problems(&self, flag: &Flag, metrics: &[MetricRecord], prefix: &str) -> Vec<FieldError> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(FieldError {
                field: format!("{prefix}{field}"),
                message,
            })
        };
        if !valid_key(&self.key) {
            bad(
                "/key",
                format!(
                    "`{}` is not a valid key: use 1-128 letters, digits, `.`, `_` or `-`",
                    self.key
                ),
            );
        }
        if self.arms.len() < 2 {
            bad(
                "/arms",
                "needs at least two arms (control first, then treatments)".into(),
            );
        }
        for (i, arm) in self.arms.iter().enumerate() {
            if !flag.variations.iter().any(|v| v.key == arm.variation) {
                bad(
                    &format!("/arms/{i}/variation"),
                    format!("flag `{}` has no variation `{}`", flag.key, arm.variation),
                );
            }
            if self.arms[..i].iter().any(|a| a.variation == arm.variation) {
                bad(
                    &format!("/arms/{i}/variation"),
                    format!("variation `{}` is already an arm", arm.variation),
                );
            }
            if !(arm.weight > 0.0 && arm.weight.is_finite()) {
                bad(&format!("/arms/{i}/weight"), "must be a positive number".into());
            }
        }
        let known = |k: &str| metrics.iter().any(|m| m.metric.key == k);
        if !known(&self.primary_metric) {
            bad(
                "/primary_metric",
                format!("no metric `{}` in the metric tree", self.primary_metric),
            );
        }
        for (i, g) in self.guardrails.iter().enumerate() {
            if !known(g) {
                bad(
                    &format!("/guardrails/{i}"),
                    format!("no metric `{g}` in the metric tree"),
                );
            } else if *g == self.primary_metric || self.guardrails[..i].contains(g) {
                bad(
                    &format!("/guardrails/{i}"),
                    format!("metric `{g}` is already the primary metric or a guardrail"),
                );
            }
        }
        if !(self.hypothesis.minimum_effect > 0.0 && self.hypothesis.minimum_effect.is_finite()) {
            bad(
                "/hypothesis/minimum_effect",
                "must be a positive relative change (0.02 = 2%)".into(),
            );
        }
        if self.success_criteria.trim().is_empty() {
            bad("/success_criteria", "must say what result counts as success".into());
        }
        if self.planned_sample_size < 2 * self.arms.len().max(2) as u64 {
            bad("/planned_sample_size", "must be at least two units per arm".into());
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            bad("/alpha", "must be between 0 and 0.5 (exclusive)".into());
        }
        if self.pre_period_days > 90 {
            bad("/pre_period_days", "must be at most 90".into());
        }
        out
    }
}

/// Where an experiment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    /// Being designed; the definition can change.
    Draft,
    /// Collecting data; the definition is frozen.
    Running,
    /// Ended with a decision and a learning.
    Decided,
}

impl ExperimentStatus {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Decided => "decided",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => ExperimentStatus::Draft,
            "running" => ExperimentStatus::Running,
            "decided" => ExperimentStatus::Decided,
            _ => return None,
        })
    }
}

/// How an experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Roll the treatment out.
    Ship,
    /// Remove the treatment.
    Kill,
    /// Change the idea and test again.
    Iterate,
}

impl Decision {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Ship => "ship",
            Decision::Kill => "kill",
            Decision::Iterate => "iterate",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ship" => Decision::Ship,
            "kill" => Decision::Kill,
            "iterate" => Decision::Iterate,
            _ => return None,
        })
    }
}

/// A stored experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentRecord {
    /// Workspace key.
    pub workspace: String,
    /// The definition (frozen once running).
    pub definition: ExperimentDef,
    /// Lifecycle status.
    pub status: ExperimentStatus,
    /// When it started.
    pub started_at: Option<String>,
    /// When the primary metric first reached significance.
    pub significant_at: Option<String>,
    /// The decision deadline: a week after significance.
    pub decide_by: Option<String>,
    /// Ship, kill or iterate.
    pub decision: Option<Decision>,
    /// What was learnt, written with the decision.
    pub learning: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl Store {
    /// Validates `def` against its flag and the metric tree.
    async fn check_experiment(&self, ws: &str, def: &ExperimentDef) -> Result<()> {
        let env_problem = match self.get_environment(ws, &def.environment).await {
            Err(StoreError::NotFound {
                kind: Kind::Environment,
                ..
            }) => Some(FieldError {
                field: "/experiment/environment".into(),
                message: format!("workspace `{ws}` has no environment `{}`", def.environment),
            }),
            Err(e) => return Err(e),
            Ok(_) => None,
        };
        let flag = match self.get_flag(ws, &def.flag).await {
            Ok(f) => f,
            Err(StoreError::NotFound { kind: Kind::Flag, .. }) => {
                return Err(StoreError::Invalid(vec![FieldError {
                    field: "/experiment/flag".into(),
                    message: format!("workspace `{ws}` has no flag `{}`", def.flag),
                }]));
            }
            Err(e) => return Err(e),
        };
        let metrics = self.list_metrics(ws).await?;
        let mut problems = def.problems(&flag.flag, &metrics, "/experiment");
        problems.extend(env_problem);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(problems))
        }
    }

    /// Creates an experiment as a draft.
    pub async fn create_experiment(
        &self,
        ws: &str,
        def: ExperimentDef,
        meta: &ChangeMeta,
    ) -> Result<Committed<ExperimentRecord>> {
        self.check_experiment(ws, &def).await?;
        on!(self, db => db.create_experiment(ws, &def, meta).await)
    }

    /// Replaces the definition of a draft. A running or decided
    /// experiment is refused ([`StoreError::State`]): its definition is frozen.
    pub async fn update_experiment(
        &self,
        ws: &str,
        key: &str,
        def: ExperimentDef,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<ExperimentRecord>> {
        if def.key != key {
            return Err(StoreError::Invalid(vec![FieldError {
                field: "/experiment/key".into(),
                message: format!("must be `{key}`, the key in the path (keys cannot change)"),
            }]));
        }
        self.check_experiment(ws, &def).await?;
        on!(self, db => db.update_experiment(ws, &def, expected, meta).await)
    }

    /// Replaces a *running* experiment's criteria (primary metric,
    /// guardrails, hypothesis, success criteria, planned sample size,
    /// analysis, name). Only applied from an approved `experiment.criteria`
    /// change request (`meta.approves`): the approval is marked in this
    /// write's transaction. The flag, environment and arms cannot change
    /// while units are assigned; a draft or decided experiment is refused.
    pub async fn amend_experiment_criteria(
        &self,
        ws: &str,
        key: &str,
        def: ExperimentDef,
        meta: &ChangeMeta,
    ) -> Result<Committed<ExperimentRecord>> {
        self.check_experiment_criteria(ws, key, &def).await?;
        let definition = json(&def).to_string();
        let check = |before: &ExperimentRecord| {
            if before.status != ExperimentStatus::Running {
                return Err(state_error(
                    Kind::Experiment,
                    key,
                    &format!(
                        "is {}; only a running experiment's criteria change by approval (a draft changes directly)",
                        before.status.as_str()
                    ),
                ));
            }
            Ok(("definition = $2", vec![definition]))
        };
        on!(self, db => db.experiment_transition(ws, key, None, meta, "criteria", None, check).await)
    }

    /// Validates new criteria for the running experiment `key` (what
    /// [`Store::amend_experiment_criteria`] checks), so a change request is
    /// refused when it is filed rather than when it is approved.
    pub async fn check_experiment_criteria(&self, ws: &str, key: &str, def: &ExperimentDef) -> Result<()> {
        let current = self.get_experiment(ws, key).await?;
        let mut problems = Vec::new();
        let fixed = [
            ("key", def.key == current.definition.key),
            ("flag", def.flag == current.definition.flag),
            ("environment", def.environment == current.definition.environment),
            ("arms", json(&def.arms) == json(&current.definition.arms)),
        ];
        for (field, same) in fixed {
            if !same {
                problems.push(FieldError {
                    field: format!("/experiment/{field}"),
                    message: format!("cannot change while experiment `{key}` runs; decide it and start a new one"),
                });
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Invalid(problems));
        }
        self.check_experiment(ws, def).await
    }

    /// The experiment `key` of `ws`.
    pub async fn get_experiment(&self, ws: &str, key: &str) -> Result<ExperimentRecord> {
        on!(self, db => db.get_experiment(ws, key).await)
    }

    /// The experiments of `ws`, optionally in one status, oldest first.
    pub async fn list_experiments(&self, ws: &str, status: Option<ExperimentStatus>) -> Result<Vec<ExperimentRecord>> {
        on!(self, db => db.list_experiments(ws, status).await)
    }

    /// Starts a draft: from now on its definition is frozen.
    pub async fn start_experiment(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<ExperimentRecord>> {
        let check = |before: &ExperimentRecord| {
            if before.status != ExperimentStatus::Draft {
                return Err(state_error(
                    Kind::Experiment,
                    key,
                    &format!("is {}; only a draft can start", before.status.as_str()),
                ));
            }
            Ok(("status = 'running', started_at = $1", Vec::new()))
        };
        on!(self, db => db.experiment_transition(ws, key, expected, meta, "start", None, check).await)
    }

    /// Ends a running experiment with `decision` and a written learning,
    /// which is kept with the experiment and appended to the learnings log
    /// in the same transaction: a decision never exists without its learning.
    pub async fn decide_experiment(
        &self,
        ws: &str,
        key: &str,
        decision: Decision,
        learning: &NewLearning,
        meta: &ChangeMeta,
    ) -> Result<Committed<ExperimentRecord>> {
        let learning = NewLearning {
            what: learning.what.trim().to_owned(),
            ..learning.clone()
        };
        if learning.what.is_empty() {
            return Err(StoreError::Invalid(vec![FieldError {
                field: "/learning".into(),
                message: "a decision needs a written learning".into(),
            }]));
        }
        let actor = meta.actor.clone();
        let what = learning.what.clone();
        let check = |before: &ExperimentRecord| {
            if before.status != ExperimentStatus::Running {
                return Err(state_error(
                    Kind::Experiment,
                    key,
                    &format!(
                        "is {}; only a running experiment can be decided",
                        before.status.as_str()
                    ),
                ));
            }
            Ok((
                "status = 'decided', decided_at = $1, decision = $2, learning = $3, decided_by = $4",
                vec![decision.as_str().to_owned(), what, actor],
            ))
        };
        on!(self, db => db.experiment_transition(ws, key, None, meta, "decide", Some(&learning), check).await)
    }

    /// Records that the primary metric reached significance at `at`, and
    /// the decision deadline a week later — once: later calls keep the
    /// first date. No audit entry (a derived fact, not a change by anyone).
    pub async fn mark_experiment_significant(
        &self,
        ws: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<ExperimentRecord> {
        on!(self, db => db.mark_experiment_significant(ws, key, at).await)
    }
}

// ------------------------------------------------------------------- SQL

const SELECT: &str = "SELECT x.*, w.key AS ws_key FROM experiments x JOIN workspaces w ON w.id = x.workspace_id";

fn from_row(row: &impl ColumnRead) -> Result<ExperimentRecord> {
    let definition: String = row.text("definition")?;
    let status: String = row.text("status")?;
    let decision: Option<String> = row.opt_text("decision")?;
    Ok(ExperimentRecord {
        workspace: row.text("ws_key")?,
        definition: serde_json::from_str(&definition).map_err(|e| corrupt("experiment definition", e))?,
        status: ExperimentStatus::parse(&status).ok_or_else(|| corrupt("experiment status", &status))?,
        started_at: row.opt_text("started_at")?,
        significant_at: row.opt_text("significant_at")?,
        decide_by: row.opt_text("decide_by")?,
        decision: decision
            .map(|d| Decision::parse(&d).ok_or_else(|| corrupt("experiment decision", &d)))
            .transpose()?,
        learning: row.opt_text("learning")?,
        decided_by: row.opt_text("decided_by")?,
        decided_at: row.opt_text("decided_at")?,
        version: row.int("version")?,
        created_at: row.text("created_at")?,
        updated_at: row.text("updated_at")?,
    })
}

/// The change record of an experiment write.
fn experiment_change<'a>(
    meta: &'a ChangeMeta,
    action: &'a str,
    ws: &'a str,
    before: Option<&ExperimentRecord>,
    after: &'a ExperimentRecord,
) -> NewChange<'a> {
    NewChange {
        meta,
        action,
        workspace: Some(ws),
        kind: Kind::Experiment,
        key: &after.definition.key,
        environment: Some(&after.definition.environment),
        before: before.map(json),
        after: Some(json(after)),
    }
}

/// The SQL of experiments for one backend, written once in the SQL both
/// dialects accept (see `rollout_sql!` in `rollouts.rs`); the third
/// argument is the backend's `insert_learning` (decisions' learnings).
macro_rules! experiment_sql {
    ($store:ty, $conn:ty, $insert_learning:path) => {
        impl $store {
            async fn create_experiment(
                &self,
                ws: &str,
                def: &ExperimentDef,
                meta: &ChangeMeta,
            ) -> Result<Committed<ExperimentRecord>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (ws_id, env_id) = Self::ids(&mut tx, ws, &def.environment).await?;
                if Self::experiment_row(&mut tx, ws_id, &def.key).await?.is_some() {
                    return Err(StoreError::Conflict {
                        kind: Kind::Experiment,
                        key: def.key.clone(),
                    });
                }
                sqlx::query(
                    "INSERT INTO experiments (workspace_id, key, environment_id, flag_key, definition, status,
                         version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'draft', 1, $6, $6)",
                )
                .bind(ws_id)
                .bind(&def.key)
                .bind(env_id)
                .bind(&def.flag)
                .bind(json(def).to_string())
                .bind(crate::now())
                .execute(&mut *tx)
                .await?;
                let after = Self::experiment_row(&mut tx, ws_id, &def.key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, &def.key))?;
                let change_id = Self::record(&mut tx, experiment_change(meta, "create", ws, None, &after)).await?;
                Self::finish(tx, committed(after, change_id)).await
            }

            async fn update_experiment(
                &self,
                ws: &str,
                def: &ExperimentDef,
                expected: Option<i64>,
                meta: &ChangeMeta,
            ) -> Result<Committed<ExperimentRecord>> {
                let key = def.key.as_str();
                let (_guard, mut tx) = self.begin_write().await?;
                let (ws_id, env_id) = Self::ids(&mut tx, ws, &def.environment).await?;
                let before = Self::experiment_row(&mut tx, ws_id, key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, key))?;
                check_version(expected, before.version)?;
                if before.status != ExperimentStatus::Draft {
                    return Err(state_error(
                        Kind::Experiment,
                        key,
                        &format!("is {}; its definition is frozen", before.status.as_str()),
                    ));
                }
                sqlx::query(
                    "UPDATE experiments SET environment_id = $1, flag_key = $2, definition = $3,
                         version = version + 1, updated_at = $4 WHERE workspace_id = $5 AND key = $6",
                )
                .bind(env_id)
                .bind(&def.flag)
                .bind(json(def).to_string())
                .bind(crate::now())
                .bind(ws_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
                let after = Self::experiment_row(&mut tx, ws_id, key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, key))?;
                let change = experiment_change(meta, "update", ws, Some(&before), &after);
                let change_id = Self::record(&mut tx, change).await?;
                Self::finish(tx, committed(after, change_id)).await
            }

            async fn get_experiment(&self, ws: &str, key: &str) -> Result<ExperimentRecord> {
                let mut conn = self.pool.acquire().await?;
                let ws_id = Self::ws_id(&mut conn, ws).await?;
                Self::experiment_row(&mut conn, ws_id, key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, key))
            }

            async fn list_experiments(
                &self,
                ws: &str,
                status: Option<ExperimentStatus>,
            ) -> Result<Vec<ExperimentRecord>> {
                let mut conn = self.pool.acquire().await?;
                let ws_id = Self::ws_id(&mut conn, ws).await?;
                // sql-format: `SELECT` is the fixed query constant; values are bound.
                let rows = sqlx::query(&format!(
                    "{SELECT} WHERE x.workspace_id = $1 AND ($2 IS NULL OR x.status = $2) ORDER BY x.id"
                ))
                .bind(ws_id)
                .bind(status.map(ExperimentStatus::as_str))
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(from_row).collect()
            }

            async fn mark_experiment_significant(
                &self,
                ws: &str,
                key: &str,
                at: DateTime<Utc>,
            ) -> Result<ExperimentRecord> {
                let (_guard, mut tx) = self.begin_write().await?;
                let ws_id = Self::ws_id(&mut tx, ws).await?;
                sqlx::query(
                    "UPDATE experiments SET significant_at = $1, decide_by = $2
                     WHERE workspace_id = $3 AND key = $4 AND status = 'running' AND significant_at IS NULL",
                )
                .bind(format_time(at))
                .bind(format_time(at + Duration::days(DECIDE_WITHIN_DAYS)))
                .bind(ws_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
                let rec = Self::experiment_row(&mut tx, ws_id, key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, key))?;
                tx.commit().await?;
                Ok(rec)
            }

            /// One audited status change: `set` is an SQL `SET` list whose `$1`
            /// is the time and `$2…` the returned values; `learning`, if any,
            /// joins the learnings log in the same transaction.
            #[expect(
                clippy::too_many_arguments,
                reason = "one private helper for every transition"
            )]
            async fn experiment_transition(
                &self,
                ws: &str,
                key: &str,
                expected: Option<i64>,
                meta: &ChangeMeta,
                action: &str,
                learning: Option<&NewLearning>,
                set: impl FnOnce(&ExperimentRecord) -> Result<(&'static str, Vec<String>)>,
            ) -> Result<Committed<ExperimentRecord>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let ws_id = Self::ws_id(&mut tx, ws).await?;
                let before = Self::experiment_row(&mut tx, ws_id, key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, key))?;
                check_version(expected, before.version)?;
                let (assignments, values) = set(&before)?;
                let n = values.len();
                // sql-format: `assignments` lists fixed column names from `set`; their values are bound.
                let sql = format!(
                    "UPDATE experiments SET {assignments}, version = version + 1, updated_at = $1
                     WHERE workspace_id = ${} AND key = ${}",
                    n + 2,
                    n + 3
                );
                let mut q = sqlx::query(&sql).bind(crate::now());
                for v in values {
                    q = q.bind(v);
                }
                q.bind(ws_id).bind(key).execute(&mut *tx).await?;
                let after = Self::experiment_row(&mut tx, ws_id, key)
                    .await?
                    .ok_or_else(|| not_found(Kind::Experiment, key))?;
                let change_id = Self::record(
                    &mut tx,
                    experiment_change(meta, action, ws, Some(&before), &after),
                )
                .await?;
                if let Some(l) = learning {
                    $insert_learning(&mut tx, ws, l, meta).await?;
                }
                Self::finish(tx, committed(after, change_id)).await
            }

            async fn experiment_row(conn: &mut $conn, ws_id: i64, key: &str) -> Result<Option<ExperimentRecord>> {
                // sql-format: `SELECT` is the fixed query constant; values are bound.
                sqlx::query(&format!("{SELECT} WHERE x.workspace_id = $1 AND x.key = $2"))
                    .bind(ws_id)
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await?
                    .as_ref()
                    .map(from_row)
                    .transpose()
            }
        }
    };
}

experiment_sql!(
    crate::sqlite::SqliteStore,
    sqlx::SqliteConnection,
    crate::sqlite::alignment::insert_learning
);
experiment_sql!(
    crate::postgres::PgStore,
    sqlx::PgConnection,
    crate::postgres::alignment::insert_learning
);
