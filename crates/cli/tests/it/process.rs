#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The admin token every spawned server is started with.
pub const ADMIN: &str = "sxa_reliability_test_admin_token_0123456789abcdef";

/// The `sextant` binary Cargo built for these tests.
pub fn sextant() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
}

/// The database the tests run against: `SEXTANT_TEST_DATABASE_URL` when set
/// (e.g. a PostgreSQL URL in CI), else a SQLite file in `dir`.
pub fn database_url(dir: &Path) -> String {
    match std::env::var("SEXTANT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => format!("sqlite:{}", dir.join("sextant.db").display()),
    }
}

/// A `sextant serve` child process on 127.0.0.1:<ephemeral>.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where the child's stderr (its log) goes.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `sextant serve` on `database_url` and waits until it listens.
    /// `envs` are extra environment variables; the log goes to `log`.
    pub fn spawn(database_url: &str, log: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::spawn_at("127.0.0.1:0", database_url, log, envs)
    }

    /// [`ServerProcess::spawn`] on a given address (to restart where clients expect it).
    pub fn spawn_at(listen: &str, database_url: &str, log: &Path, envs: &[(&str, &str)]) -> ServerProcess {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("cannot open the log file");
        let mut cmd = sextant();
        cmd.args(["serve", "--listen", listen, "--database-url", database_url])
            .env("SEXTANT_ADMIN_TOKEN", ADMIN)
            .env_remove("SEXTANT_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot spawn sextant serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        // The address is the one line we need; a thread keeps draining
        // stdout afterwards so the child never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("sextant listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("sextant serve did not start within 60 s; its log:\n{log}");
            }
        };
        ServerProcess {
            child,
            addr,
            log: log.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no shutdown hook, no flush, nothing runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("cannot kill the server");
        self.child.wait().expect("cannot reap the server");
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("cannot run kill");
        assert!(status.success());
        self.child.wait().expect("cannot reap the server")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sextant audit verify` on `database_url`: (exit success, stdout).
pub fn audit_verify(database_url: &str) -> (bool, String) {
    let out = sextant()
        .args(["audit", "verify", "--database-url", database_url])
        .output()
        .expect("cannot run sextant audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// SplitMix64: a tiny seeded generator, so a failing trial can be replayed
/// from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// An environment variable parsed, or a default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
