//! The `sextant` binary: one entry point for every command.
//!
//! `main` only turns `run`'s result into an exit code (see [`exit`]).
//! Commands that talk to a server share [`client::Remote`] (`--url`,
//! `--token`, `--workspace`, `--json`) and live one area per module.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, FromArgMatches as _, Parser, Subcommand};

/// mimalloc instead of the system allocator: `sextant serve` allocates
/// per request (bodies, contexts, headers), and under load glibc's malloc
/// and free were the largest cost of an OFREP bulk evaluation
/// (BENCHMARKS.md has the numbers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `print!` to standard output that ends the process quietly (exit 0) when
/// the reader has gone away, as in `sextant flag list | head -1`, instead of
/// panicking like `print!` does on a broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// [`out!`] with a trailing newline (`println!` without the broken-pipe panic).
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod admin;
mod alignment;
mod apply;
mod change;
mod client;
mod demo;
mod eval;
mod experiment;
mod flag;
mod learning;
mod metric;
mod output;
mod principle;
mod scan;
mod serve;
mod simulation;
mod track;

/// Exit codes, the same for every command (documented in the README and
/// `sextant --help`).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Failed: bad input, or the server refused the request (validation,
    /// conflict, stale version). The message says what to change.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap's usage errors); also `eval`: the
    /// flag resolved with an error code.
    pub const USAGE: u8 = 2;
    /// The flag, segment, workspace or environment does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// No token, an unknown token, or a role that does not allow it.
    pub const AUTH: u8 = 4;
    /// The server cannot be reached, is overloaded or failed (5xx).
    pub const UNAVAILABLE: u8 = 5;
    /// Done, but changes are left: `apply` skipped irreversible ones.
    pub const PENDING: u8 = 6;
    /// Done, and `scan` found what `--fail-on` names.
    pub const FINDINGS: u8 = 7;
}

/// An error with a chosen exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A failure exiting with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failed: bad input, or the server refused the request (the message says why);
     track --file: some events were rejected (the others were stored)
  2  wrong command line (eval: the flag resolved with an error code)
  3  not found: no such flag, segment, workspace or environment
  4  authentication: no token, unknown token, or the role does not allow it
  5  server unreachable, overloaded or failing (track --file: after --max-retries)
  6  irreversible changes were left undone or await approval (see --allow-delete, `sextant change`)
  7  scan: findings named by --fail-on exist (unused, unknown, archived or stale flags)

Commands that talk to a server read SEXTANT_URL (default http://127.0.0.1:7400),
SEXTANT_TOKEN and SEXTANT_WORKSPACE (default `default`).";

/// Sextant: release and alignment control plane.
#[derive(Debug, Parser)]
#[command(name = "sextant", version, about, propagate_version = true, after_long_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: admin API, OFREP, SDK sync.
    Serve(serve::ServeArgs),
    /// Flags: create, list, get, toggle, kill, rules, delete.
    Flag(flag::FlagArgs),
    /// Kill switch: turn a flag off now (ends its rollout; counted for DORA's time to restore).
    Kill(flag::KillArgs),
    /// Percentage rollouts.
    Rollout(flag::RolloutArgs),
    /// Segments: reusable sets of users.
    Segment(admin::SegmentArgs),
    /// Admin and SDK tokens.
    Token(admin::TokenArgs),
    /// Environments of a workspace.
    Env(admin::EnvArgs),
    /// Make the server match flag files (GitOps); shows the diff first.
    Apply(apply::ApplyArgs),
    /// Change requests: irreversible changes awaiting another person's approval.
    Change(change::ChangeArgs),
    /// Stored events: request their deletion (irreversible; needs another person's approval).
    Events(change::EventsArgs),
    /// Import an Unleash, flagd or Sextant file into a server (or convert it with -o).
    Import(apply::ImportArgs),
    /// Export a workspace as Sextant YAML/JSON or flagd JSON.
    Export(apply::ExportArgs),
    /// The metric tree: add, list, tree (values and trends).
    Metric(metric::MetricArgs),
    /// Send a track event, or a file of events in batches (--file), with an SDK token.
    Track(metric::TrackArgs),
    /// Experiments: create, start, results (JSON or table), decide.
    Experiment(experiment::ExperimentArgs),
    /// Generated reviews from data: daily, weekly, monthly, quarterly (Markdown, or --json).
    Review(alignment::ReviewArgs),
    /// Approve a change request (product or admin; not its requester); it applies at once.
    Approve(alignment::ApproveArgs),
    /// Strategic principles and their violations: define, list, violations, resolve.
    Principle(principle::PrincipleArgs),
    /// The learnings log: search it, and the monthly report per owner.
    Learning(learning::LearningArgs),
    /// Post-mortems of initiatives whose metric did not move: list due ones, write one.
    PostMortem(learning::PostMortemArgs),
    /// Deploy events for the DORA figures (`sextant deploy record`).
    Deploy(alignment::DeployArgs),
    /// DORA figures per service and week: deploy frequency, lead time, failure rate, restore time.
    Dora(alignment::DoraArgs),
    /// Find flag keys in source code: unused, unknown, archived and stale flags.
    Scan(scan::ScanArgs),
    /// Load the demo workspace into a running server, or `--simulate` a guarded rollout.
    Demo(demo::DemoArgs),
    /// Evaluate a flag from a Sextant, Unleash or flagd file and print the
    /// resolution as JSON (offline).
    Eval(eval::EvalArgs),
    /// Audit log commands (`sextant audit verify`).
    Audit(serve::AuditArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a directory.
    Man {
        /// Write `sextant.1`, `sextant-flag.1`, … here instead of printing `sextant.1`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// The command line with the exit codes in every command's long help, so
/// `sextant flag create --help` and each man page (`sextant-flag-create.1`)
/// document them, not only `sextant --help`.
fn command() -> clap::Command {
    fn with_exit_codes(cmd: clap::Command) -> clap::Command {
        cmd.after_long_help(EXIT_CODES).mut_subcommands(with_exit_codes)
    }
    with_exit_codes(Cli::command())
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<Failure>() {
            Some(f) => {
                eprintln!("error: {f}");
                ExitCode::from(f.code)
            }
            None => {
                eprintln!("error: {err:#}");
                ExitCode::from(exit::FAILURE)
            }
        },
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Audit(args) => serve::audit(args),
        Command::Flag(args) => flag::run(args),
        Command::Kill(args) => flag::kill_command(args),
        Command::Rollout(args) => flag::rollout(args),
        Command::Segment(args) => admin::segment(args),
        Command::Metric(args) => metric::metric(args),
        Command::Track(args) => metric::track(args),
        Command::Experiment(args) => experiment::run(args),
        Command::Token(args) => admin::token(args),
        Command::Env(args) => admin::env(args),
        Command::Apply(args) => apply::apply(args),
        Command::Change(args) => change::run(args),
        Command::Events(args) => change::events(args),
        Command::Principle(args) => principle::run(args),
        Command::Learning(args) => learning::learning(args),
        Command::PostMortem(args) => learning::post_mortem(args),
        Command::Import(args) => apply::import(args),
        Command::Export(args) => apply::export(args),
        Command::Demo(args) => demo::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Review(args) => alignment::review(args),
        Command::Approve(args) => alignment::approve(args),
        Command::Deploy(args) => alignment::deploy(args),
        Command::Dora(args) => alignment::dora(args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "sextant", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => {
            let cmd = command();
            match out_dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                    clap_mangen::generate_to(cmd, &dir)
                        .with_context(|| format!("cannot write into {}", dir.display()))?;
                    eprintln!("wrote man pages to {}", dir.display());
                }
                None => {
                    let mut page = Vec::new();
                    clap_mangen::Man::new(cmd).render(&mut page)?;
                    out!("{}", String::from_utf8_lossy(&page));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a whole file, naming it in the error.
fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        command().debug_assert();
    }

    /// Every command and subcommand, as `flag create`.
    fn commands(cmd: &clap::Command, prefix: &str, into: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
            let name = format!("{prefix}{}", sub.get_name());
            commands(sub, &format!("{name} "), into);
            into.push(name);
        }
    }

    #[test]
    fn completions_and_man_pages_cover_every_command_and_each_page_has_the_exit_codes() {
        let mut all = Vec::new();
        commands(&command(), "", &mut all);
        assert!(all.contains(&"track".to_owned()) && all.contains(&"flag create".to_owned()));
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "sextant", &mut script);
            let script = String::from_utf8(script).unwrap();
            for c in &all {
                let last = c.rsplit(' ').next().unwrap();
                assert!(script.contains(last), "{shell} completion lacks `{c}`");
            }
        }
        let mut cmd = command();
        cmd.build();
        for c in &all {
            let mut sub = &cmd;
            for part in c.split(' ') {
                sub = sub.find_subcommand(part).unwrap();
            }
            let mut page = Vec::new();
            clap_mangen::Man::new(sub.clone()).render(&mut page).unwrap();
            let page = String::from_utf8(page).unwrap();
            assert!(
                page.contains("Exit codes:") && page.contains("7  scan: findings"),
                "`{c}`'s man page lacks the exit codes"
            );
        }
    }
}
