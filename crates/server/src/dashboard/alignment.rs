//! Alignment pages: principles and their declared violations, the weekly
//! review (learned / stop / start, generated from stored data by
//! `reports::review`, the same as `GET /api/v1/reviews/weekly`), and the
//! DORA figures (`reports::dora_for`, the same as `GET /api/v1/dora`).

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use sextant_store::Role;

use super::charts;
use super::layout::{self, Nav, enc};
use super::session::Ui;
use super::time;
use crate::api::principles::{NewPrinciple, Resolution, ViolationBody};
use crate::auth::Action;
use crate::error::{ApiError, ApiJson};
use crate::reports::{self, Cadence, DoraWeek};
use crate::state::AppState;

/// `?done=` after a form.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /w/{ws}/principles`.
pub async fn principles(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let text = match done.done.as_deref() {
        Some("principle") => Some("Principle defined."),
        Some("violation") => Some("Violation declared, with its owner and review date."),
        Some("resolved") => Some("Violation resolved."),
        _ => None,
    };
    principles_page(&state, &ui, &ws, text, None, &ViolationForm::default()).await
}

async fn principles_page(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    done: Option<&str>,
    error: Option<ApiError>,
    draft: &ViolationForm,
) -> Response {
    let loaded = tokio::try_join!(state.store.list_principles(ws), state.store.list_violations(ws, false));
    let (principles, violations) = match loaded {
        Ok(v) => v,
        Err(e) => return layout::error_page(ui, Some(ws), e.into()),
    };
    let today = time::rfc3339(time::unix_now());
    let today = &today[..10];
    let product = matches!(ui.role, Role::Product | Role::Admin);
    let may_declare = product || ui.may(Action::EditFlag);
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let main = html! {
        @if let Some(t) = done { (layout::done_box(t)) }
        h1 { "Principles and violations" }
        p .muted { "A principle may be broken only with a written justification, an accountable owner and a date to look at it again." }
        @if let Some(e) = &error { (layout::error_box(e)) }
        section #principles data-live aria-labelledby="principles-title" {
            h2 #principles-title { "Principles" }
            @if principles.is_empty() {
                p { "No principles yet." }
            } @else {
                dl .facts {
                    @for p in &principles {
                        @let open = violations.iter().filter(|v| v.principle == p.key && v.resolved_at.is_none()).count();
                        dt { (p.name) br; code { (p.key) } }
                        dd { (p.description)
                            @if open > 0 { " " span .warn { "(" (open) " open violation" @if open > 1 { "s" } ")" } } }
                    }
                }
            }
        }
        section #violations data-live aria-labelledby="violations-title" {
            h2 #violations-title { "Violations" }
            @if violations.is_empty() { p { "No violations declared." } }
            @else {
                table {
                    caption .sr-only { "Declared violations, most urgent review first" }
                    thead { tr {
                        th scope="col" { "Principle" } th scope="col" { "What" } th scope="col" { "Justification" }
                        th scope="col" { "Owner" } th scope="col" { "Review by" } th scope="col" { "State" }
                    } }
                    tbody {
                        @for v in &violations {
                            tr {
                                td { code { (v.principle) } }
                                td { (subject_link(ws, &v.subject)) }
                                td { (v.justification) }
                                td { (v.owner) }
                                td { (v.review_date) @if v.resolved_at.is_none() && v.review_date.as_str() < today { " " span .bad { "overdue" } } }
                                td {
                                    @match &v.resolution {
                                        Some(r) => { "resolved: " (r) }
                                        None => {
                                            span .warn { "open" }
                                            @if product {
                                                form .inline method="post" action=(format!("/w/{}/violations/{}/resolve", enc(ws), v.id)) {
                                                    input type="hidden" name="csrf" value=(ui.csrf);
                                                    label .sr-only for=(format!("resolution-{}", v.id)) { "How violation " (v.id) " was resolved" }
                                                    input #(format!("resolution-{}", v.id)) name="resolution" placeholder="how it was resolved" required;
                                                    button type="submit" .secondary { "Resolve" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_declare && !principles.is_empty() {
            section aria-labelledby="declare-title" {
                h2 #declare-title { "Declare a violation" }
                form method="post" action=(format!("/w/{}/violations", enc(ws))) {
                    input type="hidden" name="csrf" value=(ui.csrf);
                    label for="principle" { "Principle" }
                    select #principle name="principle" {
                        @for p in &principles { option value=(p.key) selected[draft.principle == p.key] { (p.name) } }
                    }
                    label for="subject" { "What breaks it (" code { "flag:<key>" } ", " code { "change:<id>" } ", …)" }
                    input #subject name="subject" value=(draft.subject) required;
                    label for="justification" { "Why it is worth it" }
                    textarea #justification name="justification" rows="2" required { (draft.justification) }
                    label for="owner" { "Accountable owner" }
                    input #owner name="owner" value=(draft.owner) required;
                    label for="review_date" { "Look at it again by" }
                    input #review_date type="date" name="review_date" value=(draft.review_date) required;
                    div .actions { button type="submit" #declare { "Declare violation" } }
                }
            }
        }
        @if product {
            section aria-labelledby="define-title" {
                h2 #define-title { "Define a principle" }
                form method="post" action=(format!("/w/{}/principles", enc(ws))) {
                    input type="hidden" name="csrf" value=(ui.csrf);
                    label for="pkey" { "Key" }
                    input #pkey name="key" required pattern="[A-Za-z0-9][A-Za-z0-9._-]*";
                    label for="pname" { "Name" }
                    input #pname name="name" required;
                    label for="pdescription" { "What it asks of everyone" }
                    textarea #pdescription name="description" rows="2" required {}
                    div .actions { button type="submit" #define { "Define principle" } }
                }
            }
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Principles, "Principles", main)).into_response()
}

/// The violation form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct ViolationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    principle: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    review_date: String,
}

fn some(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

/// `POST /w/{ws}/violations`: the API's `create_violation`.
pub async fn declare(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Form(form): Form<ViolationForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let body = ViolationBody {
        principle: some(&form.principle),
        subject: some(&form.subject),
        justification: some(&form.justification),
        owner: some(&form.owner),
        review_date: some(&form.review_date),
    };
    match crate::api::principles::create_violation(State(state.clone()), ui.admin(), Path(ws.clone()), ApiJson(body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/w/{}/principles?done=violation", enc(&ws))).into_response(),
        Err(e) => principles_page(&state, &ui, &ws, None, Some(e), &form).await,
    }
}

/// The resolve form.
#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    csrf: String,
    #[serde(default)]
    resolution: String,
}

/// `POST /w/{ws}/violations/{id}/resolve`: the API's `resolve_violation`.
pub async fn resolve(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, id)): Path<(String, i64)>,
    Form(form): Form<ResolveForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let body = Resolution {
        resolution: form.resolution.clone(),
    };
    let path = crate::error::ApiPath((ws.clone(), id));
    match crate::api::principles::resolve_violation(State(state.clone()), ui.admin(), path, ApiJson(body)).await {
        Ok(_) => Redirect::to(&format!("/w/{}/principles?done=resolved", enc(&ws))).into_response(),
        Err(e) => principles_page(&state, &ui, &ws, None, Some(e), &ViolationForm::default()).await,
    }
}

/// The principle form.
#[derive(Debug, Deserialize)]
pub struct PrincipleForm {
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /w/{ws}/principles`: the API's `create_principle`.
pub async fn define(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Form(form): Form<PrincipleForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let body = NewPrinciple {
        key: form.key.trim().to_owned(),
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        reason: None,
    };
    match crate::api::principles::create_principle(State(state.clone()), ui.admin(), Path(ws.clone()), ApiJson(body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/w/{}/principles?done=principle", enc(&ws))).into_response(),
        Err(e) => principles_page(&state, &ui, &ws, None, Some(e), &ViolationForm::default()).await,
    }
}

/// `flag:<key>` links to the flag; anything else prints as it is.
fn subject_link(ws: &str, subject: &str) -> Markup {
    match subject.strip_prefix("flag:") {
        Some(key) => html! { a href=(format!("/w/{}/flags/{}", enc(ws), enc(key))) { "flag " (key) } },
        None => html! { code { (subject) } },
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or_else(|| "n/a".into(), charts::signed_pct)
}

/// A titled list; says "none" when empty.
fn items(id: &str, title: &str, rows: Vec<Markup>) -> Markup {
    html! {
        section .review-list aria-labelledby=(format!("{id}-title")) {
            h3 #(format!("{id}-title")) { (title) " (" (rows.len()) ")" }
            @if rows.is_empty() { p .muted { "None." } }
            @else { ul #(id) { @for r in rows { li { (r) } } } }
        }
    }
}

/// `GET /w/{ws}/review`: the weekly review.
pub async fn weekly(State(state): State<AppState>, ui: Ui, Path(ws): Path<String>) -> Response {
    if let Err(e) = state.store.get_workspace(&ws).await {
        return layout::error_page(&ui, Some(&ws), e.into());
    }
    let r = match reports::review(&state.store, &ws, Cadence::Weekly, Utc::now()).await {
        Ok(r) => r,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let flag = |key: &str| html! { a href=(format!("/w/{}/flags/{}", enc(&ws), enc(key))) { (key) } };
    let learnings: Vec<Markup> = arr(&r, &["learned", "learnings"])
        .iter()
        .map(|l| html! { (s(l, "what")) " — " (s(l, "owner")) " " span .muted { "(" (s(l, "source")) ")" } })
        .collect();
    let review = |x: &&Value| {
        html! {
            (flag(s(x, "flag"))) ": " (x["decision"].as_str().unwrap_or("open")) " — observed "
            (pct(&x["observed_effect"])) " against a hypothesised " (pct(&x["hypothesised_effect"]))
        }
    };
    let reviews: Vec<Markup> = arr(&r, &["learned", "reviews"]).iter().map(review).collect();
    let not_moved: Vec<Markup> = arr(&r, &["stop", "not_moved"]).iter().map(review).collect();
    let overdue: Vec<Markup> = arr(&r, &["stop", "overdue_reviews"])
        .iter()
        .map(|x| html! { (flag(s(x, "flag"))) ": 30-day review was due " (time::short(s(x, "due_at"))) })
        .collect();
    let stale: Vec<Markup> = arr(&r, &["stop", "stale_flags"])
        .iter()
        .map(|x| html! { (flag(s(x, "flag"))) ": serves " (s(x, "serving")) " in " (s(x, "environment")) " unchanged for " (x["days"]) " days — remove it from code" })
        .collect();
    let violations: Vec<Markup> = arr(&r, &["stop", "principle_violations"])
        .iter()
        .map(|v| html! { code { (s(v, "principle")) } " broken by " (subject_link(&ws, s(v, "subject"))) " — " (s(v, "owner")) ", review " (s(v, "review_date")) ": " (s(v, "justification")) })
        .collect();
    let due: Vec<Markup> = arr(&r, &["start", "reviews_due"])
        .iter()
        .map(|x| html! { (flag(s(x, "flag"))) ": review due " (time::short(s(x, "due_at"))) })
        .collect();
    let pending: Vec<Markup> = arr(&r, &["start", "pending_approvals"])
        .iter()
        .map(|x| html! { a href=(format!("/w/{}/approvals/{}", enc(&ws), x["id"])) { "#" (x["id"]) } " " (s(x, "action")) " " code { (s(x, "key")) } " asked by " (s(x, "requested_by")) })
        .collect();
    let velocity: Vec<DoraWeek> = serde_json::from_value::<Vec<Value>>(r["velocity"].clone())
        .unwrap_or_default()
        .iter()
        .map(dora_week)
        .collect();
    let main = html! {
        h1 { "Weekly review" }
        p .muted { "Generated from stored data for " (time::short(s(&r["period"], "since"))) " to " (time::short(s(&r["period"], "until"))) ". Also as Markdown: " code { "GET /api/v1/reviews/weekly?workspace=" (ws) "&format=markdown" } "." }
        div #review data-live {
            h2 { "What we learned" }
            (items("learnings", "Learnings", learnings))
            (items("reviews", "30-day reviews decided", reviews))
            h2 { "Stop" }
            (items("not-moved", "Shipped but did not move their metric", not_moved))
            (items("overdue", "Overdue 30-day reviews", overdue))
            (items("stale", "Stale flags", stale))
            (items("open-violations", "Open principle violations", violations))
            h2 { "Start" }
            (items("due", "Reviews due in the next 7 days", due))
            (items("pending", "Changes waiting for approval", pending))
            h2 { "Velocity" }
            (dora_table("velocity", &velocity))
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Review, "Weekly review", main))
}

fn dora_week(v: &Value) -> DoraWeek {
    DoraWeek {
        service: s(v, "service").to_owned(),
        week: s(v, "week").to_owned(),
        deploys: v["deploys"].as_u64().unwrap_or(0) as usize,
        deploy_frequency_per_day: v["deploy_frequency_per_day"].as_f64().unwrap_or(0.0),
        lead_time_hours: v["lead_time_hours"].as_f64(),
        failed_changes: v["failed_changes"].as_u64().unwrap_or(0) as usize,
        change_failure_rate: v["change_failure_rate"].as_f64(),
        time_to_restore_hours: v["time_to_restore_hours"].as_f64(),
    }
}

fn hours(h: Option<f64>) -> String {
    h.map_or_else(|| "n/a".into(), |h| format!("{h:.1} h"))
}

fn dora_table(id: &str, weeks: &[DoraWeek]) -> Markup {
    html! {
        @if weeks.is_empty() {
            p .muted #(id) { "No deploys recorded in this period. Record them with " code { "POST /api/v1/deploys" } "." }
        } @else {
            table #(id) {
                caption { "DORA figures per service and ISO week" }
                thead { tr {
                    th scope="col" { "Service" } th scope="col" { "Week" } th scope="col" { "Deploys" }
                    th scope="col" { "Per day" } th scope="col" { "Lead time (median)" } th scope="col" { "Failed changes" }
                    th scope="col" { "Change failure rate" } th scope="col" { "Time to restore (median)" }
                } }
                tbody {
                    @for w in weeks {
                        tr {
                            th scope="row" { (w.service) }
                            td { (w.week) }
                            td { (w.deploys) }
                            td { (format!("{:.2}", w.deploy_frequency_per_day)) }
                            td { (hours(w.lead_time_hours)) }
                            td { (w.failed_changes) }
                            td { (w.change_failure_rate.map_or("n/a".into(), |x| format!("{:.0}%", x * 100.0))) }
                            td { (hours(w.time_to_restore_hours)) }
                        }
                    }
                }
            }
        }
    }
}

/// `?weeks=` of the DORA page.
#[derive(Debug, Default, Deserialize)]
pub struct DoraQuery {
    weeks: Option<i64>,
}

/// `GET /w/{ws}/dora`.
pub async fn dora(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Query(q): Query<DoraQuery>,
) -> Response {
    let weeks = q.weeks.unwrap_or(8).clamp(1, 104);
    let now = Utc::now();
    let since = now - Duration::weeks(weeks);
    if let Err(e) = state.store.get_workspace(&ws).await {
        return layout::error_page(&ui, Some(&ws), e.into());
    }
    let figures = match reports::dora_for(&state.store, &ws, since, now).await {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    // Totals over the whole period, per service.
    let mut services: Vec<String> = figures.iter().map(|w| w.service.clone()).collect();
    services.sort();
    services.dedup();
    let deploys: Vec<(String, u64)> = services
        .iter()
        .map(|svc| {
            let n: usize = figures.iter().filter(|w| &w.service == svc).map(|w| w.deploys).sum();
            (svc.clone(), n as u64)
        })
        .collect();
    let failed: Vec<(String, u64)> = services
        .iter()
        .map(|svc| {
            let n: usize = figures
                .iter()
                .filter(|w| &w.service == svc)
                .map(|w| w.failed_changes)
                .sum();
            (svc.clone(), n as u64)
        })
        .collect();
    let main = html! {
        h1 { "DORA figures" }
        p .muted { "From recorded deploys, rollbacks and production kill switches over the last " (weeks) " weeks. A kill switch counts as a failed change of the service named by its flag's "
            code { "service:<name>" } " tag, else of the latest deploy before it." }
        form .filters method="get" aria-label="Choose the period" {
            div {
                label for="weeks" { "Weeks" }
                select #weeks name="weeks" {
                    @for w in [4, 8, 13, 26, 52] { option value=(w) selected[w == weeks] { (w) } }
                }
            }
            div { button type="submit" { "Show" } }
        }
        div #dora data-live {
            @if !deploys.is_empty() {
                (charts::bars("dora-deploys", &format!("Deploys per service, last {weeks} weeks"), &deploys))
                (charts::bars("dora-failed", &format!("Failed changes per service, last {weeks} weeks"), &failed))
            }
            (dora_table("dora-table", &figures))
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Dora, "DORA", main))
}
