//! Rollouts: every plan's progress through its stages and its guardrails'
//! state, and the start / pause / resume form with its context.
//!
//! Forms call the rollouts API's own handlers (`start_plan`, `pause_plan`,
//! `resume_plan`), so roles and state checks are the API's.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_store::{PlanRecord, PlanStatus};

use super::charts;
use super::context::{self, Decision};
use super::layout::{self, Nav, enc};
use super::session::Ui;
use super::time;
use crate::api::rollouts::{PlanView, Reason};
use crate::auth::Action;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

fn plan_url(ws: &str, flag: &str, env: &str) -> String {
    format!("/w/{}/flags/{}/envs/{}/rollout", enc(ws), enc(flag), enc(env))
}

fn status_class(s: PlanStatus) -> &'static str {
    match s {
        PlanStatus::Running | PlanStatus::Completed => "badge on",
        PlanStatus::Paused | PlanStatus::RolledBack | PlanStatus::Killed => "badge stale",
        PlanStatus::Draft => "badge kind",
    }
}

/// The stage bar and the facts of one plan.
pub fn progress(p: &PlanRecord) -> Markup {
    let view = PlanView::from(p.clone());
    let percents: Vec<f64> = p.plan.stages.iter().map(|s| s.percent).collect();
    let id = format!("stages-{}-{}", p.flag, p.environment);
    html! {
        p {
            span class=(status_class(p.status)) { (p.status.as_str()) } " "
            strong { (charts::format_value(view.current_percent)) "%" } " of units on " code { (p.plan.treatment) }
            @match p.stage {
                Some(i) => { ", stage " (i + 1) " of " (p.plan.stages.len()) }
                None => { ", not at a stage yet" }
            }
            @if let Some(t) = &p.stage_started_at { " since " (time::short(t)) }
            @if let Some(r) = &p.status_reason { span .muted { " — " (r) } }
        }
        (charts::stages(&id, &format!("Stages of {} in {}", p.flag, p.environment), &percents, p.stage))
        @let g = context::guardrails(p);
        @if g.is_empty() {
            p .muted { "No guardrail metrics." }
        } @else {
            p { "Guardrails (on breach: " (format!("{:?}", p.plan.on_breach).to_lowercase()) "):" }
            (context::guardrail_list(&g))
        }
    }
}

/// `GET /w/{ws}/rollouts`.
pub async fn list(State(state): State<AppState>, ui: Ui, Path(ws): Path<String>) -> Response {
    let plans = match state.store.list_rollout_plans(Some(&ws), None).await {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let main = html! {
        h1 { "Rollouts" }
        p .muted { "The scheduler advances running plans stage by stage once each hold has passed, and pauses or rolls back on a guardrail breach." }
        div #rollouts data-live {
            @if plans.is_empty() {
                p { "No rollout plans yet. Write one with " code { "sextant rollout plan" } " or " code { "PUT …/flags/{key}/environments/{env}/rollout" } "." }
            }
            @for p in &plans {
                section .env aria-labelledby=(format!("plan-{}-{}", p.flag, p.environment)) {
                    h2 #(format!("plan-{}-{}", p.flag, p.environment)) {
                        a href=(plan_url(&ws, &p.flag, &p.environment)) { (p.flag) " in " (p.environment) }
                    }
                    (progress(p))
                }
            }
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Rollouts, "Rollouts", main))
}

/// `?done=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /w/{ws}/flags/{key}/envs/{env}/rollout`.
pub async fn detail(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key, env)): Path<(String, String, String)>,
    Query(done): Query<Done>,
) -> Response {
    plan_page(&state, &ui, &ws, &key, &env, done.done.as_deref(), None).await
}

fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "start" => "Rollout started: the scheduler applies the first stage at its next evaluation.",
        "pause" => "Rollout paused at its stage.",
        "resume" => "Rollout resumed.",
        _ => return None,
    })
}

async fn plan_page(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    key: &str,
    env: &str,
    done: Option<&str>,
    error: Option<ApiError>,
) -> Response {
    let loaded = tokio::try_join!(
        state.store.get_rollout_plan(ws, key, env),
        state.store.get_flag(ws, key),
        state.store.get_environment(ws, env),
    );
    let (plan, flag, environment) = match loaded {
        Ok(v) => v,
        Err(e) => return layout::error_page(ui, Some(ws), e.into()),
    };
    let title = format!("Rollout of {key} in {}", environment.name);
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let may_change = ui.may(Action::EditTargeting(&environment));
    let may_start = may_change && ui.may(Action::TurnOn(&environment));
    let actions: Vec<(&str, &str)> = match plan.status {
        PlanStatus::Running => vec![("pause", "Pause")],
        PlanStatus::Paused => vec![("resume", "Resume")],
        PlanStatus::Draft | PlanStatus::Completed | PlanStatus::RolledBack | PlanStatus::Killed => {
            vec![("start", "Start from the first stage")]
        }
    };
    let offered: Vec<(&str, &str)> = actions
        .into_iter()
        .filter(|(a, _)| if *a == "pause" { may_change } else { may_start })
        .collect();
    let main = html! {
        p { a href=(format!("/w/{}/flags/{}", enc(ws), enc(key))) { "← " (key) } " · " a href=(format!("/w/{}/rollouts", enc(ws))) { "all rollouts" } }
        @if let Some(t) = done.and_then(done_text) { (layout::done_box(t)) }
        div .split {
            div {
                h1 { (title) }
                @if let Some(e) = &error { (layout::error_box(e)) }
                section #plan data-live aria-labelledby="plan-title" {
                    h2 #plan-title { "Progress" }
                    (progress(&plan))
                    table {
                        caption { "Stages" }
                        thead { tr { th scope="col" { "Stage" } th scope="col" { "Treatment share" } th scope="col" { "Minimum hold" } } }
                        tbody {
                            @for (i, s) in plan.plan.stages.iter().enumerate() {
                                tr aria-current=[(plan.stage == Some(i)).then_some("step")] {
                                    th scope="row" { (i + 1) @if plan.stage == Some(i) { " (current)" } }
                                    td { (charts::format_value(s.percent)) "%" }
                                    td { (hold(s.min_hold_seconds)) }
                                }
                            }
                        }
                    }
                }
                @if offered.is_empty() {
                    p .warn { "Your role (" (ui.role.as_str()) ") may not change this rollout." }
                } @else {
                    form method="post" action=(format!("{}/action", plan_url(ws, key, env))) {
                        input type="hidden" name="csrf" value=(ui.csrf);
                        label for="reason" { "Reason (recorded in the audit log)" }
                        textarea #reason name="reason" rows="2" {}
                        div .actions {
                            @for (a, label) in &offered {
                                button type="submit" name="action" value=(a) #(format!("rollout-{a}")) { (label) }
                            }
                        }
                    }
                }
            }
            (context::panel(state, ui, ws, Some(&flag), Some(&environment), Decision::Rollout).await)
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Rollouts, &title, main)).into_response()
}

fn hold(secs: u64) -> String {
    match secs {
        0 => "none".into(),
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The action form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
}

/// `POST …/rollout/action`: the API's start, pause or resume.
pub async fn action(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key, env)): Path<(String, String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let path = Path((ws.clone(), key.clone(), env.clone()));
    let body = ApiJson(Reason {
        reason: Some(form.reason.clone()),
    });
    let s = State(state.clone());
    let result = match form.action.as_str() {
        "start" => crate::api::rollouts::start_plan(s, ui.admin(), path, body).await,
        "pause" => crate::api::rollouts::pause_plan(s, ui.admin(), path, body).await,
        "resume" => crate::api::rollouts::resume_plan(s, ui.admin(), path, body).await,
        other => Err(ApiError::field(
            "/action",
            format!("`{other}` is not start, pause or resume"),
        )),
    };
    match result {
        Ok(_) => Redirect::to(&format!("{}?done={}", plan_url(&ws, &key, &env), form.action)).into_response(),
        Err(e) => plan_page(&state, &ui, &ws, &key, &env, None, Some(e)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_print_in_the_largest_whole_unit() {
        assert_eq!(hold(0), "none");
        assert_eq!(hold(86_400), "1 d");
        assert_eq!(hold(7_200), "2 h");
        assert_eq!(hold(300), "5 min");
        assert_eq!(hold(61), "61 s");
    }
}
