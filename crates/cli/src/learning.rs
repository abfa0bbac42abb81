//! `sextant learning …` (the learnings log: search, and the monthly report
//! per owner) and `sextant post-mortem …` (initiatives whose metric did not
//! move: list those due, write one with the template — what we expected,
//! what happened, what we learned).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{Datelike, NaiveDate, Utc};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Remote, block_on};
use crate::output::{Table, json as print_json};
use crate::{Failure, exit};

/// `sextant learning …`.
#[derive(Debug, Args)]
pub struct LearningArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: LearningCommand,
}

#[derive(Debug, Subcommand)]
enum LearningCommand {
    /// Search the learnings log, newest first.
    List {
        /// Text to find in what was learned, the evidence or the source (any case).
        #[arg(long)]
        search: Option<String>,
        /// Only this owner's learnings.
        #[arg(long)]
        owner: Option<String>,
        /// Only from this source (experiment, review, post_mortem, manual).
        #[arg(long)]
        source: Option<String>,
        /// From this time on (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
    /// A month's learnings grouped per owner (default: this month).
    Report {
        /// The month, as YYYY-MM.
        #[arg(long)]
        month: Option<String>,
        /// Only this owner.
        #[arg(long)]
        owner: Option<String>,
    },
}

/// `sextant post-mortem …`.
#[derive(Debug, Args)]
pub struct PostMortemArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: PostMortemCommand,
}

#[derive(Debug, Subcommand)]
enum PostMortemCommand {
    /// List post-mortems, earliest due first (`--due`: only those not yet written).
    List {
        /// Only post-mortems still to write.
        #[arg(long)]
        due: bool,
    },
    /// Write an initiative's post-mortem (product or admin); what was learned goes to the learnings log.
    Complete {
        /// The initiative's key.
        initiative: String,
        /// What we expected (default: what the initiative declared).
        #[arg(long)]
        expected: Option<String>,
        /// What happened.
        #[arg(long)]
        happened: String,
        /// What we learned.
        #[arg(long)]
        learned: String,
    },
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_owned()
}

/// The `[since, until)` bounds of a `YYYY-MM` month, as stored times compare.
fn month_bounds(month: &str) -> Result<(String, String)> {
    let bad = || {
        Failure::new(
            exit::FAILURE,
            format!("--month `{month}` is not a month such as 2026-11 (YYYY-MM)"),
        )
    };
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .ok_or_else(bad)?;
    let at = |d: NaiveDate| format!("{}T00:00:00.000Z", d.format("%Y-%m-%d"));
    Ok((at(first), at(next)))
}

/// One learning as a report line.
fn learning_line(l: &Value) -> String {
    let mut line = format!(
        "{} {} ({}",
        text(l, "at").get(..10).unwrap_or(""),
        text(l, "what"),
        text(l, "source")
    );
    if let Some(r) = l["source_ref"].as_str() {
        line.push(' ');
        line.push_str(r);
    }
    if let Some(e) = l["evidence"].as_str() {
        line.push_str(", evidence: ");
        line.push_str(e);
    }
    line.push(')');
    line
}

/// The monthly report: learnings per owner, owners in order.
fn report_text(month: &str, by_owner: &BTreeMap<String, Vec<Value>>) -> String {
    let mut out = format!("Learnings of {month}\n");
    if by_owner.is_empty() {
        out.push_str("\nnone recorded\n");
    }
    for (owner, items) in by_owner {
        out.push_str(&format!("\n{owner} ({})\n", items.len()));
        for l in items {
            out.push_str(&format!("  - {}\n", learning_line(l)));
        }
    }
    out
}

/// `sextant learning …`.
pub fn learning(args: LearningArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            LearningCommand::List {
                search,
                owner,
                source,
                since,
                until,
            } => {
                let mut q = Vec::new();
                for (k, v) in [
                    ("q", &search),
                    ("owner", &owner),
                    ("source", &source),
                    ("since", &since),
                    ("until", &until),
                ] {
                    if let Some(v) = v {
                        q.push((k, v.as_str()));
                    }
                }
                let reply = client
                    .send(Method::GET, &client.ws_path(&["learnings"]), &q, None, None)
                    .await?;
                let items = reply.body["items"].as_array().cloned().unwrap_or_default();
                if as_json {
                    return print_json(&items).map(|()| ExitCode::SUCCESS);
                }
                let mut t = Table::new(["DATE", "OWNER", "SOURCE", "WHAT", "EVIDENCE"]);
                for l in &items {
                    t.row([
                        text(l, "at").get(..10).unwrap_or("").to_owned(),
                        text(l, "owner"),
                        text(l, "source"),
                        text(l, "what"),
                        text(l, "evidence"),
                    ]);
                }
                t.print("no learnings match");
            }
            LearningCommand::Report { month, owner } => {
                let month = month.unwrap_or_else(|| Utc::now().format("%Y-%m").to_string());
                let (since, until) = month_bounds(&month)?;
                let mut q = vec![("since", since.as_str()), ("until", until.as_str())];
                if let Some(o) = &owner {
                    q.push(("owner", o.as_str()));
                }
                let reply = client
                    .send(Method::GET, &client.ws_path(&["learnings"]), &q, None, None)
                    .await?;
                let mut by_owner: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                for l in reply.body["items"].as_array().into_iter().flatten() {
                    by_owner.entry(text(l, "owner")).or_default().push(l.clone());
                }
                if as_json {
                    print_json(&json!({"month": month, "owners": by_owner}))?;
                } else {
                    out!("{}", report_text(&month, &by_owner));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sextant post-mortem …`.
pub fn post_mortem(args: PostMortemArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        match args.command {
            PostMortemCommand::List { due } => {
                let reply = client
                    .send(Method::GET, &client.ws_path(&["post-mortems"]), &[], None, None)
                    .await?;
                let items: Vec<Value> = reply.body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| !due || p["completed_at"].is_null())
                    .cloned()
                    .collect();
                if as_json {
                    return print_json(&items).map(|()| ExitCode::SUCCESS);
                }
                let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let mut t = Table::new(["INITIATIVE", "OWNER", "DUE", "STATE", "EXPECTED"]);
                for p in &items {
                    let state = match p["completed_at"].as_str() {
                        Some(at) => format!("written {}", at.get(..10).unwrap_or(at)),
                        None if text(p, "due_at") < now => "OVERDUE".to_owned(),
                        None => "due".to_owned(),
                    };
                    t.row([
                        text(p, "initiative"),
                        text(p, "owner"),
                        text(p, "due_at").get(..10).unwrap_or("").to_owned(),
                        state,
                        text(p, "expected"),
                    ]);
                }
                t.print(if due { "no post-mortems due" } else { "no post-mortems" });
            }
            PostMortemCommand::Complete {
                initiative,
                expected,
                happened,
                learned,
            } => {
                let body = json!({"expected": expected, "happened": happened, "learned": learned});
                let reply = client
                    .send(
                        Method::POST,
                        &client.ws_path(&["post-mortems", &initiative]),
                        &[],
                        Some(&body),
                        None,
                    )
                    .await?;
                if as_json {
                    print_json(&reply.body)?;
                } else {
                    let p = &reply.body;
                    outln!("post-mortem of {initiative} written");
                    outln!("  What we expected: {}", text(p, "expected"));
                    outln!("  What happened:    {}", text(p, "happened"));
                    outln!(
                        "  What we learned:  {} (added to the learnings log)",
                        text(p, "learned")
                    );
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
    fn a_month_covers_its_first_day_to_the_next_months_first_day() {
        assert_eq!(
            month_bounds("2026-12").unwrap(),
            ("2026-12-01T00:00:00.000Z".into(), "2027-01-01T00:00:00.000Z".into())
        );
        let err = month_bounds("November").unwrap_err();
        assert!(err.to_string().contains("YYYY-MM"), "{err}");
    }

    #[test]
    fn the_report_groups_learnings_under_each_owner() {
        let mut by_owner = BTreeMap::new();
        by_owner.insert(
            "ana".to_owned(),
            vec![
                json!({"at": "2026-11-03T10:00:00.000Z", "what": "bigger buttons convert",
                "source": "experiment", "source_ref": "bigger-button", "evidence": "+4.1%"}),
            ],
        );
        let text = report_text("2026-11", &by_owner);
        assert_eq!(
            text,
            "Learnings of 2026-11\n\nana (1)\n  - 2026-11-03 bigger buttons convert (experiment bigger-button, evidence: +4.1%)\n"
        );
        assert!(report_text("2026-11", &BTreeMap::new()).contains("none recorded"));
    }
}
