use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// The admin token every test server accepts.
pub const ADMIN: &str = "sxa_cli_test_admin_token";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sextant");

/// A `sextant serve` process; killed on drop.
pub struct Server {
    pub url: String,
    pub dir: TempDir,
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// Everything the server printed before it listened.
    pub banner: String,
}

impl Server {
    /// Starts a server with a fresh database.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite:{}", dir.path().join("sextant.db").display());
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd);
        cmd.current_dir(dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &db,
                "--admin-token",
                ADMIN,
            ])
            .args(args);
        let (child, stdout, banner, url) = spawn_until_listening(cmd, dir.path());
        Server {
            url,
            dir,
            child,
            _stdout: stdout,
            banner,
        }
    }

    /// Runs `sextant ARGS` against this server.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    /// Runs `sextant ARGS` with extra environment variables.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut all = vec![("SEXTANT_URL", self.url.as_str()), ("SEXTANT_TOKEN", ADMIN)];
        all.extend_from_slice(env);
        sextant(self.dir.path(), args, &all)
    }

    /// Runs a command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", out.stdout))
    }

    /// Writes `text` to `name` in the server's temp dir.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// GETs an admin API path with the admin token and returns the body.
    pub fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
    }

    /// POSTs an OFREP evaluation and returns the response body.
    pub fn ofrep(&self, token: &str, key: &str, targeting_key: &str) -> Value {
        let url = format!("{}/ofrep/v1/evaluate/flags/{key}", self.url);
        let token = token.to_owned();
        let body = serde_json::json!({"context": {"targetingKey": targeting_key}});
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and reads its stdout up to `sextant listening on URL`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned; its owner kills and waits"
)]
pub fn spawn_until_listening(mut cmd: Command, dir: &Path) -> (Child, BufReader<ChildStdout>, String, String) {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("sextant serve exited before listening:\n{banner}\n{log}");
        }
        if let Some(url) = line.trim().strip_prefix("sextant listening on ") {
            return (child, stdout, banner, url.to_owned());
        }
        banner.push_str(&line);
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Removes every `SEXTANT_*` variable so the caller's shell cannot leak in.
pub fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("SEXTANT_") {
            cmd.env_remove(k);
        }
    }
}

/// Runs `sextant ARGS` in `dir` with `env`.
pub fn sextant(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    cmd.current_dir(dir).args(args).envs(env.iter().copied());
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
