//! `sextant change list|approve|reject`: change requests, the irreversible
//! changes (deleting or archiving a flag, changing the policy, deleting
//! events, …) that another person with the product or admin role must
//! approve; and `sextant events delete`, which files one.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Remote, block_on};
use crate::exit;
use crate::output::json as print_json;

/// `sextant change …`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: ChangeCommand,
}

#[derive(Debug, Subcommand)]
enum ChangeCommand {
    /// List change requests (pending ones by default).
    List {
        /// `pending`, `applied` or `rejected`; `all` for every one.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve a change request (product or admin; not its requester): it applies at once.
    Approve {
        /// Request id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a change request (product or admin; not its requester).
    Reject {
        /// Request id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// One line about a change request.
pub fn describe(r: &Value) -> String {
    format!(
        "#{} {} {} `{}` — {} (requested by {})",
        r["id"],
        r["action"].as_str().unwrap_or(""),
        r["kind"].as_str().unwrap_or(""),
        r["key"].as_str().unwrap_or(""),
        r["status"].as_str().unwrap_or(""),
        r["requested_by"].as_str().unwrap_or("")
    )
}

/// `sextant change …`.
pub fn run(args: ChangeArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        let (id, verb, reason) = match args.command {
            ChangeCommand::List { status } => {
                let q: Vec<(&str, &str)> = if status == "all" {
                    vec![]
                } else {
                    vec![("status", status.as_str())]
                };
                let reply = client
                    .send(Method::GET, &client.ws_path(&["change-requests"]), &q, None, None)
                    .await?;
                if as_json {
                    print_json(&reply.body["items"])?;
                } else {
                    for r in reply.body["items"].as_array().into_iter().flatten() {
                        outln!("{}", describe(r));
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            ChangeCommand::Approve { id, reason } => (id, "approve", reason),
            ChangeCommand::Reject { id, reason } => (id, "reject", reason),
        };
        let id_text = id.to_string();
        let path = client.ws_path(&["change-requests", &id_text, verb]);
        let reply = client
            .send(Method::POST, &path, &[], Some(&json!({"reason": reason})), None)
            .await?;
        if as_json {
            print_json(&reply.body)?;
        } else {
            outln!("{}", describe(&reply.body));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant events …`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Request deleting a track event's raw events and hourly rollups in one
    /// environment (all hours, or whole hours in [--from, --to)). Irreversible,
    /// with no revert: another person with the product or admin role approves
    /// it (`sextant change approve ID`), and deleted events cannot be restored.
    Delete {
        /// Environment key.
        #[arg(long = "env")]
        environment: String,
        /// The track event's name.
        #[arg(long)]
        event: String,
        /// First hour to delete (RFC 3339, on the hour, e.g. 2026-11-20T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// End of the deleted hours (RFC 3339, on the hour, exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Why (shown to the approver, kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `sextant events delete …`: files the change request; exits with
/// [`exit::PENDING`] (it awaits approval).
pub fn events(args: EventsArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    let EventsCommand::Delete {
        environment,
        event,
        from,
        to,
        reason,
    } = args.command;
    block_on(async move {
        let body = json!({"environment": environment, "event": event, "from": from, "to": to, "reason": reason});
        let reply = client
            .send(
                Method::POST,
                &client.ws_path(&["event-deletions"]),
                &[],
                Some(&body),
                None,
            )
            .await?;
        if as_json {
            print_json(&reply.body)?;
        } else {
            let r = &reply.body;
            outln!(
                "requested deletion of `{event}` events in {environment} ({} rolled up now): change request {} \
                 awaits approval by another person with the product or admin role\n  \
                 revert: {}\n  hint: sextant change approve {}",
                r["payload"]["rolled_up_events"],
                r["id"],
                r["payload"]["revert"].as_str().unwrap_or(""),
                r["id"]
            );
        }
        Ok(ExitCode::from(exit::PENDING))
    })
}
