//! `sextant demo --simulate`: a seeded, deterministic rollout simulation,
//! and the simulated traffic the demo workspace's experiment shows.
//!
//! The simulation starts a real server in this process on `127.0.0.1:0`
//! with a fresh SQLite database in a temporary directory, and does
//! everything a team would do over the public HTTP API: creates the metric
//! tree, a flag with a hypothesis, a staged rollout plan guarded by an
//! error count and a conversion rate, then sends users' exposures and
//! events with an SDK token. Users are assigned by evaluating the published
//! flag with `sextant-core` (as an SDK does), their behaviour is drawn from
//! a seeded generator, and time is driven explicitly: every step calls
//! `sextant_server::scheduler::tick` at a simulated instant (the server's
//! own scheduler waits a year between evaluations, so it never interferes).
//! The same seed gives the same run, step for step.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use sextant_core::{Context, Document, Snapshot};
use sextant_server::{AppState, Config, scheduler};
use sextant_store::Store;

use crate::client::{Client, Remote};

/// A small seeded generator (SplitMix64): the same seed gives the same
/// users and events on every platform and with every dependency version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// Compiles `env` of the workspace as the server publishes it (all flags
/// and segments, read through the admin API), to assign users like an SDK.
pub async fn published(client: &Client, env: &str) -> Result<Snapshot> {
    let doc = Document {
        segments: client.segments().await?.into_iter().map(|s| s.segment).collect(),
        flags: client.flags().await?.into_iter().map(|f| f.flag).collect(),
    };
    Snapshot::compile(&doc, env, 1).map_err(|e| anyhow::anyhow!("the workspace does not compile: {e}"))
}

/// The variation `snapshot` serves `user` for `flag`.
pub fn assign(snapshot: &Snapshot, flag: &str, user: &str) -> Option<String> {
    snapshot
        .evaluate(flag, &Context::with_key(user))
        .variation
        .map(str::to_owned)
}

/// Events for `/events/v1/batch`, all stamped `at`.
#[derive(Debug, Default)]
pub struct Events {
    items: Vec<Value>,
    at: String,
}

impl Events {
    /// An empty list of events stamped `at`.
    pub fn at(at: DateTime<Utc>) -> Events {
        Events {
            items: Vec::new(),
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// `user` saw `variation` of `flag`.
    pub fn exposure(&mut self, flag: &str, variation: &str, user: &str) {
        self.items
            .push(json!({"kind": "exposure", "flag": flag, "variation": variation,
            "targeting_key": user, "timestamp": self.at}));
    }

    /// `user` did `event` (with an optional value).
    pub fn track(&mut self, event: &str, user: &str, value: Option<f64>) {
        let mut e = json!({"kind": "track", "event": event, "targeting_key": user, "timestamp": self.at});
        if let Some(v) = value {
            e["value"] = json!(v);
        }
        self.items.push(e);
    }

    /// Sends the events with `sdk` (a client holding an SDK token) in
    /// batches, failing if the server refuses any.
    pub async fn send(self, sdk: &Client) -> Result<usize> {
        let total = self.items.len();
        for chunk in self.items.chunks(2_000) {
            let body = json!({"events": chunk});
            let reply = sdk
                .send(Method::POST, &["events", "v1", "batch"], &[], Some(&body), None)
                .await?;
            if let Some(r) = reply.body["rejected"].as_array().and_then(|r| r.first()) {
                bail!("the server refused a simulated event: {}: {}", r["field"], r["message"]);
            }
        }
        Ok(total)
    }
}

/// Creates a server-side SDK token for `env` and a client that sends with it.
pub async fn sdk_client(admin: &Client, url: &str, name: &str, env: &str) -> Result<(i64, Client)> {
    let body = json!({"name": name, "kind": "server", "workspace": admin.workspace, "environment": env,
        "reason": "simulated traffic"});
    let reply = admin
        .send(Method::POST, &["api", "v1", "tokens"], &[], Some(&body), None)
        .await?;
    let secret = reply.body["token"]
        .as_str()
        .context("the server did not return the SDK token")?
        .to_owned();
    let id = reply.body["id"]
        .as_i64()
        .context("the server did not return the SDK token's id")?;
    let client = Client::new(&Remote {
        url: url.to_owned(),
        token: Some(secret),
        workspace: admin.workspace.clone(),
        json: false,
    })?;
    Ok((id, client))
}

/// What the simulated treatment does to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    /// Errors like control and converts like control.
    Healthy,
    /// Three times the checkout errors of control.
    Degraded,
}

/// A simulation's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Seed of users' behaviour.
    pub seed: u64,
    /// The treatment's behaviour.
    pub treatment: Treatment,
    /// New users arriving per simulated half hour.
    pub users_per_step: u32,
    /// The most half-hour steps to simulate.
    pub max_steps: u32,
}

/// Checkout error rate of control users (and of a healthy treatment).
pub const CONTROL_ERROR_RATE: f64 = 0.05;
/// Checkout error rate of a degraded treatment.
pub const DEGRADED_ERROR_RATE: f64 = 0.15;
/// Purchase rate of every user.
pub const PURCHASE_RATE: f64 = 0.30;

const FLAG: &str = "one-page-checkout";
const ENV: &str = "production";
const STEP_MINUTES: i64 = 30;

/// One simulated half hour.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Simulated time of the scheduler's evaluation.
    pub at: String,
    /// Users who arrived in this step.
    pub users: u32,
    /// Of them, on treatment.
    pub treatment_users: u32,
    /// Plan status after the evaluation.
    pub status: String,
    /// Percentage on treatment after the evaluation.
    pub percent: f64,
}

/// The simulation's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed used.
    pub seed: u64,
    /// The treatment's behaviour.
    pub treatment: Treatment,
    /// The plan's final status (`completed`, `rolled_back`, `paused`, or `running` when out of steps).
    pub status: String,
    /// Percentage on treatment at the end.
    pub percent: f64,
    /// Why the plan is where it is (the scheduler's reason).
    pub reason: Option<String>,
    /// Users simulated.
    pub users: u64,
    /// Events sent (exposures and track events).
    pub events: u64,
    /// Every step.
    pub steps: Vec<Step>,
}

/// Runs a scenario against a fresh in-process server; `progress` shows it.
pub async fn run(scenario: Scenario, progress: &ProgressBar) -> Result<Report> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let url = format!("sqlite:{}", dir.path().join("simulation.db").display());
    let store = Store::open(&url).await.context("cannot open the simulation database")?;
    // A fresh database: the `default` workspace and a first admin token.
    let secret = store
        .bootstrap(None)
        .await?
        .context("a fresh simulation database did not get a first admin token")?;
    let store = Arc::new(store);
    let config = Config {
        // Time is driven by explicit ticks; the server's own loop stays idle.
        evaluation_interval: Duration::from_secs(365 * 24 * 3600),
        ..Config::default()
    };
    let state = AppState::new(store.clone(), config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sextant_server::run(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let result = simulate(&state, &base, &secret, scenario, progress).await;
    let _ = stop.send(());
    server.await.context("the simulation server failed")??;
    store.close().await;
    result
}

async fn simulate(state: &AppState, base: &str, secret: &str, sc: Scenario, bar: &ProgressBar) -> Result<Report> {
    let admin = Client::new(&Remote {
        url: base.to_owned(),
        token: Some(secret.to_owned()),
        workspace: "default".into(),
        json: false,
    })?;
    setup(&admin).await?;
    let (_, sdk) = sdk_client(&admin, base, "simulation-sdk", ENV).await?;
    let plan_path = admin.ws_path(&["flags", FLAG, "environments", ENV, "rollout"]);
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2030-01-07T09:00:00Z")?.with_timezone(&Utc);
    // Events carry one real time (the server refuses future or expired
    // timestamps); the scheduler runs on simulated time.
    let stamp = Utc::now() - chrono::Duration::minutes(1);
    let mut rng = Rng::new(sc.seed);
    let error_rate = match sc.treatment {
        Treatment::Healthy => CONTROL_ERROR_RATE,
        Treatment::Degraded => DEGRADED_ERROR_RATE,
    };
    let (mut users, mut sent) = (0u64, 0u64);
    let mut steps = Vec::new();
    bar.set_length(u64::from(sc.max_steps));
    let mut plan = Value::Null;
    for step in 0..sc.max_steps {
        let now = start + chrono::Duration::minutes(STEP_MINUTES * i64::from(step));
        // Users arriving in this half hour see the flag as published now.
        let snapshot = published(&admin, ENV).await?;
        let mut events = Events::at(stamp);
        let mut on_treatment = 0;
        for i in 0..sc.users_per_step {
            let user = format!("user-{step}-{i}");
            let Some(variation) = assign(&snapshot, FLAG, &user) else {
                continue;
            };
            let treated = variation == "on";
            on_treatment += u32::from(treated);
            events.exposure(FLAG, &variation, &user);
            if rng.chance(if treated { error_rate } else { CONTROL_ERROR_RATE }) {
                events.track("checkout_error", &user, None);
            }
            if rng.chance(PURCHASE_RATE) {
                events.track("purchase", &user, Some(20.0 + (rng.uniform() * 80.0).round()));
            }
        }
        users += u64::from(sc.users_per_step);
        sent += events.send(&sdk).await? as u64;
        // Accepted events are committed; roll them up before the look.
        while !state.store.rollup_events(1_000).await?.caught_up {}
        scheduler::tick(state, now)
            .await
            .map_err(|e| anyhow::anyhow!("the scheduler failed: {}", e.detail))?;
        plan = admin.send(Method::GET, &plan_path, &[], None, None).await?.body;
        let status = plan["status"].as_str().unwrap_or("unknown").to_owned();
        let percent = plan["current_percent"].as_f64().unwrap_or(0.0);
        bar.set_message(format!("{status} at {percent}%"));
        bar.inc(1);
        steps.push(Step {
            at: scheduler_time(now),
            users: sc.users_per_step,
            treatment_users: on_treatment,
            status: status.clone(),
            percent,
        });
        if status != "running" {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(Report {
        seed: sc.seed,
        treatment: sc.treatment,
        status: plan["status"].as_str().unwrap_or("unknown").to_owned(),
        percent: plan["current_percent"].as_f64().unwrap_or(0.0),
        reason: plan["status_reason"].as_str().map(str::to_owned),
        users,
        events: sent,
        steps,
    })
}

fn scheduler_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The metric tree, the flag and its guarded plan, over the admin API.
async fn setup(admin: &Client) -> Result<()> {
    let metrics = [
        json!({"key": "purchase-rate", "name": "Purchase rate", "aggregation": "conversion", "event": "purchase",
            "good_direction": "increase", "north_star": true}),
        json!({"key": "checkout-errors", "name": "Checkout errors per user", "aggregation": "count",
            "event": "checkout_error", "good_direction": "decrease", "parent": "purchase-rate"}),
    ];
    for m in metrics {
        admin
            .send(
                Method::POST,
                &admin.ws_path(&["metrics"]),
                &[],
                Some(&json!({"metric": m})),
                None,
            )
            .await?;
    }
    let flag = json!({
        "key": FLAG, "kind": "boolean", "owner": "payments",
        "description": "One-page checkout (simulated rollout)",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "hypothesis": {"metric": "purchase-rate", "direction": "increase", "minimum_effect": 0.01,
            "reason": "Fewer steps means fewer abandoned carts"},
        "environments": {ENV: {"enabled": true, "off_variation": "off", "default_serve": {"variation": "off"}}}
    });
    admin
        .send(
            Method::POST,
            &admin.ws_path(&["flags"]),
            &[],
            Some(&json!({"flag": flag})),
            None,
        )
        .await?;
    let hour = 3600;
    let plan = json!({
        "control": "off", "treatment": "on",
        "stages": [{"percent": 5, "min_hold_seconds": hour}, {"percent": 25, "min_hold_seconds": hour},
                   {"percent": 50, "min_hold_seconds": hour}, {"percent": 100}],
        "guardrails": [{"metric": "checkout-errors", "direction": "decrease", "tolerance": 0.01},
                       {"metric": "purchase-rate", "direction": "increase", "tolerance": 0.03}],
        "on_breach": "rollback"
    });
    let path = admin.ws_path(&["flags", FLAG, "environments", ENV, "rollout"]);
    admin
        .send(Method::PUT, &path, &[], Some(&json!({"plan": plan})), None)
        .await?;
    let mut start = path.clone();
    start.push("start");
    admin
        .send(Method::POST, &start, &[], Some(&json!({"reason": "simulation"})), None)
        .await?;
    Ok(())
}

/// A progress bar on stderr, hidden when `hidden` (JSON output, tests).
pub fn bar(hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{spinner} simulating [{bar:30}] {pos}/{len} half hours  {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_uniform_enough() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut r = Rng::new(1);
        let hits = (0..100_000).filter(|_| r.chance(0.3)).count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
    }
}
