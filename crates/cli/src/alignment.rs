//! Alignment commands over the admin API: `sextant review CADENCE` (the
//! generated reviews, Markdown or JSON), `sextant approve ID`, `sextant
//! deploy record` and `sextant dora` (velocity from deploy events).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Remote, block_on};
use crate::output::{Table, json as print_json};

/// A review's cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cadence {
    /// Changes, kill switches, guardrail events and deploys of the last day.
    Daily,
    /// Learned / stop / start, the metric tree's movement and velocity of the last 7 days.
    Weekly,
    /// Learnings per owner, initiatives and their metrics (30 days).
    Monthly,
    /// North Star and tree movement, principles and violations, what was killed (91 days).
    Quarterly,
}

impl Cadence {
    fn as_str(self) -> &'static str {
        match self {
            Cadence::Daily => "daily",
            Cadence::Weekly => "weekly",
            Cadence::Monthly => "monthly",
            Cadence::Quarterly => "quarterly",
        }
    }
}

/// `sextant review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    remote: Remote,
    /// Which review.
    #[arg(value_enum)]
    cadence: Cadence,
}

/// `sextant review CADENCE`: the review generated from the server's data,
/// as Markdown (default) or JSON (`--json`).
pub fn review(args: ReviewArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    block_on(async move {
        let reply = client
            .send(
                Method::GET,
                &["api", "v1", "reviews", args.cadence.as_str()],
                &[("workspace", client.workspace.as_str())],
                None,
                None,
            )
            .await?;
        if args.remote.json {
            print_json(&reply.body)?;
        } else {
            // One renderer for the API's `format=markdown` and the CLI.
            out!("{}", sextant_server::reports::markdown(&reply.body));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    remote: Remote,
    /// Change request id (`sextant change list`).
    id: i64,
    /// Why.
    #[arg(long)]
    reason: Option<String>,
}

/// `sextant approve ID`: approves a change request (product or admin; not
/// its requester); the change applies at once.
pub fn approve(args: ApproveArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    block_on(async move {
        let id = args.id.to_string();
        let path = client.ws_path(&["change-requests", &id, "approve"]);
        let reply = client
            .send(Method::POST, &path, &[], Some(&json!({"reason": args.reason})), None)
            .await?;
        if args.remote.json {
            print_json(&reply.body)?;
        } else {
            outln!("{}", crate::change::describe(&reply.body));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: DeployCommand,
}

/// A deploy's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Outcome {
    Success,
    Failed,
    Rollback,
}

#[derive(Debug, Subcommand)]
enum DeployCommand {
    /// Record a deploy event (from CI, after the deploy).
    #[command(disable_version_flag = true)]
    Record {
        /// Service deployed.
        #[arg(long)]
        service: String,
        /// Version deployed (a tag or commit).
        #[arg(long)]
        version: String,
        /// When the change was committed (RFC 3339), e.g. `$(git log -1 --format=%cI)`.
        #[arg(long)]
        commit_time: String,
        /// When it was deployed (RFC 3339; default: now).
        #[arg(long)]
        deploy_time: Option<String>,
        /// Outcome.
        #[arg(long, value_enum, default_value_t = Outcome::Success)]
        status: Outcome,
    },
}

/// `sextant deploy record …`.
pub fn deploy(args: DeployArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let DeployCommand::Record {
        service,
        version,
        commit_time,
        deploy_time,
        status,
    } = args.command;
    let status = match status {
        Outcome::Success => "success",
        Outcome::Failed => "failed",
        Outcome::Rollback => "rollback",
    };
    block_on(async move {
        let body = json!({
            "workspace": client.workspace, "service": service, "version": version,
            "commit_time": commit_time, "deploy_time": deploy_time, "status": status,
        });
        let reply = client
            .send(Method::POST, &["api", "v1", "deploys"], &[], Some(&body), None)
            .await?;
        if args.remote.json {
            print_json(&reply.body)?;
        } else {
            let d = &reply.body;
            outln!(
                "recorded deploy #{} of {} {} ({}) at {}",
                d["id"],
                d["service"].as_str().unwrap_or(""),
                d["version"].as_str().unwrap_or(""),
                d["status"].as_str().unwrap_or(""),
                d["deployed_at"].as_str().unwrap_or("")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant dora`.
#[derive(Debug, Args)]
pub struct DoraArgs {
    #[command(flatten)]
    remote: Remote,
    /// Weeks back from now.
    #[arg(long, default_value_t = 12)]
    weeks: i64,
}

fn cell(v: &Value, digits: usize, scale: f64, suffix: &str) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{:.digits$}{suffix}", x * scale))
}

/// `sextant dora`: deploy frequency, lead time, change failure rate and
/// time to restore per service and week.
pub fn dora(args: DoraArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    block_on(async move {
        let weeks = args.weeks.to_string();
        let reply = client
            .send(
                Method::GET,
                &["api", "v1", "dora"],
                &[("workspace", client.workspace.as_str()), ("weeks", weeks.as_str())],
                None,
                None,
            )
            .await?;
        if args.remote.json {
            print_json(&reply.body)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut t = Table::new([
            "SERVICE",
            "WEEK",
            "DEPLOYS",
            "PER DAY",
            "LEAD TIME",
            "FAILED",
            "FAILURE RATE",
            "RESTORE",
        ]);
        for w in reply.body["items"].as_array().into_iter().flatten() {
            t.row([
                w["service"].as_str().unwrap_or("").to_owned(),
                w["week"].as_str().unwrap_or("").to_owned(),
                w["deploys"].to_string(),
                cell(&w["deploy_frequency_per_day"], 2, 1.0, ""),
                cell(&w["lead_time_hours"], 1, 1.0, " h"),
                w["failed_changes"].to_string(),
                cell(&w["change_failure_rate"], 0, 100.0, "%"),
                cell(&w["time_to_restore_hours"], 1, 1.0, " h"),
            ]);
        }
        t.print("no deploys recorded; record them with `sextant deploy record`");
        Ok(ExitCode::SUCCESS)
    })
}
