//! The demo workspace: `sextant demo` against a running server, and
//! `sextant serve --demo`, which runs the same loader against itself.
//!
//! The content is `demo/workspace.yaml` in the declarative format: segments,
//! flags with hypotheses, a rollout in progress (25% of production plus
//! staff and beta testers), a 50/50 experiment arm split, a killed flag and
//! an operational flag. It is loaded through the admin API like any import
//! (audit-logged, never deleting), so loading twice changes nothing.
//!
//! Then [`activity`] adds what makes every page show something real: the
//! metric tree under a North Star (the metrics the flags' hypotheses name),
//! a running staged rollout plan of `new-checkout` guarded by checkout
//! errors, a running experiment on `search-ranking` (with a 7-day CUPED
//! pre-period), and seeded simulated traffic (exposures from evaluating
//! the published flags, events, and search history from before exposure)
//! sent with a temporary SDK token — each only if it is not there yet.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use sextant_core::Document;

use crate::apply::{Mode, Outcome, execute, plan};
use crate::client::{Client, Remote, block_on};
use crate::output::Table;
use crate::simulation::{Events, Rng, Scenario, Treatment, assign, bar, published, sdk_client};

/// The demo content.
pub const WORKSPACE: &str = include_str!("../demo/workspace.yaml");

/// The demo document.
pub fn document() -> Result<Document> {
    sextant_formats::sextant::parse(WORKSPACE).context("the built-in demo workspace is invalid")
}

/// Loads the demo into the client's workspace; returns what changed.
pub async fn load(client: &Client) -> Result<Outcome> {
    let doc = document()?;
    let mut plan = plan(client, &doc, Mode::Upsert).await?;
    let mut outcome = execute(client, &mut plan, false, Some("demo workspace")).await?;
    outcome.applied += activity(client).await?;
    Ok(outcome)
}

/// The demo's metric tree, the North Star first and every parent before its children.
fn demo_metrics() -> Vec<Value> {
    vec![
        json!({"key": "purchases", "name": "Purchases per visitor", "aggregation": "count", "event": "purchase",
            "good_direction": "increase", "north_star": true,
            "description": "The North Star: what customers buy, per visitor"}),
        json!({"key": "checkout-conversion", "name": "Checkout conversion", "aggregation": "conversion",
            "event": "purchase", "good_direction": "increase", "parent": "purchases"}),
        json!({"key": "items", "name": "Items bought", "aggregation": "sum", "event": "purchase",
            "good_direction": "increase", "parent": "purchases"}),
        json!({"key": "items-per-order", "name": "Items per order", "aggregation": "ratio",
            "numerator": "items", "denominator": "purchases", "good_direction": "increase", "parent": "purchases"}),
        json!({"key": "search-success", "name": "Searches ending in a click", "aggregation": "conversion",
            "event": "search_success", "good_direction": "increase", "parent": "checkout-conversion"}),
        json!({"key": "trial-starts", "name": "Trial starts", "aggregation": "conversion", "event": "trial_start",
            "good_direction": "increase", "parent": "purchases"}),
        json!({"key": "support-tickets", "name": "Support tickets per visitor", "aggregation": "count",
            "event": "support_ticket", "good_direction": "decrease", "parent": "purchases"}),
        json!({"key": "checkout-errors", "name": "Checkout errors per visitor", "aggregation": "count",
            "event": "checkout_error", "good_direction": "decrease", "parent": "checkout-conversion"}),
    ]
}

/// Simulated visitors the demo sends events for.
const DEMO_VISITORS: u32 = 3_000;
/// The demo experiment's key.
const DEMO_EXPERIMENT: &str = "search-ranking-learned";

/// Metrics, a running rollout plan, a running experiment and simulated
/// traffic, each created only if absent; returns how many were created.
pub async fn activity(client: &Client) -> Result<usize> {
    let mut created = 0;
    let have: Vec<String> = client
        .list(&client.ws_path(&["metrics"]))
        .await?
        .iter()
        .filter_map(|m| m["metric"]["key"].as_str().map(str::to_owned))
        .collect();
    for m in demo_metrics() {
        if !have.iter().any(|k| m["key"] == k.as_str()) {
            let body = json!({"metric": m, "reason": "demo workspace"});
            client
                .send(Method::POST, &client.ws_path(&["metrics"]), &[], Some(&body), None)
                .await?;
            created += 1;
        }
    }
    let plans = client.list(&client.ws_path(&["rollouts"])).await?;
    if !plans.iter().any(|p| p["flag"] == "new-checkout") {
        let plan = json!({
            "control": "off", "treatment": "on",
            "stages": [{"percent": 25, "min_hold_seconds": 2 * 86_400}, {"percent": 50, "min_hold_seconds": 2 * 86_400},
                       {"percent": 100}],
            "guardrails": [{"metric": "checkout-errors", "direction": "decrease", "tolerance": 0.01}],
            "on_breach": "pause"
        });
        let path = client.ws_path(&["flags", "new-checkout", "environments", "production", "rollout"]);
        let body = json!({"plan": plan, "reason": "demo workspace"});
        client.send(Method::PUT, &path, &[], Some(&body), None).await?;
        let mut start = path.clone();
        start.push("start");
        let body = json!({"reason": "demo workspace"});
        client.send(Method::POST, &start, &[], Some(&body), None).await?;
        created += 1;
    }
    let experiments = client.list(&client.ws_path(&["experiments"])).await?;
    if !experiments.iter().any(|e| e["definition"]["key"] == DEMO_EXPERIMENT) {
        let experiment = json!({
            "key": DEMO_EXPERIMENT, "environment": "production", "flag": "search-ranking",
            "arms": [{"variation": "control", "weight": 50}, {"variation": "treatment", "weight": 50}],
            "primary_metric": "search-success", "guardrails": ["support-tickets", "checkout-conversion"],
            "hypothesis": {"direction": "increase", "minimum_effect": 0.01},
            "success_criteria": "search success up by at least 1 point with support tickets not worse",
            "planned_sample_size": 6_000, "analysis": "sequential", "pre_period_days": 7
        });
        let body = json!({"experiment": experiment, "reason": "demo workspace"});
        client
            .send(Method::POST, &client.ws_path(&["experiments"]), &[], Some(&body), None)
            .await?;
        let start = client.ws_path(&["experiments", DEMO_EXPERIMENT, "start"]);
        let body = json!({"reason": "demo workspace"});
        client.send(Method::POST, &start, &[], Some(&body), None).await?;
        traffic(client, DEMO_VISITORS, 2026).await?;
        created += 1;
    }
    Ok(created)
}

/// `visitors` seeded visitors of production: each is assigned by the
/// published flags, exposed to `search-ranking` and `new-checkout`, and
/// searches, buys, starts trials, errs and files tickets with fixed
/// probabilities. Half the visitors are habitual searchers (85% search
/// success, 10% for the others), which shows two days before exposure too
/// (90% / 10%): the pre-period the experiment's CUPED adjusts with. Habits
/// also show in the guardrails, so CUPED adjusts them too: 30% are buyers
/// (a purchase with 35% before and 33% after exposure, 3% for the others)
/// and 10% file tickets (12% before and after, 1% for the others). The
/// learned ranking adds 5 points of search success.
async fn traffic(client: &Client, visitors: u32, seed: u64) -> Result<()> {
    let snapshot = published(client, "production").await?;
    let (token_id, sdk) = sdk_client(client, client.base_url(), "demo-traffic", "production").await?;
    let mut rng = Rng::new(seed);
    let now = chrono::Utc::now();
    let mut history = Events::at(now - chrono::Duration::days(2));
    let mut events = Events::at(now);
    for i in 0..visitors {
        let user = format!("visitor-{i}");
        let engaged = rng.chance(0.5);
        if rng.chance(if engaged { 0.90 } else { 0.10 }) {
            history.track("search_success", &user, None);
        }
        let buyer = rng.chance(0.3);
        if rng.chance(if buyer { 0.35 } else { 0.03 }) {
            history.track("purchase", &user, Some(1.0));
        }
        let files_tickets = rng.chance(0.1);
        if rng.chance(if files_tickets { 0.12 } else { 0.01 }) {
            history.track("support_ticket", &user, None);
        }
        for flag in ["search-ranking", "new-checkout"] {
            if let Some(v) = assign(&snapshot, flag, &user) {
                events.exposure(flag, &v, &user);
            }
        }
        let learned = assign(&snapshot, "search-ranking", &user).as_deref() == Some("treatment");
        let success = if engaged { 0.85 } else { 0.10 } + if learned { 0.05 } else { 0.0 };
        if rng.chance(success) {
            events.track("search_success", &user, None);
        }
        if rng.chance(if buyer { 0.33 } else { 0.03 }) {
            let items = 1.0 + (rng.uniform() * 4.0).floor();
            events.track("purchase", &user, Some(items));
        }
        if rng.chance(0.05) {
            events.track("trial_start", &user, None);
        }
        if rng.chance(if files_tickets { 0.12 } else { 0.01 }) {
            events.track("support_ticket", &user, None);
        }
        if rng.chance(0.03) {
            events.track("checkout_error", &user, None);
        }
    }
    let sent = match history.send(&sdk).await {
        Ok(_) => events.send(&sdk).await,
        Err(e) => Err(e),
    };
    // The token only lived to send this traffic.
    client
        .send(
            Method::DELETE,
            &["api", "v1", "tokens", &token_id.to_string()],
            &[],
            None,
            None,
        )
        .await?;
    sent.map(|_| ())
}

/// `sextant demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    remote: Remote,
    /// Instead of loading the demo into a server, simulate a guarded staged
    /// rollout on a private in-process server (seeded, deterministic).
    #[arg(long)]
    simulate: bool,
    /// Seed of the simulated users' behaviour.
    #[arg(long, default_value_t = 42, requires = "simulate")]
    seed: u64,
    /// How the simulated treatment behaves: `healthy` reaches 100%,
    /// `degraded` (three times the checkout errors) is rolled back.
    #[arg(long, value_enum, default_value = "degraded", requires = "simulate")]
    treatment: Treatment,
    /// New users per simulated half hour.
    #[arg(long, default_value_t = 2_000, requires = "simulate")]
    users_per_step: u32,
    /// The most half hours to simulate.
    #[arg(long, default_value_t = 24, requires = "simulate")]
    max_steps: u32,
}

/// `sextant demo`.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.simulate {
        return simulate(&args);
    }
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        let outcome = load(&client).await?;
        if as_json {
            crate::output::json(&outcome)?;
        } else if outcome.applied == 0 {
            outln!("The demo is already loaded in workspace `{}`.", client.workspace);
        } else {
            outln!(
                "Loaded the demo into workspace `{}` ({} changes). Try `sextant flag list`.",
                client.workspace,
                outcome.applied
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant demo --simulate`.
fn simulate(args: &DemoArgs) -> Result<ExitCode> {
    let scenario = Scenario {
        seed: args.seed,
        treatment: args.treatment,
        users_per_step: args.users_per_step,
        max_steps: args.max_steps,
    };
    let as_json = args.remote.json;
    block_on(async move {
        let progress = bar(as_json);
        let report = crate::simulation::run(scenario, &progress).await?;
        if as_json {
            crate::output::json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut t = Table::new(["SIMULATED TIME", "USERS", "ON TREATMENT", "STATUS", "TREATMENT %"]);
        for s in &report.steps {
            t.row([
                s.at.clone(),
                s.users.to_string(),
                s.treatment_users.to_string(),
                s.status.clone(),
                s.percent.to_string(),
            ]);
        }
        out!("{}", t.render());
        outln!(
            "\n{} treatment, seed {}: {} users, {} events; the rollout is {} at {}%.",
            match report.treatment {
                Treatment::Healthy => "healthy",
                Treatment::Degraded => "degraded",
            },
            report.seed,
            report.users,
            report.events,
            report.status.replace('_', " "),
            report.percent
        );
        if let Some(why) = &report.reason {
            outln!("{why}");
        }
        Ok(ExitCode::SUCCESS)
    })
}
