//! CLI integration tests: the real `sextant` binary against a real
//! `sextant serve` on 127.0.0.1:0 with a temp SQLite file.

/// Starting the server and running commands.
mod support;

/// `flag`, `rollout`, `segment`, `token`: the admin commands and their errors.
mod admin;
/// `apply`, `import`, `export`: GitOps and file formats.
mod gitops;
/// Two `serve` processes on one PostgreSQL: shared changes, versions, SIGKILL.
mod replicas;
/// `serve`: settings precedence, `--demo`; `demo`; completions and man page.
mod serve;

/// `sextant metric` and `sextant track` against a real server.
mod metrics;
