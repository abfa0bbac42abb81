//! The North Star and the metric tree: current values, trends, sparklines.
//! Data comes from the metrics API's own handlers.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::charts;
use super::layout::{self, Nav};
use super::session::Ui;
use super::time;
use crate::api::metrics::{SeriesQuery, Tree, TreeNode, TreeQuery, Trend};
use crate::error::ApiQuery;
use crate::state::AppState;

/// `?env=&window=`.
#[derive(Debug, Default, Deserialize)]
pub struct MetricsQuery {
    env: Option<String>,
    window: Option<String>,
}

/// Days of history in each sparkline.
const SPARK_DAYS: i64 = 14;

/// `GET /w/{ws}/metrics`.
pub async fn page(
    State(state): State<AppState>,
    ui: Ui,
    Path(ws): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Response {
    let env = q.env.clone().unwrap_or_else(|| "production".into());
    let window = q.window.clone().unwrap_or_else(|| "7d".into());
    let query = TreeQuery {
        workspace: Some(ws.clone()),
        environment: Some(env.clone()),
        window: Some(window.clone()),
        at: None,
    };
    let tree: Tree = match crate::api::metrics::tree(State(state.clone()), ui.admin(), ApiQuery(query)).await {
        Ok(t) => t.0,
        Err(e) => return layout::error_page(&ui, Some(&ws), e),
    };
    let now = time::unix_now();
    let from = time::rfc3339(now - SPARK_DAYS * 86_400);
    let to = time::rfc3339(now);
    let mut sparks = std::collections::HashMap::new();
    let mut keys = Vec::new();
    if let Some(n) = &tree.north_star {
        collect(n, &mut keys);
    }
    for key in keys {
        let sq = SeriesQuery {
            environment: Some(env.clone()),
            granularity: Some("day".into()),
            from: Some(from.clone()),
            to: Some(to.clone()),
        };
        let path = Path((ws.clone(), key.clone()));
        if let Ok(s) = crate::api::metrics::series(State(state.clone()), ui.admin(), path, ApiQuery(sq)).await {
            let points: Vec<(String, Option<f64>)> =
                s.0.points
                    .into_iter()
                    .map(|p| (p.start[..10.min(p.start.len())].to_owned(), p.value.value))
                    .collect();
            sparks.insert(key, points);
        }
    }
    let main = html! {
        h1 { "North Star and metric tree" }
        p .muted { "Values in " strong { (tree.environment) } " over the last " (window) " (" (time::short(&tree.from)) " to " (time::short(&tree.to)) "), compared with the " (window) " before." }
        form .filters method="get" aria-label="Choose environment and window" {
            div { label for="env" { "Environment" } input #env name="env" value=(env); }
            div {
                label for="window" { "Window" }
                select #window name="window" {
                    @for w in ["24h", "7d", "28d"] { option value=(w) selected[window == w] { (w) } }
                }
            }
            div { button type="submit" { "Show" } }
        }
        div #tree data-live {
            @match &tree.north_star {
                Some(n) => ul .tree { (node(n, &sparks, true)) },
                None => p { "No metrics yet. Define a North Star with " code { "POST /api/v1/workspaces/" (ws) "/metrics" } "." },
            }
        }
    };
    layout::ok(layout::page(&ui, Some(&ws), Nav::Metrics, "Metrics", main))
}

fn collect(n: &TreeNode, out: &mut Vec<String>) {
    out.push(n.metric.key.clone());
    for c in &n.children {
        collect(c, out);
    }
}

fn node(n: &TreeNode, sparks: &std::collections::HashMap<String, Vec<(String, Option<f64>)>>, root: bool) -> Markup {
    let m = &n.metric;
    let (trend_text, trend_class) = match n.trend {
        Trend::Improving => ("improving", "good"),
        Trend::Worsening => ("worsening", "bad"),
        Trend::Flat => ("flat", "muted"),
        Trend::Unknown => ("no trend yet", "muted"),
    };
    html! {
        li .metric #(format!("metric-{}", m.key)) {
            div .node {
                @if root { span .badge.prod { "North Star" } " " }
                strong { (m.name) } " " code { (m.key) }
                " — "
                span .value { (n.current.value.map_or("no data".into(), charts::format_value)) }
                @if let Some(u) = &m.unit { " " (u) }
                " "
                span class=(trend_class) {
                    (trend_text)
                    @if let Some(c) = n.change { " (" (format!("{:+.1}%", c * 100.0)) ")" }
                }
                span .muted { " · " (n.current.units) " units" }
                @if let Some(points) = sparks.get(&m.key) {
                    " " (charts::sparkline(&format!("spark-{}", m.key), &format!("{} per day, last {SPARK_DAYS} days", m.name), points))
                }
                @if !n.initiatives.is_empty() {
                    br; span .muted { "Initiatives: " (n.initiatives.join(", ")) }
                }
            }
            @if !n.children.is_empty() {
                ul { @for c in &n.children { (node(c, sparks, false)) } }
            }
        }
    }
}
