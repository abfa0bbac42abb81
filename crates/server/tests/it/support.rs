#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use sextant_server::{AppState, Config};
use sextant_store::Store;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin token every test server starts with.
pub const ADMIN: &str = "sxa_test_admin_token";

/// The database a test server runs on. Tests declared with
/// [`backend_tests!`] run on both: SQLite always, PostgreSQL on a fresh
/// database from `SEXTANT_TEST_POSTGRES_URL` (skipped without it, except
/// with `CI=true`, where it fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares, for each `async fn name(b: Backend)` listed, a module `name`
/// with the tests `sqlite` and `postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// A fresh PostgreSQL database's URL, or `None` (skipped) when no server
/// is configured outside CI.
pub async fn postgres_database() -> Option<String> {
    use sqlx::ConnectOptions;
    let from = |var: &str| std::env::var(var).ok().filter(|u| u.starts_with("postgres"));
    let Some(admin) = from("SEXTANT_TEST_POSTGRES_URL").or_else(|| from("DATABASE_URL")) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no PostgreSQL: set SEXTANT_TEST_POSTGRES_URL (scripts/test does)"
        );
        eprintln!("skipped: needs SEXTANT_TEST_POSTGRES_URL");
        return None;
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "sextant_test_srv_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut conn = admin
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
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
    Some(format!("{}/{name}", &admin[..end]))
}

/// A running server on 127.0.0.1:<ephemeral> backed by a temp SQLite file
/// or a PostgreSQL database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub state: AppState,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the default config.
    pub async fn start() -> TestServer {
        TestServer::start_with(Config::default()).await
    }

    /// Starts a server with `config`.
    pub async fn start_with(config: Config) -> TestServer {
        TestServer::start_on(None, config).await
    }

    /// Starts a server on a fresh database of `backend`; `None` when
    /// PostgreSQL is skipped (see [`Backend`]).
    pub async fn on(backend: Backend) -> Option<TestServer> {
        match backend {
            Backend::Sqlite => Some(TestServer::start().await),
            Backend::Postgres => {
                let url = postgres_database().await?;
                Some(TestServer::start_on(Some(&url), Config::default()).await)
            }
        }
    }

    /// Starts a server on `database` (a temp SQLite file when `None`).
    pub async fn start_on(database: Option<&str>, config: Config) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let url = database.map_or_else(|| db_path(&dir), str::to_owned);
        let store = Store::open(&url).await.unwrap();
        store.bootstrap(Some(ADMIN)).await.unwrap();
        let state = AppState::new(Arc::new(store), config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sextant_server::run(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            http: reqwest::Client::new(),
            state,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn db_path(&self) -> String {
        db_path(&self.dir)
    }

    /// A request with a bearer token.
    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// Sends a JSON request and returns (status, headers, body as JSON or Null).
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let mut r = self.req(method, path, token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        Reply::from(r.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, ADMIN, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, ADMIN, Some(body)).await
    }

    /// Creates a token with the admin token; returns its value.
    pub async fn token(&self, spec: Value) -> String {
        let mut spec = spec;
        if spec.get("name").is_none() {
            spec["name"] = json!(format!("t{}", rand_suffix()));
        }
        let r = self.post("/api/v1/tokens", spec).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// A server-side SDK token for `default`/`env`.
    pub async fn server_token(&self, env: &str) -> String {
        self.token(json!({"kind": "server", "workspace": "default", "environment": env}))
            .await
    }

    /// Creates a boolean flag `key` in `default`, on in `env` with a rule
    /// serving `on` to plan=pro and `off` otherwise.
    pub async fn flag(&self, key: &str, env: &str) {
        let flag = json!({
            "key": key, "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "hypothesis": {"metric": "checkout_conversion", "direction": "increase", "minimum_effect": 0.02,
                "reason": "pro users convert better with it"},
            "environments": {env: {"enabled": true, "off_variation": "off",
                "rules": [{"conditions": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "serve": {"variation": "on"}}],
                "default_serve": {"variation": "off"}}}
        });
        let r = self
            .post("/api/v1/workspaces/default/flags", json!({"flag": flag}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    /// Toggles a flag with the admin token.
    pub async fn toggle(&self, key: &str, env: &str, enabled: bool) -> Reply {
        self.post(
            &format!("/api/v1/workspaces/default/flags/{key}/environments/{env}/toggle"),
            json!({"enabled": enabled, "reason": "test"}),
        )
        .await
    }

    /// Opens an SSE stream.
    pub async fn sse(&self, path: &str, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut r = self.req(Method::GET, path, token);
        if let Some(id) = last_event_id {
            r = r.header("last-event-id", id);
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Sse {
            stream: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// Graceful shutdown that keeps the database; returns its directory.
    pub async fn stop_keeping_data(mut self) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        self.stop().await;
        dir
    }

    /// Graceful shutdown; returns once `run` has returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }
}

pub fn db_path(dir: &TempDir) -> String {
    dir.path().join("sextant.db").to_string_lossy().into_owned()
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A response, read fully.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(r: Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json error with `code`.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }
}

type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// A minimal SSE reader.
pub struct Sse {
    stream: ByteStream,
    buf: String,
}

/// One SSE event (comments/heartbeats skipped).
#[derive(Debug, Default, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

impl Sse {
    /// The next event, or `None` when the stream ends; panics after 5 s.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(Duration::from_secs(5), self.next_inner())
            .await
            .expect("no SSE event within 5 s")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        if any && !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = Some(v.trim().to_owned());
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}
