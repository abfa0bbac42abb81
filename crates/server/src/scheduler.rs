//! The rollout scheduler: applies scheduled changes when they fall due and
//! moves rollout plans along.
//!
//! [`run`] evaluates every `Config::evaluation_interval`; each evaluation is
//! one [`tick`] at the scheduler's clock. A tick, for every running plan:
//!
//! 1. ends it as `killed` if its flag was turned off in the environment;
//! 2. takes one look per guardrail — the always-valid confidence sequence
//!    of treatment − control from `sextant_stats::sequential`, folded into
//!    the plan's [`SequentialMonitor`] (kept in the database, so a restart
//!    loses no evidence); looking every interval does not inflate false
//!    alarms;
//! 3. on a breach, pauses or rolls back (treatment weight 0) at once, with
//!    the guardrail, interval and tolerance in the audit reason and, for a
//!    rollback, a flag change that reaches SDKs through SSE;
//! 4. otherwise, when the schedule allows and the stage's minimum hold has
//!    passed, applies the next stage, or completes after the last.
//!
//! Breaches are acted on at any time; only advancing waits for the schedule.
//! Ticks never overlap: the background loop and any caller share one lock.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sextant_stats::sequential::{
    Direction, GuardrailStatus, SequentialConfig, SequentialMonitor, SequentialResult, confidence_sequence_means,
    confidence_sequence_proportions, confidence_sequence_ratios,
};
use sextant_stats::{ProportionStats, RatioStats, StatsError, SufficientStats};
use sextant_store::{
    Aggregation, ChangeMeta, Committed, FlagChange, FlagRecord, Leadership, PlanProgress, PlanRecord, PlanStatus,
    ScheduleStatus, ScheduledChange, format_time, parse_time,
};

use crate::error::ApiError;
use crate::state::AppState;

/// Error rate of each guardrail's confidence sequence over the whole rollout.
pub const GUARDRAIL_ALPHA: f64 = 0.05;

/// Units (both arms) at which guardrail sequences are tightest.
pub const GUARDRAIL_TUNING_N: f64 = 10_000.0;

/// The actor recorded for the scheduler's changes.
pub const ACTOR: &str = "scheduler";

/// The scheduler's clock: wall time at start plus Tokio's monotonic time
/// since, so tests that pause and advance Tokio's clock move it too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock reading `wall` now.
    pub fn starting_at(wall: DateTime<Utc>) -> Clock {
        Clock {
            wall,
            start: tokio::time::Instant::now(),
        }
    }

    /// A clock reading the system time now.
    pub fn system() -> Clock {
        Clock::starting_at(Utc::now())
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.start);
        self.wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }
}

/// What one tick did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickReport {
    /// Scheduled changes applied (ids).
    pub applied: Vec<i64>,
    /// Scheduled changes that failed (id, why).
    pub failed: Vec<(i64, String)>,
    /// Plans moved to a new stage (flag, environment, stage index).
    pub advanced: Vec<(String, String, usize)>,
    /// Plans that completed.
    pub completed: Vec<(String, String)>,
    /// Plans stopped by a guardrail (flag, environment, reason).
    pub breached: Vec<(String, String, String)>,
    /// Plans ended because their flag was turned off.
    pub killed: Vec<(String, String)>,
}

/// Evaluates every `interval` until the server shuts down, while this
/// replica leads the `scheduler` duty (with several replicas on one
/// PostgreSQL database exactly one evaluates). The first evaluation is one
/// interval after start.
pub async fn run(state: AppState, clock: Clock, interval: Duration) {
    let shutdown = state.shutdown_signal();
    // Kept between evaluations; a tokio mutex as it is held across awaits.
    let leadership = std::sync::Arc::new(tokio::sync::Mutex::new(None::<Leadership>));
    every(interval, shutdown, || {
        let (state, leadership) = (state.clone(), leadership.clone());
        async move {
            let mut held = leadership.lock().await;
            if let Some(l) = held.as_mut()
                && l.check().await.is_err()
            {
                tracing::warn!("scheduler leadership lost");
                *held = None;
            }
            if held.is_none() {
                match state.store.try_lead("scheduler").await {
                    Ok(Some(l)) => *held = Some(l),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot take the scheduler leadership");
                        return;
                    }
                }
            }
            match tick(&state, clock.now()).await {
                Ok(report) if report != TickReport::default() => tracing::info!(?report, "scheduler"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e.detail, "scheduler evaluation failed"),
            }
        }
    })
    .await
}

/// Runs `evaluate` every `interval` (first after one interval) until
/// `shutdown` turns true; an evaluation in progress finishes first.
pub async fn every<F: Future<Output = ()>>(
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut evaluate: impl FnMut() -> F,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A slow evaluation delays the next instead of bunching evaluations up.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => evaluate().await,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}

/// One evaluation at `now`: due scheduled changes, then every running plan.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> Result<TickReport, ApiError> {
    let _one_at_a_time = state.scheduler.lock().await;
    let mut report = TickReport::default();
    for change in state.store.due_scheduled_changes(now).await? {
        apply_scheduled(state, &change, &mut report).await?;
    }
    for plan in state.store.list_rollout_plans(None, Some(PlanStatus::Running)).await? {
        if let Err(e) = step_plan(state, &plan, now, &mut report).await {
            // One bad plan must not stop the others.
            tracing::error!(flag = %plan.flag, env = %plan.environment, error = %e.detail, "rollout step failed");
        }
    }
    Ok(report)
}

fn meta(reason: String) -> ChangeMeta {
    ChangeMeta::new(ACTOR, Some(reason))
}

async fn apply_scheduled(state: &AppState, c: &ScheduledChange, report: &mut TickReport) -> Result<(), ApiError> {
    let m = meta(format!(
        "scheduled change {} by {}{}",
        c.id,
        c.created_by,
        c.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
    ));
    let (ws, flag, env) = (&c.workspace, &c.flag, &c.environment);
    let result = match &c.change {
        FlagChange::Toggle { enabled } => {
            state
                .commit(state.store.toggle(ws, flag, env, None, *enabled, &m))
                .await
        }
        FlagChange::Targeting { targeting } => {
            state
                .commit(
                    state
                        .store
                        .set_targeting(ws, flag, env, None, (**targeting).clone(), &m),
                )
                .await
        }
    };
    let (status, outcome, action) = match result {
        Ok(_) => (ScheduleStatus::Applied, None, "apply"),
        Err(e) => (ScheduleStatus::Failed, Some(e.detail.clone()), "fail"),
    };
    state
        .store
        .finish_scheduled_change(ws, c.id, status, outcome.clone(), action, &m)
        .await?;
    match outcome {
        None => report.applied.push(c.id),
        Some(why) => report.failed.push((c.id, why)),
    }
    Ok(())
}

/// Sets a plan's treatment weight through the ordinary publish path.
async fn set_weight(
    state: &AppState,
    plan: &PlanRecord,
    weight: u32,
    action: &'static str,
    m: &ChangeMeta,
) -> Result<Option<FlagRecord>, ApiError> {
    state
        .commit(async {
            let written = state
                .store
                .set_rollout_weight(
                    &plan.workspace,
                    &plan.flag,
                    &plan.environment,
                    &plan.plan,
                    weight,
                    true,
                    action,
                    m,
                )
                .await?;
            Ok(match written {
                Some(c) => Committed {
                    value: Some(c.value),
                    change_id: c.change_id,
                    snapshots: c.snapshots,
                    removed_environments: c.removed_environments,
                },
                None => Committed {
                    value: None,
                    change_id: 0,
                    snapshots: Vec::new(),
                    removed_environments: Vec::new(),
                },
            })
        })
        .await
}

async fn progress(
    state: &AppState,
    plan: &PlanRecord,
    next: PlanProgress,
    action: &str,
    m: &ChangeMeta,
) -> Result<PlanRecord, ApiError> {
    Ok(state
        .store
        .set_rollout_progress(
            &plan.workspace,
            &plan.flag,
            &plan.environment,
            plan.version,
            next,
            action,
            m,
        )
        .await?
        .value)
}

async fn step_plan(
    state: &AppState,
    plan: &PlanRecord,
    now: DateTime<Utc>,
    report: &mut TickReport,
) -> Result<(), ApiError> {
    let (ws, flag, env) = (&plan.workspace, &plan.flag, &plan.environment);
    let key = || (flag.clone(), env.clone());
    let current = state.store.get_flag(ws, flag).await?;
    let enabled = current.flag.environments.get(env).is_some_and(|t| t.enabled);
    if plan.stage.is_some() && !enabled {
        let why = format!("flag `{flag}` was turned off in `{env}`; the rollout ends");
        let next = PlanProgress {
            status: PlanStatus::Killed,
            status_reason: Some(why.clone()),
            ..plan.progress()
        };
        progress(state, plan, next, "kill", &meta(why)).await?;
        report.killed.push(key());
        return Ok(());
    }

    // Guardrails: one look each, folded into the stored monitors.
    let mut monitors: BTreeMap<String, SequentialMonitor> =
        serde_json::from_value(plan.monitors.clone()).unwrap_or_default();
    let mut breach = None;
    if plan.stage.is_some() {
        let config = SequentialConfig::new(GUARDRAIL_ALPHA, GUARDRAIL_TUNING_N).map_err(ApiError::internal)?;
        for g in &plan.plan.guardrails {
            let Some(look) = guardrail_look(state, plan, &g.metric, &config).await? else {
                // Too few units or no variance yet: nothing to conclude.
                continue;
            };
            let monitor = monitors.entry(g.metric.clone()).or_default();
            monitor.observe(&look);
            let direction = match g.direction {
                sextant_core::Direction::Increase => Direction::HigherIsBetter,
                sextant_core::Direction::Decrease => Direction::LowerIsBetter,
            };
            let verdict = monitor.guardrail(direction, g.tolerance).map_err(ApiError::internal)?;
            if verdict == GuardrailStatus::Breached && breach.is_none() {
                breach = Some(format!(
                    "guardrail `{}` breached: treatment − control is in [{:.6}, {:.6}] (always-valid {}% sequence, \
                     {} looks, p = {:.3e}), worse than the tolerated {} ({} is better)",
                    g.metric,
                    monitor.ci.lower,
                    monitor.ci.upper,
                    (1.0 - GUARDRAIL_ALPHA) * 100.0,
                    monitor.looks,
                    monitor.p_value,
                    g.tolerance,
                    match g.direction {
                        sextant_core::Direction::Increase => "higher",
                        sextant_core::Direction::Decrease => "lower",
                    },
                ));
            }
        }
    }
    let monitors = serde_json::to_value(&monitors).unwrap_or(Value::Null);

    if let Some(why) = breach {
        let m = meta(why.clone());
        let (status, action) = match plan.plan.on_breach {
            sextant_store::BreachAction::Pause => (PlanStatus::Paused, "rollout_pause"),
            sextant_store::BreachAction::Rollback => {
                set_weight(state, plan, 0, "rollout_rollback", &m).await?;
                (PlanStatus::RolledBack, "rollout_rollback")
            }
        };
        let next = PlanProgress {
            status,
            monitors,
            status_reason: Some(why.clone()),
            ..plan.progress()
        };
        progress(state, plan, next, action, &m).await?;
        report.breached.push((flag.clone(), env.clone(), why));
        return Ok(());
    }

    let allowed = plan.plan.schedule.as_ref().is_none_or(|s| s.allows(now));
    let held = match (plan.stage, plan.stage_started_at.as_deref().and_then(parse_time)) {
        (None, _) => true,
        (Some(i), Some(since)) => {
            let hold = plan.plan.stages.get(i).map_or(0, |s| s.min_hold_seconds);
            now >= since + chrono::Duration::seconds(i64::try_from(hold).unwrap_or(i64::MAX))
        }
        (Some(_), None) => true,
    };
    let next_index = plan.stage.map_or(0, |i| i + 1);
    if allowed && held {
        if let Some(stage) = plan.plan.stages.get(next_index) {
            let percent = stage.percent;
            let why = match plan.stage {
                None => format!("rollout starts at {percent}%"),
                Some(i) => format!(
                    "stage {} held {} s with healthy guardrails; now {percent}%",
                    i + 1,
                    plan.plan.stages[i].min_hold_seconds
                ),
            };
            let m = meta(why.clone());
            set_weight(state, plan, stage.weight(), "rollout_advance", &m).await?;
            let next = PlanProgress {
                status: PlanStatus::Running,
                stage: Some(next_index),
                stage_started_at: Some(format_time(now)),
                monitors,
                status_reason: Some(why),
            };
            progress(state, plan, next, "rollout_advance", &m).await?;
            report.advanced.push((flag.clone(), env.clone(), next_index));
            return Ok(());
        }
        let why = "the last stage held with healthy guardrails; rollout complete".to_owned();
        let next = PlanProgress {
            status: PlanStatus::Completed,
            monitors,
            status_reason: Some(why.clone()),
            ..plan.progress()
        };
        progress(state, plan, next, "rollout_complete", &meta(why)).await?;
        report.completed.push(key());
        return Ok(());
    }
    if monitors != plan.monitors {
        state.store.save_rollout_monitors(ws, flag, env, &monitors).await?;
    }
    Ok(())
}

/// One look at a guardrail: the always-valid confidence sequence of
/// treatment − control among units exposed to the plan's flag in its
/// environment, from the SQL sufficient statistics of the event rollups
/// (each unit counted from the hour of its first exposure, in the variation
/// it first saw). The difference is of per-unit means (count, sum, mean),
/// of conversion rates, or of Σnum/Σden with delta-method errors (ratio),
/// so a tolerance is in the metric's own units. `None` while an arm has
/// too few units or no variance to conclude anything.
async fn guardrail_look(
    state: &AppState,
    plan: &PlanRecord,
    metric: &str,
    config: &SequentialConfig,
) -> Result<Option<SequentialResult>, ApiError> {
    let aggregation = state
        .store
        .get_metric(&plan.workspace, metric)
        .await?
        .metric
        .aggregation;
    let range = sextant_store::HourRange { from: 0, to: i64::MAX };
    let arms = state
        .store
        .metric_breakdown(&plan.workspace, &plan.environment, metric, &plan.flag, range)
        .await?;
    let arm = |variation: &str| arms.iter().find(|(v, _)| v == variation).map(|(_, s)| *s);
    let (Some(c), Some(t)) = (arm(&plan.plan.control), arm(&plan.plan.treatment)) else {
        return Ok(None);
    };
    let look: Result<SequentialResult, StatsError> = match aggregation {
        Aggregation::Conversion => {
            let rates = |s: &sextant_store::UnitSums| ProportionStats::new(s.n, s.sum.round().max(0.0) as u64);
            rates(&c).and_then(|c| confidence_sequence_proportions(&c, &rates(&t)?, config))
        }
        Aggregation::Ratio => {
            let ratios = |s: &sextant_store::UnitSums| {
                RatioStats::new(s.n, s.sum, s.sum_sq, s.sum_den, s.sum_den_sq, s.sum_cross)
            };
            ratios(&c).and_then(|c| confidence_sequence_ratios(&c, &ratios(&t)?, config))
        }
        Aggregation::Count | Aggregation::Sum | Aggregation::Mean => {
            let means = |s: &sextant_store::UnitSums| SufficientStats::new(s.n, s.sum, s.sum_sq);
            means(&c).and_then(|c| confidence_sequence_means(&c, &means(&t)?, config))
        }
    };
    Ok(look.ok())
}
