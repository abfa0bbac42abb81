//! `sextant experiment create|start|results|decide` over the experiments API.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Remote, block_on};
use crate::output::{Table, json};

/// `sextant experiment …`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: ExperimentCommand,
}

#[derive(Debug, Subcommand)]
enum ExperimentCommand {
    /// Create a draft from a JSON definition (key, environment, flag, arms,
    /// primary_metric, guardrails, hypothesis, success_criteria,
    /// planned_sample_size, analysis, alpha, pre_period_days).
    Create {
        /// The definition file (`-` for stdin).
        #[arg(long, short)]
        file: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Start a draft: its definition is frozen from now on.
    Start {
        /// Experiment key.
        key: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show results: lift with intervals, p-values, chance to win, SRM.
    Results {
        /// Experiment key.
        key: String,
    },
    /// Decide a running experiment (product or admin token).
    Decide {
        /// Experiment key.
        key: String,
        /// Ship, kill or iterate.
        #[arg(long, value_enum)]
        decision: DecisionArg,
        /// What was learnt (required; goes to the learnings log).
        #[arg(long)]
        learning: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// How an experiment ends.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionArg {
    /// Roll the treatment out.
    Ship,
    /// Remove the treatment.
    Kill,
    /// Change the idea and test again.
    Iterate,
}

fn read_definition(file: &str) -> Result<Value> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the definition from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{file} is not a JSON experiment definition"))
}

/// `sextant experiment …`.
pub fn run(args: ExperimentArgs) -> Result<ExitCode> {
    block_on(async move {
        let client = Client::new(&args.remote)?;
        let reply = match &args.command {
            ExperimentCommand::Create { file, reason } => {
                let body = json!({"experiment": read_definition(file)?, "reason": reason});
                client
                    .send(Method::POST, &client.ws_path(&["experiments"]), &[], Some(&body), None)
                    .await?
            }
            ExperimentCommand::Start { key, reason } => {
                let body = json!({"reason": reason});
                client
                    .send(
                        Method::POST,
                        &client.ws_path(&["experiments", key, "start"]),
                        &[],
                        Some(&body),
                        None,
                    )
                    .await?
            }
            ExperimentCommand::Results { key } => {
                client
                    .send(
                        Method::GET,
                        &client.ws_path(&["experiments", key, "results"]),
                        &[],
                        None,
                        None,
                    )
                    .await?
            }
            ExperimentCommand::Decide {
                key,
                decision,
                learning,
                reason,
            } => {
                let decision = decision.to_possible_value().map(|p| p.get_name().to_owned());
                let body = json!({"decision": decision, "learning": learning, "reason": reason});
                client
                    .send(
                        Method::POST,
                        &client.ws_path(&["experiments", key, "decide"]),
                        &[],
                        Some(&body),
                        None,
                    )
                    .await?
            }
        };
        if args.remote.json {
            json(&reply.body)?;
        } else if let ExperimentCommand::Results { .. } = args.command {
            out!("{}", results_table(&reply.body));
        } else {
            let e = &reply.body;
            outln!(
                "experiment `{}`: {}",
                e["definition"]["key"].as_str().unwrap_or("?"),
                e["status"].as_str().unwrap_or("?")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

fn ci(v: &Value, digits: usize) -> String {
    if v.is_null() {
        return "-".into();
    }
    format!("[{}, {}]", num(&v["lower"], digits), num(&v["upper"], digits))
}

/// The results as text: a header, the SRM check and one table row per
/// metric and treatment arm.
fn results_table(body: &Value) -> String {
    let e = &body["experiment"];
    let a = &body["analysis"];
    let mut out = format!(
        "experiment `{}` ({}, {}): {} of {} planned units{}\n",
        e["definition"]["key"].as_str().unwrap_or("?"),
        e["status"].as_str().unwrap_or("?"),
        a["method"].as_str().unwrap_or("?"),
        a["units"],
        a["planned_sample_size"],
        if a["horizon_reached"] == true {
            ""
        } else {
            " (horizon not reached)"
        }
    );
    out.push_str(&format!(
        "SRM: p = {}{}\n",
        num(&a["srm"]["p_value"], 4),
        if a["srm"]["mismatch"] == true {
            "  MISMATCH: assignment or logging is broken; do not trust these results"
        } else {
            ""
        }
    ));
    if let Some(at) = e["significant_at"].as_str() {
        out.push_str(&format!(
            "significant since {at}; decide by {}{}\n",
            e["decide_by"].as_str().unwrap_or("?"),
            if body["decision_overdue"] == true {
                "  OVERDUE: decide now with `sextant experiment decide` (ship, kill or iterate)"
            } else {
                ""
            }
        ));
    }
    let mut t = Table::new([
        "METRIC",
        "ROLE",
        "ARM",
        "CONTROL",
        "TREATMENT",
        "LIFT",
        "LIFT CI",
        "P",
        "WIN",
        "SIG",
    ]);
    let metrics = std::iter::once(("primary", &a["primary"])).chain(
        a["guardrails"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| ("guardrail", g)),
    );
    for (role, m) in metrics {
        let arms = m["arms"].as_array().cloned().unwrap_or_default();
        for c in m["comparisons"].as_array().into_iter().flatten() {
            let treatment = arms.iter().find(|x| x["variation"] == c["variation"]);
            t.row([
                m["metric"].as_str().unwrap_or("?").to_owned(),
                role.to_owned(),
                c["variation"].as_str().unwrap_or("?").to_owned(),
                arms.first().map_or("-".into(), |x| num(&x["value"], 4)),
                treatment.map_or("-".into(), |x| num(&x["value"], 4)),
                c["lift"].as_f64().map_or("-".into(), |x| format!("{:+.2}%", 100.0 * x)),
                ci(&c["lift_ci"], 4),
                num(&c["p_value"], 4),
                num(&c["chance_to_win"], 3),
                if c["significant"] == true { "yes" } else { "" }.to_owned(),
            ]);
        }
    }
    out.push_str(&t.render());
    // CUPED per metric; a server without per-metric CUPED has the primary's
    // at `analysis.cuped` only.
    let metrics = std::iter::once((&a["primary"], &a["cuped"])).chain(
        a["guardrails"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| (g, &g["cuped"])),
    );
    for (i, (m, fallback)) in metrics.enumerate() {
        let cuped = if m["cuped"].is_object() { &m["cuped"] } else { fallback };
        let metric = m["metric"].as_str().unwrap_or("?");
        if cuped["applied"] == true {
            for c in cuped["comparisons"].as_array().into_iter().flatten() {
                if let Some(e) = c["error"].as_str() {
                    out.push_str(&format!(
                        "CUPED {metric}: {} not adjusted: {e}\n",
                        c["variation"].as_str().unwrap_or("?")
                    ));
                    continue;
                }
                out.push_str(&format!(
                    "CUPED {metric} ({} days before exposure): {} difference {} {}, p = {}, θ = {}, variance −{}{}\n",
                    cuped["pre_period_days"],
                    c["variation"].as_str().unwrap_or("?"),
                    num(&c["difference"], 4),
                    ci(&c["difference_ci"], 4),
                    num(&c["p_value"], 4),
                    num(&c["theta"], 4),
                    c["variance_reduction"]
                        .as_f64()
                        .map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
                    if c["significant"] == true { ", significant" } else { "" },
                ));
            }
        } else if cuped["pre_period_days"] == 0 {
            // No pre-period: one line for the experiment, not one per metric.
            if i == 0
                && let Some(why) = cuped["reason"].as_str()
            {
                out.push_str(&format!("CUPED not applied: {why}\n"));
            }
        } else if let Some(why) = cuped["reason"].as_str() {
            out.push_str(&format!("CUPED {metric} not applied: {why}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_render_one_row_per_metric_and_treatment_with_the_srm_line() {
        let body = json!({
            "experiment": {"definition": {"key": "btn"}, "status": "running", "significant_at": null},
            "analysis": {"method": "fixed_horizon", "units": 200, "planned_sample_size": 100, "horizon_reached": true,
                "srm": {"p_value": 0.5, "mismatch": false},
                "primary": {"metric": "conversion", "arms": [{"variation": "off", "value": 0.1}, {"variation": "on", "value": 0.13}],
                    "comparisons": [{"variation": "on", "lift": 0.3, "lift_ci": {"lower": 0.1, "upper": 0.5},
                        "p_value": 0.001, "chance_to_win": 0.999, "significant": true}]},
                "guardrails": [{"metric": "errors", "arms": [{"variation": "off", "value": 0.05}, {"variation": "on", "value": 0.05}],
                    "comparisons": [{"variation": "on", "error": "not enough units", "significant": false}]}]}
        });
        let text = results_table(&body);
        assert!(text.contains("200 of 100 planned units\n"), "{text}");
        assert!(text.contains("SRM: p = 0.5000\n"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("conversion") || l.starts_with("errors"))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].contains("+30.00%") && rows[0].contains("[0.1000, 0.5000]") && rows[0].contains("yes"));
        assert!(rows[1].contains("guardrail") && rows[1].contains('-'));
    }

    #[test]
    fn cuped_results_get_a_line_per_metric_and_treatment_arm_and_an_overdue_decision_is_flagged() {
        let body = json!({
            "experiment": {"definition": {"key": "btn"}, "status": "running",
                "significant_at": "2026-11-01T00:00:00Z", "decide_by": "2026-11-08T00:00:00Z"},
            "decision_overdue": true,
            "analysis": {"method": "fixed_horizon", "units": 200, "planned_sample_size": 100,
                "srm": {"p_value": 0.5}, "primary": {"metric": "revenue", "arms": [], "comparisons": []},
                "guardrails": [{"metric": "per_visit", "arms": [], "comparisons": [],
                    "cuped": {"applied": true, "pre_period_days": 14, "comparisons": [{"variation": "on",
                        "difference": -0.5, "difference_ci": {"lower": -0.9, "upper": -0.1}, "p_value": 0.01,
                        "theta": 0.9, "variance_reduction": 0.75, "significant": true}]}},
                    {"metric": "errors", "arms": [], "comparisons": [],
                    "cuped": {"applied": false, "pre_period_days": 14, "reason": "no treatment arm could be adjusted"}}],
                "cuped": {"applied": true, "pre_period_days": 14, "comparisons": [{"variation": "on",
                    "difference": 2.1, "difference_ci": {"lower": 1.5, "upper": 2.7}, "p_value": 0.0001,
                    "theta": 0.8, "variance_reduction": 0.64, "significant": true}]}}
        });
        let text = results_table(&body);
        assert!(
            text.contains(
                "CUPED revenue (14 days before exposure): on difference 2.1000 [1.5000, 2.7000], p = 0.0001, θ = 0.8000, variance −64%, significant\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "CUPED per_visit (14 days before exposure): on difference -0.5000 [-0.9000, -0.1000], p = 0.0100, θ = 0.9000, variance −75%, significant\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("CUPED errors not applied: no treatment arm could be adjusted\n"),
            "{text}"
        );
        assert!(
            text.contains("decide by 2026-11-08T00:00:00Z  OVERDUE: decide now"),
            "{text}"
        );
    }
}
