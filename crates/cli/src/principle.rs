//! `sextant principle …`: strategic principles and the violations declared
//! against them (each with a justification, an accountable owner and a
//! review date; open ones stay in the weekly review until resolved).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Remote, block_on};
use crate::output::{Table, json as print_json};

/// `sextant principle …`.
#[derive(Debug, Args)]
pub struct PrincipleArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: PrincipleCommand,
}

#[derive(Debug, Subcommand)]
enum PrincipleCommand {
    /// Define a principle (product or admin).
    Define {
        /// Key (letters, digits, `.`, `_`, `-`).
        key: String,
        /// Short name.
        #[arg(long)]
        name: String,
        /// What the principle says.
        #[arg(long)]
        description: String,
        /// Why it is defined (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the principles.
    List,
    /// List violations: open ones, most urgent review date first (`--all` for resolved ones too).
    Violations {
        /// Resolved violations too.
        #[arg(long)]
        all: bool,
    },
    /// Resolve a violation (product or admin).
    Resolve {
        /// Violation id (`sextant principle violations`).
        id: i64,
        /// What was done about it.
        #[arg(long)]
        resolution: String,
    },
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_owned()
}

/// One line about a violation.
fn describe(v: &Value) -> String {
    let state = match v["resolved_at"].as_str() {
        Some(at) => format!("resolved {at}: {}", text(v, "resolution")),
        None => format!("open, review by {}", text(v, "review_date")),
    };
    format!(
        "#{} `{}` violated by {} — owner {}, {state}",
        v["id"],
        text(v, "principle"),
        text(v, "subject"),
        text(v, "owner")
    )
}

/// `sextant principle …`.
pub fn run(args: PrincipleArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            PrincipleCommand::Define {
                key,
                name,
                description,
                reason,
            } => {
                let body = json!({"key": key, "name": name, "description": description, "reason": reason});
                let reply = client
                    .send(Method::POST, &client.ws_path(&["principles"]), &[], Some(&body), None)
                    .await?;
                if as_json {
                    print_json(&reply.body)?;
                } else {
                    outln!("defined principle {key}: {}", text(&reply.body, "name"));
                }
            }
            PrincipleCommand::List => {
                let items = client.list(&client.ws_path(&["principles"])).await?;
                if as_json {
                    return print_json(&items).map(|()| ExitCode::SUCCESS);
                }
                let mut t = Table::new(["KEY", "NAME", "DESCRIPTION"]);
                for p in &items {
                    t.row([text(p, "key"), text(p, "name"), text(p, "description")]);
                }
                t.print("no principles defined (sextant principle define KEY --name … --description …)");
            }
            PrincipleCommand::Violations { all } => {
                let q: &[(&str, &str)] = if all { &[] } else { &[("open", "true")] };
                let reply = client
                    .send(Method::GET, &client.ws_path(&["violations"]), q, None, None)
                    .await?;
                let items = reply.body["items"].as_array().cloned().unwrap_or_default();
                if as_json {
                    return print_json(&items).map(|()| ExitCode::SUCCESS);
                }
                let mut t = Table::new([
                    "ID",
                    "PRINCIPLE",
                    "SUBJECT",
                    "OWNER",
                    "REVIEW",
                    "STATE",
                    "JUSTIFICATION",
                ]);
                for v in &items {
                    let state = if v["resolved_at"].is_string() {
                        "resolved"
                    } else {
                        "open"
                    };
                    t.row([
                        v["id"].to_string(),
                        text(v, "principle"),
                        text(v, "subject"),
                        text(v, "owner"),
                        text(v, "review_date"),
                        state.to_owned(),
                        text(v, "justification"),
                    ]);
                }
                t.print(if all { "no violations" } else { "no open violations" });
            }
            PrincipleCommand::Resolve { id, resolution } => {
                let id_text = id.to_string();
                let path = client.ws_path(&["violations", &id_text, "resolve"]);
                let reply = client
                    .send(Method::POST, &path, &[], Some(&json!({"resolution": resolution})), None)
                    .await?;
                if as_json {
                    print_json(&reply.body)?;
                } else {
                    outln!("{}", describe(&reply.body));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_line_says_whether_it_is_open_or_how_it_was_resolved() {
        let mut v = json!({"id": 3, "principle": "privacy-first", "subject": "flag:tracking",
            "owner": "ana", "review_date": "2026-12-01", "resolved_at": null});
        assert_eq!(
            describe(&v),
            "#3 `privacy-first` violated by flag:tracking — owner ana, open, review by 2026-12-01"
        );
        v["resolved_at"] = json!("2026-11-28T10:00:00.000Z");
        v["resolution"] = json!("tracking removed");
        assert!(describe(&v).ends_with("resolved 2026-11-28T10:00:00.000Z: tracking removed"));
    }
}
