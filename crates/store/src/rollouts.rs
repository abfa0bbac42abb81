//! Progressive delivery: rollout plans, scheduled changes and the restore
//! events (kills and automatic rollbacks) DORA's time to restore counts.
//!
//! A plan belongs to one flag in one environment. It rolls the flag's
//! `treatment` variation out against its `control` variation by rewriting
//! the environment's default serve as a two-arm split with a fixed seed
//! (`rollout:<flag>`), treatment last. A unit's bucket depends only on the
//! seed and the unit, so raising the treatment weight only moves units from
//! control to treatment, never back.
//!
//! Flag writes go through the ordinary flag update (validated, versioned,
//! audited, published); plan progress is a separate row. The two are not
//! one transaction, so every flag write here is idempotent (writing the
//! weight the flag already has is a no-op) and the scheduler reconciles a
//! plan whose flag was turned off behind its back: a crash between the two
//! writes is repaired on the next evaluation, never left half-applied.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sextant_core::{Direction, Flag, Serve, Split, Targeting, WEIGHT_SCALE, Weight};
use sqlx::Row;

use crate::doc::{ColumnRead, NewChange, check_version, committed, corrupt, json, not_found, state_error};
use crate::error::{FieldError, Kind, Result, StoreError};
use crate::model::{ChangeMeta, Committed, FlagRecord};
use crate::{Backend, Store};

/// Formats a time the way every stored timestamp is written (RFC 3339,
/// UTC, milliseconds), so stored times compare correctly as text.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// A staged rollout of one variation against another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// The variation units get until the rollout reaches them.
    pub control: String,
    /// The variation being rolled out.
    pub treatment: String,
    /// Stages in increasing order of exposure.
    pub stages: Vec<Stage>,
    /// Metrics that must not degrade beyond their tolerance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<Guardrail>,
    /// What the scheduler does when a guardrail is breached.
    #[serde(default)]
    pub on_breach: BreachAction,
    /// When the scheduler may act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Attributes tried in order for the bucketing unit; empty = targeting key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_by: Vec<String>,
}

/// One stage: a share of units on treatment, held for at least a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Percentage of units on treatment (0.001 to 100, in steps of 0.001).
    pub percent: f64,
    /// Minimum time at this stage before the next, in seconds.
    #[serde(default)]
    pub min_hold_seconds: u64,
}

impl Stage {
    /// The treatment weight in parts per 100,000.
    pub fn weight(&self) -> u32 {
        (self.percent * 1000.0).round().clamp(0.0, f64::from(WEIGHT_SCALE)) as u32
    }
}

/// A metric that must not get worse than `tolerance` under treatment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrail {
    /// Metric key (a node of the metric tree).
    pub metric: String,
    /// The good direction of the metric.
    pub direction: Direction,
    /// Tolerated degradation, in the metric's units (treatment − control), ≥ 0.
    #[serde(default)]
    pub tolerance: f64,
}

/// The action on a guardrail breach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    /// Stop advancing and hold the current stage until a person resumes.
    #[default]
    Pause,
    /// Put every unit back on control (treatment weight 0).
    Rollback,
}

/// When the scheduler may advance a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Not before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Only advance within these hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHours>,
}

impl Schedule {
    /// Whether the scheduler may advance at `now`. Guardrail breaches are
    /// acted on at any time; only advancing waits for the schedule.
    pub fn allows(&self, now: DateTime<Utc>) -> bool {
        let started = self
            .start_at
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|start| now >= start);
        started && self.business_hours.as_ref().is_none_or(|h| h.contains(now))
    }
}

/// Working hours in a fixed UTC offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// Working days (`mon` … `sun`); default Monday to Friday.
    #[serde(default = "weekdays")]
    pub days: Vec<Day>,
    /// Opening time, `HH:MM`.
    pub from: String,
    /// Closing time, `HH:MM` (exclusive).
    pub to: String,
    /// Offset of local time from UTC, in minutes (e.g. 60 for UTC+1).
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

fn weekdays() -> Vec<Day> {
    vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri]
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[expect(missing_docs, reason = "the names are the days")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Minutes since midnight of `HH:MM`.
fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl BusinessHours {
    /// Whether `t` falls within the hours.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t + chrono::Duration::minutes(i64::from(self.utc_offset_minutes));
        let day = match local.weekday() {
            chrono::Weekday::Mon => Day::Mon,
            chrono::Weekday::Tue => Day::Tue,
            chrono::Weekday::Wed => Day::Wed,
            chrono::Weekday::Thu => Day::Thu,
            chrono::Weekday::Fri => Day::Fri,
            chrono::Weekday::Sat => Day::Sat,
            chrono::Weekday::Sun => Day::Sun,
        };
        let now = local.hour() * 60 + local.minute();
        match (minutes(&self.from), minutes(&self.to)) {
            (Some(from), Some(to)) => self.days.contains(&day) && from <= now && now < to,
            _ => false,
        }
    }
}

impl RolloutPlan {
    /// Every problem of the plan for `flag`, as field errors under `prefix`.
    pub fn problems(&self, flag: &Flag, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: String, message: String| {
            errors.push(FieldError {
                field: format!("{prefix}{field}"),
                message,
            })
        };
        for (field, variation) in [("/control", &self.control), ("/treatment", &self.treatment)] {
            if !flag.variations.iter().any(|v| v.key == *variation) {
                err(
                    field.into(),
                    format!("flag `{}` has no variation `{variation}`", flag.key),
                );
            }
        }
        if self.control == self.treatment {
            err("/treatment".into(), "must differ from `control`".into());
        }
        if self.stages.is_empty() {
            err("/stages".into(), "needs at least one stage".into());
        }
        let mut last = 0;
        for (i, stage) in self.stages.iter().enumerate() {
            let p = stage.percent;
            if !(p.is_finite() && p > 0.0 && p <= 100.0) {
                err(format!("/stages/{i}/percent"), format!("{p} is not in (0, 100]"));
            } else if ((p * 1000.0).round() - p * 1000.0).abs() > 1e-6 {
                err(format!("/stages/{i}/percent"), format!("{p} is finer than 0.001%"));
            } else if stage.weight() <= last {
                err(format!("/stages/{i}/percent"), "stages must increase strictly".into());
            } else {
                last = stage.weight();
            }
        }
        for (i, g) in self.guardrails.iter().enumerate() {
            if g.metric.trim().is_empty() {
                err(format!("/guardrails/{i}/metric"), "must not be empty".into());
            }
            if !(g.tolerance.is_finite() && g.tolerance >= 0.0) {
                err(
                    format!("/guardrails/{i}/tolerance"),
                    format!("{} is not a finite number ≥ 0", g.tolerance),
                );
            }
        }
        if let Some(s) = &self.schedule {
            if let Some(start) = &s.start_at
                && parse_time(start).is_none()
            {
                err(
                    "/schedule/start_at".into(),
                    format!("`{start}` is not an RFC 3339 time"),
                );
            }
            if let Some(h) = &s.business_hours {
                match (minutes(&h.from), minutes(&h.to)) {
                    (None, _) => err(
                        "/schedule/business_hours/from".into(),
                        format!("`{}` is not HH:MM", h.from),
                    ),
                    (_, None) => err("/schedule/business_hours/to".into(), format!("`{}` is not HH:MM", h.to)),
                    (Some(a), Some(b)) if a >= b => {
                        err("/schedule/business_hours/to".into(), "must be after `from`".into())
                    }
                    _ => {}
                }
                if h.days.is_empty() {
                    err("/schedule/business_hours/days".into(), "needs at least one day".into());
                }
                if h.utc_offset_minutes.abs() > 18 * 60 {
                    err(
                        "/schedule/business_hours/utc_offset_minutes".into(),
                        "must be within ±18 hours".into(),
                    );
                }
            }
        }
        errors
    }

    /// The seed of the rollout split: fixed for the flag, so every stage
    /// places a unit at the same point.
    pub fn seed(flag: &str) -> String {
        format!("rollout:{flag}")
    }

    /// `targeting` with its default serve replaced by the rollout split at
    /// `weight` parts per 100,000 on treatment.
    pub fn apply(&self, flag: &str, targeting: &Targeting, weight: u32) -> Targeting {
        let weight = weight.min(WEIGHT_SCALE);
        let mut t = targeting.clone();
        t.default_serve = Some(Serve::Split(Split {
            weights: vec![
                Weight {
                    variation: self.control.clone(),
                    weight: WEIGHT_SCALE - weight,
                },
                Weight {
                    variation: self.treatment.clone(),
                    weight,
                },
            ],
            bucket_by: self.bucket_by.clone(),
            seed: Some(Self::seed(flag)),
            hash: Default::default(),
        }));
        t
    }

    /// The treatment weight `targeting` serves now, if its default serve is
    /// this plan's split.
    pub fn current_weight(&self, flag: &str, targeting: &Targeting) -> Option<u32> {
        match &targeting.default_serve {
            Some(Serve::Split(s))
                if s.seed.as_deref() == Some(Self::seed(flag).as_str())
                    && s.weights.len() == 2
                    && s.weights[0].variation == self.control
                    && s.weights[1].variation == self.treatment =>
            {
                Some(s.weights[1].weight)
            }
            _ => None,
        }
    }
}

/// Where a plan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Written, not started.
    Draft,
    /// The scheduler advances it.
    Running,
    /// Held at its stage (by a person or a guardrail) until resumed.
    Paused,
    /// A guardrail breach put every unit back on control.
    RolledBack,
    /// The last stage was reached.
    Completed,
    /// The flag was killed in the environment.
    Killed,
}

impl PlanStatus {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Draft => "draft",
            PlanStatus::Running => "running",
            PlanStatus::Paused => "paused",
            PlanStatus::RolledBack => "rolled_back",
            PlanStatus::Completed => "completed",
            PlanStatus::Killed => "killed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => PlanStatus::Draft,
            "running" => PlanStatus::Running,
            "paused" => PlanStatus::Paused,
            "rolled_back" => PlanStatus::RolledBack,
            "completed" => PlanStatus::Completed,
            "killed" => PlanStatus::Killed,
            _ => return None,
        })
    }
}

/// A stored plan and its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRecord {
    /// Workspace key.
    pub workspace: String,
    /// Environment key.
    pub environment: String,
    /// Flag key.
    pub flag: String,
    /// The plan.
    pub plan: RolloutPlan,
    /// Where it is.
    pub status: PlanStatus,
    /// Index of the current stage (`None` before the first is applied).
    pub stage: Option<usize>,
    /// When the current stage was applied (RFC 3339).
    pub stage_started_at: Option<String>,
    /// Sequential monitor state per guardrail metric (owned by the scheduler).
    pub monitors: Value,
    /// Why the status last changed.
    pub status_reason: Option<String>,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A plan's progress, as the scheduler or an operator sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanProgress {
    /// New status.
    pub status: PlanStatus,
    /// New stage index.
    pub stage: Option<usize>,
    /// When that stage began.
    pub stage_started_at: Option<String>,
    /// Monitor state.
    pub monitors: Value,
    /// Why.
    pub status_reason: Option<String>,
}

impl PlanRecord {
    /// The progress part, to modify and write back.
    pub fn progress(&self) -> PlanProgress {
        PlanProgress {
            status: self.status,
            stage: self.stage,
            stage_started_at: self.stage_started_at.clone(),
            monitors: self.monitors.clone(),
            status_reason: self.status_reason.clone(),
        }
    }
}

/// A change that can be scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FlagChange {
    /// Turn the flag on or off.
    Toggle {
        /// On or off.
        enabled: bool,
    },
    /// Replace the flag's targeting in the environment.
    Targeting {
        /// The new targeting.
        targeting: Box<Targeting>,
    },
}

/// Where a scheduled change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStatus {
    /// Waiting for its time.
    Pending,
    /// Done.
    Applied,
    /// Withdrawn before its time.
    Cancelled,
    /// Its time came but the change was refused (the outcome says why).
    Failed,
}

impl ScheduleStatus {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleStatus::Pending => "pending",
            ScheduleStatus::Applied => "applied",
            ScheduleStatus::Cancelled => "cancelled",
            ScheduleStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ScheduleStatus::Pending,
            "applied" => ScheduleStatus::Applied,
            "cancelled" => ScheduleStatus::Cancelled,
            "failed" => ScheduleStatus::Failed,
            _ => return None,
        })
    }
}

/// A flag change scheduled for a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledChange {
    /// Id.
    pub id: i64,
    /// Workspace key.
    pub workspace: String,
    /// Environment key.
    pub environment: String,
    /// Flag key.
    pub flag: String,
    /// When to apply it (RFC 3339 UTC).
    pub run_at: String,
    /// What to do.
    pub change: FlagChange,
    /// Where it is.
    pub status: ScheduleStatus,
    /// Who scheduled it.
    pub created_by: String,
    /// Why.
    pub reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// When it was applied, cancelled or failed.
    pub finished_at: Option<String>,
    /// What happened (the error, for failures).
    pub outcome: Option<String>,
}

/// A kill switch or automatic rollback: the end of an incident, for DORA's
/// time to restore.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreEvent {
    /// Flag key.
    pub flag: String,
    /// Environment key.
    pub environment: String,
    /// `kill` or `rollout_rollback`.
    pub action: String,
    /// Who (the scheduler for rollbacks).
    pub actor: String,
    /// When service was restored (RFC 3339).
    pub at: String,
    /// When the change that was undone went live, if recorded.
    pub since: Option<String>,
    /// `at − since` in seconds.
    pub seconds_to_restore: Option<f64>,
}

// ------------------------------------------------------------------ Store

impl Store {
    /// Creates or replaces the plan of `flag` in `env` (as a draft).
    /// Refused while the plan runs: pause it first.
    pub async fn put_rollout_plan(
        &self,
        ws: &str,
        flag: &str,
        env: &str,
        plan: RolloutPlan,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<PlanRecord>> {
        let rec = self.get_flag(ws, flag).await?;
        let problems = plan.problems(&rec.flag, "/plan");
        if !problems.is_empty() {
            return Err(StoreError::Invalid(problems));
        }
        on!(self, db => db.put_plan(ws, flag, env, &plan, expected, meta).await)
    }

    /// The plan of `flag` in `env`.
    pub async fn get_rollout_plan(&self, ws: &str, flag: &str, env: &str) -> Result<PlanRecord> {
        on!(self, db => db.get_plan(ws, flag, env).await)
    }

    /// Plans, optionally of one workspace and in one status.
    pub async fn list_rollout_plans(&self, ws: Option<&str>, status: Option<PlanStatus>) -> Result<Vec<PlanRecord>> {
        on!(self, db => db.list_plans(ws, status).await)
    }

    /// Deletes a plan that is not running (the flag's targeting is kept).
    pub async fn delete_rollout_plan(
        &self,
        ws: &str,
        flag: &str,
        env: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        on!(self, db => db.delete_plan(ws, flag, env, meta).await)
    }

    /// Moves a plan to `progress` if it is still at version `expected`;
    /// recorded in the audit log as `action` with the reason in `meta`.
    #[expect(clippy::too_many_arguments, reason = "one plan write, named parts")]
    pub async fn set_rollout_progress(
        &self,
        ws: &str,
        flag: &str,
        env: &str,
        expected: i64,
        progress: PlanProgress,
        action: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<PlanRecord>> {
        on!(self, db => db.set_plan_progress(ws, flag, env, expected, &progress, action, meta).await)
    }

    /// Saves the monitors of a running plan without an audit entry (they
    /// change on every look; decisions taken from them are audited).
    pub async fn save_rollout_monitors(&self, ws: &str, flag: &str, env: &str, monitors: &Value) -> Result<()> {
        on!(self, db => db.save_plan_monitors(ws, flag, env, monitors).await)
    }

    /// Serves treatment to `weight` parts per 100,000 of `flag` in `env`
    /// (and turns it on when `enable`). `None` when the flag already served
    /// exactly that: nothing is written.
    #[expect(clippy::too_many_arguments, reason = "one flag write, named parts")]
    pub async fn set_rollout_weight(
        &self,
        ws: &str,
        flag: &str,
        env: &str,
        plan: &RolloutPlan,
        weight: u32,
        enable: bool,
        action: &'static str,
        meta: &ChangeMeta,
    ) -> Result<Option<Committed<FlagRecord>>> {
        let current = self.get_flag(ws, flag).await?;
        let targeting = current
            .flag
            .environments
            .get(env)
            .cloned()
            .unwrap_or_else(|| off_targeting(false));
        let mut next = plan.apply(flag, &targeting, weight);
        next.enabled = targeting.enabled || enable;
        if next == targeting {
            return Ok(None);
        }
        let change = move |f: &mut Flag| {
            f.environments.insert(env.to_owned(), next);
            Ok(())
        };
        let expected = Some(current.version);
        on!(self, db => db.update_flag(ws, flag, expected, Some(env), action, meta, change).await).map(Some)
    }

    /// Turns `flag` off in `env` as a kill switch (`kill` in the audit log,
    /// counted as a restore for DORA). A running or paused plan there ends
    /// as `killed`.
    pub async fn kill(&self, ws: &str, flag: &str, env: &str, meta: &ChangeMeta) -> Result<Committed<FlagRecord>> {
        let change = |f: &mut Flag| {
            f.environments
                .entry(env.to_owned())
                .or_insert_with(|| off_targeting(false))
                .enabled = false;
            Ok(())
        };
        let committed = on!(self, db => db.update_flag(ws, flag, None, Some(env), "kill", meta, change).await)?;
        // The flag is off whatever happens next; a failure here is repaired
        // by the scheduler, which ends running plans of disabled flags.
        if let Ok(plan) = self.get_rollout_plan(ws, flag, env).await
            && matches!(plan.status, PlanStatus::Running | PlanStatus::Paused)
        {
            let progress = PlanProgress {
                status: PlanStatus::Killed,
                status_reason: Some(format!(
                    "killed by {}{}",
                    meta.actor,
                    meta.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                )),
                ..plan.progress()
            };
            self.set_rollout_progress(ws, flag, env, plan.version, progress, "kill", meta)
                .await?;
        }
        Ok(committed)
    }

    /// Kills and automatic rollbacks in `ws`, oldest first, each with the
    /// time since the change it undid went live.
    pub async fn restore_events(&self, ws: &str) -> Result<Vec<RestoreEvent>> {
        on!(self, db => db.restore_events(ws).await)
    }

    // Scheduled changes.

    /// Schedules `change` of `flag` in `env` for `run_at`.
    pub async fn schedule_change(
        &self,
        ws: &str,
        flag: &str,
        env: &str,
        run_at: DateTime<Utc>,
        change: &FlagChange,
        meta: &ChangeMeta,
    ) -> Result<Committed<ScheduledChange>> {
        self.get_flag(ws, flag).await?;
        on!(self, db => db.schedule_change(ws, flag, env, run_at, change, meta).await)
    }

    /// Scheduled changes of `ws`, optionally in one status, by time.
    pub async fn list_scheduled_changes(
        &self,
        ws: &str,
        status: Option<ScheduleStatus>,
    ) -> Result<Vec<ScheduledChange>> {
        on!(self, db => db.list_scheduled(ws, status).await)
    }

    /// One scheduled change of `ws`.
    pub async fn get_scheduled_change(&self, ws: &str, id: i64) -> Result<ScheduledChange> {
        on!(self, db => db.get_scheduled(id).await)
            .ok()
            .filter(|s| s.workspace == ws)
            .ok_or_else(|| not_found(Kind::ScheduledChange, &id.to_string()))
    }

    /// Pending changes due at `now`, oldest first (all workspaces).
    pub async fn due_scheduled_changes(&self, now: DateTime<Utc>) -> Result<Vec<ScheduledChange>> {
        on!(self, db => db.due_scheduled(now).await)
    }

    /// Cancels a pending change.
    pub async fn cancel_scheduled_change(
        &self,
        ws: &str,
        id: i64,
        meta: &ChangeMeta,
    ) -> Result<Committed<ScheduledChange>> {
        self.finish_scheduled_change(ws, id, ScheduleStatus::Cancelled, None, "cancel", meta)
            .await
    }

    /// Marks a pending change applied, cancelled or failed; refused (state
    /// error) when it is no longer pending, so a change is applied once.
    pub async fn finish_scheduled_change(
        &self,
        ws: &str,
        id: i64,
        status: ScheduleStatus,
        outcome: Option<String>,
        action: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<ScheduledChange>> {
        on!(self, db => db.finish_scheduled(ws, id, status, outcome.as_deref(), action, meta).await)
    }
}

/// Targeting of a flag not yet configured in an environment: off, no rules.
fn off_targeting(enabled: bool) -> Targeting {
    Targeting {
        enabled,
        off_variation: None,
        prerequisites: Vec::new(),
        rules: Vec::new(),
        default_serve: None,
        salt: None,
    }
}

// ------------------------------------------------------------------- SQL

const PLAN_SELECT: &str = "SELECT p.*, w.key AS ws_key, e.key AS env_key FROM rollout_plans p
     JOIN workspaces w ON w.id = p.workspace_id JOIN environments e ON e.id = p.environment_id";

const SCHEDULED_SELECT: &str = "SELECT s.*, w.key AS ws_key, e.key AS env_key FROM scheduled_changes s
     JOIN workspaces w ON w.id = s.workspace_id JOIN environments e ON e.id = s.environment_id";

/// A plan from its columns (read the same way from either backend's row).
fn plan_from(row: &impl ColumnRead) -> Result<PlanRecord> {
    let definition: String = row.text("definition")?;
    let status: String = row.text("status")?;
    let monitors: String = row.text("monitors")?;
    Ok(PlanRecord {
        workspace: row.text("ws_key")?,
        environment: row.text("env_key")?,
        flag: row.text("flag_key")?,
        plan: serde_json::from_str(&definition).map_err(|e| corrupt("rollout plan", e))?,
        status: PlanStatus::parse(&status).ok_or_else(|| corrupt("rollout status", &status))?,
        stage: row.opt_int("stage")?.map(|s| s.max(0) as usize),
        stage_started_at: row.opt_text("stage_started_at")?,
        monitors: serde_json::from_str(&monitors).map_err(|e| corrupt("rollout monitors", e))?,
        status_reason: row.opt_text("status_reason")?,
        version: row.int("version")?,
        created_at: row.text("created_at")?,
        updated_at: row.text("updated_at")?,
    })
}

fn scheduled_from(row: &impl ColumnRead) -> Result<ScheduledChange> {
    let change: String = row.text("change")?;
    let status: String = row.text("status")?;
    Ok(ScheduledChange {
        id: row.int("id")?,
        workspace: row.text("ws_key")?,
        environment: row.text("env_key")?,
        flag: row.text("flag_key")?,
        run_at: row.text("run_at")?,
        change: serde_json::from_str(&change).map_err(|e| corrupt("scheduled change", e))?,
        status: ScheduleStatus::parse(&status).ok_or_else(|| corrupt("scheduled status", &status))?,
        created_by: row.text("created_by")?,
        reason: row.opt_text("reason")?,
        created_at: row.text("created_at")?,
        finished_at: row.opt_text("finished_at")?,
        outcome: row.opt_text("outcome")?,
    })
}

fn restore_from(row: &impl ColumnRead) -> Result<RestoreEvent> {
    let at: String = row.text("at")?;
    let since: Option<String> = row.opt_text("since")?;
    let seconds = since
        .as_deref()
        .and_then(parse_time)
        .zip(parse_time(&at))
        .map(|(s, a)| (a - s).num_milliseconds() as f64 / 1000.0);
    Ok(RestoreEvent {
        flag: row.text("key")?,
        environment: row.opt_text("environment")?.unwrap_or_default(),
        action: row.text("action")?,
        actor: row.text("actor")?,
        at,
        since,
        seconds_to_restore: seconds,
    })
}

/// The audit summary of a plan's progress: status and stage, not the
/// running statistics (the monitors change on every look).
fn progress_summary(r: &PlanRecord) -> Value {
    serde_json::json!({"status": r.status, "stage": r.stage, "status_reason": r.status_reason})
}

/// The SQL of rollout plans and scheduled changes for one backend. The
/// statements are written once, in the SQL both dialects accept (`$n`
/// parameters, `RETURNING`, `ON CONFLICT`), and instantiated below for
/// SQLite and PostgreSQL; each backend provides `begin_write`, `record`,
/// `finish` and `pool`.
macro_rules! rollout_sql {
    ($store:ty, $conn:ty) => {
        impl $store {
            async fn put_plan(
                &self,
                ws: &str,
                flag: &str,
                env: &str,
                plan: &RolloutPlan,
                expected: Option<i64>,
                meta: &ChangeMeta,
            ) -> Result<Committed<PlanRecord>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (ws_id, env_id) = Self::ids(&mut tx, ws, env).await?;
                let before = Self::plan_row(&mut tx, ws_id, env_id, flag).await?;
                if let Some(b) = &before {
                    check_version(expected, b.version)?;
                    if b.status == PlanStatus::Running {
                        return Err(state_error(
                            Kind::RolloutPlan,
                            flag,
                            "is running; pause it before changing the plan",
                        ));
                    }
                }
                let at = crate::now();
                sqlx::query(
                    "INSERT INTO rollout_plans (workspace_id, environment_id, flag_key, definition, status, stage,
                         stage_started_at, monitors, status_reason, version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, 'draft', NULL, NULL, '{}', NULL, 1, $5, $5)
                     ON CONFLICT (environment_id, flag_key) DO UPDATE SET definition = excluded.definition,
                         status = 'draft', stage = NULL, stage_started_at = NULL, monitors = '{}', status_reason = NULL,
                         version = rollout_plans.version + 1, updated_at = excluded.updated_at",
                )
                .bind(ws_id)
                .bind(env_id)
                .bind(flag)
                .bind(json(plan).to_string())
                .bind(&at)
                .execute(&mut *tx)
                .await?;
                let after = Self::plan_row(&mut tx, ws_id, env_id, flag)
                    .await?
                    .ok_or_else(|| not_found(Kind::RolloutPlan, flag))?;
                let change_id = Self::record(
                    &mut tx,
                    NewChange {
                        meta,
                        action: if before.is_some() { "update" } else { "create" },
                        workspace: Some(ws),
                        kind: Kind::RolloutPlan,
                        key: flag,
                        environment: Some(env),
                        before: before.as_ref().map(|b| json(&b.plan)),
                        after: Some(json(&after.plan)),
                    },
                )
                .await?;
                Self::finish(tx, committed(after, change_id)).await
            }

            async fn get_plan(&self, ws: &str, flag: &str, env: &str) -> Result<PlanRecord> {
                let mut conn = self.pool.acquire().await?;
                let (ws_id, env_id) = Self::ids(&mut conn, ws, env).await?;
                Self::plan_row(&mut conn, ws_id, env_id, flag)
                    .await?
                    .ok_or_else(|| not_found(Kind::RolloutPlan, flag))
            }

            async fn list_plans(&self, ws: Option<&str>, status: Option<PlanStatus>) -> Result<Vec<PlanRecord>> {
                // sql-format: `PLAN_SELECT` is the fixed query constant; values are bound.
                let rows = sqlx::query(&format!(
                    "{PLAN_SELECT} WHERE ($1 IS NULL OR w.key = $1) AND ($2 IS NULL OR p.status = $2) ORDER BY p.id"
                ))
                .bind(ws)
                .bind(status.map(PlanStatus::as_str))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(plan_from).collect()
            }

            async fn delete_plan(&self, ws: &str, flag: &str, env: &str, meta: &ChangeMeta) -> Result<Committed<()>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (ws_id, env_id) = Self::ids(&mut tx, ws, env).await?;
                let rec = Self::plan_row(&mut tx, ws_id, env_id, flag)
                    .await?
                    .ok_or_else(|| not_found(Kind::RolloutPlan, flag))?;
                if rec.status == PlanStatus::Running {
                    return Err(state_error(Kind::RolloutPlan, flag, "is running; pause it first"));
                }
                sqlx::query("DELETE FROM rollout_plans WHERE environment_id = $1 AND flag_key = $2")
                    .bind(env_id)
                    .bind(flag)
                    .execute(&mut *tx)
                    .await?;
                let change_id = Self::record(
                    &mut tx,
                    NewChange {
                        meta,
                        action: "delete",
                        workspace: Some(ws),
                        kind: Kind::RolloutPlan,
                        key: flag,
                        environment: Some(env),
                        before: Some(json(&rec)),
                        after: None,
                    },
                )
                .await?;
                Self::finish(tx, committed((), change_id)).await
            }

            #[expect(clippy::too_many_arguments, reason = "one plan write, named parts")]
            async fn set_plan_progress(
                &self,
                ws: &str,
                flag: &str,
                env: &str,
                expected: i64,
                progress: &PlanProgress,
                action: &str,
                meta: &ChangeMeta,
            ) -> Result<Committed<PlanRecord>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (ws_id, env_id) = Self::ids(&mut tx, ws, env).await?;
                let before = Self::plan_row(&mut tx, ws_id, env_id, flag)
                    .await?
                    .ok_or_else(|| not_found(Kind::RolloutPlan, flag))?;
                check_version(Some(expected), before.version)?;
                sqlx::query(
                    "UPDATE rollout_plans SET status = $1, stage = $2, stage_started_at = $3, monitors = $4,
                         status_reason = $5, version = version + 1, updated_at = $6
                     WHERE environment_id = $7 AND flag_key = $8",
                )
                .bind(progress.status.as_str())
                .bind(progress.stage.map(|s| s as i64))
                .bind(&progress.stage_started_at)
                .bind(progress.monitors.to_string())
                .bind(&progress.status_reason)
                .bind(crate::now())
                .bind(env_id)
                .bind(flag)
                .execute(&mut *tx)
                .await?;
                let after = Self::plan_row(&mut tx, ws_id, env_id, flag)
                    .await?
                    .ok_or_else(|| not_found(Kind::RolloutPlan, flag))?;
                let change_id = Self::record(
                    &mut tx,
                    NewChange {
                        meta,
                        action,
                        workspace: Some(ws),
                        kind: Kind::RolloutPlan,
                        key: flag,
                        environment: Some(env),
                        before: Some(progress_summary(&before)),
                        after: Some(progress_summary(&after)),
                    },
                )
                .await?;
                Self::finish(tx, committed(after, change_id)).await
            }

            async fn save_plan_monitors(&self, ws: &str, flag: &str, env: &str, monitors: &Value) -> Result<()> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (_, env_id) = Self::ids(&mut tx, ws, env).await?;
                sqlx::query("UPDATE rollout_plans SET monitors = $1 WHERE environment_id = $2 AND flag_key = $3")
                    .bind(monitors.to_string())
                    .bind(env_id)
                    .bind(flag)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn restore_events(&self, ws: &str) -> Result<Vec<RestoreEvent>> {
                let rows = sqlx::query(
                    "SELECT c.at, c.actor, c.action, c.key, c.environment,
                            (SELECT p.at FROM changes p WHERE p.workspace = c.workspace AND p.kind = 'flag'
                                AND p.key = c.key AND (p.environment = c.environment OR p.environment IS NULL)
                                AND p.id < c.id AND p.action NOT IN ('kill', 'turn_off', 'rollout_rollback')
                              ORDER BY p.id DESC LIMIT 1) AS since
                     FROM changes c WHERE c.workspace = $1 AND c.kind = 'flag'
                         AND c.action IN ('kill', 'rollout_rollback')
                     ORDER BY c.id",
                )
                .bind(ws)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(restore_from).collect()
            }

            async fn schedule_change(
                &self,
                ws: &str,
                flag: &str,
                env: &str,
                run_at: DateTime<Utc>,
                change: &FlagChange,
                meta: &ChangeMeta,
            ) -> Result<Committed<ScheduledChange>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (ws_id, env_id) = Self::ids(&mut tx, ws, env).await?;
                let id: i64 = sqlx::query(
                    "INSERT INTO scheduled_changes (workspace_id, environment_id, flag_key, run_at, change, status,
                         created_by, reason, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8) RETURNING id",
                )
                .bind(ws_id)
                .bind(env_id)
                .bind(flag)
                .bind(format_time(run_at))
                .bind(json(change).to_string())
                .bind(&meta.actor)
                .bind(&meta.reason)
                .bind(crate::now())
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?;
                let rec = Self::scheduled_row(&mut tx, id).await?;
                let change_id = Self::record(
                    &mut tx,
                    NewChange {
                        meta,
                        action: "create",
                        workspace: Some(ws),
                        kind: Kind::ScheduledChange,
                        key: &id.to_string(),
                        environment: Some(env),
                        before: None,
                        after: Some(json(&rec)),
                    },
                )
                .await?;
                Self::finish(tx, committed(rec, change_id)).await
            }

            async fn list_scheduled(&self, ws: &str, status: Option<ScheduleStatus>) -> Result<Vec<ScheduledChange>> {
                let mut conn = self.pool.acquire().await?;
                Self::ws_id(&mut conn, ws).await?;
                // sql-format: `SCHEDULED_SELECT` is the fixed query constant; values are bound.
                let rows = sqlx::query(&format!(
                    "{SCHEDULED_SELECT} WHERE w.key = $1 AND ($2 IS NULL OR s.status = $2) ORDER BY s.run_at, s.id"
                ))
                .bind(ws)
                .bind(status.map(ScheduleStatus::as_str))
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(scheduled_from).collect()
            }

            async fn get_scheduled(&self, id: i64) -> Result<ScheduledChange> {
                let mut conn = self.pool.acquire().await?;
                Self::scheduled_row(&mut conn, id).await
            }

            async fn due_scheduled(&self, now: DateTime<Utc>) -> Result<Vec<ScheduledChange>> {
                // sql-format: `SCHEDULED_SELECT` is the fixed query constant; values are bound.
                let rows = sqlx::query(&format!(
                    "{SCHEDULED_SELECT} WHERE s.status = 'pending' AND s.run_at <= $1 ORDER BY s.run_at, s.id"
                ))
                .bind(format_time(now))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(scheduled_from).collect()
            }

            async fn finish_scheduled(
                &self,
                ws: &str,
                id: i64,
                status: ScheduleStatus,
                outcome: Option<&str>,
                action: &str,
                meta: &ChangeMeta,
            ) -> Result<Committed<ScheduledChange>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let before = Self::scheduled_row(&mut tx, id)
                    .await
                    .ok()
                    .filter(|s| s.workspace == ws)
                    .ok_or_else(|| not_found(Kind::ScheduledChange, &id.to_string()))?;
                if before.status != ScheduleStatus::Pending {
                    return Err(state_error(
                        Kind::ScheduledChange,
                        &id.to_string(),
                        &format!("is already {}", before.status.as_str()),
                    ));
                }
                sqlx::query("UPDATE scheduled_changes SET status = $1, finished_at = $2, outcome = $3 WHERE id = $4")
                    .bind(status.as_str())
                    .bind(crate::now())
                    .bind(outcome)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let after = Self::scheduled_row(&mut tx, id).await?;
                let change_id = Self::record(
                    &mut tx,
                    NewChange {
                        meta,
                        action,
                        workspace: Some(ws),
                        kind: Kind::ScheduledChange,
                        key: &id.to_string(),
                        environment: Some(&after.environment),
                        before: Some(json(&before)),
                        after: Some(json(&after)),
                    },
                )
                .await?;
                Self::finish(tx, committed(after, change_id)).await
            }

            /// The workspace's id, or `NotFound`.
            pub(crate) async fn ws_id(conn: &mut $conn, ws: &str) -> Result<i64> {
                Ok(sqlx::query("SELECT id FROM workspaces WHERE key = $1")
                    .bind(ws)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| not_found(Kind::Workspace, ws))?
                    .try_get("id")?)
            }

            /// The workspace and environment ids, or which of the two does not exist.
            pub(crate) async fn ids(conn: &mut $conn, ws: &str, env: &str) -> Result<(i64, i64)> {
                let ws_id = Self::ws_id(conn, ws).await?;
                let env_id: i64 = sqlx::query("SELECT id FROM environments WHERE workspace_id = $1 AND key = $2")
                    .bind(ws_id)
                    .bind(env)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| not_found(Kind::Environment, env))?
                    .try_get("id")?;
                Ok((ws_id, env_id))
            }

            async fn plan_row(conn: &mut $conn, ws_id: i64, env_id: i64, flag: &str) -> Result<Option<PlanRecord>> {
                // sql-format: `PLAN_SELECT` is the fixed query constant; values are bound.
                sqlx::query(&format!(
                    "{PLAN_SELECT} WHERE p.workspace_id = $1 AND p.environment_id = $2 AND p.flag_key = $3"
                ))
                .bind(ws_id)
                .bind(env_id)
                .bind(flag)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(plan_from)
                .transpose()
            }

            async fn scheduled_row(conn: &mut $conn, id: i64) -> Result<ScheduledChange> {
                // sql-format: `SCHEDULED_SELECT` is the fixed query constant; values are bound.
                let row = sqlx::query(&format!("{SCHEDULED_SELECT} WHERE s.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| not_found(Kind::ScheduledChange, &id.to_string()))?;
                scheduled_from(&row)
            }
        }
    };
}

rollout_sql!(crate::sqlite::SqliteStore, sqlx::SqliteConnection);
rollout_sql!(crate::postgres::PgStore, sqlx::PgConnection);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RolloutPlan {
        serde_json::from_value(serde_json::json!({
            "control": "off", "treatment": "on",
            "stages": [{"percent": 0.1, "min_hold_seconds": 60}, {"percent": 5}, {"percent": 100}]
        }))
        .unwrap()
    }

    fn flag() -> Flag {
        serde_json::from_value(serde_json::json!({
            "key": "f", "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]
        }))
        .unwrap()
    }

    #[test]
    fn stage_percentages_become_parts_per_hundred_thousand() {
        let w: Vec<u32> = plan().stages.iter().map(Stage::weight).collect();
        assert_eq!(w, vec![100, 5_000, 100_000]);
    }

    #[test]
    fn a_valid_plan_has_no_problems_and_a_bad_one_names_each_field() {
        assert!(plan().problems(&flag(), "/plan").is_empty());
        let mut bad = plan();
        bad.treatment = "maybe".into();
        bad.stages[1].percent = 0.05;
        bad.stages.push(Stage {
            percent: 100.5,
            min_hold_seconds: 0,
        });
        let fields: Vec<String> = bad.problems(&flag(), "/plan").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec!["/plan/treatment", "/plan/stages/1/percent", "/plan/stages/3/percent"]
        );
    }

    #[test]
    fn applying_a_weight_writes_a_seeded_split_with_treatment_last() {
        let p = plan();
        let t = Targeting {
            enabled: true,
            off_variation: None,
            prerequisites: Vec::new(),
            rules: Vec::new(),
            default_serve: None,
            salt: None,
        };
        let applied = p.apply("f", &t, 5_000);
        assert_eq!(p.current_weight("f", &applied), Some(5_000));
        assert_eq!(p.current_weight("g", &applied), None);
        let doc = sextant_core::Document {
            segments: Vec::new(),
            flags: vec![Flag {
                environments: [("production".to_owned(), applied)].into(),
                ..flag()
            }],
        };
        assert!(sextant_core::Snapshot::compile(&doc, "production", 1).is_ok());
    }

    #[test]
    fn business_hours_respect_days_hours_and_offset() {
        let h: BusinessHours =
            serde_json::from_value(serde_json::json!({"from": "09:00", "to": "17:00", "utc_offset_minutes": 60}))
                .unwrap();
        // 2025-01-06 is a Monday.
        let t = |s: &str| parse_time(s).unwrap();
        assert!(h.contains(t("2025-01-06T08:00:00Z"))); // 09:00 local
        assert!(!h.contains(t("2025-01-06T07:59:00Z")));
        assert!(!h.contains(t("2025-01-06T16:00:00Z"))); // 17:00 local, exclusive
        assert!(!h.contains(t("2025-01-04T10:00:00Z"))); // Saturday
        let s = Schedule {
            start_at: Some("2025-01-07T00:00:00Z".into()),
            business_hours: Some(h),
        };
        assert!(!s.allows(t("2025-01-06T10:00:00Z")));
        assert!(s.allows(t("2025-01-07T10:00:00Z")));
    }
}
