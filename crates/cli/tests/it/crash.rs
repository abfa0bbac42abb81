//! Crash durability: concurrent writers (flag changes, and event batches
//! with an SDK token) hammer a real `sextant serve`, the
//! process is SIGKILLed at a seeded random moment, restarted on the same
//! database, and every write the server acknowledged must be there, exactly
//! as acknowledged; the write in flight at the kill may or may not be there
//! but never half; and `sextant audit verify` must pass.
//!
//! `SEXTANT_CRASH_TRIALS` (default 5) and `SEXTANT_CRASH_SEED` (default
//! fixed) set the run; `SEXTANT_TEST_DATABASE_URL` points it at another
//! database. The long run (RELIABILITY.md) is the same test with 100 trials.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::process::{ADMIN, Rng, ServerProcess, audit_verify, database_url, env_or};

/// Writers per trial; each owns one flag, so its writes are ordered.
const WRITERS: usize = 4;

/// What one writer knows about its flag.
#[derive(Debug, Clone)]
struct Ledger {
    key: String,
    /// The create was acknowledged (201).
    created: bool,
    /// Acknowledged changes after the create.
    acked: u64,
    /// `development` after the last acknowledged change: `enabled` and the
    /// default serve's variation.
    state: (bool, &'static str),
    /// The change in flight when the connection broke: the state it sets.
    pending: Option<(bool, &'static str)>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            key: String::new(),
            created: false,
            acked: 0,
            state: (false, "off"),
            pending: None,
        }
    }
}

fn flag_body(key: &str) -> Value {
    json!({"flag": {
        "key": key, "kind": "boolean",
        "hypothesis": {"operational": true, "reason": "reliability test"},
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"development": {"enabled": false, "off_variation": "off",
            "default_serve": {"variation": "off"}}}
    }, "reason": "crash test"})
}

/// Step `i` of a writer from state `from`: alternately a toggle (flips
/// `enabled`, keeps the serve) and a whole-targeting replacement (flips
/// `enabled` and sets the default serve to match it). Returns the request
/// and the state it sets.
fn step(
    base: &str,
    key: &str,
    i: u64,
    from: (bool, &'static str),
) -> (String, reqwest::Method, Value, (bool, &'static str)) {
    let flag = format!("{base}/api/v1/workspaces/default/flags/{key}/environments/development");
    let enabled = !from.0;
    if i.is_multiple_of(2) {
        (
            format!("{flag}/toggle"),
            reqwest::Method::POST,
            json!({"enabled": enabled, "reason": "crash test"}),
            (enabled, from.1),
        )
    } else {
        let serve = if enabled { "on" } else { "off" };
        (
            flag,
            reqwest::Method::PUT,
            json!({"targeting": {"enabled": enabled, "off_variation": "off",
                "default_serve": {"variation": serve}}, "reason": "crash test"}),
            (enabled, serve),
        )
    }
}

/// Writes until the server goes away; records every acknowledgement.
async fn writer(http: reqwest::Client, base: String, ledger: Arc<Mutex<Ledger>>, first_ack: Arc<Notify>) {
    let key = ledger.lock().unwrap().key.clone();
    let r = http
        .post(format!("{base}/api/v1/workspaces/default/flags"))
        .bearer_auth(ADMIN)
        .json(&flag_body(&key))
        .send()
        .await;
    match r {
        Ok(r) if r.status() == 201 => ledger.lock().unwrap().created = true,
        Ok(r) => panic!("creating {key} answered {}", r.status()),
        Err(_) => return,
    }
    first_ack.notify_one();
    let mut i = 0u64;
    loop {
        let from = ledger.lock().unwrap().state;
        let (url, method, body, to) = step(&base, &key, i, from);
        ledger.lock().unwrap().pending = Some(to);
        match http.request(method, url).bearer_auth(ADMIN).json(&body).send().await {
            Ok(r) if r.status() == 200 => {
                let mut l = ledger.lock().unwrap();
                l.acked += 1;
                l.state = to;
                l.pending = None;
            }
            Ok(r) => panic!("change {i} of {key} answered {}", r.status()),
            Err(_) => return,
        }
        i += 1;
    }
}

/// What the event writer knows: batches answered 202, and the one in flight.
#[derive(Debug, Default, Clone)]
struct EventLedger {
    acked: Vec<String>,
    pending: Option<String>,
}

/// Events per batch.
const BATCH: usize = 5;

/// Now as RFC 3339 (UTC, whole seconds), without a date crate.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn event_batch(batch_id: &str) -> Value {
    let ts = rfc3339_now();
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({"kind": "track", "event": "purchase", "targeting_key": format!("{batch_id}-u{i}"),
            "value": i as f64, "timestamp": ts})
        })
        .collect();
    json!({"batch_id": batch_id, "events": events})
}

/// Sends event batches until the server goes away; records every 202.
async fn event_writer(
    http: reqwest::Client,
    base: String,
    token: String,
    prefix: String,
    ledger: Arc<Mutex<EventLedger>>,
) {
    for i in 0.. {
        let id = format!("{prefix}-b{i}");
        ledger.lock().unwrap().pending = Some(id.clone());
        let r = http
            .post(format!("{base}/events/v1/batch"))
            .bearer_auth(&token)
            .json(&event_batch(&id))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 202 => {
                let mut l = ledger.lock().unwrap();
                l.acked.push(id);
                l.pending = None;
            }
            // The pipeline is full: not acknowledged, not retried.
            Ok(r) if r.status() == 429 => ledger.lock().unwrap().pending = None,
            Ok(r) => panic!("event batch {id} answered {}", r.status()),
            Err(_) => return,
        }
    }
}

/// Re-sends a batch with its id: 202 `duplicate` means it was stored.
async fn batch_was_stored(http: &reqwest::Client, base: &str, token: &str, id: &str) -> bool {
    let r = http
        .post(format!("{base}/events/v1/batch"))
        .bearer_auth(token)
        .json(&event_batch(id))
        .send()
        .await
        .expect("server answers");
    assert_eq!(r.status(), 202, "re-sending batch {id}");
    let body: Value = r.json().await.unwrap();
    match body["duplicate"].as_bool() {
        Some(true) => true,
        Some(false) => {
            assert_eq!(body["accepted"], BATCH, "batch {id}: {body}");
            false
        }
        None => panic!("batch {id}: {body}"),
    }
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let r = http.get(url).bearer_auth(ADMIN).send().await.expect("server answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Checks one writer's flag against its ledger after a restart. Returns
/// whether the in-flight change turned out to be applied.
async fn check(http: &reqwest::Client, base: &str, l: &Ledger, trial: usize, seed: u64) -> bool {
    let ctx = format!("trial {trial} (seed {seed:#x}), flag {}: ledger {l:?}", l.key);
    let (status, flag) = get(http, format!("{base}/api/v1/workspaces/default/flags/{}", l.key)).await;
    let (_, audit) = get(
        http,
        format!("{base}/api/v1/audit?workspace=default&key={}&limit=1000", l.key),
    )
    .await;
    let entries = audit["entries"].as_array().map_or(0, Vec::len) as u64;
    if !l.created {
        // The create was in flight: all of it or none of it.
        assert!(status == 200 || status == 404, "{ctx}: GET answered {status}");
        assert_eq!(entries, u64::from(status == 200), "{ctx}: audit entries {audit}");
        return status == 200;
    }
    assert_eq!(status, 200, "{ctx}: acknowledged create lost: {flag}");
    // One audit entry per applied write: the create plus each change.
    let applied_pending = match entries {
        n if n == 1 + l.acked => false,
        n if n == 2 + l.acked && l.pending.is_some() => true,
        n => panic!("{ctx}: {n} audit entries for {} acknowledged writes", 1 + l.acked),
    };
    let (enabled, serve) = match (applied_pending, l.pending) {
        (true, Some(p)) => p,
        _ => l.state,
    };
    let dev = &flag["flag"]["environments"]["development"];
    assert_eq!(dev["enabled"], enabled, "{ctx}: stored {dev}");
    assert_eq!(dev["default_serve"]["variation"], serve, "{ctx}: stored {dev}");
    applied_pending
}

/// Runs `trials` kill/restart cycles against `url`; panics on the first
/// lost or torn write, or a broken audit chain.
pub async fn crash_trials(url: &str, dir: &std::path::Path, trials: usize, seed: u64) {
    let mut rng = Rng(seed);
    let log = dir.join("server.log");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Keys must be fresh even on a reused (PostgreSQL) database.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    let (mut acked_total, mut inflight_applied, mut inflight_lost) = (0u64, 0u64, 0u64);
    let (mut batches_acked, mut batches_inflight_stored) = (0u64, 0u64);
    let mut server = ServerProcess::spawn(url, &log, &[]);
    let sdk_token = {
        let r = http
            .post(server.url("/api/v1/tokens"))
            .bearer_auth(ADMIN)
            .json(
                &json!({"name": format!("crash-{run}"), "kind": "server", "workspace": "default",
                "environment": "production"}),
            )
            .send()
            .await
            .expect("server answers");
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    };
    for trial in 0..trials {
        let base = format!("http://{}", server.addr);
        let ledgers: Vec<_> = (0..WRITERS)
            .map(|w| {
                Arc::new(Mutex::new(Ledger {
                    key: format!("crash-{run}-t{trial}-w{w}"),
                    ..Ledger::default()
                }))
            })
            .collect();
        let first_ack = Arc::new(Notify::new());
        let events = Arc::new(Mutex::new(EventLedger::default()));
        let event_task = tokio::spawn(event_writer(
            reqwest::Client::new(),
            base.clone(),
            sdk_token.clone(),
            format!("crash-{run}-t{trial}"),
            events.clone(),
        ));
        let tasks: Vec<_> = ledgers
            .iter()
            .map(|l| {
                // A client per writer: its own connection, like separate users.
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                tokio::spawn(writer(http, base.clone(), l.clone(), first_ack.clone()))
            })
            .collect();
        first_ack.notified().await;
        tokio::time::sleep(Duration::from_millis(rng.range(1, 250))).await;
        server.kill9();
        for t in tasks {
            t.await.expect("writer panicked");
        }
        event_task.await.expect("event writer panicked");

        let (ok, out) = audit_verify(url);
        assert!(
            ok,
            "trial {trial} (seed {seed:#x}): audit verify failed after kill -9:\n{out}"
        );

        server = ServerProcess::spawn(url, &log, &[]);
        let base = format!("http://{}", server.addr);
        for l in &ledgers {
            let l = l.lock().unwrap().clone();
            acked_total += u64::from(l.created) + l.acked;
            let had_pending = l.pending.is_some() || !l.created;
            let applied = check(&http, &base, &l, trial, seed).await;
            if had_pending {
                if applied {
                    inflight_applied += 1;
                } else {
                    inflight_lost += 1;
                }
            }
        }
        let events = events.lock().unwrap().clone();
        for id in &events.acked {
            assert!(
                batch_was_stored(&http, &base, &sdk_token, id).await,
                "trial {trial} (seed {seed:#x}): acknowledged event batch {id} lost"
            );
        }
        batches_acked += events.acked.len() as u64;
        if let Some(id) = &events.pending {
            // Stored whole before the kill, or not at all (then stored now).
            batches_inflight_stored += u64::from(batch_was_stored(&http, &base, &sdk_token, id).await);
        }
    }
    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exited with {status}");
    let (ok, out) = audit_verify(url);
    assert!(ok, "audit verify failed at the end:\n{out}");
    println!(
        "crash durability: {trials} trials (seed {seed:#x}), {acked_total} acknowledged flag writes, all present; \
         writes in flight at the kill: {inflight_applied} applied whole, {inflight_lost} absent; \
         {batches_acked} acknowledged event batches ({} events), all present; \
         {batches_inflight_stored} in-flight batches found stored; audit chain intact",
        batches_acked * BATCH as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let trials = env_or("SEXTANT_CRASH_TRIALS", 5usize);
    let seed = env_or("SEXTANT_CRASH_SEED", 0x005E_7A17_u64);
    crash_trials(&url, dir.path(), trials, seed).await;
}

/// The PostgreSQL server the tests may use: `SEXTANT_TEST_POSTGRES_URL`
/// (set by scripts/test) or a `postgres://` `DATABASE_URL`. Without one
/// the test fails under `CI=true` and is skipped otherwise.
fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("SEXTANT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")));
    if url.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no PostgreSQL: set SEXTANT_TEST_POSTGRES_URL (scripts/test does)"
        );
        eprintln!("skipped: the PostgreSQL crash test needs SEXTANT_TEST_POSTGRES_URL");
    }
    url
}

/// A fresh database on the server of `admin`; returns its URL.
async fn fresh_postgres_database(admin: &str) -> String {
    use sqlx::ConnectOptions;
    let name = format!("sextant_crash_{}", std::process::id());
    let options: sqlx::postgres::PgConnectOptions = admin.parse().expect("a PostgreSQL URL");
    let mut conn = options.connect().await.expect("PostgreSQL answers");
    // Identifiers cannot be bound; `name` is built from a number above.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .expect("create the test database");
    }
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_write_on_postgresql() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_postgres_database(&admin).await;
    let trials = env_or("SEXTANT_CRASH_TRIALS", 3usize);
    let seed = env_or("SEXTANT_CRASH_SEED", 0x0050_57C0_u64);
    crash_trials(&url, dir.path(), trials, seed).await;
}
