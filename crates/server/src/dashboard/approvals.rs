//! The approvals inbox: pending change requests, each with what it would
//! change and the context for deciding it; approve or reject through the
//! change-request API's own handlers. Deciding is offered only to the
//! product and admin roles, and never to the request's own requester (the
//! API refuses both anyway).
//!
//! Also the "archive a flag" request form: archiving is irreversible, so
//! it files a change request rather than acting.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_store::{ChangeRequest, RequestStatus, Role};

use super::context::{self, Decision};
use super::layout::{self, Nav, enc};
use super::session::Ui;
use super::time;
use crate::api::changes::Decision as DecisionBody;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

fn inbox_url(ws: &str) -> String {
    format!("/w/{}/approvals", enc(ws))
}

fn request_url(ws: &str, id: i64) -> String {
    format!("{}/{id}", inbox_url(ws))
}

/// Why `ui` may not decide `r`, or `None` when it may.
fn why_not(ui: &Ui, r: &ChangeRequest) -> Option<String> {
    if r.status != RequestStatus::Pending {
        return Some(format!("This request is {}.", r.status.as_str()));
    }
    if !matches!(ui.role, Role::Product | Role::Admin) {
        return Some(format!(
            "Your role ({}) may not decide change requests; the product or admin role may.",
            ui.role.as_str()
        ));
    }
    if r.requested_by == ui.admin().actor() {
        return Some("You filed this request; another person with the product or admin role must decide it.".into());
    }
    None
}

fn what(r: &ChangeRequest) -> Markup {
    let verb = match r.action.as_str() {
        "flag.delete" => "Delete flag",
        "flag.archive" => "Archive flag",
        "flag.restore" => "Restore flag",
        "flag.update" => "Change the definition of flag",
        "flag.targeting" => "Change targeting of flag",
        "policy.update" => "Change the approval policy of",
        "change.revert" => "Revert a change to",
        _ => "Change",
    };
    html! {
        (verb) " " code { (r.key) }
        @if let Some(e) = &r.environment { " in " (e) }
    }
}

fn status_badge(s: RequestStatus) -> Markup {
    let class = match s {
        RequestStatus::Pending => "badge stale",
        RequestStatus::Applied => "badge on",
        RequestStatus::Rejected => "badge off",
    };
    html! { span class=(class) { (s.as_str()) } }
}

/// `?done=` after a form.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn done_text(done: &str) -> Option<String> {
    Some(match done {
        "approved" => "Approved: the change is applied.".into(),
        "rejected" => "Rejected: nothing changed.".into(),
        d if d.starts_with("filed-") => format!(
            "Change request #{} filed. Another person with the product or admin role must approve it.",
            &d[6..]
        ),
        _ => return None,
    })
}

/// `GET /w/{ws}/approvals`.
pub async fn inbox(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let all = match state.store.list_change_requests(&ws, None).await {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let (pending, decided): (Vec<&ChangeRequest>, Vec<&ChangeRequest>) =
        all.iter().partition(|r| r.status == RequestStatus::Pending);
    let main = html! {
        @if let Some(t) = done.done.as_deref().and_then(done_text) { (layout::done_box(&t)) }
        h1 { "Approvals" }
        p .muted { "Irreversible changes wait here for a second person with the product or admin role. Reversible ones (toggles, rollout percentages, targeting unless the policy says otherwise) never do." }
        section #pending data-live aria-labelledby="pending-title" {
            h2 #pending-title { "Waiting for a decision (" (pending.len()) ")" }
            @if pending.is_empty() { p { "Nothing waits for approval." } }
            @else {
                table {
                    caption .sr-only { "Pending change requests" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Change" } th scope="col" { "Asked by" } th scope="col" { "Why" } th scope="col" { "When" } th scope="col" { "Your part" } } }
                    tbody {
                        @for r in &pending {
                            tr #(format!("request-{}", r.id)) {
                                td { (r.id) }
                                td { (what(r)) }
                                td { (r.requested_by) }
                                td { (r.reason.as_deref().unwrap_or("—")) }
                                td { (time::short(&r.created_at)) }
                                td {
                                    @match why_not(&ui, r) {
                                        None => a .button href=(request_url(&ws, r.id)) { "Review #" (r.id) }
                                        Some(why) => { span .muted { (why) } " " a href=(request_url(&ws, r.id)) { "Details" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #decided data-live aria-labelledby="decided-title" {
            h2 #decided-title { "Decided" }
            @if decided.is_empty() { p .muted { "No decisions yet." } }
            @else {
                table {
                    caption .sr-only { "Decided change requests, newest first" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Change" } th scope="col" { "Outcome" } th scope="col" { "Asked by" } th scope="col" { "Decided by" } th scope="col" { "Why" } } }
                    tbody {
                        @for r in decided.iter().take(50) {
                            tr {
                                td { a href=(request_url(&ws, r.id)) { (r.id) } }
                                td { (what(r)) }
                                td { (status_badge(r.status)) }
                                td { (r.requested_by) }
                                td { (r.decided_by.as_deref().unwrap_or("—")) @if let Some(t) = &r.decided_at { br; span .muted { (time::short(t)) } } }
                                td { (r.decision_reason.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Approvals, "Approvals", main))
}

/// `GET /w/{ws}/approvals/{id}`.
pub async fn detail(State(state): State<AppState>, ui: Ui, Path((ws, id)): Path<(String, i64)>) -> Response {
    request_page(&state, &ui, &ws, id, None, "").await
}

async fn request_page(state: &AppState, ui: &Ui, ws: &str, id: i64, error: Option<ApiError>, reason: &str) -> Response {
    let r = match state.store.get_change_request(ws, id).await {
        Ok(r) => r,
        Err(e) => return layout::error_page(ui, Some(ws), e.into()),
    };
    let flag = if r.kind == "flag" {
        state.store.get_flag(ws, &r.key).await.ok()
    } else {
        None
    };
    let env = match &r.environment {
        Some(e) => state.store.get_environment(ws, e).await.ok(),
        None => None,
    };
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let title = format!("Change request #{id}");
    let main = html! {
        p { a href=(inbox_url(ws)) { "← Approvals" } }
        div .split {
            div {
                h1 { (title) " " (status_badge(r.status)) }
                @if let Some(e) = &error { (layout::error_box(e)) }
                dl .facts #request {
                    dt { "Change" } dd { (what(&r)) }
                    dt { "Asked by" } dd { (r.requested_by) ", " (time::short(&r.created_at)) }
                    dt { "Why" } dd { (r.reason.as_deref().unwrap_or("—")) }
                    @if let Some(p) = &r.payload {
                        dt { "Payload" } dd { pre { (serde_json::to_string_pretty(p).unwrap_or_default()) } }
                    }
                    @if let Some(by) = &r.decided_by {
                        dt { "Decided by" } dd { (by) @if let Some(t) = &r.decided_at { ", " (time::short(t)) } }
                        dt { "Decision reason" } dd { (r.decision_reason.as_deref().unwrap_or("—")) }
                    }
                }
                @match why_not(ui, &r) {
                    Some(why) => p .warn #not-offered { (why) },
                    None => form method="post" action=(format!("{}/decide", request_url(ws, id))) {
                        input type="hidden" name="csrf" value=(ui.csrf);
                        label for="reason" { "Reason (recorded in the audit log)" }
                        textarea #reason name="reason" rows="2" { (reason) }
                        div .actions {
                            button type="submit" name="decision" value="approve" #approve { "Approve and apply" }
                            button type="submit" name="decision" value="reject" #reject .secondary { "Reject" }
                        }
                    },
                }
            }
            (context::panel(state, ui, ws, flag.as_ref(), env.as_ref(), Decision::Approval).await)
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Approvals, &title, main)).into_response()
}

/// The decision form.
#[derive(Debug, Deserialize)]
pub struct DecideForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    reason: String,
}

/// `POST /w/{ws}/approvals/{id}/decide`: the API's `approve` or `reject`.
pub async fn decide(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, id)): Path<(String, i64)>,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let body = ApiJson(DecisionBody {
        reason: Some(form.reason.clone()),
    });
    let path = crate::error::ApiPath((ws.clone(), id));
    let s = State(state.clone());
    let result = match form.decision.as_str() {
        "approve" => crate::api::changes::approve(s, ui.admin(), path, body).await.map(drop),
        "reject" => crate::api::changes::reject(s, ui.admin(), path, body).await.map(drop),
        other => Err(ApiError::field(
            "/decision",
            format!("`{other}` is not approve or reject"),
        )),
    };
    match result {
        Ok(()) => {
            let done = if form.decision == "approve" {
                "approved"
            } else {
                "rejected"
            };
            Redirect::to(&format!("{}?done={done}", inbox_url(&ws))).into_response()
        }
        Err(e) => request_page(&state, &ui, &ws, id, Some(e), &form.reason).await,
    }
}

/// Archiving or restoring: both are irreversible flag lifecycle changes
/// that file a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Archive,
    Restore,
}

impl Lifecycle {
    fn path(self) -> &'static str {
        match self {
            Lifecycle::Archive => "archive",
            Lifecycle::Restore => "restore",
        }
    }
}

/// `GET /w/{ws}/flags/{key}/archive`: the request form, with context.
pub async fn archive_page(State(state): State<AppState>, ui: Ui, Path((ws, key)): Path<(String, String)>) -> Response {
    lifecycle_form(&state, &ui, &ws, &key, Lifecycle::Archive, None, "").await
}

/// `GET /w/{ws}/flags/{key}/restore`: the request form, with context.
pub async fn restore_page(State(state): State<AppState>, ui: Ui, Path((ws, key)): Path<(String, String)>) -> Response {
    lifecycle_form(&state, &ui, &ws, &key, Lifecycle::Restore, None, "").await
}

async fn lifecycle_form(
    state: &AppState,
    ui: &Ui,
    ws: &str,
    key: &str,
    what: Lifecycle,
    error: Option<ApiError>,
    reason: &str,
) -> Response {
    let rec = match state.store.get_flag(ws, key).await {
        Ok(r) => r,
        Err(e) => return layout::error_page(ui, Some(ws), e.into()),
    };
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.meta().1);
    let title = match what {
        Lifecycle::Archive => format!("Archive {key}"),
        Lifecycle::Restore => format!("Restore {key}"),
    };
    let main = html! {
        p { a href=(format!("/w/{}/flags/{}", enc(ws), enc(key))) { "← " (key) } }
        div .split {
            div {
                h1 { (title) }
                @if let Some(e) = &error { (layout::error_box(e)) }
                @match what {
                    Lifecycle::Archive => p { "Archiving turns " code { (key) } " off in every environment and marks it archived. It is irreversible, so this files a change request; it applies only when another person with the product or admin role approves it." },
                    Lifecycle::Restore => p { "Restoring makes " code { (key) } " changeable again; it stays off everywhere until someone turns it on. Like archiving, it files a change request that another person with the product or admin role must approve." },
                }
                @if ui.may(crate::auth::Action::DeleteFlag) {
                    form method="post" action=(format!("/w/{}/flags/{}/{}", enc(ws), enc(key), what.path())) {
                        input type="hidden" name="csrf" value=(ui.csrf);
                        label for="reason" { "Reason (shown to the approver and recorded in the audit log)" }
                        textarea #reason name="reason" rows="3" { (reason) }
                        div .actions {
                            @match what {
                                Lifecycle::Archive => button type="submit" #request .danger { "Request archiving" },
                                Lifecycle::Restore => button type="submit" #request { "Request restoring" },
                            }
                            a .button.secondary href=(format!("/w/{}/flags/{}", enc(ws), enc(key))) { "Cancel" }
                        }
                    }
                } @else {
                    p .warn { "Your role (" (ui.role.as_str()) ") may not archive or restore flags." }
                }
            }
            (context::panel(state, ui, ws, Some(&rec), None, Decision::Archive).await)
        }
    };
    (status, layout::page(ui, Some(ws), Nav::Flags, &title, main)).into_response()
}

/// The archive or restore request form.
#[derive(Debug, Deserialize)]
pub struct LifecycleForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /w/{ws}/flags/{key}/archive`: the API's `archive` (files a request).
pub async fn archive(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key)): Path<(String, String)>,
    Form(form): Form<LifecycleForm>,
) -> Response {
    request_lifecycle(state, ui, ws, key, Lifecycle::Archive, form).await
}

/// `POST /w/{ws}/flags/{key}/restore`: the API's `restore` (files a request).
pub async fn restore(
    State(state): State<AppState>,
    ui: Ui,
    Path((ws, key)): Path<(String, String)>,
    Form(form): Form<LifecycleForm>,
) -> Response {
    request_lifecycle(state, ui, ws, key, Lifecycle::Restore, form).await
}

async fn request_lifecycle(
    state: AppState,
    ui: Ui,
    ws: String,
    key: String,
    what: Lifecycle,
    form: LifecycleForm,
) -> Response {
    if let Some(r) = ui.reject_csrf(&form.csrf) {
        return r;
    }
    let body = ApiJson(DecisionBody {
        reason: Some(form.reason.clone()),
    });
    let path = Path((ws.clone(), key.clone()));
    let s = State(state.clone());
    let result = match what {
        Lifecycle::Archive => crate::api::changes::archive(s, ui.admin(), path, body).await,
        Lifecycle::Restore => crate::api::changes::restore(s, ui.admin(), path, body).await,
    };
    match result {
        Ok(response) => filed(&ws, response).await,
        Err(e) => lifecycle_form(&state, &ui, &ws, &key, what, Some(e), &form.reason).await,
    }
}

/// After the API answered `202` with a change request (the API announced
/// it): go to the inbox saying which request was filed.
pub async fn filed(ws: &str, response: Response) -> Response {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["id"].as_i64());
    let done = id.map_or_else(|| "filed-?".to_owned(), |i| format!("filed-{i}"));
    Redirect::to(&format!("{}?done={done}", inbox_url(ws))).into_response()
}
