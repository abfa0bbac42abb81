//! CLI integration tests: the real `sextant` binary against a real
//! `sextant serve` on 127.0.0.1:0 with a temp SQLite file.

/// Starting the server and running commands.
mod support;

/// `flag`, `rollout`, `segment`, `token`: the admin commands and their errors.
mod admin;
/// `scan`, `review`, `approve`, `deploy record`, `dora`.
mod alignment;
/// `apply`, `import`, `export`: GitOps and file formats.
mod gitops;
/// Two `serve` processes on one PostgreSQL: shared changes, versions, SIGKILL.
mod replicas;
/// `serve`: settings precedence, `--demo`; `demo`; completions and man page.
mod serve;
/// `demo --simulate`: seeded rollouts rolled back or completed by their guardrails.
mod simulation;

/// `kill -9` at random moments loses no acknowledged write and never breaks the audit chain.
mod crash;
/// The server's log never contains a token.
mod logs;
/// `sextant metric` and `sextant track` against a real server.
mod metrics;
/// OFREP at ten times a token's rate: 429 + Retry-After, bounded memory, recovery.
mod overload;
/// A `sextant serve` child process to kill, restart and read the log of.
mod process;
/// The SDK keeps serving while the server is down and resyncs after.
mod upstream;
