//! "Context at decision time": the panel beside every form that changes
//! something, showing what the decision needs.

use std::sync::atomic::Ordering;

use maud::{Markup, html};
use sextant_store::{AuditFilter, Environment, FlagRecord};

use super::session::Ui;
use super::time;
use crate::auth::Action;
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
        (Decision::Targeting, Some(e)) => ui.may(Action::EditTargeting(e)),
        _ => ui.may(Action::EditFlag),
    };
    let last_change = match flag {
        Some(r) => state
            .store
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
        (Some(r), Some(e)) => state
            .store
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
                    @if let Some(m) = f.hypothesis.as_ref().and_then(|h| h.metric.as_ref()) {
                        dt { "Metric now" }
                        dd { "No measurements of " code { (m) } " are recorded by this server yet." }
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
                @if !dependents.is_empty() {
                    dt { "Depends on it" }
                    dd .warn { (dependents.join(", ")) " require this flag and change with it." }
                }
                dt { "Experiments, guardrails, principles" }
                dd { "Not recorded by this server version." }
                @if let Some(a) = &last_change {
                    dt { "Last change" }
                    dd { (a.action) " by " (a.actor) ", " (time::short(&a.at)) }
                }
                dt { "Reversible?" }
                dd {
                    @match decision {
                        Decision::Toggle(false) => "Yes. The kill switch applies at once everywhere (SDKs and OFREP within a second); turn the flag back on to undo. No approval needed.",
                        Decision::Toggle(true) => "Yes. Applies at once; the kill switch undoes it. No approval needed.",
                        Decision::Targeting => "Yes. Applies at once; every version stays in the change history to restore. No approval needed.",
                        Decision::Create => "Yes. A new flag starts off in every environment; nothing changes for users until it is turned on.",
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
