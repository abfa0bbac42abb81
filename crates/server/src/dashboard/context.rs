//! "Context at decision time": the panel beside every form that changes
//! something, showing what the decision needs.

use std::sync::atomic::Ordering;

use std::collections::BTreeMap;

use maud::{Markup, html};
use sextant_stats::sequential::{Direction as StatsDirection, GuardrailStatus, SequentialMonitor};
use sextant_store::{
    AuditFilter, ChangeClass, Direction as MetricDirection, Environment, ExperimentRecord, ExperimentStatus,
    FlagRecord, PlanRecord, PlanStatus, Role, Violation,
};

use super::charts;
use super::layout::enc;
use super::session::Ui;
use super::time;
use crate::api::metrics::{TreeNode, TreeQuery, Trend};
use crate::auth::Action;
use crate::error::ApiQuery;
use crate::live::{REASON_NAMES, REASONS};
use crate::state::AppState;

/// The change a form makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Turning a flag on (`true`) or off (`false`, the kill switch).
    Toggle(bool),
    /// Changing targeting (rules, default serve, split).
    Targeting,
    /// Creating a flag.
    Create,
    /// Starting, pausing or resuming a rollout plan.
    Rollout,
    /// Deciding an experiment (ship, kill, iterate).
    Experiment,
    /// Asking to archive or restore a flag (always needs approval).
    Archive,
    /// Approving or rejecting a change request.
    Approval,
}

impl Decision {
    /// The policy action this decision is classified as, when the
    /// workspace policy may gate it.
    fn policy_action(self) -> Option<&'static str> {
        match self {
            Decision::Targeting => Some("flag.targeting"),
            Decision::Archive => Some("flag.archive"),
            _ => None,
        }
    }
}

/// Evaluations of `flag` in `ws`/`env` since the server started, by reason.
pub fn counts(state: &AppState, ws: &str, env: &str, flag: &str) -> Option<[u64; REASONS]> {
    let slot = state.live.all().into_iter().find(|s| {
        let p = s.load();
        p.workspace == ws && p.environment == env
    })?;
    let published = slot.load();
    let i = *published.index.get(flag)?;
    let c = published.counters.get(i)?;
    Some(std::array::from_fn(|r| c[r].load(Ordering::Relaxed)))
}

/// What the panel knows about a flag's target metric.
struct MetricNow {
    key: String,
    name: String,
    value: Option<f64>,
    change: Option<f64>,
    trend: Trend,
    window: String,
    environment: String,
}

/// The target metric's value over the last 7 days and its trend against
/// the 7 days before, from the metrics API's own tree.
async fn metric_now(state: &AppState, ui: &Ui, ws: &str, env: &str, metric: &str) -> Option<MetricNow> {
    let query = TreeQuery {
        workspace: Some(ws.to_owned()),
        environment: Some(env.to_owned()),
        window: Some("7d".into()),
        at: None,
    };
    let tree = crate::api::metrics::tree(axum::extract::State(state.clone()), ui.admin(), ApiQuery(query))
        .await
        .ok()?
        .0;
    fn find<'a>(n: &'a TreeNode, key: &str) -> Option<&'a TreeNode> {
        if n.metric.key == key {
            return Some(n);
        }
        n.children.iter().find_map(|c| find(c, key))
    }
    let node = find(tree.north_star.as_ref()?, metric)?;
    Some(MetricNow {
        key: node.metric.key.clone(),
        name: node.metric.name.clone(),
        value: node.current.value,
        change: node.change,
        trend: node.trend,
        window: "7 days".into(),
        environment: tree.environment,
    })
}

/// A guardrail of a rollout plan and its verdict from the stored monitor.
pub struct GuardrailState {
    /// Metric key.
    pub metric: String,
    /// `breached`, `clear`, `inconclusive` or `no look yet`.
    pub verdict: &'static str,
    /// Looks taken.
    pub looks: u64,
    /// Treatment − control interval, when looked at.
    pub ci: Option<(f64, f64)>,
}

/// Each guardrail of `plan` with the verdict of its stored sequential
/// monitor (the scheduler's own test, re-read, not recomputed).
pub fn guardrails(plan: &PlanRecord) -> Vec<GuardrailState> {
    let monitors: BTreeMap<String, SequentialMonitor> =
        serde_json::from_value(plan.monitors.clone()).unwrap_or_default();
    plan.plan
        .guardrails
        .iter()
        .map(|g| {
            let m = monitors.get(&g.metric).filter(|m| m.looks > 0);
            let direction = match g.direction {
                sextant_core::Direction::Increase => StatsDirection::HigherIsBetter,
                sextant_core::Direction::Decrease => StatsDirection::LowerIsBetter,
            };
            let verdict = match m.map(|m| m.guardrail(direction, g.tolerance)) {
                None => "no look yet",
                Some(Ok(GuardrailStatus::Breached)) => "breached",
                Some(Ok(GuardrailStatus::Clear)) => "clear",
                Some(Ok(GuardrailStatus::Inconclusive)) | Some(Err(_)) => "inconclusive",
            };
            GuardrailState {
                metric: g.metric.clone(),
                verdict,
                looks: m.map_or(0, |m| m.looks),
                ci: m.map(|m| (m.ci.lower, m.ci.upper)),
            }
        })
        .collect()
}

/// The guardrail list as markup.
pub fn guardrail_list(states: &[GuardrailState]) -> Markup {
    html! {
        ul .guardrails {
            @for g in states {
                li {
                    code { (g.metric) } ": "
                    span class=(match g.verdict { "breached" => "bad", "clear" => "good", _ => "muted" }) { (g.verdict) }
                    @if let Some((lo, hi)) = g.ci {
                        span .muted { " (treatment − control in [" (charts::format_value(lo)) ", " (charts::format_value(hi)) "], " (g.looks) " looks)" }
                    }
                }
            }
        }
    }
}

/// A running experiment's key, its guardrails' verdicts at this look, and
/// whether its sample ratio is off.
type ExperimentGuards = (String, Vec<(String, &'static str)>, bool);

/// The panel. `flag` and `env` are what the form changes, when known.
pub async fn panel(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    flag: Option<&FlagRecord>,
    env: Option<&Environment>,
    decision: Decision,
) -> Markup {
    let f = flag.map(|r| &r.flag);
    let allowed = match (decision, env) {
        (Decision::Toggle(true), Some(e)) => ui.may(Action::TurnOn(e)),
        (Decision::Toggle(false), Some(e)) => ui.may(Action::TurnOff(e)),
        (Decision::Targeting | Decision::Rollout, Some(e)) => ui.may(Action::EditTargeting(e)),
        (Decision::Experiment, _) => ui.may(Action::DecideExperiment),
        (Decision::Archive, _) => ui.may(Action::DeleteFlag),
        (Decision::Approval, _) => matches!(ui.role, Role::Product | Role::Admin),
        _ => ui.may(Action::EditFlag),
    };
    let store = &state.store;
    let last_change = match flag {
        Some(r) => store
            .list_audit(&AuditFilter {
                workspace: Some(ws.to_owned()),
                kind: Some("flag".into()),
                key: Some(r.flag.key.clone()),
                limit: Some(1000),
                ..AuditFilter::default()
            })
            .await
            .ok()
            .and_then(|entries| entries.into_iter().last()),
        None => None,
    };
    // Flags that list this one as a prerequisite in this environment are
    // affected by a kill or a targeting change too.
    let dependents: Vec<String> = match (flag, env) {
        (Some(r), Some(e)) => store
            .list_flags(ws)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|other| {
                other
                    .flag
                    .environments
                    .get(&e.key)
                    .is_some_and(|t| t.prerequisites.iter().any(|p| p.flag == r.flag.key))
            })
            .map(|other| other.flag.key)
            .collect(),
        _ => Vec::new(),
    };
    let traffic = match (f, env) {
        (Some(f), Some(e)) => counts(state, ws, &e.key, &f.key),
        _ => None,
    };
    // The target metric where the decision takes effect (production when
    // no environment is named).
    let metric_env = env.map_or_else(|| "production".to_owned(), |e| e.key.clone());
    let target = f.and_then(|f| f.hypothesis.as_ref()).and_then(|h| h.metric.clone());
    let metric = match &target {
        Some(m) => metric_now(state, ui, ws, &metric_env, m).await,
        None => None,
    };
    // Rollout plans of this flag (in this environment when one is named).
    let plans: Vec<PlanRecord> = match f {
        Some(f) => store
            .list_rollout_plans(Some(ws), None)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.flag == f.key && env.is_none_or(|e| e.key == p.environment))
            .filter(|p| {
                matches!(
                    p.status,
                    PlanStatus::Running | PlanStatus::Paused | PlanStatus::RolledBack
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let experiments: Vec<ExperimentRecord> = match f {
        Some(f) => store
            .list_experiments(ws, Some(ExperimentStatus::Running))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|x| x.definition.flag == f.key && env.is_none_or(|e| e.key == x.definition.environment))
            .collect(),
        None => Vec::new(),
    };
    // Each running experiment's guardrails at this look: the experiments
    // API's own analysis (a look, like `GET …/results`).
    let mut experiment_guards: Vec<ExperimentGuards> = Vec::new();
    for x in experiments.iter().filter(|x| !x.definition.guardrails.is_empty()) {
        let path = axum::extract::Path((ws.to_owned(), x.definition.key.clone()));
        let verdicts =
            match crate::api::experiments::results(axum::extract::State(state.clone()), ui.admin(), path).await {
                Ok(r) => {
                    let a = &r.0.analysis;
                    let rows = a
                        .guardrails
                        .iter()
                        .map(|m| {
                            let worse = m.comparisons.iter().any(|c| {
                                c.significant
                                    && c.difference
                                        .is_some_and(|d| (d > 0.0) != (m.good_direction == MetricDirection::Increase))
                            });
                            let better = m.comparisons.iter().any(|c| c.significant) && !worse;
                            let verdict = if worse {
                                "significantly worse"
                            } else if better {
                                "significantly better"
                            } else {
                                "no significant change"
                            };
                            (m.metric.clone(), verdict)
                        })
                        .collect();
                    (rows, a.srm.mismatch)
                }
                Err(_) => (
                    x.definition
                        .guardrails
                        .iter()
                        .map(|g| (g.clone(), "no results yet"))
                        .collect(),
                    false,
                ),
            };
        experiment_guards.push((x.definition.key.clone(), verdicts.0, verdicts.1));
    }
    let principles = store.list_principles(ws).await.unwrap_or_default();
    let violations: Vec<Violation> = match f {
        Some(f) => store
            .list_violations(ws, true)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.subject == format!("flag:{}", f.key))
            .collect(),
        None => Vec::new(),
    };
    let gated = match decision.policy_action() {
        Some(action) => store
            .get_policy(ws)
            .await
            .map(|p| p.policy.classify(action) == ChangeClass::Irreversible)
            .unwrap_or(false),
        None => false,
    };
    html! {
        aside .context aria-labelledby="context-title" {
            h2 #context-title { "Context for this decision" }
            dl {
                @if let Some(f) = f {
                    dt { "Owner" }
                    dd { (f.owner.as_deref().unwrap_or("nobody — set an owner")) }
                    dt { "Hypothesis" }
                    dd {
                        @match &f.hypothesis {
                            Some(h) if h.operational => { "Operational flag: declares no metric. " (h.reason) }
                            Some(h) => {
                                (h.reason)
                                @if let Some(m) = &h.metric {
                                    br; "Target metric: " code { (m) }
                                    @if let Some(d) = h.direction { " should " (format!("{d:?}").to_lowercase()) }
                                    @if let Some(e) = h.minimum_effect { " by at least " (format!("{:.1}%", e * 100.0)) }
                                }
                            }
                            None => span .warn { "No hypothesis declared: this flag names no metric it will move." }
                        }
                    }
                    @if let Some(m) = &target {
                        dt { "Target metric now" }
                        dd #context-metric {
                            @match &metric {
                                Some(now) => {
                                    (now.name) " (" code { (now.key) } ") in " (now.environment) ", last " (now.window) ": "
                                    strong { (now.value.map_or("no data".into(), charts::format_value)) }
                                    ", "
                                    span class=(trend_class(now.trend)) {
                                        (trend_text(now.trend))
                                        @if let Some(c) = now.change { " (" (charts::signed_pct(c)) " on the 7 days before)" }
                                    }
                                }
                                None => { code { (m) } " is not in the metric tree yet, so it has no value." }
                            }
                        }
                    }
                }
                @if let Some(e) = env {
                    dt { "Environment" }
                    dd { (e.name) @if e.production { " " span .badge.prod { "production" } } }
                    @if let Some(c) = traffic {
                        dt { "Traffic since start" }
                        dd {
                            (c.iter().sum::<u64>()) " evaluations"
                            @let nonzero: Vec<String> = c.iter().zip(REASON_NAMES).filter(|(n, _)| **n > 0).map(|(n, r)| format!("{r} {n}")).collect();
                            @if !nonzero.is_empty() { " (" (nonzero.join(", ")) ")" }
                        }
                    }
                }
                @if f.is_some() {
                    dt { "Guardrails" }
                    dd #context-guardrails {
                        @if plans.is_empty() && experiments.iter().all(|x| x.definition.guardrails.is_empty()) {
                            "None watched: no rollout plan or running experiment guards this flag here."
                        }
                        @for p in &plans {
                            "Rollout in " (p.environment) " is " strong { (p.status.as_str()) }
                            @if let Some(r) = &p.status_reason { " (" (r) ")" }
                            @let g = guardrails(p);
                            @if g.is_empty() { ", with no guardrail metric." } @else { (guardrail_list(&g)) }
                        }
                        @for (key, rows, srm) in &experiment_guards {
                            "Experiment " code { (key) } ":"
                            ul .guardrails {
                                @for (metric, verdict) in rows {
                                    li { code { (metric) } ": "
                                        span class=(match *verdict { "significantly worse" => "bad", "significantly better" => "good", _ => "muted" }) { (verdict) } }
                                }
                            }
                            @if *srm { p .bad { "Sample ratio mismatch: do not trust its numbers." } }
                        }
                    }
                    dt { "Running experiments" }
                    dd #context-experiments {
                        @if experiments.is_empty() { "None on this flag." }
                        @for x in &experiments {
                            a href=(format!("/w/{}/experiments/{}", enc(ws), enc(&x.definition.key))) { (x.definition.name.as_deref().unwrap_or(&x.definition.key)) }
                            " in " (x.definition.environment) ", primary metric " code { (x.definition.primary_metric) }
                            @if decision != Decision::Experiment { span .warn { " — changing this flag changes what the experiment measures." } }
                            br;
                        }
                    }
                }
                dt { "Principles" }
                dd #context-principles {
                    @if principles.is_empty() { "None defined for this workspace." }
                    @else {
                        ul { @for p in &principles { li { strong { (p.name) } ": " (p.description) } } }
                    }
                    @for v in &violations {
                        p .warn { "Declared violation of " code { (v.principle) } " by " (v.owner) ": " (v.justification) " (review by " (v.review_date) ")" }
                    }
                }
                @if !dependents.is_empty() {
                    dt { "Depends on it" }
                    dd .warn { (dependents.join(", ")) " require this flag and change with it." }
                }
                @if let Some(a) = &last_change {
                    dt { "Last change" }
                    dd { (a.action) " by " (a.actor) ", " (time::short(&a.at)) }
                }
                dt { "Reversible?" }
                dd #context-reversible {
                    @match (decision, gated) {
                        (Decision::Toggle(false), _) => "Yes. The kill switch applies at once everywhere (SDKs and OFREP within a second); turn the flag back on to undo. No approval needed.",
                        (Decision::Toggle(true), _) => "Yes. Applies at once; the kill switch undoes it. No approval needed.",
                        (Decision::Targeting, false) => "Yes. Applies at once; every version stays in the change history to restore. No approval needed.",
                        (Decision::Targeting, true) => { span .warn { "Needs approval: this workspace's policy gates targeting changes. Saving files a change request that another person with the product or admin role must approve." } },
                        (Decision::Create, _) => "Yes. A new flag starts off in every environment; nothing changes for users until it is turned on.",
                        (Decision::Rollout, _) => "Yes. Pausing holds the current stage; resuming continues; the kill switch ends the rollout at once. No approval needed.",
                        (Decision::Experiment, _) => { span .warn { "No: a decision is final and its learning goes to the learnings log. It does not change the flag; ship or remove the treatment separately." } },
                        (Decision::Archive, _) => { span .warn { "Needs approval: archiving (or restoring) a flag is irreversible. It becomes a change request that another person with the product or admin role must approve." } },
                        (Decision::Approval, _) => { span .warn { "Approving applies the requested irreversible change at once, in the same transaction as the approval. Rejecting changes nothing." } },
                    }
                }
                dt { "Your permission" }
                dd {
                    @if allowed { "Your role (" (ui.role.as_str()) ") may make this change." }
                    @else { span .warn { "Your role (" (ui.role.as_str()) ") may not make this change." } }
                }
            }
        }
    }
}

/// A trend in words.
pub fn trend_text(t: Trend) -> &'static str {
    match t {
        Trend::Improving => "improving",
        Trend::Worsening => "worsening",
        Trend::Flat => "flat",
        Trend::Unknown => "no trend yet",
    }
}

/// The CSS class of a trend.
pub fn trend_class(t: Trend) -> &'static str {
    match t {
        Trend::Improving => "good",
        Trend::Worsening => "bad",
        Trend::Flat | Trend::Unknown => "muted",
    }
}
