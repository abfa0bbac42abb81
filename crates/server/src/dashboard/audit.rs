//! The audit log page: filters, paging and the chain's verification.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use sextant_store::AuditFilter;

use super::layout::{self, Nav, enc};
use super::session::Ui;
use super::time;
use crate::state::AppState;

/// Entries per page.
const PAGE: u32 = 100;

/// Filters, as the API's `/api/v1/audit` takes them.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    environment: String,
    after: Option<i64>,
}

fn some(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

/// `GET /w/{ws}/audit`.
pub async fn page(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let filter = AuditFilter {
        workspace: Some(ws.clone()),
        kind: some(&q.kind),
        key: some(&q.key),
        actor: some(&q.actor),
        action: some(&q.action),
        environment: some(&q.environment),
        after_seq: q.after,
        limit: Some(PAGE),
    };
    let (entries, verification) = match tokio::try_join!(state.store.list_audit(&filter), state.store.verify_audit()) {
        Ok(v) => v,
        Err(e) => return layout::error_page(&ui, Some(&ws), e.into()),
    };
    let next = (entries.len() == PAGE as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let next_url = next.map(|seq| {
        format!(
            "/w/{}/audit?kind={}&key={}&actor={}&action={}&environment={}&after={seq}",
            enc(&ws),
            enc(&q.kind),
            enc(&q.key),
            enc(&q.actor),
            enc(&q.action),
            enc(&q.environment)
        )
    });
    let field = |id: &str, label: &str, value: &str| {
        html! { div { label for=(id) { (label) } input #(id) name=(id) value=(value); } }
    };
    let main = html! {
        h1 { "Audit log" }
        div #chain data-live {
            @if verification.ok {
                p .notice.done { "Hash chain verified: " (verification.entries) " entries, none edited, deleted or reordered." }
            } @else {
                div .notice.error role="alert" {
                    p { "The audit chain is broken (" (verification.problems.len()) " problems):" }
                    ul { @for p in &verification.problems { li { "entry " (p.seq) ": " (p.problem) } } }
                }
            }
        }
        form .filters method="get" role="search" aria-label="Filter the audit log" {
            (field("kind", "Kind", &q.kind))
            (field("key", "Key", &q.key))
            (field("actor", "Actor", &q.actor))
            (field("action", "Action", &q.action))
            (field("environment", "Environment", &q.environment))
            div { button type="submit" { "Filter" } }
        }
        table #audit data-live {
            caption .sr-only { "Audit entries, oldest first" }
            thead { tr {
                th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                th scope="col" { "What" } th scope="col" { "Where" } th scope="col" { "Why" } th scope="col" { "Change" }
            } }
            tbody {
                @for e in &entries {
                    tr {
                        td { (e.seq) }
                        td { (time::short(&e.at)) }
                        td { (e.actor) }
                        td { (e.action) }
                        td { (e.kind) " " code { (e.key) } }
                        td { (e.environment.as_deref().unwrap_or("—")) }
                        td { (e.reason.as_deref().unwrap_or("—")) }
                        td {
                            details {
                                summary { "before / after" }
                                pre { "before: " (e.before.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_else(|| "—".into())) }
                                pre { "after: " (e.after.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_else(|| "—".into())) }
                            }
                        }
                    }
                }
            }
        }
        @if entries.is_empty() { p .muted { "No entries match." } }
        @if let Some(u) = next_url { p { a href=(u) { "Next " (PAGE) " entries →" } } }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Audit, "Audit log", main))
}
