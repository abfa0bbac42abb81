//! `sextant eval`: evaluate one flag from a file, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use sextant_core::{Context, Snapshot};
use sextant_formats::SourceFormat;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Flag file: Sextant (YAML/JSON), Unleash features JSON or flagd JSON.
    #[arg(long, short)]
    file: PathBuf,
    /// Evaluation context as JSON (`targetingKey` plus attributes).
    #[arg(long, short, default_value = "{}")]
    context: String,
    /// Environment to evaluate in; Unleash and flagd files are imported into it.
    #[arg(long, short, default_value = "production")]
    env: String,
    /// File format; detected from the content when omitted.
    #[arg(long)]
    format: Option<SourceFormat>,
    /// Flag key.
    key: String,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let text = crate::read_file(&args.file)?;
    let context: Value = serde_json::from_str(&args.context).context("--context is not valid JSON")?;
    let (_format, document) = sextant_formats::import(&text, args.format, &args.env)
        .with_context(|| format!("cannot import {}", args.file.display()))?;
    let mut context = Context::from_json(context).context("invalid --context")?;
    context.now = Some(unix_now());
    let snapshot = Snapshot::compile(&document, &args.env, 1)
        .with_context(|| format!("{} is not a valid flag file", args.file.display()))?;
    if snapshot.is_empty() {
        bail!("{} contains no flags", args.file.display());
    }
    let r = snapshot.evaluate(&args.key, &context);
    let out = json!({
        "key": args.key,
        "value": r.value,
        "variant": r.variation,
        "reason": r.reason.as_str(),
        "errorCode": r.error.map(|e| e.as_str()),
        "rule": r.rule,
        "inExperiment": r.in_experiment,
    });
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if r.error.is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
