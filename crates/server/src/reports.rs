//! Reports generated from stored data: stale flags, DORA figures and the
//! daily / weekly / monthly / quarterly reviews, as JSON and Markdown.
//! Shared by the API (`GET /api/v1/reviews/{cadence}`) and the CLI
//! (`sextant review weekly`), which opens the database directly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sextant_core::{Flag, Serve};
use sextant_store::{
    ChangeMeta, ChangeRecord, Deploy, DeployStatus, Direction, ExperimentStatus, HourRange, InitiativeRecord,
    KillSwitch, LearningFilter, PlanStatus, PostMortem, RequestStatus, ReviewDecision, Store, StoreError,
};

/// Days a flag must have served one variation to everyone in production
/// to be a removal candidate, unless a caller says otherwise.
pub const STALE_AFTER_DAYS: i64 = 30;

/// How long after a deploy a rollback or kill switch counts as its failure.
pub const FAILURE_WINDOW_HOURS: i64 = 24;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// What a flag serves to everyone in one environment, if it serves one
/// variation to everyone: `Some("0%")` when off, `Some("100%")` when on
/// with no rules and a fixed default (or a single-variation split).
pub fn uniform(flag: &Flag, env: &str) -> Option<&'static str> {
    let Some(t) = flag.environments.get(env) else {
        return Some("0%");
    };
    if !t.enabled {
        return Some("0%");
    }
    if !t.rules.is_empty() {
        return None;
    }
    match &t.default_serve {
        None | Some(Serve::Variation(_)) => Some("100%"),
        Some(Serve::Split(s)) if s.weights.iter().filter(|w| w.weight > 0).count() <= 1 => Some("100%"),
        _ => None,
    }
}

/// A flag that serves one variation to everyone in production and has not
/// changed for `days` days: a candidate for removal from code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleFlag {
    /// Flag key.
    pub flag: String,
    /// Production environment.
    pub environment: String,
    /// `0%` (off) or `100%` (one variation for everyone).
    pub serving: &'static str,
    /// Last change of the flag (RFC 3339).
    pub since: String,
    /// Whole days since then.
    pub days: i64,
}

/// Removal candidates of a workspace at `now`.
pub async fn stale_flags(store: &Store, ws: &str, days: i64, now: DateTime<Utc>) -> Result<Vec<StaleFlag>, StoreError> {
    let envs = store.list_environments(ws).await?;
    let mut out = Vec::new();
    for rec in store.list_flags(ws).await? {
        let Some(updated) = parse(&rec.updated_at) else {
            continue;
        };
        let age = (now - updated).num_days();
        if age < days {
            continue;
        }
        for env in envs.iter().filter(|e| e.production) {
            if let Some(serving) = uniform(&rec.flag, &env.key) {
                out.push(StaleFlag {
                    flag: rec.flag.key.clone(),
                    environment: env.key.clone(),
                    serving,
                    since: rec.updated_at.clone(),
                    days: age,
                });
            }
        }
    }
    Ok(out)
}

/// DORA figures of one service in one ISO week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoraWeek {
    /// Service.
    pub service: String,
    /// ISO week, `2025-W07`.
    pub week: String,
    /// Deploys (all outcomes, rollbacks included).
    pub deploys: usize,
    /// Deploys per day over the week.
    pub deploy_frequency_per_day: f64,
    /// Median commit → deploy time of successful deploys, in hours.
    pub lead_time_hours: Option<f64>,
    /// Deploys that failed, or were followed within the window by a
    /// rollback or a production kill switch.
    pub failed_changes: usize,
    /// `failed_changes / deploys`.
    pub change_failure_rate: Option<f64>,
    /// Median failure → restore time, in hours (restore: the rollback, the
    /// kill switch, or the next successful deploy).
    pub time_to_restore_hours: Option<f64>,
}

fn iso_week(t: DateTime<Utc>) -> String {
    let w = t.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn hours(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 3_600_000.0
}

/// Computes DORA figures per service and ISO week from deploys and kill
/// switches. A kill switch is attributed to the service named by a
/// `service:<name>` tag of its flag, else to the latest deploy before it.
pub fn dora(
    deploys: &[Deploy],
    kills: &[KillSwitch],
    flag_service: &BTreeMap<String, String>,
    window: Duration,
) -> Vec<DoraWeek> {
    let mut sorted: Vec<(&Deploy, DateTime<Utc>)> = deploys
        .iter()
        .filter_map(|d| parse(&d.deployed_at).map(|t| (d, t)))
        .collect();
    sorted.sort_by_key(|(d, t)| (*t, d.id));
    // For each deploy: when (and whether) it failed and when it was restored.
    let mut failure: BTreeMap<i64, Option<f64>> = BTreeMap::new();
    for (i, (d, t)) in sorted.iter().enumerate() {
        let later = sorted[i + 1..].iter().filter(|(n, _)| n.service == d.service);
        match d.status {
            DeployStatus::Failed => {
                let restored = later
                    .clone()
                    .find(|(n, _)| n.status != DeployStatus::Failed)
                    .map(|(_, nt)| hours(*nt - *t));
                failure.insert(d.id, restored);
            }
            DeployStatus::Success => {
                let next = later.clone().next();
                if let Some((n, nt)) = next
                    && n.status == DeployStatus::Rollback
                    && *nt - *t <= window
                {
                    failure.insert(d.id, Some(hours(*nt - *t)));
                }
            }
            DeployStatus::Rollback => {}
        }
    }
    for k in kills {
        let Some(kt) = parse(&k.at) else { continue };
        let service = flag_service.get(&k.flag);
        let culprit = sorted
            .iter()
            .rev()
            .filter(|(d, t)| *t <= kt && kt - *t <= window && service.is_none_or(|s| *s == d.service))
            .find(|(d, _)| d.status == DeployStatus::Success);
        if let Some((d, t)) = culprit {
            failure.entry(d.id).or_insert(Some(hours(kt - *t)));
        }
    }
    type Timed<'a> = (&'a Deploy, DateTime<Utc>);
    let mut groups: BTreeMap<(String, String), Vec<Timed>> = BTreeMap::new();
    for (d, t) in &sorted {
        groups
            .entry((d.service.clone(), iso_week(*t)))
            .or_default()
            .push((d, *t));
    }
    groups
        .into_iter()
        .map(|((service, week), ds)| {
            let lead: Vec<f64> = ds
                .iter()
                .filter(|(d, _)| d.status == DeployStatus::Success)
                .filter_map(|(d, t)| parse(&d.commit_at).map(|c| hours(*t - c)))
                .collect();
            let failed: Vec<Option<f64>> = ds.iter().filter_map(|(d, _)| failure.get(&d.id).copied()).collect();
            DoraWeek {
                service,
                week,
                deploys: ds.len(),
                deploy_frequency_per_day: ds.len() as f64 / 7.0,
                lead_time_hours: median(lead),
                failed_changes: failed.len(),
                change_failure_rate: (!ds.is_empty()).then(|| failed.len() as f64 / ds.len() as f64),
                time_to_restore_hours: median(failed.into_iter().flatten().collect()),
            }
        })
        .collect()
}

/// DORA figures of a workspace for deploys in `[since, until)`.
pub async fn dora_for(
    store: &Store,
    ws: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<DoraWeek>, StoreError> {
    let window = Duration::hours(FAILURE_WINDOW_HOURS);
    let deploys = store.list_deploys(ws, &rfc3339(since), &rfc3339(until)).await?;
    let kills = store
        .list_kill_switches(ws, &rfc3339(since), &rfc3339(until + window))
        .await?;
    let flag_service = store
        .list_flags(ws)
        .await?
        .into_iter()
        .filter_map(|f| {
            let service = f.flag.tags.iter().find_map(|t| t.strip_prefix("service:"))?.to_owned();
            Some((f.flag.key, service))
        })
        .collect();
    Ok(dora(&deploys, &kills, &flag_service, window))
}

/// How one metric of the tree moved: its value over a period against the
/// period of the same length before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Movement {
    /// Metric key.
    pub metric: String,
    /// Display name.
    pub name: String,
    /// Parent in the tree (`None` for the North Star).
    pub parent: Option<String>,
    /// Whether it is the North Star.
    pub north_star: bool,
    /// Value over the period (`None`: no data).
    pub current: Option<f64>,
    /// Value over the period before.
    pub previous: Option<f64>,
    /// Relative change `current / previous - 1`.
    pub change: Option<f64>,
    /// `improving`, `worsening`, `flat` or `unknown`, judged against the
    /// metric's good direction.
    pub trend: &'static str,
}

const HOUR_MS: i64 = 3_600_000;

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis().div_euclid(HOUR_MS)
}

/// The production environment metric values are read from: `production`
/// when it exists, else the first environment marked production.
async fn production_env(store: &Store, ws: &str) -> Result<Option<String>, StoreError> {
    let envs = store.list_environments(ws).await?;
    Ok(envs
        .iter()
        .find(|e| e.key == "production")
        .or_else(|| envs.iter().find(|e| e.production))
        .map(|e| e.key.clone()))
}

/// The value of `metric` over `[from, to)` in `env` (whole hours).
async fn metric_value(
    store: &Store,
    ws: &str,
    env: &str,
    metric: &sextant_store::MetricRecord,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<f64>, StoreError> {
    let range = HourRange {
        from: hour_of(from),
        to: hour_of(to),
    };
    let sums = store.metric_sums(ws, env, &metric.metric.key, range).await?;
    Ok(crate::api::metrics::value_of(metric.metric.aggregation, &sums).value)
}

fn judge(direction: Direction, current: Option<f64>, previous: Option<f64>) -> (Option<f64>, &'static str) {
    let (Some(c), Some(p)) = (current, previous) else {
        return (None, "unknown");
    };
    let change = (p != 0.0).then(|| c / p - 1.0);
    let trend = if c == p {
        "flat"
    } else if (c > p) == (direction == Direction::Increase) {
        "improving"
    } else {
        "worsening"
    };
    (change, trend)
}

/// Every metric's movement over `[since, until)` against the period of the
/// same length before, in production. Empty without metrics or without a
/// production environment.
pub async fn movements(
    store: &Store,
    ws: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Movement>, StoreError> {
    let Some(env) = production_env(store, ws).await? else {
        return Ok(Vec::new());
    };
    let before = since - (until - since);
    let mut out = Vec::new();
    for m in store.list_metrics(ws).await? {
        let current = metric_value(store, ws, &env, &m, since, until).await?;
        let previous = metric_value(store, ws, &env, &m, before, since).await?;
        let (change, trend) = judge(m.metric.good_direction, current, previous);
        out.push(Movement {
            metric: m.metric.key.clone(),
            name: m.metric.name.clone(),
            parent: m.metric.parent.clone(),
            north_star: m.metric.north_star,
            current,
            previous,
            change,
            trend,
        });
    }
    // North Star first, then by key: a stable order for reports and tests.
    out.sort_by(|a, b| b.north_star.cmp(&a.north_star).then_with(|| a.metric.cmp(&b.metric)));
    Ok(out)
}

/// An initiative with how its declared metric moved over its window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitiativeStatus {
    /// Initiative key.
    pub initiative: String,
    /// Display name.
    pub name: String,
    /// Team.
    pub team: String,
    /// Accountable owner.
    pub owner: String,
    /// The metric node it declared it will move.
    pub metric: String,
    /// `increase` or `decrease`.
    pub direction: Direction,
    /// Expected relative change (0.05 = 5 %).
    pub expected_change: f64,
    /// Window (YYYY-MM-DD, inclusive).
    pub starts_on: String,
    /// Window end (YYYY-MM-DD, inclusive).
    pub ends_on: String,
    /// `upcoming`, `active` or `ended`.
    pub phase: &'static str,
    /// The metric over the window so far (to `now` or the window's end).
    pub current: Option<f64>,
    /// The metric over the same length before the window.
    pub baseline: Option<f64>,
    /// Relative change against the baseline.
    pub change: Option<f64>,
    /// Whether the change reached the expected change in the declared
    /// direction (`None` without data).
    pub moved: Option<bool>,
}

fn day(s: &str) -> Option<DateTime<Utc>> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Whether `change` reaches `expected` in `direction`.
fn reached(direction: Direction, expected: f64, change: f64) -> bool {
    match direction {
        Direction::Increase => change >= expected.abs(),
        Direction::Decrease => change <= -expected.abs(),
    }
}

/// An initiative's window and metric movement at `now`.
pub async fn initiative_status(
    store: &Store,
    ws: &str,
    env: Option<&str>,
    i: &InitiativeRecord,
    metrics: &[sextant_store::MetricRecord],
    now: DateTime<Utc>,
) -> Result<InitiativeStatus, StoreError> {
    let def = &i.initiative;
    let start = day(&def.starts_on);
    let end = day(&def.ends_on).map(|d| d + Duration::days(1));
    let phase = match (start, end) {
        (Some(s), _) if now < s => "upcoming",
        (_, Some(e)) if now >= e => "ended",
        _ => "active",
    };
    let (mut current, mut baseline) = (None, None);
    if let (Some(env), Some(s), Some(e), Some(m)) =
        (env, start, end, metrics.iter().find(|m| m.metric.key == def.metric))
        && now > s
    {
        let until = e.min(now);
        current = metric_value(store, ws, env, m, s, until).await?;
        baseline = metric_value(store, ws, env, m, s - (until - s), s).await?;
    }
    let change = match (current, baseline) {
        (Some(c), Some(b)) if b != 0.0 => Some(c / b - 1.0),
        _ => None,
    };
    Ok(InitiativeStatus {
        initiative: def.key.clone(),
        name: def.name.clone(),
        team: def.team.clone(),
        owner: def.owner.clone(),
        metric: def.metric.clone(),
        direction: def.direction,
        expected_change: def.expected_change,
        starts_on: def.starts_on.clone(),
        ends_on: def.ends_on.clone(),
        phase,
        current,
        baseline,
        change,
        moved: change.map(|c| reached(def.direction, def.expected_change, c)),
    })
}

/// Every initiative of a workspace with its movement at `now`.
pub async fn initiatives(store: &Store, ws: &str, now: DateTime<Utc>) -> Result<Vec<InitiativeStatus>, StoreError> {
    let env = production_env(store, ws).await?;
    let metrics = store.list_metrics(ws).await?;
    let mut out = Vec::new();
    for i in store.list_initiatives(ws).await? {
        out.push(initiative_status(store, ws, env.as_deref(), &i, &metrics, now).await?);
    }
    Ok(out)
}

/// Days after an initiative's window ends that its post-mortem is due.
pub const POST_MORTEM_DUE_DAYS: i64 = 14;

/// Opens a post-mortem for every initiative whose window has ended and
/// whose declared metric did not move by the expected change (no data
/// counts as not moved: nobody can show it moved). The post-mortem is due
/// [`POST_MORTEM_DUE_DAYS`] after the window and starts from the template:
/// *expected* is filled in from the initiative; *what happened* and *what
/// we learned* are written when it is completed, which records a learning.
/// Idempotent: initiatives that already have one are skipped. Returns the
/// post-mortems opened by this call.
pub async fn open_due_post_mortems(store: &Store, ws: &str, now: DateTime<Utc>) -> Result<Vec<PostMortem>, StoreError> {
    let existing: std::collections::HashSet<String> = store
        .list_post_mortems(ws)
        .await?
        .into_iter()
        .map(|p| p.initiative)
        .collect();
    let mut opened = Vec::new();
    for st in initiatives(store, ws, now).await? {
        if st.phase != "ended" || st.moved == Some(true) || existing.contains(&st.initiative) {
            continue;
        }
        let Some(end) = day(&st.ends_on) else { continue };
        let due = end + Duration::days(1 + POST_MORTEM_DUE_DAYS);
        let dir = match st.direction {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
        };
        let observed = st
            .change
            .map_or_else(|| "no data".to_owned(), |c| format!("{:+.1}%", c * 100.0));
        let expected = format!(
            "`{}` to {dir} by at least {:.1}% between {} and {} (observed: {observed})",
            st.metric,
            st.expected_change.abs() * 100.0,
            st.starts_on,
            st.ends_on
        );
        let meta = ChangeMeta::new(
            "sextant",
            Some(format!("initiative `{}` did not move `{}`", st.initiative, st.metric)),
        );
        let pm = store
            .open_post_mortem(ws, &st.initiative, &st.owner, &rfc3339(due), &expected, &meta)
            .await?
            .value;
        opened.push(pm);
    }
    Ok(opened)
}

/// A rollout that waits for something: its hold has passed (it advances at
/// the next permitted scheduler look), or it is paused (a person must
/// resume or end it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutReady {
    /// Flag key.
    pub flag: String,
    /// Environment.
    pub environment: String,
    /// `running` or `paused`.
    pub status: &'static str,
    /// Current percentage on treatment.
    pub percent: Option<f64>,
    /// The next stage's percentage.
    pub next_percent: Option<f64>,
    /// Why it was paused, if it was.
    pub reason: Option<String>,
}

async fn rollouts_ready(store: &Store, ws: &str, now: DateTime<Utc>) -> Result<Vec<RolloutReady>, StoreError> {
    let mut out = Vec::new();
    for p in store.list_rollout_plans(Some(ws), None).await? {
        let status = match p.status {
            PlanStatus::Running => "running",
            PlanStatus::Paused => "paused",
            _ => continue,
        };
        let next = p.stage.map_or(0, |s| s + 1);
        let Some(next_stage) = p.plan.stages.get(next) else {
            continue;
        };
        let current = p.stage.and_then(|s| p.plan.stages.get(s));
        let hold_over = match (current, p.stage_started_at.as_deref().and_then(parse)) {
            (Some(c), Some(at)) => now - at >= Duration::seconds(i64::try_from(c.min_hold_seconds).unwrap_or(i64::MAX)),
            _ => true,
        };
        if status == "running" && !hold_over {
            continue;
        }
        out.push(RolloutReady {
            flag: p.flag.clone(),
            environment: p.environment.clone(),
            status,
            percent: current.map(|c| c.percent),
            next_percent: Some(next_stage.percent),
            reason: (status == "paused").then(|| p.status_reason.clone()).flatten(),
        });
    }
    Ok(out)
}

/// Flags whose 30-day review decided `kill` but that still serve in a
/// production environment (not turned off, not archived).
async fn overdue_kills(store: &Store, ws: &str) -> Result<Vec<Value>, StoreError> {
    let envs = store.list_environments(ws).await?;
    let archived: std::collections::HashSet<String> = store
        .list_lifecycle(ws)
        .await?
        .into_iter()
        .filter(|l| l.archived_at.is_some())
        .map(|l| l.flag)
        .collect();
    let flags = store.list_flags(ws).await?;
    let mut out = Vec::new();
    for r in store.list_reviews(ws).await? {
        if r.decision != Some(ReviewDecision::Kill) || archived.contains(&r.flag) {
            continue;
        }
        let Some(f) = flags.iter().find(|f| f.flag.key == r.flag) else {
            continue;
        };
        let on: Vec<&str> = envs
            .iter()
            .filter(|e| e.production && f.flag.environments.get(&e.key).is_some_and(|t| t.enabled))
            .map(|e| e.key.as_str())
            .collect();
        if !on.is_empty() {
            out.push(json!({"flag": r.flag, "decided_at": r.reviewed_at, "still_on_in": on}));
        }
    }
    Ok(out)
}

/// Running experiments; none on a backend that has no experiments yet
/// (PostgreSQL answers `Database`), so reviews work on every backend.
async fn running_experiments(store: &Store, ws: &str) -> Result<Vec<sextant_store::ExperimentRecord>, StoreError> {
    match store.list_experiments(ws, Some(ExperimentStatus::Running)).await {
        Err(StoreError::Database(_)) if store.backend_name() == "postgres" => Ok(Vec::new()),
        other => other,
    }
}

/// A review cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// The last day.
    Daily,
    /// The last 7 days.
    Weekly,
    /// The last 30 days.
    Monthly,
    /// The last 91 days.
    Quarterly,
}

impl Cadence {
    /// Parses `daily`, `weekly`, `monthly`, `quarterly`.
    pub fn parse(s: &str) -> Option<Cadence> {
        Some(match s {
            "daily" => Cadence::Daily,
            "weekly" => Cadence::Weekly,
            "monthly" => Cadence::Monthly,
            "quarterly" => Cadence::Quarterly,
            _ => return None,
        })
    }

    fn days(self) -> i64 {
        match self {
            Cadence::Daily => 1,
            Cadence::Weekly => 7,
            Cadence::Monthly => 30,
            Cadence::Quarterly => 91,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cadence::Daily => "Daily",
            Cadence::Weekly => "Weekly",
            Cadence::Monthly => "Monthly",
            Cadence::Quarterly => "Quarterly",
        }
    }
}

/// Builds a review of workspace `ws` for the period ending at `now`, as JSON.
pub async fn review(store: &Store, ws: &str, cadence: Cadence, now: DateTime<Utc>) -> Result<Value, StoreError> {
    let since = now - Duration::days(cadence.days());
    let (s, u) = (rfc3339(since), rfc3339(now));
    let in_period = |t: &str| t >= s.as_str() && t < u.as_str();
    let learnings = store
        .list_learnings(
            ws,
            &LearningFilter {
                since: Some(s.clone()),
                until: Some(u.clone()),
                ..LearningFilter::default()
            },
        )
        .await?;
    let reviews = store.list_reviews(ws).await?;
    let overdue: Vec<_> = reviews
        .iter()
        .filter(|r| r.decision.is_none() && r.due_at.as_str() < u.as_str())
        .collect();
    let decided: Vec<_> = reviews
        .iter()
        .filter(|r| r.reviewed_at.as_deref().is_some_and(in_period))
        .collect();
    let not_moved: Vec<_> = decided
        .iter()
        .filter(|r| match (r.observed_effect, r.hypothesised_effect) {
            (Some(o), Some(h)) => (h >= 0.0 && o < h) || (h < 0.0 && o > h),
            _ => false,
        })
        .collect();
    let violations = store.list_violations(ws, false).await?;
    let open_violations: Vec<_> = violations.iter().filter(|v| v.resolved_at.is_none()).collect();
    let stale = stale_flags(store, ws, STALE_AFTER_DAYS, now).await?;
    let kills = store.list_kill_switches(ws, &s, &u).await?;
    let changes = store.changes_between(ws, &s, &u).await?;
    let pending = store.list_change_requests(ws, Some(RequestStatus::Pending)).await?;
    let post_mortems = store.list_post_mortems(ws).await?;
    let due_soon: Vec<_> = reviews
        .iter()
        .filter(|r| r.decision.is_none() && r.due_at.as_str() >= u.as_str())
        .filter(|r| parse(&r.due_at).is_some_and(|d| d - now <= Duration::days(7)))
        .collect();
    let dora = dora_for(store, ws, since, now).await?;
    let metrics = if cadence == Cadence::Daily {
        Vec::new()
    } else {
        movements(store, ws, since, now).await?
    };
    let mut out = json!({
        "workspace": ws,
        "cadence": cadence,
        "period": {"since": s, "until": u},
    });
    match cadence {
        Cadence::Daily => {
            out["changes"] = json!(changes);
            out["guardrails"] = guardrail_events(&changes);
            out["kills"] = json!(kills);
            out["deploys"] = json!(store.list_deploys(ws, &s, &u).await?);
        }
        Cadence::Weekly => {
            out["learned"] = json!({"learnings": learnings, "reviews": decided});
            out["stop"] = json!({
                "not_moved": not_moved, "overdue_reviews": overdue, "stale_flags": stale,
                "principle_violations": open_violations,
            });
            let experiments = running_experiments(store, ws).await?;
            let significant: Vec<Value> = experiments
                .iter()
                .filter(|e| e.significant_at.is_some())
                .map(|e| {
                    json!({"experiment": e.definition.key, "flag": e.definition.flag,
                           "primary_metric": e.definition.primary_metric,
                           "significant_at": e.significant_at, "decide_by": e.decide_by})
                })
                .collect();
            let overdue_decisions: Vec<Value> = experiments
                .iter()
                .filter(|e| e.decide_by.as_deref().is_some_and(|d| d < u.as_str()))
                .map(|e| json!({"experiment": e.definition.key, "decide_by": e.decide_by}))
                .collect();
            out["stop"]["overdue_kills"] = json!(overdue_kills(store, ws).await?);
            out["stop"]["overdue_decisions"] = json!(overdue_decisions);
            out["start"] = json!({
                "significant_experiments": significant,
                "rollouts_ready": rollouts_ready(store, ws, now).await?,
                "reviews_due": due_soon, "pending_approvals": pending,
            });
            out["metrics"] = json!(metrics);
            out["velocity"] = json!(dora);
        }
        Cadence::Monthly => {
            let mut by_owner: BTreeMap<&str, Vec<&sextant_store::Learning>> = BTreeMap::new();
            for l in &learnings {
                by_owner.entry(&l.owner).or_default().push(l);
            }
            out["learnings_by_owner"] = json!(by_owner);
            out["initiatives"] = json!(initiatives(store, ws, now).await?);
            out["post_mortems"] = json!(post_mortems);
            out["metrics"] = json!(metrics);
            out["velocity"] = json!(dora);
        }
        Cadence::Quarterly => {
            let principles = store.list_principles(ws).await?;
            let in_quarter: Vec<_> = violations.iter().filter(|v| in_period(&v.created_at)).collect();
            let killed: Vec<_> = decided
                .iter()
                .filter(|r| r.decision == Some(ReviewDecision::Kill))
                .map(|r| r.flag.clone())
                .collect();
            let removed: Vec<_> = changes
                .iter()
                .filter(|c| c.kind == "flag" && matches!(c.action.as_str(), "delete" | "archive"))
                .map(|c| json!({"flag": c.key, "action": c.action, "at": c.at}))
                .collect();
            out["north_star"] = json!(metrics.iter().find(|m| m.north_star));
            out["metrics"] = json!(metrics);
            out["principles"] = json!(principles);
            out["violations"] = json!(in_quarter);
            out["open_violations"] = json!(open_violations);
            out["killed"] = json!({"reviews": killed, "kill_switches": kills, "removed": removed});
            out["velocity"] = json!(dora);
        }
    }
    Ok(out)
}

/// What the rollout scheduler did in a period, from its change records
/// (plan progress it wrote as [`crate::scheduler::ACTOR`]): guardrail
/// breaches (each one paused or rolled back a rollout), stage advances,
/// completions and rollouts ended because their flag was turned off.
/// Operators' own pauses and resumes are changes, not guardrail events.
pub fn guardrail_events(changes: &[ChangeRecord]) -> Value {
    let (mut pauses, mut rollbacks, mut advances) = (0, 0, 0);
    let mut events = Vec::new();
    for c in changes
        .iter()
        .filter(|c| c.kind == "rollout_plan" && c.actor == crate::scheduler::ACTOR)
    {
        let event = match c.action.as_str() {
            "rollout_pause" => {
                pauses += 1;
                "breach_paused"
            }
            "rollout_rollback" => {
                rollbacks += 1;
                "breach_rolled_back"
            }
            "rollout_advance" => {
                advances += 1;
                "stage_advanced"
            }
            "rollout_complete" => "completed",
            "kill" => "ended_by_kill_switch",
            _ => continue,
        };
        let after = c.after.clone().unwrap_or(Value::Null);
        events.push(json!({
            "event": event, "flag": c.key, "environment": c.environment, "at": c.at,
            "stage": after["stage"], "status": after["status"], "reason": c.reason,
        }));
    }
    json!({
        "breaches": pauses + rollbacks, "auto_pauses": pauses, "rollbacks": rollbacks,
        "stage_advances": advances, "events": events,
    })
}

fn list(md: &mut String, title: &str, items: &[String]) {
    let _ = writeln!(md, "\n### {title}\n");
    if items.is_empty() {
        md.push_str("- none\n");
    }
    for i in items {
        let _ = writeln!(md, "- {i}");
    }
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |x| format!("{:+.1}%", x * 100.0))
}

/// Renders a review (from [`review`]) as Markdown.
pub fn markdown(r: &Value) -> String {
    let cadence = Cadence::parse(s(r, "cadence")).unwrap_or(Cadence::Weekly);
    let mut md = format!(
        "# {} review — {}\n\n{} to {}\n",
        cadence.name(),
        s(r, "workspace"),
        s(&r["period"], "since"),
        s(&r["period"], "until")
    );
    let learning = |l: &&Value| {
        format!(
            "{} — {} ({}{})",
            s(l, "what"),
            s(l, "owner"),
            s(l, "source"),
            l["evidence"]
                .as_str()
                .map(|e| format!(", evidence: {e}"))
                .unwrap_or_default()
        )
    };
    let review = |x: &&Value| {
        format!(
            "`{}`: {} — observed {} vs hypothesised {}",
            s(x, "flag"),
            x["decision"].as_str().unwrap_or("open"),
            pct(&x["observed_effect"]),
            pct(&x["hypothesised_effect"])
        )
    };
    let violation = |v: &&Value| {
        format!(
            "{} violated by {} — owner {}, review {}: {}",
            s(v, "principle"),
            s(v, "subject"),
            s(v, "owner"),
            s(v, "review_date"),
            s(v, "justification")
        )
    };
    let dora = |d: &&Value| {
        format!(
            "{} {}: {} deploys, lead time {} h, change failure rate {}, time to restore {} h",
            s(d, "service"),
            s(d, "week"),
            d["deploys"],
            d["lead_time_hours"]
                .as_f64()
                .map_or("n/a".into(), |h| format!("{h:.1}")),
            d["change_failure_rate"]
                .as_f64()
                .map_or("n/a".into(), |x| format!("{:.0}%", x * 100.0)),
            d["time_to_restore_hours"]
                .as_f64()
                .map_or("n/a".into(), |h| format!("{h:.1}"))
        )
    };
    let num = |v: &Value| v.as_f64().map_or_else(|| "n/a".to_owned(), |x| format!("{x:.4}"));
    let movement = |m: &&Value| {
        format!(
            "`{}`{}: {} (was {}), {} — {}",
            s(m, "metric"),
            if m["north_star"] == true { " (North Star)" } else { "" },
            num(&m["current"]),
            num(&m["previous"]),
            pct(&m["change"]),
            s(m, "trend")
        )
    };
    let movements = |md: &mut String, r: &Value| {
        md.push_str("\n## Metric tree movement\n");
        list(
            md,
            "Against the period before",
            &arr(r, &["metrics"]).iter().map(movement).collect::<Vec<_>>(),
        );
    };
    match cadence {
        Cadence::Daily => {
            md.push_str("\n## What changed\n");
            let changes: Vec<String> = arr(r, &["changes"])
                .iter()
                .map(|c| {
                    format!(
                        "{} {} {} `{}` by {}",
                        s(c, "at"),
                        s(c, "action"),
                        s(c, "kind"),
                        s(c, "key"),
                        s(c, "actor")
                    )
                })
                .collect();
            list(&mut md, "Changes", &changes);
            let g = &r["guardrails"];
            let guardrails: Vec<String> = arr(g, &["events"])
                .iter()
                .map(|e| {
                    format!(
                        "{} `{}` in {}: {} — {}",
                        s(e, "at"),
                        s(e, "flag"),
                        s(e, "environment"),
                        s(e, "event").replace('_', " "),
                        s(e, "reason")
                    )
                })
                .collect();
            list(
                &mut md,
                &format!(
                    "Guardrails: {} breaches ({} paused, {} rolled back), {} stage advances",
                    g["breaches"], g["auto_pauses"], g["rollbacks"], g["stage_advances"]
                ),
                &guardrails,
            );
            let kills: Vec<String> = arr(r, &["kills"])
                .iter()
                .map(|k| {
                    format!(
                        "`{}` off in {} at {} by {}",
                        s(k, "flag"),
                        s(k, "environment"),
                        s(k, "at"),
                        s(k, "actor")
                    )
                })
                .collect();
            list(&mut md, "Kill switches", &kills);
            let deploys: Vec<String> = arr(r, &["deploys"])
                .iter()
                .map(|d| {
                    format!(
                        "{} {} at {}: {}",
                        s(d, "service"),
                        s(d, "version"),
                        s(d, "deployed_at"),
                        s(d, "status")
                    )
                })
                .collect();
            list(&mut md, "Deploys", &deploys);
        }
        Cadence::Weekly => {
            md.push_str("\n## What we learned\n");
            list(
                &mut md,
                "Learnings",
                &arr(r, &["learned", "learnings"])
                    .iter()
                    .map(learning)
                    .collect::<Vec<_>>(),
            );
            list(
                &mut md,
                "30-day reviews",
                &arr(r, &["learned", "reviews"]).iter().map(review).collect::<Vec<_>>(),
            );
            md.push_str("\n## What to stop\n");
            list(
                &mut md,
                "Metric did not move",
                &arr(r, &["stop", "not_moved"]).iter().map(review).collect::<Vec<_>>(),
            );
            let overdue: Vec<String> = arr(r, &["stop", "overdue_reviews"])
                .iter()
                .map(|x| format!("`{}` review was due {}", s(x, "flag"), s(x, "due_at")))
                .collect();
            list(&mut md, "Overdue reviews", &overdue);
            let stale: Vec<String> = arr(r, &["stop", "stale_flags"])
                .iter()
                .map(|x| {
                    format!(
                        "`{}` at {} in {} for {} days",
                        s(x, "flag"),
                        s(x, "serving"),
                        s(x, "environment"),
                        x["days"]
                    )
                })
                .collect();
            list(&mut md, "Stale flags (remove from code)", &stale);
            list(
                &mut md,
                "Principle violations",
                &arr(r, &["stop", "principle_violations"])
                    .iter()
                    .map(violation)
                    .collect::<Vec<_>>(),
            );
            let kills: Vec<String> = arr(r, &["stop", "overdue_kills"])
                .iter()
                .map(|x| {
                    format!(
                        "`{}` was to be killed at its review ({}) but is still on in {}",
                        s(x, "flag"),
                        s(x, "decided_at"),
                        x["still_on_in"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    )
                })
                .collect();
            list(&mut md, "Overdue kills", &kills);
            let late: Vec<String> = arr(r, &["stop", "overdue_decisions"])
                .iter()
                .map(|x| {
                    format!(
                        "experiment `{}` was to be decided by {}",
                        s(x, "experiment"),
                        s(x, "decide_by")
                    )
                })
                .collect();
            list(&mut md, "Experiments past their decision date", &late);
            md.push_str("\n## What to start\n");
            let sig: Vec<String> = arr(r, &["start", "significant_experiments"])
                .iter()
                .map(|x| {
                    format!(
                        "experiment `{}` (flag `{}`) reached significance on `{}` at {}; decide by {}",
                        s(x, "experiment"),
                        s(x, "flag"),
                        s(x, "primary_metric"),
                        s(x, "significant_at"),
                        s(x, "decide_by")
                    )
                })
                .collect();
            list(&mut md, "Experiments reaching significance", &sig);
            let ready: Vec<String> = arr(r, &["start", "rollouts_ready"])
                .iter()
                .map(|x| {
                    let at = x["percent"]
                        .as_f64()
                        .map_or("not started".to_owned(), |p| format!("{p}%"));
                    let next = x["next_percent"].as_f64().map_or("-".to_owned(), |p| format!("{p}%"));
                    match s(x, "status") {
                        "paused" => format!(
                            "`{}` in {} paused at {at} ({}): resume to {next} or end it",
                            s(x, "flag"),
                            s(x, "environment"),
                            x["reason"].as_str().unwrap_or("no reason given")
                        ),
                        _ => format!(
                            "`{}` in {}: {at} held long enough, next {next}",
                            s(x, "flag"),
                            s(x, "environment")
                        ),
                    }
                })
                .collect();
            list(&mut md, "Rollouts ready to advance", &ready);
            let due: Vec<String> = arr(r, &["start", "reviews_due"])
                .iter()
                .map(|x| format!("`{}` review due {}", s(x, "flag"), s(x, "due_at")))
                .collect();
            list(&mut md, "Reviews due this week", &due);
            let pending: Vec<String> = arr(r, &["start", "pending_approvals"])
                .iter()
                .map(|x| {
                    format!(
                        "#{} {} `{}` requested by {}",
                        x["id"],
                        s(x, "action"),
                        s(x, "key"),
                        s(x, "requested_by")
                    )
                })
                .collect();
            list(&mut md, "Approvals waiting", &pending);
            movements(&mut md, r);
            md.push_str("\n## Velocity (DORA)\n");
            list(
                &mut md,
                "Per service and week",
                &arr(r, &["velocity"]).iter().map(dora).collect::<Vec<_>>(),
            );
        }
        Cadence::Monthly => {
            md.push_str("\n## Learnings per owner\n");
            if let Some(owners) = r["learnings_by_owner"].as_object() {
                for (owner, ls) in owners {
                    let items: Vec<String> = ls
                        .as_array()
                        .map(|a| a.iter().collect::<Vec<_>>())
                        .unwrap_or_default()
                        .iter()
                        .map(learning)
                        .collect();
                    list(&mut md, owner, &items);
                }
            }
            let pms: Vec<String> = arr(r, &["post_mortems"])
                .iter()
                .map(|p| {
                    format!(
                        "initiative `{}` ({}): {}",
                        s(p, "initiative"),
                        s(p, "owner"),
                        p["learned"]
                            .as_str()
                            .map_or_else(|| format!("due {}", s(p, "due_at")), str::to_owned)
                    )
                })
                .collect();
            let inits: Vec<String> = arr(r, &["initiatives"])
                .iter()
                .map(|i| {
                    let moved = match i["moved"].as_bool() {
                        Some(true) => "moved as expected",
                        Some(false) => "not moved as expected",
                        None => "no data",
                    };
                    format!(
                        "`{}` ({}, {}): `{}` {} by {} expected, {} so far, {} ({}, {} to {})",
                        s(i, "initiative"),
                        s(i, "team"),
                        s(i, "owner"),
                        s(i, "metric"),
                        s(i, "direction"),
                        pct(&i["expected_change"]),
                        pct(&i["change"]),
                        moved,
                        s(i, "phase"),
                        s(i, "starts_on"),
                        s(i, "ends_on")
                    )
                })
                .collect();
            list(&mut md, "Initiatives and their metrics", &inits);
            list(&mut md, "Initiatives and post-mortems", &pms);
            movements(&mut md, r);
            list(
                &mut md,
                "Velocity (DORA)",
                &arr(r, &["velocity"]).iter().map(dora).collect::<Vec<_>>(),
            );
        }
        Cadence::Quarterly => {
            let principles: Vec<String> = arr(r, &["principles"])
                .iter()
                .map(|p| format!("**{}** — {}", s(p, "name"), s(p, "description")))
                .collect();
            md.push_str("\n## North Star\n");
            let ns: Vec<String> = if r["north_star"].is_null() {
                Vec::new()
            } else {
                vec![movement(&&r["north_star"])]
            };
            list(&mut md, "This quarter against the one before", &ns);
            movements(&mut md, r);
            list(&mut md, "Principles", &principles);
            list(
                &mut md,
                "Violations this quarter",
                &arr(r, &["violations"]).iter().map(violation).collect::<Vec<_>>(),
            );
            list(
                &mut md,
                "Still open",
                &arr(r, &["open_violations"]).iter().map(violation).collect::<Vec<_>>(),
            );
            let mut killed: Vec<String> = arr(r, &["killed", "reviews"])
                .iter()
                .map(|f| format!("`{}` killed at its 30-day review", f.as_str().unwrap_or("")))
                .collect();
            killed.extend(
                arr(r, &["killed", "removed"])
                    .iter()
                    .map(|x| format!("`{}` {}d {}", s(x, "flag"), s(x, "action"), s(x, "at"))),
            );
            killed.extend(
                arr(r, &["killed", "kill_switches"])
                    .iter()
                    .map(|k| format!("`{}` kill switch {}", s(k, "flag"), s(k, "at"))),
            );
            list(&mut md, "What was killed", &killed);
            list(
                &mut md,
                "Velocity (DORA)",
                &arr(r, &["velocity"]).iter().map(dora).collect::<Vec<_>>(),
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(id: i64, service: &str, commit: &str, at: &str, status: DeployStatus) -> Deploy {
        Deploy {
            id,
            service: service.into(),
            version: format!("v{id}"),
            commit_at: commit.into(),
            deployed_at: at.into(),
            status,
        }
    }

    #[test]
    fn dora_counts_failures_rollbacks_and_kill_switches_per_service_and_week() {
        let deploys = vec![
            deploy(
                1,
                "api",
                "2025-03-03T08:00:00Z",
                "2025-03-03T10:00:00Z",
                DeployStatus::Success,
            ),
            deploy(
                2,
                "api",
                "2025-03-04T08:00:00Z",
                "2025-03-04T12:00:00Z",
                DeployStatus::Success,
            ),
            deploy(
                3,
                "api",
                "2025-03-04T08:00:00Z",
                "2025-03-04T13:00:00Z",
                DeployStatus::Rollback,
            ),
            deploy(
                4,
                "api",
                "2025-03-05T09:00:00Z",
                "2025-03-05T10:00:00Z",
                DeployStatus::Failed,
            ),
            deploy(
                5,
                "api",
                "2025-03-05T09:00:00Z",
                "2025-03-05T12:00:00Z",
                DeployStatus::Success,
            ),
            deploy(
                6,
                "web",
                "2025-03-06T00:00:00Z",
                "2025-03-06T06:00:00Z",
                DeployStatus::Success,
            ),
            deploy(
                7,
                "web",
                "2025-03-10T00:00:00Z",
                "2025-03-10T01:00:00Z",
                DeployStatus::Success,
            ),
        ];
        let kills = vec![KillSwitch {
            change_id: 1,
            at: "2025-03-06T06:30:00Z".into(),
            flag: "new-checkout".into(),
            environment: "production".into(),
            actor: "oncall".into(),
        }];
        let services = BTreeMap::from([("new-checkout".to_owned(), "web".to_owned())]);
        let weeks = dora(&deploys, &kills, &services, Duration::hours(24));
        let api = weeks.iter().find(|w| w.service == "api").unwrap();
        assert_eq!((api.week.as_str(), api.deploys), ("2025-W10", 5));
        // Deploy 2 was rolled back (1 h), deploy 4 failed (restored after 2 h).
        assert_eq!(api.failed_changes, 2);
        assert_eq!(api.change_failure_rate, Some(0.4));
        assert_eq!(api.time_to_restore_hours, Some(1.5));
        // Successful deploys' lead times: 2, 4, 3 hours.
        assert_eq!(api.lead_time_hours, Some(3.0));
        let web = weeks
            .iter()
            .find(|w| w.service == "web" && w.week == "2025-W10")
            .unwrap();
        assert_eq!((web.failed_changes, web.time_to_restore_hours), (1, Some(0.5)));
        let web11 = weeks
            .iter()
            .find(|w| w.service == "web" && w.week == "2025-W11")
            .unwrap();
        assert_eq!((web11.deploys, web11.failed_changes), (1, 0));
    }

    #[test]
    fn a_flag_serving_one_variation_to_everyone_is_uniform() {
        let flag: Flag = serde_json::from_value(json!({
            "key": "f", "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {
                "production": {"enabled": true, "default_serve": {"variation": "on"}},
                "staging": {"enabled": true, "rules": [{"rollout": {"weight": 50000}, "serve": {"variation": "on"}}]},
                "development": {"enabled": false}
            }
        }))
        .unwrap();
        assert_eq!(uniform(&flag, "production"), Some("100%"));
        assert_eq!(uniform(&flag, "staging"), None);
        assert_eq!(uniform(&flag, "development"), Some("0%"));
        assert_eq!(uniform(&flag, "elsewhere"), Some("0%"));
    }
}
