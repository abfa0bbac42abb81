//! Experiments: the list, each experiment's results (lift with its
//! interval plotted, chance to win, the SRM check, every number also as
//! text) and the decision form with its context.
//!
//! Results come from the experiments API's own `results` handler, so the
//! dashboard shows exactly what `GET …/results` returns.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_store::{Decision as ExperimentDecision, Direction, ExperimentRecord, ExperimentStatus};

use super::charts::{self, IntervalRow};
use super::context::{self, Decision};
use super::layout::{self, Nav, enc};
use super::session::Ui;
use super::time;
use crate::api::experiments::{Decide, Results};
use crate::auth::Action;
use crate::error::{ApiError, ApiJson};
use crate::experiments::{Analysis, MetricResult};
use crate::state::AppState;

fn experiment_url(ws: &str, key: &str) -> String {
    format!("/w/{}/experiments/{}", enc(ws), enc(key))
}

fn status_badge(s: ExperimentStatus) -> Markup {
    let class = match s {
        ExperimentStatus::Running => "badge on",
        ExperimentStatus::Draft => "badge kind",
        ExperimentStatus::Decided => "badge off",
    };
    html! { span class=(class) { (s.as_str()) } }
}

/// `GET /w/{ws}/experiments`.
pub async fn list(State(state): State<AppState>, ui: Ui, Path(ws): Path<String>) -> Response {
    let all = match state.store.list_experiments(&ws, None).await {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let main = html! {
        h1 { "Experiments" }
        p .muted { "Definitions are frozen once an experiment starts; a decision needs a written learning." }
        div #experiments data-live {
            @if all.is_empty() {
                p { "No experiments yet. Create one with " code { "POST /api/v1/workspaces/" (ws) "/experiments" } " or " code { "sextant experiment create" } "." }
            } @else {
                table {
                    caption .sr-only { "Experiments and their state" }
                    thead { tr {
                        th scope="col" { "Experiment" } th scope="col" { "Status" } th scope="col" { "Flag" }
                        th scope="col" { "Primary metric" } th scope="col" { "Started" } th scope="col" { "Decide by" } th scope="col" { "Decision" }
                    } }
                    tbody {
                        @for x in &all {
                            @let d = &x.definition;
                            tr {
                                td { a href=(experiment_url(&ws, &d.key)) { (d.name.as_deref().unwrap_or(&d.key)) } br; code { (d.key) } }
                                td { (status_badge(x.status)) }
                                td { a href=(format!("/w/{}/flags/{}", enc(&ws), enc(&d.flag))) { (d.flag) } " in " (d.environment) }
                                td { code { (d.primary_metric) } }
                                td { (x.started_at.as_deref().map_or("—".into(), time::short)) }
                                td { (x.decide_by.as_deref().map_or("—".into(), time::short)) }
                                td { (x.decision.map_or("—", |d| d.as_str())) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Experiments, "Experiments", main))
}

/// `?done=` after a decision.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /w/{ws}/experiments/{key}`.
pub async fn detail(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Response {
    page(
        &state,
        &ui,
        &ws,
        &key,
        done.done.is_some(),
        None,
        &DecideForm::default(),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    key: &str,
    done: bool,
    error: Option<ApiError>,
    form: &DecideForm,
) -> Response {
    let rec = match state.store.get_experiment(ws, key).await {
        Ok(r) => r,
        Err(e) => return layout::error_page(ui, Some(ws), e.into()),
    };
    let results = if rec.started_at.is_some() {
        let path = Path((ws.to_owned(), key.to_owned()));
        Some(crate::api::experiments::results(State(state.clone()), ui.admin(), path).await)
    } else {
        None
    };
    // The results handler may have recorded the significance date.
    let rec = match &results {
        Some(Ok(r)) => r.0.experiment.clone(),
        _ => rec,
    };
    let d = &rec.definition;
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let title = d.name.clone().unwrap_or_else(|| d.key.clone());
    let flag = state.store.get_flag(ws, &d.flag).await.ok();
    let env = state.store.get_environment(ws, &d.environment).await.ok();
    let main = html! {
        @if done { (layout::done_box("Decision recorded; its learning is in the learnings log.")) }
        div .titlebar { h1 { (title) " " (status_badge(rec.status)) } }
        dl .facts {
            dt { "Flag" } dd { a href=(format!("/w/{}/flags/{}", enc(ws), enc(&d.flag))) { (d.flag) } " in " (d.environment) }
            dt { "Arms" } dd {
                @for (i, a) in d.arms.iter().enumerate() {
                    @if i > 0 { ", " } code { (a.variation) } " (weight " (charts::format_value(a.weight)) ")"
                    @if i == 0 { " control" }
                }
            }
            dt { "Primary metric" } dd { code { (d.primary_metric) } ", expected to " (d.hypothesis.direction.as_str()) " by at least " (format!("{:.1}%", d.hypothesis.minimum_effect * 100.0)) }
            dt { "Guardrails" } dd { @if d.guardrails.is_empty() { "none" } @else { (d.guardrails.join(", ")) } }
            dt { "Success criteria" } dd { (d.success_criteria) }
            dt { "Analysis" } dd { (method_text(&rec)) ", α = " (charts::format_value(d.alpha)) ", planned " (d.planned_sample_size) " units" }
            dt { "Started" } dd { (rec.started_at.as_deref().map_or("not yet".into(), time::short)) }
            @if let Some(s) = &rec.significant_at { dt { "Significant since" } dd { (time::short(s)) } }
            @if let Some(s) = &rec.decide_by { dt { "Decide by" } dd { (time::short(s)) } }
        }
        section #results data-live aria-labelledby="results-title" {
            h2 #results-title { "Results" }
            @match &results {
                None => p .muted { "A draft has no results; they appear once it starts." },
                Some(Err(e)) => (layout::error_box(e)),
                Some(Ok(r)) => (results_view(&r.0)),
            }
        }
        @if let Some(dec) = rec.decision {
            section aria-labelledby="decision-title" {
                h2 #decision-title { "Decision: " (dec.as_str()) }
                p { (rec.learning.as_deref().unwrap_or("")) }
                p .muted { "By " (rec.decided_by.as_deref().unwrap_or("?")) ", " (rec.decided_at.as_deref().map_or(String::new(), time::short)) }
            }
        }
        @if rec.status == ExperimentStatus::Running {
            div .split {
                section aria-labelledby="decide-title" {
                    h2 #decide-title { "Decide" }
                    @if let Some(e) = &error { (layout::error_box(e)) }
                    @if ui.may(Action::DecideExperiment) {
                        form method="post" action=(format!("{}/decide", experiment_url(ws, key))) {
                            input type="hidden" name="csrf" value=(ui.csrf);
                            fieldset {
                                legend { "Decision" }
                                @for (v, text) in [("ship", "Ship: roll the treatment out"), ("kill", "Kill: remove the treatment"), ("iterate", "Iterate: change the idea and test again")] {
                                    div .check {
                                        input #(format!("decision-{v}")) type="radio" name="decision" value=(v) checked[form.decision == v] required;
                                        label for=(format!("decision-{v}")) { (text) }
                                    }
                                }
                            }
                            label for="learning" { "What we learnt (required; goes to the learnings log)" }
                            textarea #learning name="learning" rows="3" required { (form.learning) }
                            label for="reason" { "Reason (recorded in the audit log)" }
                            textarea #reason name="reason" rows="2" { (form.reason) }
                            div .actions { button type="submit" #decide { "Record decision" } }
                        }
                    } @else {
                        p .warn { "Your role (" (ui.role.as_str()) ") may not decide experiments; the product or admin role may." }
                    }
                }
                (context::panel(state, ui, ws, flag.as_ref(), env.as_ref(), Decision::Experiment).await)
            }
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Experiments, &title, main)).into_response()
}

fn method_text(rec: &ExperimentRecord) -> &'static str {
    match rec.definition.analysis {
        sextant_store::AnalysisMethod::FixedHorizon => "fixed horizon (read once at the planned size)",
        sextant_store::AnalysisMethod::Sequential => "sequential (always-valid; safe to look any time)",
    }
}

fn pct_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |p| format!("{:.1}%", p * 100.0))
}

fn p_text(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(p) if p < 0.0001 => "< 0.0001".into(),
        Some(p) => format!("{p:.4}"),
    }
}

/// The analysis: SRM first (a mismatch voids everything below it), then
/// the primary metric and each guardrail.
fn results_view(r: &Results) -> Markup {
    let a: &Analysis = &r.analysis;
    let arms = &r.experiment.definition.arms;
    html! {
        @if a.srm.mismatch {
            div .notice.error role="alert" #srm {
                p { strong { "Sample ratio mismatch" } " — units per arm " (format!("{:?}", a.srm.observed))
                    " differ from the configured split (expected " (a.srm.expected.iter().map(|e| format!("{e:.0}")).collect::<Vec<_>>().join(", ")) "), p = " (p_text(a.srm.p_value)) ". "
                    "Assignment or exposure logging is broken: do not trust these results." }
            }
        } @else {
            p #srm {
                @match (&a.srm.error, a.srm.p_value) {
                    (Some(e), _) => { span .muted { "Sample ratio check not possible yet: " (e) } }
                    (None, p) => { span .good { "No sample ratio mismatch" } " (p = " (p_text(p)) ")." }
                }
            }
        }
        p #horizon {
            (a.units) " of " (a.planned_sample_size) " planned units exposed"
            @if a.horizon_reached { " — horizon reached." } @else { " — horizon not reached yet." }
            @if r.decision_overdue { " " span .bad { "The decision is overdue." } }
        }
        table #arms {
            caption { "Units per arm" }
            thead { tr { th scope="col" { "Arm" } th scope="col" { "Units" } th scope="col" { "Expected" } } }
            tbody {
                @for (i, arm) in arms.iter().enumerate() {
                    tr {
                        th scope="row" { (arm.variation) @if i == 0 { " (control)" } }
                        td { (a.srm.observed.get(i).copied().unwrap_or(0)) }
                        td { (a.srm.expected.get(i).map_or("—".into(), |e| format!("{e:.0}"))) }
                    }
                }
            }
        }
        (metric_view("primary", "Primary metric", &a.primary, "cuped"))
        @for (i, g) in a.guardrails.iter().enumerate() {
            @let id = format!("guardrail-{i}");
            (metric_view(&id, "Guardrail", g, &format!("{id}-cuped")))
        }
    }
}

/// CUPED: a metric's comparisons adjusted by each unit's pre-period value
/// (a ratio by the pre-period ratio), with θ and the variance removed, or
/// why they were not.
fn cuped_view(id: &str, m: &MetricResult) -> Markup {
    let c = &m.cuped;
    let covariate = if m.aggregation == sextant_store::Aggregation::Ratio {
        "adjusted by its ratio (numerator and denominator, delta method)"
    } else {
        "adjusted by each unit's value"
    };
    html! {
        section .cuped #(id) aria-labelledby=(format!("{id}-title")) {
            h4 #(format!("{id}-title")) { "Variance reduction (CUPED) of " code { (m.metric) } }
            @if !c.applied {
                p .muted { "Not applied" @if let Some(r) = &c.reason { ": " (r) } "." }
            } @else {
                p { code { (m.metric) } " " (covariate) " in the " (c.pre_period_days) " days before its first exposure." }
                table {
                    caption .sr-only { "CUPED-adjusted comparisons of " (m.metric) }
                    thead { tr {
                        th scope="col" { "Arm" } th scope="col" { "Adjusted difference" } th scope="col" { "Interval" }
                        th scope="col" { "p" } th scope="col" { "θ" } th scope="col" { "Variance removed" } th scope="col" { "Verdict" }
                    } }
                    tbody {
                        @for x in &c.comparisons {
                            tr {
                                th scope="row" { (x.variation) }
                                td { (x.difference.map_or("—".into(), charts::format_value)) }
                                td { (x.difference_ci.map_or("—".into(), |ci| format!("{} to {}", charts::format_value(ci.lower), charts::format_value(ci.upper)))) }
                                td { (p_text(x.p_value)) }
                                td { (x.theta.map_or("—".into(), charts::format_value)) }
                                td { (pct_opt(x.variance_reduction)) }
                                td {
                                    @if let Some(e) = &x.error { span .muted { (e) } }
                                    @else if x.significant { "significant" } @else { "not significant" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn metric_view(id: &str, role: &str, m: &MetricResult, cuped_id: &str) -> Markup {
    let good = |lift: f64| (lift > 0.0) == (m.good_direction == Direction::Increase);
    let rows: Vec<IntervalRow> = m
        .comparisons
        .iter()
        .filter_map(|c| {
            let (lift, ci) = (c.lift?, c.lift_ci?);
            Some(IntervalRow {
                label: c.variation.clone(),
                estimate: lift,
                lower: ci.lower,
                upper: ci.upper,
                verdict: c.significant.then(|| good(lift)),
            })
        })
        .collect();
    html! {
        section .metric-result #(id) aria-labelledby=(format!("{id}-title")) {
            h3 #(format!("{id}-title")) { (role) ": " code { (m.metric) } " "
                span .muted { "(" (m.aggregation.as_str()) ", " (m.good_direction.as_str()) " is good)" } }
            @if !rows.is_empty() {
                (charts::intervals(&format!("{id}-lift"), &format!("Lift of {} against control, with its interval", m.metric), &rows))
            }
            table {
                caption .sr-only { "Each arm of " (m.metric) " against control" }
                thead { tr {
                    th scope="col" { "Arm" } th scope="col" { "Units" } th scope="col" { "Value" } th scope="col" { "Lift" }
                    th scope="col" { "Interval" } th scope="col" { "p" } th scope="col" { "Chance to win" } th scope="col" { "Verdict" }
                } }
                tbody {
                    @for (i, arm) in m.arms.iter().enumerate() {
                        @let c = if i == 0 { None } else { m.comparisons.iter().find(|c| c.variation == arm.variation) };
                        tr {
                            th scope="row" { (arm.variation) @if i == 0 { " (control)" } }
                            td { (arm.units) }
                            td { (charts::format_value(arm.value)) }
                            @match c {
                                None => { td { "—" } td { "—" } td { "—" } td { "—" } td { "reference" } }
                                Some(c) => {
                                    td { (c.lift.map_or("—".into(), charts::signed_pct)) }
                                    td { (c.lift_ci.map_or("—".into(), |ci| format!("{} to {}", charts::signed_pct(ci.lower), charts::signed_pct(ci.upper)))) }
                                    td { (p_text(c.p_value)) }
                                    td .chance { (pct_opt(c.chance_to_win)) }
                                    td {
                                        @if let Some(e) = &c.error { span .muted { (e) } }
                                        @else if c.significant && c.lift.is_some_and(good) { span .good { "significantly better" } }
                                        @else if c.significant { span .bad { "significantly worse" } }
                                        @else { "not significant" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (cuped_view(cuped_id, m))
        }
    }
}

/// The decision form.
#[derive(Debug, Default, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    learning: String,
    #[serde(default)]
    reason: String,
}

/// `POST /w/{ws}/experiments/{key}/decide`: the API's `decide_experiment`.
pub async fn decide(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key)): Path<(String, String)>,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let decision = match form.decision.as_str() {
        "ship" => Ok(ExperimentDecision::Ship),
        "kill" => Ok(ExperimentDecision::Kill),
        "iterate" => Ok(ExperimentDecision::Iterate),
        other => Err(ApiError::field(
            "/decision",
            format!("`{other}` is not ship, kill or iterate"),
        )),
    };
    let result = match decision {
        Ok(decision) => {
            let body = Decide {
                decision,
                learning: form.learning.clone(),
                reason: Some(form.reason.clone()),
            };
            let path = Path((ws.clone(), key.clone()));
            crate::api::experiments::decide_experiment(State(state.clone()), ui.admin(), path, ApiJson(body))
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to(&format!("{}?done=decided", experiment_url(&ws, &key))).into_response(),
        Err(e) => page(&state, &ui, &ws, &key, false, Some(e), &form).await,
    }
}
