//! `sextant metric add|list|tree` and `sextant track`: the metric tree and
//! sending an event (for scripts and demos).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Remote, block_on};
use crate::output::{Table, json};

/// `sextant metric …`.
#[derive(Debug, Args)]
pub struct MetricArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: MetricCommand,
}

#[derive(Debug, Subcommand)]
enum MetricCommand {
    /// Add a metric to the tree (the first one must be the North Star).
    Add(MetricInput),
    /// List the workspace's metrics.
    List,
    /// Show the metric tree with current values and trends.
    Tree {
        /// Environment the values come from.
        #[arg(long, short, default_value = "production")]
        environment: String,
        /// Current window (`24h`, `7d`, …); the trend compares it with the one before.
        #[arg(long, default_value = "7d")]
        window: String,
    },
}

/// How events become a metric value.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Aggregation {
    /// Number of events.
    Count,
    /// Sum of event values.
    Sum,
    /// Sum of event values per unit, averaged over units.
    Mean,
    /// Share of units with at least one event.
    Conversion,
    /// Numerator metric / denominator metric.
    Ratio,
}

/// Which way is good.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Direction {
    /// Up is good.
    Increase,
    /// Down is good.
    Decrease,
}

#[derive(Debug, Args)]
struct MetricInput {
    /// Metric key.
    key: String,
    /// Display name (default: the key).
    #[arg(long)]
    name: Option<String>,
    /// How events become a value.
    #[arg(long, value_enum, default_value = "count")]
    aggregation: Aggregation,
    /// The event counted (all but ratio).
    #[arg(long)]
    event: Option<String>,
    /// Ratio: numerator metric key.
    #[arg(long)]
    numerator: Option<String>,
    /// Ratio: denominator metric key.
    #[arg(long)]
    denominator: Option<String>,
    /// Which way is good.
    #[arg(long, value_enum, default_value = "increase")]
    good_direction: Direction,
    /// Parent metric (every metric but the North Star has one).
    #[arg(long)]
    parent: Option<String>,
    /// Make it the North Star (admin token; only for the first metric).
    #[arg(long)]
    north_star: bool,
    /// Unit of the value (`EUR`, `ms`).
    #[arg(long)]
    unit: Option<String>,
    /// What it measures.
    #[arg(long)]
    description: Option<String>,
    /// Who owns it.
    #[arg(long)]
    owner: Option<String>,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

fn name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

/// `sextant metric …`.
pub fn metric(args: MetricArgs) -> Result<ExitCode> {
    block_on(async move {
        let client = Client::new(&args.remote)?;
        match args.command {
            MetricCommand::Add(m) => {
                let mut metric = json!({
                    "key": m.key, "name": m.name.clone().unwrap_or_else(|| m.key.clone()),
                    "aggregation": name(m.aggregation), "good_direction": name(m.good_direction),
                    "north_star": m.north_star,
                });
                for (field, v) in [
                    ("event", &m.event),
                    ("numerator", &m.numerator),
                    ("denominator", &m.denominator),
                    ("parent", &m.parent),
                    ("unit", &m.unit),
                    ("description", &m.description),
                    ("owner", &m.owner),
                ] {
                    if let Some(v) = v {
                        metric[field] = json!(v);
                    }
                }
                let body = json!({"metric": metric, "reason": m.reason});
                let reply = client
                    .send(Method::POST, &client.ws_path(&["metrics"]), &[], Some(&body), None)
                    .await?;
                if args.remote.json {
                    json(&reply.body)?;
                } else {
                    outln!("added metric `{}`", m.key);
                }
            }
            MetricCommand::List => {
                let items = client.list(&client.ws_path(&["metrics"])).await?;
                if args.remote.json {
                    return json(&items).map(|_| ExitCode::SUCCESS);
                }
                let mut t = Table::new(["KEY", "NAME", "AGGREGATION", "EVENT", "PARENT", "NORTH STAR"]);
                for i in &items {
                    let m = &i["metric"];
                    let s = |k: &str| m[k].as_str().unwrap_or("-").to_owned();
                    let ns = if m["north_star"] == true { "yes" } else { "" };
                    t.row([
                        s("key"),
                        s("name"),
                        s("aggregation"),
                        s("event"),
                        s("parent"),
                        ns.to_owned(),
                    ]);
                }
                t.print("no metrics yet; add the North Star with `sextant metric add KEY --north-star --event EVENT`");
            }
            MetricCommand::Tree { environment, window } => {
                let query = [
                    ("workspace", client.workspace.as_str()),
                    ("environment", environment.as_str()),
                    ("window", window.as_str()),
                ];
                let reply = client
                    .send(Method::GET, &["api", "v1", "metrics", "tree"], &query, None, None)
                    .await?;
                if args.remote.json {
                    return json(&reply.body).map(|_| ExitCode::SUCCESS);
                }
                let tree = &reply.body;
                outln!(
                    "{} / {}: {} to {}",
                    client.workspace,
                    environment,
                    tree["from"].as_str().unwrap_or("?"),
                    tree["to"].as_str().unwrap_or("?")
                );
                match tree.get("north_star").filter(|n| !n.is_null()) {
                    Some(root) => print_node(root, 0),
                    None => outln!("no metrics yet"),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_node(node: &Value, depth: usize) {
    let m = &node["metric"];
    let value = node["current"]["value"]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let unit = m["unit"].as_str().map(|u| format!(" {u}")).unwrap_or_default();
    let change = node["change"]
        .as_f64()
        .map(|c| format!(" ({:+.1}%)", c * 100.0))
        .unwrap_or_default();
    let star = if m["north_star"] == true { "★ " } else { "" };
    outln!(
        "{}{star}{} = {value}{unit}{change} {}",
        "  ".repeat(depth),
        m["key"].as_str().unwrap_or("?"),
        node["trend"].as_str().unwrap_or("")
    );
    for child in node["children"].as_array().into_iter().flatten() {
        print_node(child, depth + 1);
    }
}

/// `sextant track`: sends one track event, or every event of a file, with
/// an SDK token.
#[derive(Debug, Args)]
pub struct TrackArgs {
    /// Event name, e.g. `purchase` (not with --file).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    event: Option<String>,
    /// The unit (user) that did it.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    unit: Option<String>,
    /// Numeric value (revenue, latency, …).
    #[arg(long, conflicts_with = "file")]
    value: Option<f64>,
    /// Properties as a JSON object.
    #[arg(long, conflicts_with = "file")]
    properties: Option<String>,
    /// Send every event of this file: one JSON event object per line
    /// (NDJSON; `-` reads standard input), e.g.
    /// {"event": "purchase", "targeting_key": "u1", "value": 25}. `kind`
    /// defaults to track, `timestamp` to now. Sent in batches with ids, so
    /// retries and re-runs store nothing twice; rejected events are
    /// reported by line.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    #[command(flatten)]
    bulk: crate::track::BulkOptions,
    /// Print JSON for scripts (with --file: the summary, rejections by line).
    #[arg(long)]
    json: bool,
    /// Server URL.
    #[arg(long, env = "SEXTANT_URL", default_value = "http://127.0.0.1:7400")]
    url: String,
    /// Server- or client-side SDK token of the environment (`sextant token create --kind server`).
    #[arg(long, env = "SEXTANT_SDK_TOKEN", hide_env_values = true)]
    sdk_token: String,
}

/// `sextant track`.
pub fn track(args: TrackArgs) -> Result<ExitCode> {
    let remote = Remote {
        url: args.url.clone(),
        token: Some(args.sdk_token.clone()),
        workspace: "default".into(),
        json: args.json,
    };
    if let Some(file) = &args.file {
        let client = Client::new(&remote)?;
        return crate::track::send_file(&client, file, &args.bulk, args.json);
    }
    let (Some(event_name), Some(unit)) = (args.event.clone(), args.unit.clone()) else {
        anyhow::bail!("give an EVENT and --unit, or --file");
    };
    let properties: Option<Value> = args
        .properties
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--properties is not JSON: {e}"))?;
    block_on(async move {
        let client = Client::new(&remote)?;
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut event = json!({"kind": "track", "event": event_name, "targeting_key": unit, "timestamp": timestamp});
        if let Some(v) = args.value {
            event["value"] = json!(v);
        }
        if let Some(p) = properties {
            event["properties"] = p;
        }
        let body = json!({"events": [event]});
        let reply = client
            .send(Method::POST, &["events", "v1", "batch"], &[], Some(&body), None)
            .await?;
        if let Some(r) = reply.body["rejected"].as_array().and_then(|r| r.first()) {
            anyhow::bail!("the event was refused: {}: {}", r["field"], r["message"]);
        }
        if args.json {
            return json(&reply.body).map(|()| ExitCode::SUCCESS);
        }
        outln!("tracked `{event_name}` for `{unit}`");
        Ok(ExitCode::SUCCESS)
    })
}
