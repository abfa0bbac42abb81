//! `sextant flag …` and `sextant rollout …`: flags on a running server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use sextant_core::{Direction, Flag, FlagKind, Hypothesis, Serve, Split, Targeting, Variation, WEIGHT_SCALE, Weight};

use crate::client::{Client, FlagView, Remote, block_on};
use crate::output::{Table, json};
use crate::{Failure, exit};

/// `sextant flag …`.
#[derive(Debug, Args)]
pub struct FlagArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: FlagCommand,
}

#[derive(Debug, Subcommand)]
enum FlagCommand {
    /// Create a flag (off in every environment until turned on).
    Create(CreateArgs),
    /// List the workspace's flags with their state per environment.
    List,
    /// Show one flag: definition, hypothesis and targeting per environment.
    Get {
        /// Flag key.
        key: String,
    },
    /// Turn a flag on or off in one environment (flips it without a state).
    Toggle {
        /// Flag key.
        key: String,
        /// `on` or `off`; omitted, the current state is flipped.
        state: Option<OnOff>,
        /// Environment.
        #[arg(long, short)]
        env: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Kill switch: turn a flag off in one environment, or in all of them.
    Kill {
        /// Flag key.
        key: String,
        /// Environment; omitted, every environment where the flag is on.
        #[arg(long, short)]
        env: Option<String>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show a flag's targeting in one environment, or replace it from a file.
    Rules {
        /// Flag key.
        key: String,
        /// Environment.
        #[arg(long, short)]
        env: String,
        /// Replace the targeting with this YAML/JSON file (`enabled`, `rules`, `default_serve`, …).
        #[arg(long)]
        set: Option<PathBuf>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a flag. Irreversible: needs --yes.
    Delete {
        /// Flag key.
        key: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Serve the rules.
    On,
    /// Serve the off variation (kill switch).
    Off,
}

/// Expected direction of the metric.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirectionArg {
    Increase,
    Decrease,
}

/// Flag kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Boolean,
    String,
    Number,
    Json,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Flag key (letters, digits, `.`, `_`, `-`).
    key: Option<String>,
    /// Read the whole flag from a YAML/JSON file instead (the declarative format's flag).
    #[arg(long, short, conflicts_with_all = ["kind", "variation"])]
    file: Option<PathBuf>,
    /// Kind of value served.
    #[arg(long, value_enum, default_value = "boolean")]
    kind: KindArg,
    /// A variation as KEY=VALUE (VALUE is JSON, or a string); boolean flags get on=true, off=false.
    #[arg(long = "variation", value_name = "KEY=VALUE")]
    variation: Vec<String>,
    /// Variation served when the flag is on (default: `on`, or the first).
    #[arg(long)]
    serve: Option<String>,
    /// Variation served when the flag is off (default: `off`, or the first).
    #[arg(long)]
    off: Option<String>,
    /// What the flag is for.
    #[arg(long)]
    description: Option<String>,
    /// Owning team or person.
    #[arg(long)]
    owner: Option<String>,
    /// Tags.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A permanent (operational) flag rather than a temporary release flag.
    #[arg(long)]
    permanent: bool,
    /// Hypothesis: why this change should move the metric.
    #[arg(long)]
    hypothesis: Option<String>,
    /// Hypothesis: the metric (a node of the metric tree) it should move.
    #[arg(long, requires = "hypothesis")]
    metric: Option<String>,
    /// Hypothesis: the direction the metric should move.
    #[arg(long, value_enum, requires = "hypothesis")]
    direction: Option<DirectionArg>,
    /// Hypothesis: the smallest effect worth shipping (e.g. 0.02).
    #[arg(long, requires = "hypothesis")]
    minimum_effect: Option<f64>,
    /// An operational flag (kill switch, ops toggle): `--hypothesis` is
    /// then only its reason, with no metric.
    #[arg(long, requires = "hypothesis", conflicts_with_all = ["metric", "direction", "minimum_effect"])]
    operational: bool,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

/// `sextant kill KEY [--env ENV]`: the kill switch as a top-level command,
/// the same as `sextant flag kill` (one word to type during an incident).
#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    remote: Remote,
    /// Flag key.
    key: String,
    /// Environment; omitted, every environment where the flag is on.
    #[arg(long, short)]
    env: Option<String>,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

/// `sextant kill`.
pub fn kill_command(args: KillArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move { kill(&client, &args.key, args.env, args.reason, as_json).await })
}

/// `sextant flag …`.
pub fn run(args: FlagArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            FlagCommand::Create(c) => create(&client, c, as_json).await,
            FlagCommand::List => list(&client, as_json).await,
            FlagCommand::Get { key } => {
                let f = client.flag(&key).await?;
                if as_json {
                    json(&f)?;
                } else {
                    out!("{}", describe(&f));
                }
                Ok(ExitCode::SUCCESS)
            }
            FlagCommand::Toggle {
                key,
                state,
                env,
                reason,
            } => {
                let on = match state {
                    Some(s) => s == OnOff::On,
                    None => {
                        let f = client.flag(&key).await?;
                        !f.flag.environments.get(&env).is_some_and(|t| t.enabled)
                    }
                };
                let f = toggle(&client, &key, &env, on, reason).await?;
                report(&f, as_json, &format!("{key} is now {} in {env}", on_off(on)))
            }
            FlagCommand::Kill { key, env, reason } => kill(&client, &key, env, reason, as_json).await,
            FlagCommand::Rules { key, env, set, reason } => rules(&client, &key, &env, set, reason, as_json).await,
            FlagCommand::Delete { key, yes, reason } => {
                if !yes {
                    return Err(Failure::new(
                        exit::FAILURE,
                        format!("deleting flag `{key}` is irreversible: SDKs asking for it will get FLAG_NOT_FOUND\n  hint: turn it off instead with `sextant flag kill {key}`, or re-run with --yes to delete it"),
                    )
                    .into());
                }
                let mut q = Vec::new();
                if let Some(r) = &reason {
                    q.push(("reason", r.as_str()));
                }
                let reply = client
                    .send(Method::DELETE, &client.ws_path(&["flags", &key]), &q, None, None)
                    .await?;
                // Deleting is irreversible: the server files a change request
                // that another person with the product or admin role approves.
                if reply.body["status"] == "pending" {
                    if as_json {
                        json(&reply.body)?;
                    } else {
                        outln!(
                            "requested deletion of flag {key}: change request {} awaits approval by another person with the product or admin role\n  hint: sextant change approve {}",
                            reply.body["id"],
                            reply.body["id"]
                        );
                    }
                    return Ok(ExitCode::from(exit::PENDING));
                }
                if as_json {
                    json(&json!({"deleted": key}))?;
                } else {
                    outln!("deleted flag {key}");
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn report(f: &FlagView, as_json: bool, message: &str) -> Result<ExitCode> {
    if as_json {
        json(f)?;
    } else {
        outln!("{message} (version {})", f.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns `key` on or off in `env`.
pub async fn toggle(client: &Client, key: &str, env: &str, on: bool, reason: Option<String>) -> Result<FlagView> {
    client
        .send(
            Method::POST,
            &client.ws_path(&["flags", key, "environments", env, "toggle"]),
            &[],
            Some(&json!({"enabled": on, "reason": reason})),
            None,
        )
        .await?
        .into()
}

/// Replaces `key`'s targeting in `env`, if it is still at `version`.
pub async fn set_targeting(
    client: &Client,
    key: &str,
    env: &str,
    targeting: &Targeting,
    version: Option<i64>,
    reason: Option<String>,
) -> Result<FlagView> {
    client
        .send(
            Method::PUT,
            &client.ws_path(&["flags", key, "environments", env]),
            &[],
            Some(&json!({"targeting": targeting, "reason": reason})),
            version,
        )
        .await?
        .into()
}

async fn create(client: &Client, c: CreateArgs, as_json: bool) -> Result<ExitCode> {
    let mut flag = match &c.file {
        Some(path) => {
            let text = crate::read_file(path)?;
            let flag: Flag =
                serde_norway_or_json(&text).with_context(|| format!("{} is not a flag", path.display()))?;
            if let Some(k) = &c.key
                && *k != flag.key
            {
                bail!(
                    "the key argument `{k}` differs from the file's `{}`; drop one",
                    flag.key
                );
            }
            flag
        }
        None => {
            let Some(key) = c.key.clone() else {
                bail!("give the flag's key (`sextant flag create KEY`) or a file (--file)");
            };
            new_flag(key, &c)?
        }
    };
    if c.file.is_none() {
        // Off everywhere, ready to be turned on: `serve` when on, `off` when off.
        let variations: Vec<&str> = flag.variations.iter().map(|v| v.key.as_str()).collect();
        let pick = |wanted: &Option<String>, fallback: &str| -> Result<String> {
            match wanted {
                Some(w) if variations.contains(&w.as_str()) => Ok(w.clone()),
                Some(w) => bail!("variation `{w}` is not one of {}", variations.join(", ")),
                None if variations.contains(&fallback) => Ok(fallback.to_owned()),
                None => Ok(variations[0].to_owned()),
            }
        };
        let serve = pick(&c.serve, "on")?;
        let off = pick(&c.off, "off")?;
        for env in client.environments().await? {
            flag.environments.insert(
                env.key,
                Targeting {
                    enabled: false,
                    off_variation: Some(off.clone()),
                    prerequisites: Vec::new(),
                    rules: Vec::new(),
                    default_serve: Some(Serve::Variation(serve.clone())),
                    salt: None,
                },
            );
        }
    }
    let f: FlagView = client
        .send(
            Method::POST,
            &client.ws_path(&["flags"]),
            &[],
            Some(&json!({"flag": flag, "reason": c.reason})),
            None,
        )
        .await?
        .into()?;
    if as_json {
        json(&f)?;
    } else {
        outln!(
            "created flag {} ({}), off in every environment",
            f.key,
            f.flag.kind.as_str()
        );
        outln!("turn it on with: sextant flag toggle {} on --env ENVIRONMENT", f.key);
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses YAML (which includes JSON) into `T`.
fn serde_norway_or_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    if text.trim_start().starts_with('{') {
        Ok(serde_json::from_str(text)?)
    } else {
        Ok(serde_norway::from_str(text)?)
    }
}

fn new_flag(key: String, c: &CreateArgs) -> Result<Flag> {
    let kind = match c.kind {
        KindArg::Boolean => FlagKind::Boolean,
        KindArg::String => FlagKind::String,
        KindArg::Number => FlagKind::Number,
        KindArg::Json => FlagKind::Json,
    };
    let mut variations = Vec::new();
    for v in &c.variation {
        let Some((k, raw)) = v.split_once('=') else {
            bail!("--variation `{v}` must be KEY=VALUE, e.g. --variation blue='\"#00f\"'");
        };
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        variations.push(Variation {
            key: k.to_owned(),
            value,
            description: None,
        });
    }
    if variations.is_empty() {
        if !matches!(kind, FlagKind::Boolean) {
            bail!(
                "a {} flag needs its variations: --variation KEY=VALUE (twice or more)",
                kind.as_str()
            );
        }
        variations = vec![
            Variation {
                key: "on".into(),
                value: Value::Bool(true),
                description: None,
            },
            Variation {
                key: "off".into(),
                value: Value::Bool(false),
                description: None,
            },
        ];
    }
    let hypothesis = c.hypothesis.as_ref().map(|reason| Hypothesis {
        metric: c.metric.clone(),
        direction: c.direction.map(|d| match d {
            DirectionArg::Increase => Direction::Increase,
            DirectionArg::Decrease => Direction::Decrease,
        }),
        minimum_effect: c.minimum_effect,
        reason: reason.clone(),
        operational: c.operational,
    });
    Ok(Flag {
        key,
        kind,
        variations,
        description: c.description.clone(),
        owner: c.owner.clone(),
        tags: c.tags.clone(),
        temporary: !c.permanent,
        hypothesis,
        metadata: BTreeMap::new(),
        environments: BTreeMap::new(),
    })
}

async fn list(client: &Client, as_json: bool) -> Result<ExitCode> {
    let flags = client.flags().await?;
    if as_json {
        json(&flags)?;
        return Ok(ExitCode::SUCCESS);
    }
    let envs = client.environments().await?;
    let mut headers = vec!["KEY".to_owned(), "KIND".to_owned()];
    headers.extend(envs.iter().map(|e| e.key.to_uppercase()));
    headers.extend(["OWNER".to_owned(), "METRIC".to_owned()]);
    let mut t = Table::new(headers);
    for f in &flags {
        let mut row = vec![f.key.clone(), f.flag.kind.as_str().to_owned()];
        row.extend(envs.iter().map(|e| state(f.flag.environments.get(&e.key))));
        row.push(f.flag.owner.clone().unwrap_or_default());
        row.push(
            f.flag
                .hypothesis
                .as_ref()
                .and_then(|h| h.metric.as_ref().map(|m| format!("{m} {}", arrow(h.direction))))
                .unwrap_or_default(),
        );
        t.row(row);
    }
    t.print(&format!(
        "no flags in workspace `{}` yet; create one with `sextant flag create KEY`",
        client.workspace
    ));
    Ok(ExitCode::SUCCESS)
}

fn arrow(d: Option<Direction>) -> &'static str {
    match d {
        Some(Direction::Increase) => "↑",
        Some(Direction::Decrease) => "↓",
        None => "",
    }
}

/// One environment's state in a few words: `off`, `on`, `on, 2 rules, 25% on`.
fn state(t: Option<&Targeting>) -> String {
    let Some(t) = t else { return "-".into() };
    if !t.enabled {
        return "off".into();
    }
    let mut s = "on".to_owned();
    if !t.rules.is_empty() {
        s.push_str(&format!(
            ", {} rule{}",
            t.rules.len(),
            if t.rules.len() == 1 { "" } else { "s" }
        ));
    }
    if let Some(Serve::Split(split)) = &t.default_serve {
        s.push_str(&format!(", {}", split_summary(split, t.off_variation.as_deref())));
    }
    s
}

/// A split in percent, e.g. `25% on` (the off variation left out when there are two).
fn split_summary(split: &Split, off: Option<&str>) -> String {
    let pct = |w: u32| format!("{}%", f64::from(w) * 100.0 / f64::from(WEIGHT_SCALE));
    let mut shown: Vec<&Weight> = split.weights.iter().collect();
    if shown.len() == 2 && shown.iter().any(|w| Some(w.variation.as_str()) == off) {
        shown.retain(|w| Some(w.variation.as_str()) != off);
    }
    shown
        .iter()
        .map(|w| format!("{} {}", pct(w.weight), w.variation))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn describe_serve(s: &Serve) -> String {
    match s {
        Serve::Variation(v) => v.clone(),
        Serve::Split(split) => {
            let parts: Vec<String> = split
                .weights
                .iter()
                .map(|w| {
                    format!(
                        "{} {}%",
                        w.variation,
                        f64::from(w.weight) * 100.0 / f64::from(WEIGHT_SCALE)
                    )
                })
                .collect();
            format!("split {}", parts.join(" / "))
        }
        Serve::Logic(_) => "JSONLogic".into(),
    }
}

/// A flag for humans.
fn describe(f: &FlagView) -> String {
    let flag = &f.flag;
    let mut out = format!("{} ({}, version {})\n", f.key, flag.kind.as_str(), f.version);
    if let Some(d) = &flag.description {
        out.push_str(&format!("  {d}\n"));
    }
    let mut facts = Vec::new();
    if let Some(o) = &flag.owner {
        facts.push(format!("owner: {o}"));
    }
    if !flag.tags.is_empty() {
        facts.push(format!("tags: {}", flag.tags.join(", ")));
    }
    facts.push(if flag.temporary {
        "temporary".into()
    } else {
        "permanent".into()
    });
    out.push_str(&format!("  {}\n", facts.join("   ")));
    if let Some(h) = &flag.hypothesis {
        let mut line = String::from("  hypothesis:");
        if let Some(d) = h.direction {
            line.push_str(match d {
                Direction::Increase => " increase",
                Direction::Decrease => " decrease",
            });
        }
        if let Some(m) = &h.metric {
            line.push_str(&format!(" {m}"));
        }
        if let Some(e) = h.minimum_effect {
            line.push_str(&format!(" by at least {e}"));
        }
        line.push_str(&format!(": {}\n", h.reason));
        out.push_str(&line);
    }
    let vars: Vec<String> = flag
        .variations
        .iter()
        .map(|v| format!("{}={}", v.key, v.value))
        .collect();
    out.push_str(&format!("  variations: {}\n", vars.join(", ")));
    for (env, t) in &flag.environments {
        out.push_str(&format!("  {env}: {}", on_off(t.enabled)));
        if !t.rules.is_empty() {
            out.push_str(&format!(
                ", {} rule{}",
                t.rules.len(),
                if t.rules.len() == 1 { "" } else { "s" }
            ));
        }
        if let Some(d) = &t.default_serve {
            out.push_str(&format!(", default {}", describe_serve(d)));
        }
        if let Some(o) = &t.off_variation {
            out.push_str(&format!(", off serves {o}"));
        }
        out.push('\n');
    }
    out
}

async fn kill(
    client: &Client,
    key: &str,
    env: Option<String>,
    reason: Option<String>,
    as_json: bool,
) -> Result<ExitCode> {
    let envs: Vec<String> = match env {
        Some(e) => vec![e],
        None => {
            let f = client.flag(key).await?;
            f.flag
                .environments
                .iter()
                .filter(|(_, t)| t.enabled)
                .map(|(k, _)| k.clone())
                .collect()
        }
    };
    let mut last: Option<FlagView> = None;
    for env in &envs {
        // The kill endpoint, not a toggle: it also ends a running rollout
        // plan and counts as a restore for the DORA figures.
        last = Some(
            client
                .send(
                    Method::POST,
                    &client.ws_path(&["flags", key, "environments", env, "kill"]),
                    &[],
                    Some(&json!({ "reason": reason })),
                    None,
                )
                .await?
                .into()?,
        );
    }
    match (last, as_json) {
        (Some(f), true) => json(&f)?,
        (None, true) => json(&client.flag(key).await?)?,
        (_, false) if envs.is_empty() => outln!("{key} is already off everywhere"),
        (_, false) => outln!("killed {key} in {}: it now serves its off variation", envs.join(", ")),
    }
    Ok(ExitCode::SUCCESS)
}

async fn rules(
    client: &Client,
    key: &str,
    env: &str,
    set: Option<PathBuf>,
    reason: Option<String>,
    as_json: bool,
) -> Result<ExitCode> {
    let f = client.flag(key).await?;
    let Some(path) = set else {
        let t = f.flag.environments.get(env);
        if as_json {
            json(&t)?;
        } else {
            match t {
                None => outln!("{key} has no targeting in {env} (it serves nothing there)"),
                Some(t) => out!("{}", serde_norway::to_string(t)?),
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let text = crate::read_file(&path)?;
    let targeting: Targeting =
        serde_norway_or_json(&text).with_context(|| format!("{} is not a flag's targeting", path.display()))?;
    let f = set_targeting(client, key, env, &targeting, Some(f.version), reason).await?;
    report(&f, as_json, &format!("replaced {key}'s targeting in {env}"))
}

/// `sextant rollout …`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Write a staged rollout plan (draft): stages, holds, guardrails; `start` runs it.
    Plan(PlanArgs),
    /// Start a flag's rollout plan in an environment.
    Start(PlanTarget),
    /// Pause a running plan (the current percentage stays).
    Pause(PlanTarget),
    /// Resume a paused plan.
    Resume(PlanTarget),
    /// Show one plan, or every plan of the workspace.
    Status {
        /// Flag key (omit for every plan).
        key: Option<String>,
        /// Environment (with a flag key).
        #[arg(long, short, requires = "key")]
        env: Option<String>,
    },
    /// Serve a variation to a percentage of units (sticky; raising it keeps
    /// everyone who was in) and turn the flag on. Rules still apply first.
    Set {
        /// Flag key.
        key: String,
        /// Percentage of units, 0-100 (down to 0.001).
        percent: f64,
        /// Environment.
        #[arg(long, short)]
        env: String,
        /// Variation rolled out (default: `on`, or the variation served by default).
        #[arg(long)]
        variation: Option<String>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
struct PlanTarget {
    /// Flag key.
    key: String,
    /// Environment.
    #[arg(long, short)]
    env: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    target: PlanTarget,
    /// The whole plan as YAML/JSON (`control`, `treatment`, `stages`, `guardrails`, `on_breach`, `schedule`).
    #[arg(long, short, conflicts_with_all = ["stages", "guardrail"])]
    file: Option<PathBuf>,
    /// Percentages of units per stage, increasing, e.g. 1,5,25,100.
    #[arg(long, value_delimiter = ',')]
    stages: Vec<f64>,
    /// Minimum time at each stage: seconds, or with s/m/h/d (e.g. 30m, 1d).
    #[arg(long, default_value = "1h")]
    hold: String,
    /// A guardrail as METRIC:increase|decrease[:TOLERANCE] (repeatable).
    #[arg(long)]
    guardrail: Vec<String>,
    /// What a guardrail breach does.
    #[arg(long, value_parser = ["pause", "rollback"], default_value = "pause")]
    on_breach: String,
    /// Variation rolled out (default: `on`, or the default serve).
    #[arg(long)]
    treatment: Option<String>,
    /// Variation everyone else gets (default: the off variation).
    #[arg(long)]
    control: Option<String>,
}

/// Seconds in `30`, `30s`, `15m`, `2h`, `1d`.
fn seconds(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--hold `{text}` is not a duration such as 30m, 2h or 1d"))?;
    Ok(n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--hold `{text}`: use s, m, h or d"),
    })
}

fn plan_body(client_flag: &FlagView, env: &str, a: &PlanArgs) -> Result<Value> {
    if let Some(path) = &a.file {
        let text = crate::read_file(path)?;
        let plan: Value =
            serde_norway_or_json(&text).with_context(|| format!("{} is not a rollout plan", path.display()))?;
        return Ok(plan);
    }
    if a.stages.is_empty() {
        bail!("give the stages, e.g. --stages 1,5,25,100, or a plan file (--file)");
    }
    let keys: Vec<&str> = client_flag.flag.variations.iter().map(|v| v.key.as_str()).collect();
    let t = client_flag.flag.environments.get(env);
    let treatment = a
        .treatment
        .clone()
        .or_else(|| keys.contains(&"on").then(|| "on".to_owned()))
        .or_else(|| match t.and_then(|t| t.default_serve.as_ref()) {
            Some(Serve::Variation(v)) => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_else(|| keys[0].to_owned());
    let control = a
        .control
        .clone()
        .or_else(|| t.and_then(|t| t.off_variation.clone()).filter(|o| *o != treatment))
        .or_else(|| keys.iter().find(|k| **k != treatment).map(|k| (*k).to_owned()))
        .ok_or_else(|| anyhow::anyhow!("{} has a single variation; a rollout needs two", client_flag.key))?;
    let hold = seconds(&a.hold)?;
    let mut guardrails = Vec::new();
    for g in &a.guardrail {
        let parts: Vec<&str> = g.split(':').collect();
        let (metric, direction, tolerance) = match parts.as_slice() {
            [m, d] => (*m, *d, 0.0),
            [m, d, t] => (
                *m,
                *d,
                t.parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("--guardrail `{g}`: tolerance `{t}` is not a number"))?,
            ),
            _ => bail!("--guardrail `{g}` must be METRIC:increase|decrease[:TOLERANCE]"),
        };
        if !matches!(direction, "increase" | "decrease") {
            bail!("--guardrail `{g}`: the direction is `increase` or `decrease`, not `{direction}`");
        }
        guardrails.push(json!({"metric": metric, "direction": direction, "tolerance": tolerance}));
    }
    Ok(json!({
        "control": control,
        "treatment": treatment,
        "stages": a.stages.iter().map(|p| json!({"percent": p, "min_hold_seconds": hold})).collect::<Vec<_>>(),
        "guardrails": guardrails,
        "on_breach": a.on_breach,
    }))
}

fn plan_row(p: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let stages = p["plan"]["stages"].as_array().map_or(0, Vec::len);
    let stage = p["stage"]
        .as_u64()
        .map_or("-".to_owned(), |i| format!("{}/{stages}", i + 1));
    vec![
        s(&p["flag"]),
        s(&p["environment"]),
        s(&p["status"]),
        stage,
        format!("{}%", p["current_percent"].as_f64().unwrap_or(0.0)),
        p["status_reason"].as_str().unwrap_or("").to_owned(),
    ]
}

/// `sextant rollout …`.
pub fn rollout(args: RolloutArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        let plan_path = |key: &str, env: &str, action: Option<&'static str>| -> Vec<String> {
            let mut v: Vec<String> = [
                "api",
                "v1",
                "workspaces",
                client.workspace.as_str(),
                "flags",
                key,
                "environments",
                env,
                "rollout",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            v.extend(action.map(str::to_owned));
            v
        };
        match args.command {
            RolloutCommand::Plan(a) => {
                let f = client.flag(&a.target.key).await?;
                let body = plan_body(&f, &a.target.env, &a)?;
                let path = plan_path(&a.target.key, &a.target.env, None);
                let segs: Vec<&str> = path.iter().map(String::as_str).collect();
                let p: Value = client
                    .send(
                        Method::PUT,
                        &segs,
                        &[],
                        Some(&json!({"plan": body, "reason": a.target.reason})),
                        None,
                    )
                    .await?
                    .into()?;
                if as_json {
                    json(&p)?;
                } else {
                    let stages: Vec<String> = p["plan"]["stages"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .map(|x| format!("{}%", x["percent"].as_f64().unwrap_or(0.0)))
                                .collect()
                        })
                        .unwrap_or_default();
                    outln!(
                        "rollout plan for {} in {}: {} ({})\nstart it with: sextant rollout start {} --env {}",
                        a.target.key,
                        a.target.env,
                        stages.join(" → "),
                        p["status"].as_str().unwrap_or_default(),
                        a.target.key,
                        a.target.env
                    );
                }
            }
            RolloutCommand::Start(t) => {
                plan_action(&client, &plan_path(&t.key, &t.env, Some("start")), &t, as_json).await?
            }
            RolloutCommand::Pause(t) => {
                plan_action(&client, &plan_path(&t.key, &t.env, Some("pause")), &t, as_json).await?
            }
            RolloutCommand::Resume(t) => {
                plan_action(&client, &plan_path(&t.key, &t.env, Some("resume")), &t, as_json).await?
            }
            RolloutCommand::Status { key, env } => {
                let plans: Vec<Value> = match (key, env) {
                    (Some(k), Some(e)) => {
                        let path = plan_path(&k, &e, None);
                        let segs: Vec<&str> = path.iter().map(String::as_str).collect();
                        vec![client.get(&segs).await?]
                    }
                    (Some(_), None) => bail!("give the environment too: sextant rollout status KEY --env ENVIRONMENT"),
                    _ => client.list(&client.ws_path(&["rollouts"])).await?,
                };
                if as_json {
                    json(&plans)?;
                } else {
                    let mut t = Table::new(["FLAG", "ENV", "STATUS", "STAGE", "PERCENT", "WHY"]);
                    for p in &plans {
                        t.row(plan_row(p));
                    }
                    t.print(
                        "no rollout plans; write one with `sextant rollout plan KEY --env ENV --stages 1,5,25,100`",
                    );
                }
            }
            RolloutCommand::Set {
                key,
                percent,
                env,
                variation,
                reason,
            } => {
                if !(0.0..=100.0).contains(&percent) {
                    bail!("the percentage must be between 0 and 100, not {percent}");
                }
                let weight = (percent * f64::from(WEIGHT_SCALE) / 100.0).round() as u32;
                let f = client.flag(&key).await?;
                let mut t = f.flag.environments.get(&env).cloned().unwrap_or(Targeting {
                    enabled: true,
                    off_variation: None,
                    prerequisites: Vec::new(),
                    rules: Vec::new(),
                    default_serve: None,
                    salt: None,
                });
                let keys: Vec<&str> = f.flag.variations.iter().map(|v| v.key.as_str()).collect();
                let current = match &t.default_serve {
                    Some(Serve::Variation(v)) => Some(v.clone()),
                    Some(Serve::Split(s)) => s
                        .weights
                        .iter()
                        .find(|w| Some(w.variation.as_str()) != t.off_variation.as_deref())
                        .map(|w| w.variation.clone()),
                    _ => None,
                };
                let on = variation
                    .or_else(|| keys.contains(&"on").then(|| "on".to_owned()))
                    .or(current)
                    .unwrap_or_else(|| keys[0].to_owned());
                let off = t
                    .off_variation
                    .clone()
                    .filter(|o| *o != on)
                    .or_else(|| keys.iter().find(|k| **k != on).map(|k| (*k).to_owned()));
                if !keys.contains(&on.as_str()) {
                    bail!("variation `{on}` is not one of {}", keys.join(", "));
                }
                let Some(off) = off else {
                    bail!("{key} has a single variation; a rollout needs another to serve the rest");
                };
                let mut weights = vec![Weight {
                    variation: on.clone(),
                    weight,
                }];
                if weight < WEIGHT_SCALE {
                    weights.push(Weight {
                        variation: off.clone(),
                        weight: WEIGHT_SCALE - weight,
                    });
                }
                t.enabled = true;
                t.default_serve = Some(Serve::Split(Split {
                    weights,
                    bucket_by: Vec::new(),
                    seed: None,
                    hash: Default::default(),
                }));
                let f = set_targeting(&client, &key, &env, &t, Some(f.version), reason).await?;
                report(
                    &f,
                    as_json,
                    &format!("{key} serves {on} to {percent}% in {env}, {off} to the rest"),
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn plan_action(client: &Client, path: &[String], t: &PlanTarget, as_json: bool) -> Result<()> {
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let p: Value = client
        .send(Method::POST, &segs, &[], Some(&json!({"reason": t.reason})), None)
        .await?
        .into()?;
    if as_json {
        return json(&p);
    }
    let row = plan_row(&p);
    outln!(
        "rollout of {} in {} is {} (stage {}, {} of units)",
        t.key,
        t.env,
        row[2],
        row[3],
        row[4]
    );
    Ok(())
}
