//! Flags: list with search and filters, detail, create, targeting, kill switch.
//!
//! Forms call the JSON API's handlers with the signed-in token, so the
//! rules (roles, validation, audit) are the API's.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_core::{Condition, Flag, Serve, Targeting};
use sextant_store::{AuditFilter, Environment, FlagRecord};

use super::charts;
use super::context::{self, Decision};
use super::layout::{self, Nav, enc};
use super::session::Ui;
use super::time;
use crate::api::flags::{NewFlag, SetTargeting, Toggle};
use crate::auth::Action;
use crate::error::{ApiError, ApiJson};
use crate::live::REASON_NAMES;
use crate::state::AppState;

/// A temporary flag untouched this long is stale.
const STALE_DAYS: i64 = 30;

fn flag_url(ws: &str, key: &str) -> String {
    format!("/w/{}/flags/{}", enc(ws), enc(key))
}

fn env_url(ws: &str, key: &str, env: &str, what: &str) -> String {
    format!("{}/envs/{}/{what}", flag_url(ws, key), enc(env))
}

fn is_on(flag: &Flag, env: &str) -> bool {
    flag.environments.get(env).is_some_and(|t| t.enabled)
}

fn state_badge(on: bool) -> Markup {
    html! {
        @if on { span .badge.on { "ON" } } @else { span .badge.off { "OFF" } }
    }
}

/// Filters of the flags list; all optional.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Text in the key or description.
    #[serde(default)]
    q: String,
    /// A tag.
    #[serde(default)]
    tag: String,
    /// An owner.
    #[serde(default)]
    owner: String,
    /// Environment the status filter applies to.
    #[serde(default)]
    env: String,
    /// `on` or `off` in `env`.
    #[serde(default)]
    status: String,
    /// Only stale flags.
    stale: Option<String>,
    /// `active` (not archived) or `archived`.
    #[serde(default)]
    lifecycle: String,
}

/// Keys of the workspace's archived flags.
async fn archived(state: &AppState, ws: &str) -> BTreeSet<String> {
    state
        .store
        .list_lifecycle(ws)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.archived_at.is_some())
        .map(|l| l.flag)
        .collect()
}

fn is_stale(r: &FlagRecord, cutoff: &str) -> bool {
    r.flag.temporary && r.updated_at.as_str() < cutoff
}

/// `GET /w/{ws}/flags`.
pub async fn list(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let (all, envs) = match tokio::try_join!(state.store.list_flags(&ws), state.store.list_environments(&ws)) {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let archived = archived(&state, &ws).await;
    let cutoff = time::rfc3339(time::unix_now() - STALE_DAYS * 86_400);
    let status_env = if q.env.is_empty() {
        envs.iter()
            .find(|e| e.production)
            .or(envs.first())
            .map(|e| e.key.clone())
            .unwrap_or_default()
    } else {
        q.env.clone()
    };
    let needle = q.q.trim().to_lowercase();
    let tags: BTreeSet<&str> = all
        .iter()
        .flat_map(|r| r.flag.tags.iter().map(String::as_str))
        .collect();
    let owners: BTreeSet<&str> = all.iter().filter_map(|r| r.flag.owner.as_deref()).collect();
    let shown: Vec<&FlagRecord> = all
        .iter()
        .filter(|r| {
            let f = &r.flag;
            (needle.is_empty()
                || f.key.to_lowercase().contains(&needle)
                || f.description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&needle)))
                && (q.tag.is_empty() || f.tags.contains(&q.tag))
                && (q.owner.is_empty() || f.owner.as_deref() == Some(q.owner.as_str()))
                && match q.status.as_str() {
                    "on" => is_on(f, &status_env),
                    "off" => !is_on(f, &status_env),
                    _ => true,
                }
                && (q.stale.is_none() || is_stale(r, &cutoff))
                && match q.lifecycle.as_str() {
                    "active" => !archived.contains(&f.key),
                    "archived" => archived.contains(&f.key),
                    _ => true,
                }
        })
        .collect();
    let main = html! {
        div .titlebar {
            h1 { "Flags" }
            @if ui.may(Action::EditFlag) {
                a .button href=(format!("/w/{}/flags-new", enc(&ws))) { "New flag" }
            }
        }
        form .filters method="get" role="search" aria-label="Filter flags" {
            div { label for="q" { "Search" } input #q type="search" name="q" value=(q.q) placeholder="key or description"; }
            div {
                label for="tag" { "Tag" }
                select #tag name="tag" {
                    option value="" { "any" }
                    @for t in &tags { option value=(t) selected[q.tag == *t] { (t) } }
                }
            }
            div {
                label for="owner" { "Owner" }
                select #owner name="owner" {
                    option value="" { "any" }
                    @for o in &owners { option value=(o) selected[q.owner == *o] { (o) } }
                }
            }
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "any" }
                    option value="on" selected[q.status == "on"] { "on" }
                    option value="off" selected[q.status == "off"] { "off" }
                }
            }
            div {
                label for="env" { "in environment" }
                select #env name="env" {
                    @for e in &envs { option value=(e.key) selected[e.key == status_env] { (e.name) } }
                }
            }
            div {
                label for="lifecycle" { "Lifecycle" }
                select #lifecycle name="lifecycle" {
                    option value="" { "any" }
                    option value="active" selected[q.lifecycle == "active"] { "active" }
                    option value="archived" selected[q.lifecycle == "archived"] { "archived" }
                }
            }
            div .check {
                input #stale type="checkbox" name="stale" value="1" checked[q.stale.is_some()];
                label for="stale" title=(format!("temporary flags unchanged for {STALE_DAYS} days")) { "Stale only" }
            }
            div { button type="submit" { "Filter" } }
        }
        p #flag-count role="status" { (shown.len()) " of " (all.len()) " flags" }
        table .flags {
            caption .sr-only { "Flags and their state per environment" }
            thead {
                tr {
                    th scope="col" { "Flag" }
                    th scope="col" { "Owner" }
                    th scope="col" { "Tags" }
                    @for e in &envs { th scope="col" { (e.name) } }
                    th scope="col" { "Updated" }
                }
            }
            tbody #flags-body data-live {
                @for r in &shown {
                    tr {
                        td {
                            a href=(flag_url(&ws, &r.flag.key)) { (r.flag.key) }
                            @if is_stale(r, &cutoff) { " " span .badge.stale { "stale" } }
                            @if archived.contains(&r.flag.key) { " " span .badge.off { "archived" } }
                            @if let Some(d) = &r.flag.description { br; span .muted { (d) } }
                        }
                        td { (r.flag.owner.as_deref().unwrap_or("—")) }
                        td { @for t in &r.flag.tags { span .tag { (t) } " " } }
                        @for e in &envs {
                            td data-env=(e.key) { (state_badge(is_on(&r.flag, &e.key))) }
                        }
                        td { (time::short(&r.updated_at)) }
                    }
                }
            }
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Flags, "Flags", main))
}

fn serve_text(serve: &Serve) -> Markup {
    match serve {
        Serve::Variation(v) => html! { "serve " code { (v) } },
        Serve::Split(s) => {
            let total: u64 = s.weights.iter().map(|w| u64::from(w.weight)).sum::<u64>().max(1);
            html! {
                "split "
                @for (i, w) in s.weights.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (w.variation) } " " (format!("{}%", pct(w.weight, total)))
                }
                @if !s.bucket_by.is_empty() { " by " (s.bucket_by.join(", ")) }
            }
        }
        Serve::Logic(l) => html! { "JSONLogic " code { (l.to_string()) } },
    }
}

/// Parts per `total` as a percentage with up to three decimals.
fn pct(weight: u32, total: u64) -> String {
    let p = f64::from(weight) * 100.0 / total as f64;
    let s = format!("{p:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn condition_text(c: &Condition) -> String {
    let op = serde_json::to_value(c.op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let values: Vec<String> = c.values.iter().map(Value::to_string).collect();
    format!(
        "{}{} {}{} {}",
        if c.negate { "not " } else { "" },
        c.attribute,
        op,
        if c.case_insensitive { " (any case)" } else { "" },
        values.join(", ")
    )
}

fn targeting_view(t: &Targeting) -> Markup {
    html! {
        @if !t.prerequisites.is_empty() {
            p { "Requires: "
                @for (i, p) in t.prerequisites.iter().enumerate() {
                    @if i > 0 { "; " } code { (p.flag) } " serving " (p.variations.join(" or "))
                }
            }
        }
        @if t.rules.is_empty() {
            p .muted { "No rules." }
        } @else {
            ol .rules {
                @for r in &t.rules {
                    li {
                        @if let Some(d) = &r.description { (d) ": " }
                        @if r.conditions.is_empty() { "everyone" }
                        @for (i, c) in r.conditions.iter().enumerate() {
                            @if i > 0 { " and " }
                            code { (condition_text(c)) }
                        }
                        @if let Some(g) = &r.rollout { " (" (pct(g.weight, 100_000)) "% of them)" }
                        " → " (serve_text(&r.serve))
                    }
                }
            }
        }
        p .default { "Otherwise: "
            @match &t.default_serve { Some(s) => (serve_text(s)), None => "the caller's default value" }
        }
        p { "When off: "
            @match &t.off_variation { Some(v) => { "serve " code { (v) } }, None => "the caller's default value" }
        }
    }
}

/// `?done=` after a successful form.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "created" => "Flag created. It is off in every environment until someone turns it on.",
        "on" => "Flag turned on.",
        "off" => "Kill switch applied: the flag is off.",
        "targeting" => "Targeting saved.",
        _ => return None,
    })
}

/// `GET /w/{ws}/flags/{key}`.
pub async fn detail(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Response {
    let (rec, envs) = match tokio::try_join!(state.store.get_flag(&ws, &key), state.store.list_environments(&ws)) {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let history = state
        .store
        .list_audit(&AuditFilter {
            workspace: Some(ws.clone()),
            kind: Some("flag".into()),
            key: Some(key.clone()),
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await
        .unwrap_or_default();
    let plans: HashMap<String, sextant_store::PlanRecord> = state
        .store
        .list_rollout_plans(Some(&ws), None)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.flag == key)
        .map(|p| (p.environment.clone(), p))
        .collect();
    let experiments: Vec<sextant_store::ExperimentRecord> = state
        .store
        .list_experiments(&ws, None)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|x| x.definition.flag == key)
        .collect();
    // The 30-day review opened at the first production exposure, if any.
    let review = state
        .store
        .list_reviews(&ws)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.flag == key)
        .max_by(|a, b| a.due_at.cmp(&b.due_at));
    let now = time::rfc3339(time::unix_now());
    let is_archived = archived(&state, &ws).await.contains(&key);
    let f = &rec.flag;
    let main = html! {
        @if let Some(text) = done.done.as_deref().and_then(done_text) { (layout::done_box(text)) }
        div .titlebar {
            h1 { (f.key) " " span .badge.kind { (f.kind.as_str()) } @if is_archived { " " span .badge.off { "archived" } } }
            @if ui.may(Action::DeleteFlag) && !is_archived {
                a .button.secondary href=(format!("{}/archive", flag_url(&ws, &f.key))) #archive { "Archive…" }
            }
            @if ui.may(Action::DeleteFlag) && is_archived {
                a .button.secondary href=(format!("{}/restore", flag_url(&ws, &f.key))) #restore { "Restore…" }
            }
        }
        @if let Some(d) = &f.description { p .lead { (d) } }
        dl .facts {
            dt { "Owner" } dd { (f.owner.as_deref().unwrap_or("—")) }
            dt { "Tags" } dd { @if f.tags.is_empty() { "—" } @for t in &f.tags { span .tag { (t) } " " } }
            dt { "Lifetime" } dd { @if f.temporary { "temporary (remove after launch)" } @else { "permanent" } }
            dt { "Variations" } dd {
                @for (i, v) in f.variations.iter().enumerate() {
                    @if i > 0 { ", " } code { (v.key) } " = " (v.value.to_string())
                }
            }
            dt { "Version" } dd { (rec.version) ", updated " (time::short(&rec.updated_at)) }
            dt { "30-day review" } dd #review-due {
                @match &review {
                    None => "not open yet: it opens at the first exposure in production and is due 30 days later",
                    Some(r) => {
                        @match r.decision {
                            Some(d) => { "decided: " (d.as_str()) @if let Some(t) = &r.reviewed_at { " on " (time::short(t)) } }
                            None => {
                                "due " (time::short(&r.due_at))
                                @if r.due_at.as_str() < now.as_str() { " " span .bad { "overdue" } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="hyp-title" {
            h2 #hyp-title { "Hypothesis" }
            @match &f.hypothesis {
                Some(h) => {
                    p { (h.reason) }
                    @if h.operational { p .muted { "Operational flag: it declares no metric." } }
                    @if let Some(m) = &h.metric {
                        p { "Target metric " code { (m) }
                            @if let Some(d) = h.direction { ", expected to " (format!("{d:?}").to_lowercase()) }
                            @if let Some(e) = h.minimum_effect { " by at least " (format!("{:.1}%", e * 100.0)) }
                            "."
                        }
                    }
                }
                None => p .warn { "No hypothesis: this flag does not say which metric it should move." },
            }
        }
        h2 { "Environments" }
        div .envs {
            @for e in &envs {
                @let on = is_on(f, &e.key);
                section .env #(format!("env-{}", e.key)) data-live aria-labelledby=(format!("env-{}-title", e.key)) {
                    h3 #(format!("env-{}-title", e.key)) {
                        (e.name) " " (state_badge(on))
                        @if e.production { " " span .badge.prod { "production" } }
                    }
                    p .muted { "SDKs see snapshot version " (e.snapshot_version) "." }
                    @match f.environments.get(&e.key) {
                        Some(t) => (targeting_view(t)),
                        None => p .muted { "No targeting here yet: the flag is off." },
                    }
                    @if let Some(p) = plans.get(&e.key) {
                        div .rollout {
                            h4 { a href=(env_url(&ws, &f.key, &e.key, "rollout")) { "Rollout plan" } }
                            (super::rollouts::progress(p))
                        }
                    }
                    div .actions {
                        @if on && ui.may(Action::TurnOff(e)) {
                            a .button.danger href=(format!("{}?enabled=false", env_url(&ws, &f.key, &e.key, "toggle"))) { "Kill switch…" }
                        }
                        @if !on && ui.may(Action::TurnOn(e)) {
                            a .button href=(format!("{}?enabled=true", env_url(&ws, &f.key, &e.key, "toggle"))) { "Turn on…" }
                        }
                        @if ui.may(Action::EditTargeting(e)) {
                            a .button.secondary href=(env_url(&ws, &f.key, &e.key, "targeting")) { "Edit targeting" }
                        }
                    }
                    @if let Some(c) = context::counts(&state, &ws, &e.key, &f.key) {
                        @let rows: Vec<(String, u64)> = REASON_NAMES.iter().zip(c).filter(|(_, n)| *n > 0).map(|(r, n)| ((*r).to_owned(), n)).collect();
                        @if rows.is_empty() {
                            p .muted { "No evaluations in " (e.name) " since the server started." }
                        } @else {
                            (charts::bars(&format!("evals-{}", e.key), &format!("Evaluations in {} by reason", e.name), &rows))
                        }
                    }
                }
            }
        }
        @if !experiments.is_empty() {
            section #experiments data-live aria-labelledby="experiments-title" {
                h2 #experiments-title { "Experiments" }
                ul {
                    @for x in &experiments {
                        li {
                            a href=(format!("/w/{}/experiments/{}", enc(&ws), enc(&x.definition.key))) { (x.definition.name.as_deref().unwrap_or(&x.definition.key)) }
                            " — " (x.status.as_str()) " in " (x.definition.environment) ", primary metric " code { (x.definition.primary_metric) }
                            @if let Some(d) = x.decision { ", decided: " (d.as_str()) }
                        }
                    }
                }
            }
        }
        section #history data-live aria-labelledby="history-title" {
            h2 #history-title { "Change history" }
            @if history.is_empty() { p .muted { "No changes recorded." } }
            @else {
                table {
                    caption .sr-only { "Changes to this flag, newest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Where" } th scope="col" { "Why" } } }
                    tbody {
                        @for a in history.iter().rev().take(50) {
                            tr {
                                td { (time::short(&a.at)) }
                                td { (a.actor) }
                                td { (a.action) }
                                td { (a.environment.as_deref().unwrap_or("all")) }
                                td { (a.reason.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Flags, &key, main))
}

/// `?enabled=` of the toggle confirmation.
#[derive(Debug, Deserialize)]
pub struct ToggleQuery {
    enabled: bool,
}

async fn load_env(state: &AppState, ws: &str, key: &str, env: &str) -> Result<(FlagRecord, Environment), ApiError> {
    let (r, e) = tokio::try_join!(state.store.get_flag(ws, key), state.store.get_environment(ws, env))?;
    Ok((r, e))
}

/// `GET …/envs/{env}/toggle?enabled=`: the confirmation, with context.
pub async fn toggle_page(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key, env)): Path<(String, String, String)>,
    Query(q): Query<ToggleQuery>,
) -> Response {
    match load_env(&state, &ws, &key, &env).await {
        Ok((rec, e)) => toggle_form(&state, &ui, &ws, &rec, &e, q.enabled, None, "").await,
        Err(err) => layout::error_page(&ui, Some(&ws), err),
    }
}

#[allow(clippy::too_many_arguments)]
async fn toggle_form(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    rec: &FlagRecord,
    env: &Environment,
    enabled: bool,
    error: Option<ApiError>,
    reason: &str,
) -> Response {
    let f = &rec.flag;
    let allowed = ui.may(if enabled {
        Action::TurnOn(env)
    } else {
        Action::TurnOff(env)
    });
    let off_serves = f.environments.get(&env.key).and_then(|t| t.off_variation.clone());
    let title = if enabled {
        format!("Turn on {} in {}", f.key, env.name)
    } else {
        format!("Kill switch: turn off {} in {}", f.key, env.name)
    };
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let main = html! {
        p { a href=(flag_url(ws, &f.key)) { "← " (f.key) } }
        div .split {
            div {
                h1 { (title) }
                @if let Some(e) = &error { (layout::error_box(e)) }
                @if enabled {
                    p { "Users in " strong { (env.name) } " will get the flag's targeting again at once." }
                } @else {
                    p { "Everyone in " strong { (env.name) } " will be served "
                        @match &off_serves { Some(v) => { "the off variation " code { (v) } }, None => "the caller's default value" }
                        " within a second." }
                }
                @if allowed {
                    form method="post" action=(env_url(ws, &f.key, &env.key, "toggle")) {
                        input type="hidden" name="csrf" value=(ui.csrf);
                        input type="hidden" name="enabled" value=(enabled);
                        label for="reason" { "Reason (recorded in the audit log)" }
                        textarea #reason name="reason" rows="3" { (reason) }
                        div .actions {
                            @if enabled { button type="submit" #confirm { "Turn on" } }
                            @else { button type="submit" #confirm .danger { "Turn off now" } }
                            a .button.secondary href=(flag_url(ws, &f.key)) { "Cancel" }
                        }
                    }
                } @else {
                    p .warn { "Your role may not do this here." }
                }
            }
            (context::panel(state, ui, ws, Some(rec), Some(env), Decision::Toggle(enabled)).await)
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Flags, &title, main)).into_response()
}

/// The toggle form.
#[derive(Debug, Deserialize)]
pub struct ToggleForm {
    csrf: String,
    enabled: bool,
    #[serde(default)]
    reason: String,
}

/// `POST …/envs/{env}/toggle`: the API's toggle. No `If-Match`: the kill
/// switch must work even if the flag changed since the page was drawn.
pub async fn toggle(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key, env)): Path<(String, String, String)>,
    Form(form): Form<ToggleForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let body = Toggle {
        enabled: form.enabled,
        reason: Some(form.reason.clone()),
    };
    let path = Path((ws.clone(), key.clone(), env.clone()));
    match crate::api::flags::toggle(State(state.clone()), ui.admin(), path, HeaderMap::new(), ApiJson(body)).await {
        Ok(_) => Redirect::to(&format!(
            "{}?done={}",
            flag_url(&ws, &key),
            if form.enabled { "on" } else { "off" }
        ))
        .into_response(),
        Err(err) => match load_env(&state, &ws, &key, &env).await {
            Ok((rec, e)) => toggle_form(&state, &ui, &ws, &rec, &e, form.enabled, Some(err), &form.reason).await,
            Err(_) => layout::error_page(&ui, Some(&ws), err),
        },
    }
}

/// What the targeting form shows: the current targeting or a rejected draft.
struct Draft {
    off_variation: String,
    mode: String,
    variation: String,
    weights: Vec<(String, String)>,
    rules: String,
    reason: String,
}

impl Draft {
    fn of(flag: &Flag, t: Option<&Targeting>) -> Draft {
        let mut weights: Vec<(String, String)> = flag.variations.iter().map(|v| (v.key.clone(), "0".into())).collect();
        let (mode, variation) = match t.and_then(|t| t.default_serve.as_ref()) {
            Some(Serve::Variation(v)) => ("variation", v.clone()),
            Some(Serve::Split(s)) => {
                let total: u64 = s.weights.iter().map(|w| u64::from(w.weight)).sum::<u64>().max(1);
                for (k, w) in &mut weights {
                    if let Some(x) = s.weights.iter().find(|x| x.variation == *k) {
                        *w = pct(x.weight, total);
                    }
                }
                ("split", String::new())
            }
            Some(Serve::Logic(_)) | None => ("none", String::new()),
        };
        Draft {
            off_variation: t.and_then(|t| t.off_variation.clone()).unwrap_or_default(),
            mode: mode.into(),
            variation,
            weights,
            rules: serde_json::to_string_pretty(&t.map(|t| &t.rules).cloned().unwrap_or_default())
                .unwrap_or_else(|_| "[]".into()),
            reason: String::new(),
        }
    }

    fn from_form(flag: &Flag, form: &HashMap<String, String>) -> Draft {
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        Draft {
            off_variation: get("off_variation"),
            mode: get("mode"),
            variation: get("variation"),
            weights: flag
                .variations
                .iter()
                .map(|v| (v.key.clone(), get(&format!("weight.{}", v.key))))
                .collect(),
            rules: get("rules"),
            reason: get("reason"),
        }
    }

    /// The targeting this draft asks for, keeping what the form does not
    /// edit (enabled, prerequisites, salt, split bucketing) from `current`.
    fn targeting(&self, current: Option<&Targeting>) -> Result<Targeting, ApiError> {
        let mut errors = Vec::new();
        let rules: Value = if self.rules.trim().is_empty() {
            json!([])
        } else {
            serde_json::from_str(&self.rules).unwrap_or_else(|e| {
                errors.push(sextant_store::FieldError {
                    field: "/targeting/rules".into(),
                    message: format!("not JSON: {e}"),
                });
                json!([])
            })
        };
        let default_serve = match self.mode.as_str() {
            "variation" => json!({"variation": self.variation}),
            "split" => {
                let mut weights = Vec::new();
                for (k, p) in &self.weights {
                    match p.trim().parse::<f64>() {
                        Ok(x) if (0.0..=100.0).contains(&x) => {
                            let w = (x * 1000.0).round() as u32;
                            if w > 0 {
                                weights.push(json!({"variation": k, "weight": w}));
                            }
                        }
                        _ => errors.push(sextant_store::FieldError {
                            field: format!("/targeting/default_serve/split/weights/{k}"),
                            message: format!("`{p}` is not a percentage from 0 to 100"),
                        }),
                    }
                }
                let mut split = match current.and_then(|t| t.default_serve.as_ref()) {
                    Some(Serve::Split(s)) => serde_json::to_value(s).unwrap_or_else(|_| json!({})),
                    _ => json!({}),
                };
                split["weights"] = json!(weights);
                json!({"split": split})
            }
            _ => Value::Null,
        };
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        let mut t = json!({
            "enabled": current.is_some_and(|t| t.enabled),
            "rules": rules,
            "prerequisites": current.map(|t| t.prerequisites.clone()).unwrap_or_default(),
        });
        if !default_serve.is_null() {
            t["default_serve"] = default_serve;
        }
        if !self.off_variation.is_empty() {
            t["off_variation"] = json!(self.off_variation);
        }
        if let Some(salt) = current.and_then(|t| t.salt.clone()) {
            t["salt"] = json!(salt);
        }
        serde_json::from_value(t).map_err(|e| ApiError::field("/targeting", e.to_string()))
    }
}

/// `GET …/envs/{env}/targeting`.
pub async fn targeting_page(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key, env)): Path<(String, String, String)>,
) -> Response {
    match load_env(&state, &ws, &key, &env).await {
        Ok((rec, e)) => {
            let draft = Draft::of(&rec.flag, rec.flag.environments.get(&env));
            targeting_form(&state, &ui, &ws, &rec, &e, &draft, None).await
        }
        Err(err) => layout::error_page(&ui, Some(&ws), err),
    }
}

async fn targeting_form(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    rec: &FlagRecord,
    env: &Environment,
    d: &Draft,
    error: Option<ApiError>,
) -> Response {
    let f = &rec.flag;
    let title = format!("Targeting of {} in {}", f.key, env.name);
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let allowed = ui.may(Action::EditTargeting(env));
    let main = html! {
        p { a href=(flag_url(ws, &f.key)) { "← " (f.key) } }
        div .split {
            div {
                h1 { (title) }
                @if let Some(e) = &error { (layout::error_box(e)) }
                section #current data-live aria-labelledby="current-title" {
                    h2 #current-title { "Now " (state_badge(is_on(f, &env.key))) }
                    @match f.environments.get(&env.key) {
                        Some(t) => (targeting_view(t)),
                        None => p .muted { "No targeting yet." },
                    }
                }
                @if allowed {
                form method="post" action=(env_url(ws, &f.key, &env.key, "targeting")) {
                    input type="hidden" name="csrf" value=(ui.csrf);
                    input type="hidden" name="version" value=(rec.version);
                    fieldset {
                        legend { "Otherwise (no rule matches)" }
                        div .check {
                            input #mode-variation type="radio" name="mode" value="variation" checked[d.mode == "variation"];
                            label for="mode-variation" { "Serve one variation" }
                        }
                        label for="variation" { "Variation" }
                        select #variation name="variation" {
                            @for v in &f.variations { option value=(v.key) selected[d.variation == v.key] { (v.key) } }
                        }
                        div .check {
                            input #mode-split type="radio" name="mode" value="split" checked[d.mode == "split"];
                            label for="mode-split" { "Split by percentage (sticky per user)" }
                        }
                        @for (k, w) in &d.weights {
                            div .weight {
                                label for=(format!("weight-{k}")) { (k) " %" }
                                input #(format!("weight-{k}")) type="text" inputmode="decimal" name=(format!("weight.{k}")) value=(w) size="8";
                            }
                        }
                        div .check {
                            input #mode-none type="radio" name="mode" value="none" checked[d.mode == "none"];
                            label for="mode-none" { "Serve the caller's default" }
                        }
                    }
                    label for="off_variation" { "When off (kill switch), serve" }
                    select #off_variation name="off_variation" {
                        option value="" selected[d.off_variation.is_empty()] { "the caller's default" }
                        @for v in &f.variations { option value=(v.key) selected[d.off_variation == v.key] { (v.key) } }
                    }
                    label for="rules" { "Rules (JSON, first match wins)" }
                    textarea #rules name="rules" rows="10" spellcheck="false" aria-describedby="rules-help" { (d.rules) }
                    p #rules-help .muted {
                        "Each rule: " code { r#"{"conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}], "serve": {"variation": "on"}}"# }
                    }
                    label for="reason" { "Reason (recorded in the audit log)" }
                    textarea #reason name="reason" rows="2" { (d.reason) }
                    div .actions {
                        button type="submit" #save { "Save targeting" }
                        a .button.secondary href=(flag_url(ws, &f.key)) { "Cancel" }
                    }
                }
                } @else {
                    p .warn { "Your role may not change targeting in " (env.name) "." }
                }
            }
            (context::panel(state, ui, ws, Some(rec), Some(env), Decision::Targeting).await)
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Flags, &title, main)).into_response()
}

/// `POST …/envs/{env}/targeting`: the API's `set_targeting`, with `If-Match`
/// so a change made since the form was drawn is not overwritten silently.
pub async fn targeting(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key, env)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = ui.reject_csrf(form.get("csrf").map_or("", String::as_str)) {
        return r;
    }
    let (rec, e) = match load_env(&state, &ws, &key, &env).await {
        Ok(v) => v,
        Err(err) => return layout::error_page(&ui, Some(&ws), err),
    };
    let draft = Draft::from_form(&rec.flag, &form);
    let result = match draft.targeting(rec.flag.environments.get(&env)) {
        Ok(targeting) => {
            let mut headers = HeaderMap::new();
            if let Some(v) = form
                .get("version")
                .and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok())
            {
                headers.insert(header::IF_MATCH, v);
            }
            let body = SetTargeting {
                targeting,
                reason: Some(draft.reason.clone()),
            };
            let path = Path((ws.clone(), key.clone(), env.clone()));
            crate::api::flags::set_targeting(State(state.clone()), ui.admin(), path, headers, ApiJson(body)).await
        }
        Err(err) => Err(err),
    };
    match result {
        // The workspace policy gates targeting: a change request was filed.
        Ok(r) if r.status() == StatusCode::ACCEPTED => super::approvals::filed(&ws, r).await,
        Ok(_) => Redirect::to(&format!("{}?done=targeting", flag_url(&ws, &key))).into_response(),
        Err(err) => {
            // Show the stored state as it is now (it may have moved on).
            let rec = state.store.get_flag(&ws, &key).await.unwrap_or(rec);
            targeting_form(&state, &ui, &ws, &rec, &e, &draft, Some(err)).await
        }
    }
}

/// The new-flag form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct NewFlagForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    variations: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: String,
    temporary: Option<String>,
    #[serde(default)]
    metric: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    minimum_effect: String,
    #[serde(default)]
    hypothesis: String,
    operational: Option<String>,
    #[serde(default)]
    reason: String,
}

impl NewFlagForm {
    fn blank() -> Self {
        NewFlagForm {
            kind: "boolean".into(),
            variations: "on=true\noff=false".into(),
            temporary: Some("1".into()),
            direction: "increase".into(),
            ..NewFlagForm::default()
        }
    }

    /// The flag this form describes; the store validates it in full.
    fn flag(&self) -> Result<Flag, ApiError> {
        let mut errors = Vec::new();
        let mut variations = Vec::new();
        for (i, line) in self
            .variations
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let Some((k, v)) = line.split_once('=') else {
                errors.push(sextant_store::FieldError {
                    field: format!("/flag/variations/{i}"),
                    message: format!("`{line}` is not `key=value`"),
                });
                continue;
            };
            let v = v.trim();
            let value = match (self.kind.as_str(), serde_json::from_str::<Value>(v)) {
                ("string", Ok(Value::String(s))) => Value::String(s),
                ("string", _) => Value::String(v.to_owned()),
                (_, Ok(parsed)) => parsed,
                (_, Err(_)) => Value::String(v.to_owned()),
            };
            variations.push(json!({"key": k.trim(), "value": value}));
        }
        let mut flag = json!({
            "key": self.key.trim(),
            "kind": self.kind,
            "variations": variations,
            "temporary": self.temporary.is_some(),
        });
        if !self.description.trim().is_empty() {
            flag["description"] = json!(self.description.trim());
        }
        if !self.owner.trim().is_empty() {
            flag["owner"] = json!(self.owner.trim());
        }
        let tags: Vec<&str> = self.tags.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if !tags.is_empty() {
            flag["tags"] = json!(tags);
        }
        if !self.hypothesis.trim().is_empty() || !self.metric.trim().is_empty() {
            let mut h = json!({"reason": self.hypothesis.trim(), "operational": self.operational.is_some()});
            if !self.metric.trim().is_empty() {
                h["metric"] = json!(self.metric.trim());
                h["direction"] = json!(self.direction);
            }
            if !self.minimum_effect.trim().is_empty() {
                match self.minimum_effect.trim().trim_end_matches('%').parse::<f64>() {
                    Ok(p) => h["minimum_effect"] = json!(p / 100.0),
                    Err(_) => errors.push(sextant_store::FieldError {
                        field: "/flag/hypothesis/minimum_effect".into(),
                        message: format!("`{}` is not a percentage", self.minimum_effect),
                    }),
                }
            }
            flag["hypothesis"] = h;
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        serde_json::from_value(flag).map_err(|e| ApiError::field("/flag", e.to_string()))
    }
}

/// `GET /w/{ws}/flags-new`.
pub async fn new_page(State(state): State<AppState>, ui: Ui, Path(ws): Path<String>) -> Response {
    new_form(&state, &ui, &ws, &NewFlagForm::blank(), None).await
}

async fn new_form(state: &AppState, ui: &Ui, ws: &str, d: &NewFlagForm, error: Option<ApiError>) -> Response {
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let kinds = ["boolean", "string", "number", "json"];
    let main = html! {
        div .split {
            div {
                h1 { "New flag" }
                @if let Some(e) = &error { (layout::error_box(e)) }
                @if ui.may(Action::EditFlag) {
                form method="post" action=(format!("/w/{}/flags", enc(ws))) {
                    input type="hidden" name="csrf" value=(ui.csrf);
                    label for="key" { "Key" }
                    input #key name="key" value=(d.key) required pattern="[A-Za-z0-9][A-Za-z0-9._-]*" aria-describedby="key-help";
                    p #key-help .muted { "Letters, digits, ., _ or -; code asks for the flag by this key." }
                    label for="kind" { "Kind" }
                    select #kind name="kind" {
                        @for k in kinds { option value=(k) selected[d.kind == k] { (k) } }
                    }
                    label for="variations" { "Variations (one key=value per line)" }
                    textarea #variations name="variations" rows="3" { (d.variations) }
                    label for="description" { "Description" }
                    input #description name="description" value=(d.description);
                    label for="owner" { "Owner" }
                    input #owner name="owner" value=(d.owner);
                    label for="tags" { "Tags (comma-separated)" }
                    input #tags name="tags" value=(d.tags);
                    div .check {
                        input #temporary type="checkbox" name="temporary" value="1" checked[d.temporary.is_some()];
                        label for="temporary" { "Temporary (remove after launch)" }
                    }
                    fieldset {
                        legend { "Hypothesis" }
                        label for="hypothesis" { "Why this flag exists, and what it should change" }
                        textarea #hypothesis name="hypothesis" rows="2" { (d.hypothesis) }
                        label for="metric" { "Target metric" }
                        input #metric name="metric" value=(d.metric);
                        label for="direction" { "Expected direction" }
                        select #direction name="direction" {
                            option value="increase" selected[d.direction == "increase"] { "increase" }
                            option value="decrease" selected[d.direction == "decrease"] { "decrease" }
                        }
                        label for="minimum_effect" { "Minimum effect worth shipping (%)" }
                        input #minimum_effect name="minimum_effect" inputmode="decimal" value=(d.minimum_effect);
                        div .check {
                            input #operational type="checkbox" name="operational" value="1" checked[d.operational.is_some()];
                            label for="operational" { "Operational flag (kill switch or ops toggle; no metric)" }
                        }
                    }
                    label for="reason" { "Reason (recorded in the audit log)" }
                    textarea #reason name="reason" rows="2" { (d.reason) }
                    div .actions { button type="submit" #create { "Create flag" } }
                }
                } @else {
                    p .warn { "Your role may not create flags." }
                }
            }
            (context::panel(state, ui, ws, None, None, Decision::Create).await)
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Flags, "New flag", main)).into_response()
}

/// `POST /w/{ws}/flags`: the API's `create_flag`.
pub async fn create(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Form(form): Form<NewFlagForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let result = match form.flag() {
        Ok(flag) => {
            let body = NewFlag {
                flag,
                reason: Some(form.reason.clone()),
            };
            crate::api::flags::create_flag(State(state.clone()), ui.admin(), Path(ws.clone()), ApiJson(body))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to(&format!("{}?done=created", flag_url(&ws, form.key.trim()))).into_response(),
        Err(e) => new_form(&state, &ui, &ws, &form, Some(e)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_print_without_trailing_zeros() {
        assert_eq!(pct(25_000, 100_000), "25");
        assert_eq!(pct(1, 100_000), "0.001");
        assert_eq!(pct(33_333, 100_000), "33.333");
    }

    #[test]
    fn new_flag_form_builds_typed_variations() {
        let form = NewFlagForm {
            key: "banner".into(),
            kind: "string".into(),
            variations: "a=hello\nb=\"quoted\"\n".into(),
            ..NewFlagForm::blank()
        };
        let flag = form.flag().unwrap();
        assert_eq!(flag.variations[0].value, json!("hello"));
        assert_eq!(flag.variations[1].value, json!("quoted"));
        assert!(flag.temporary);
    }

    #[test]
    fn a_variation_line_without_equals_is_named_in_the_error() {
        let form = NewFlagForm {
            key: "x".into(),
            variations: "on=true\noops".into(),
            ..NewFlagForm::blank()
        };
        let e = form.flag().unwrap_err();
        assert_eq!(e.errors[0].field, "/flag/variations/1");
    }

    #[test]
    fn split_percentages_become_parts_per_100000_and_bad_ones_are_named() {
        let flag: Flag = serde_json::from_value(json!({"key": "f", "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}))
        .unwrap();
        let mut d = Draft::of(&flag, None);
        d.mode = "split".into();
        d.weights = vec![("on".into(), "12.5".into()), ("off".into(), "87.5".into())];
        let t = d.targeting(None).unwrap();
        match t.default_serve {
            Some(Serve::Split(s)) => {
                assert_eq!(s.weights.iter().map(|w| w.weight).collect::<Vec<_>>(), [12_500, 87_500])
            }
            other => panic!("{other:?}"),
        }
        d.weights[0].1 = "lots".into();
        let e = d.targeting(None).unwrap_err();
        assert_eq!(e.errors[0].field, "/targeting/default_serve/split/weights/on");
    }
}
