//! The demo workspace: `sextant demo` against a running server, and
//! `sextant serve --demo`, which runs the same loader against itself.
//!
//! The content is `demo/workspace.yaml` in the declarative format: segments,
//! flags with hypotheses, a rollout in progress (25% of production plus
//! staff and beta testers), a 50/50 experiment arm split, a killed flag and
//! an operational flag. It is loaded through the admin API like any import
//! (audit-logged, never deleting), so loading twice changes nothing.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use sextant_core::Document;

use crate::apply::{Mode, Outcome, execute, plan};
use crate::client::{Client, Remote, block_on};

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
    execute(client, &mut plan, false, Some("demo workspace")).await
}

/// `sextant demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    remote: Remote,
}

/// `sextant demo`.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let client = Client::new(&args.remote)?;
    let as_json = args.remote.json;
    block_on(async move {
        let outcome = load(&client).await?;
        if as_json {
            crate::output::json(&outcome)?;
        } else if outcome.applied == 0 {
            println!("The demo is already loaded in workspace `{}`.", client.workspace);
        } else {
            println!(
                "Loaded the demo into workspace `{}` ({} changes). Try `sextant flag list`.",
                client.workspace, outcome.applied
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
