//! Two real `sextant serve` processes on one PostgreSQL database, each
//! with an SSE client: a change through either reaches both clients,
//! optimistic versions hold across them, and a replica killed with SIGKILL
//! in the middle of writes loses nothing it acknowledged.
//!
//! The rollout scheduler runs on one replica at a time (an advisory lock
//! held by its session); when that replica is killed another takes over.
//!
//! PostgreSQL comes from `SEXTANT_TEST_POSTGRES_URL` (scripts/test sets
//! it); without it the test is skipped, except with `CI=true`, where it fails.

use std::process::{Child, Command};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::ConnectOptions;

use crate::support::{ADMIN, BIN, clean_env, spawn_until_listening};

/// How long any one expected thing may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn postgres_admin_url() -> Option<String> {
    let from = |var: &str| std::env::var(var).ok().filter(|u| u.starts_with("postgres"));
    let url = from("SEXTANT_TEST_POSTGRES_URL").or_else(|| from("DATABASE_URL"));
    if url.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no PostgreSQL: set SEXTANT_TEST_POSTGRES_URL (scripts/test does)"
        );
        eprintln!("skipped: the multi-replica test needs SEXTANT_TEST_POSTGRES_URL");
    }
    url
}

/// A fresh database on the server of `admin`, named after the process and
/// `test`; its URL.
async fn fresh_database(admin: &str, test: &str) -> String {
    let name = format!("sextant_test_cli_{}_{test}", std::process::id());
    let options: sqlx::postgres::PgConnectOptions = admin.parse().unwrap();
    let mut conn = options
        .connect()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} does not answer: {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
    }
    let scheme_end = admin.find("://").map_or(0, |i| i + 3);
    let end = admin[scheme_end..]
        .find(['/', '?'])
        .map_or(admin.len(), |i| scheme_end + i);
    format!("{}/{name}", &admin[..end])
}

/// Runs `test` on a multi-threaded runtime with a fresh database named
/// after `name`; skipped without PostgreSQL (see [`postgres_admin_url`]).
fn on_fresh_database(name: &str, test: impl AsyncFnOnce(String)) {
    let Some(admin) = postgres_admin_url() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move { test(fresh_database(&admin, name).await).await });
}

/// One `sextant serve` replica; killed on drop.
struct Replica {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Replica {
    fn start(database: &str) -> Replica {
        Replica::start_with(database, &[])
    }

    /// With extra `serve` arguments.
    fn start_with(database: &str, extra: &[&str]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd);
        cmd.current_dir(dir.path()).args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database,
            "--admin-token",
            ADMIN,
        ]);
        cmd.args(extra);
        let (child, stdout, _, url) = spawn_until_listening(cmd, dir.path());
        Replica {
            url,
            child,
            _dir: dir,
            _stdout: stdout,
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// SIGKILL: no shutdown, no flushing.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `event:`/`data:` frames of a server-sent-event stream.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// Connects, retrying while the replica does not know the token yet.
    async fn connect(http: &reqwest::Client, url: String, token: &str) -> Sse {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let response = http.get(&url).bearer_auth(token).send().await.unwrap();
            if response.status() == StatusCode::OK {
                return Sse {
                    response,
                    buffer: String::new(),
                };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream refused: {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next (event, data JSON).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .filter_map(|l| l.strip_prefix(name))
                        .map(str::trim_start)
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let (event, data) = (field("event:"), field("data:"));
                if event.is_empty() {
                    continue; // heartbeat comment
                }
                return (event, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("stream ended");
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Waits for a `change` event whose document or delta has flag `key`
    /// with `enabled` in `env`; returns its version.
    async fn until_flag(&mut self, key: &str, env: &str, enabled: bool) -> u64 {
        // Heartbeats keep the stream alive, so bound the whole wait.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (event, data) = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("flag {key} never became enabled={enabled} in {env}"));
            if event != "change" {
                continue;
            }
            let flags = data["flags"]
                .as_array()
                .or_else(|| data["document"]["flags"].as_array())
                .cloned()
                .unwrap_or_default();
            let hit = flags
                .iter()
                .any(|f| f["key"] == key && f["environments"][env]["enabled"].as_bool().unwrap_or(false) == enabled);
            if hit {
                return data["version"].as_u64().unwrap();
            }
        }
    }
}

fn flag(key: &str) -> Value {
    json!({"flag": {"key": key, "kind": "boolean",
        "hypothesis": {"operational": true, "reason": "replication test"},
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"development": {"enabled": false, "off_variation": "off",
            "default_serve": {"variation": "on"}}}}})
}

#[test]
fn two_replicas_on_one_postgres_share_changes_and_lose_nothing_acknowledged_when_one_is_killed() {
    on_fresh_database("share", async |database| {
        let a = Replica::start(&database);
        let mut b = Replica::start(&database);
        let http = reqwest::Client::new();

        // An SDK token made on A serves streams on both replicas.
        let token = http
            .post(a.at("/api/v1/tokens"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "sdk", "kind": "server", "workspace": "default", "environment": "development"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut on_a = Sse::connect(&http, a.at("/sdk/v1/stream"), &token).await;
        let mut on_b = Sse::connect(&http, b.at("/sdk/v1/stream"), &token).await;
        assert_eq!(on_a.next().await.0, "snapshot");
        assert_eq!(on_b.next().await.0, "snapshot");

        // A change through A reaches both clients; one through B too.
        let created = http
            .post(a.at("/api/v1/workspaces/default/flags"))
            .bearer_auth(ADMIN)
            .json(&flag("shared"))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let va = on_a.until_flag("shared", "development", false).await;
        let vb = on_b.until_flag("shared", "development", false).await;
        assert_eq!(va, vb, "both replicas publish the same snapshot version");
        let toggle = |replica: &Replica, enabled: bool, version: Option<i64>| {
            let mut r = http
                .post(replica.at("/api/v1/workspaces/default/flags/shared/environments/development/toggle"))
                .bearer_auth(ADMIN)
                .json(&json!({"enabled": enabled}));
            if let Some(v) = version {
                r = r.header("If-Match", format!("\"{v}\""));
            }
            r.send()
        };
        assert_eq!(toggle(&b, true, None).await.unwrap().status(), StatusCode::OK);
        on_a.until_flag("shared", "development", true).await;
        on_b.until_flag("shared", "development", true).await;

        // Optimistic versions across replicas: same If-Match on both, one wins.
        let version = 2;
        let (x, y) = tokio::join!(toggle(&a, false, Some(version)), toggle(&b, false, Some(version)));
        let mut statuses = [x.unwrap().status(), y.unwrap().status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);

        // Writes in flight on B when it is killed: every acknowledged one is kept.
        let writer = {
            let http = http.clone();
            let url = b.at("/api/v1/workspaces/default/flags");
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let key = format!("w{i}");
                    match http.post(&url).bearer_auth(ADMIN).json(&flag(&key)).send().await {
                        Ok(r) if r.status() == StatusCode::CREATED => acknowledged.push(key),
                        Ok(r) => {
                            eprintln!("writes stopped: {} {}", r.status(), r.text().await.unwrap_or_default());
                            break;
                        }
                        Err(e) => {
                            eprintln!("writes stopped: {e}");
                            break;
                        }
                    }
                }
                acknowledged
            })
        };
        // Kill once a few writes are acknowledged, seen through A's stream.
        on_a.until_flag("w3", "development", false).await;
        b.kill();
        let acknowledged = writer.await.unwrap();
        // A published w3, so w0..w2 were acknowledged before it was sent
        // (w3's own answer may still have been on its way at the kill).
        assert!(acknowledged.len() >= 3, "{acknowledged:?}");
        let listed = http
            .get(a.at("/api/v1/workspaces/default/flags"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let stored: Vec<&str> = listed["items"]
            .as_array()
            .or_else(|| listed.as_array())
            .expect("a flag list")
            .iter()
            .filter_map(|f| f["key"].as_str().or_else(|| f["flag"]["key"].as_str()))
            .collect();
        for key in &acknowledged {
            assert!(
                stored.contains(&key.as_str()),
                "acknowledged {key} was lost: {stored:?}"
            );
        }
        // A's published snapshot (what its SDK clients get) has every one too.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let snapshot = http
                .get(a.at("/sdk/v1/snapshot"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            let published = snapshot["document"]["flags"].to_string();
            if acknowledged.iter().all(|k| published.contains(&format!("\"{k}\""))) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "A never published {acknowledged:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let verify = http
            .get(a.at("/api/v1/audit/verify"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(verify["ok"], true, "{verify}");
    });
}

/// Creates flag `key` and a started two-stage rollout plan for it in
/// `development`, through `replica`; each stage holds an hour, so the
/// first stays applied while the test looks at it.
async fn start_rollout(http: &reqwest::Client, replica: &Replica, key: &str) {
    let created = http
        .post(replica.at("/api/v1/workspaces/default/flags"))
        .bearer_auth(ADMIN)
        .json(&flag(key))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let plan = replica.at(&format!(
        "/api/v1/workspaces/default/flags/{key}/environments/development/rollout"
    ));
    let put = http
        .put(&plan)
        .bearer_auth(ADMIN)
        .json(&json!({"plan": {"control": "off", "treatment": "on",
            "stages": [{"percent": 10, "min_hold_seconds": 3600},
                {"percent": 100, "min_hold_seconds": 3600}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK, "{}", put.text().await.unwrap_or_default());
    let started = http
        .post(format!("{plan}/start"))
        .bearer_auth(ADMIN)
        .json(&json!({"reason": "failover test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::OK);
}

/// Waits until the plan of `key`, read through `replica`, has applied a
/// stage: only a scheduler does that, on whichever replica leads.
async fn until_advanced(http: &reqwest::Client, replica: &Replica, key: &str) -> Value {
    let plan = replica.at(&format!(
        "/api/v1/workspaces/default/flags/{key}/environments/development/rollout"
    ));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let body = http
            .get(&plan)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        if body["stage"].as_u64().is_some() {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scheduler advanced {key}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn when_the_replica_running_the_scheduler_is_killed_another_takes_over_and_advances_rollouts() {
    on_fresh_database("failover", async |database| {
        let quick = ["--evaluation-interval-ms", "100"];
        let http = reqwest::Client::new();
        // A alone: its scheduler leads and applies the first stage.
        let mut a = Replica::start_with(&database, &quick);
        start_rollout(&http, &a, "first").await;
        let first = until_advanced(&http, &a, "first").await;
        assert_eq!(
            (first["status"].as_str(), first["stage"].as_u64()),
            (Some("running"), Some(0))
        );
        // B joins while A leads; then A dies without a chance to let go.
        let b = Replica::start_with(&database, &quick);
        a.kill();
        // Only B is left to run the scheduler: a plan started now advances.
        start_rollout(&http, &b, "second").await;
        let second = until_advanced(&http, &b, "second").await;
        assert_eq!(
            (second["status"].as_str(), second["stage"].as_u64()),
            (Some("running"), Some(0))
        );
        let flag = http
            .get(b.at("/api/v1/workspaces/default/flags/second"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let weights = &flag["flag"]["environments"]["development"]["default_serve"]["split"]["weights"];
        assert_eq!(weights[1]["weight"], 10_000, "treatment at 10%: {flag}");
    });
}
