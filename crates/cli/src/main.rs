//! The `sextant` binary: one entry point for every command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

mod eval;
mod serve;

/// Sextant: release and alignment control plane.
#[derive(Debug, Parser)]
#[command(name = "sextant", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a flag from a Sextant, Unleash or flagd file and print the
    /// resolution as JSON.
    Eval(eval::EvalArgs),
    /// Run the control plane: admin API, OFREP, SDK sync.
    Serve(serve::ServeArgs),
    /// Audit log commands (`sextant audit verify`).
    Audit(serve::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Audit(args) => serve::audit(args),
    }
}

/// Reads a whole file, naming it in the error.
fn read_file(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
