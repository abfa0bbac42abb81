#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sextant_server::{AppState, Config};
use sextant_store::Store;
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The admin token every test server starts with.
pub const ADMIN: &str = "sxa_sdk_test_admin";

/// Waits for `condition` (checked every 10 ms), failing after 10 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real Sextant server on 127.0.0.1, backed by a SQLite file in a
/// temp dir that survives restarts.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: Arc<TempDir>,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        TestServer::start_in(dir, "127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_in(dir: Arc<TempDir>, addr: SocketAddr) -> TestServer {
        let store = Store::open(&db_path(&dir)).await.unwrap();
        store.bootstrap(Some(ADMIN)).await.unwrap();
        let config = Config {
            heartbeat: Duration::from_secs(1),
            ..Config::default()
        };
        let state = AppState::new(Arc::new(store), config).await.unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sextant_server::run(listener, state, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The base URL the SDK is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; returns the data dir and address for a restart.
    pub async fn stop(mut self) -> (Arc<TempDir>, SocketAddr) {
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
        (self.dir.clone(), self.addr)
    }

    /// Starts again on the same port with the same database.
    pub async fn restart(dir: Arc<TempDir>, addr: SocketAddr) -> TestServer {
        TestServer::start_in(dir, addr).await
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{}", self.url(), path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A server-side SDK token for `default`/`env`.
    pub async fn server_token(&self, env: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/tokens",
                json!({"name": format!("sdk-{env}"), "kind": "server", "workspace": "default", "environment": env}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a flag in `default`; test flags declare themselves operational
    /// unless they carry a hypothesis.
    pub async fn create_flag(&self, mut flag: Value) {
        if flag.get("hypothesis").is_none() {
            flag["hypothesis"] = json!({"operational": true, "reason": "sdk test flag"});
        }
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/workspaces/default/flags",
                json!({"flag": flag}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Turns a flag on or off.
    pub async fn toggle(&self, key: &str, env: &str, enabled: bool) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/workspaces/default/flags/{key}/environments/{env}/toggle"),
                json!({"enabled": enabled, "reason": "test"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

pub fn db_path(dir: &TempDir) -> String {
    dir.path().join("sextant.db").to_string_lossy().into_owned()
}

/// A boolean flag on in `env`: `on` for plan=pro, `off` otherwise.
pub fn pro_flag(key: &str, env: &str) -> Value {
    json!({
        "key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {env: {"enabled": true, "off_variation": "off",
            "rules": [{"conditions": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "serve": {"variation": "on"}}],
            "default_serve": {"variation": "off"}}}
    })
}

/// A boolean flag that splits every unit 50/50 (units are in an experiment).
pub fn split_flag(key: &str, env: &str) -> Value {
    json!({
        "key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {env: {"enabled": true, "off_variation": "off",
            "default_serve": {"split": {"weights": [{"variation": "on", "weight": 50000}, {"variation": "off", "weight": 50000}]}}}}
    })
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// One request the event sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub authorization: Option<String>,
    pub body: Value,
    /// Tokio time of arrival (virtual under paused time).
    pub at: tokio::time::Instant,
}

#[derive(Default)]
struct SinkState {
    received: Mutex<Vec<Received>>,
    /// Scripted answers (status, Retry-After); empty = 202.
    script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    /// Answer when the script is empty.
    fallback: Mutex<Option<u16>>,
    count: Option<watch::Sender<usize>>,
}

/// An in-test ingestion endpoint on 127.0.0.1 that records every batch.
pub struct EventSink {
    pub addr: SocketAddr,
    state: Arc<SinkState>,
    count: watch::Receiver<usize>,
}

async fn ingest(State(state): State<Arc<SinkState>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    state.received.lock().unwrap().push(Received {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        at: tokio::time::Instant::now(),
    });
    let n = state.received.lock().unwrap().len();
    if let Some(count) = &state.count {
        count.send_replace(n);
    }
    let answer = state.script.lock().unwrap().pop_front();
    let (status, retry_after) = answer.unwrap_or((state.fallback.lock().unwrap().unwrap_or(202), None));
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(after) = retry_after {
        response.headers_mut().insert("retry-after", after.parse().unwrap());
    }
    response
}

impl EventSink {
    pub async fn start() -> EventSink {
        let (tx, count) = watch::channel(0);
        let state = Arc::new(SinkState {
            count: Some(tx),
            ..SinkState::default()
        });
        let app = Router::new()
            .route("/events/v1/batch", post(ingest))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        EventSink { addr, state, count }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues answers for the next requests.
    pub fn answer(&self, status: u16, retry_after: Option<&'static str>) {
        self.state.script.lock().unwrap().push_back((status, retry_after));
    }

    /// The answer once the script is used up.
    pub fn always(&self, status: u16) {
        *self.state.fallback.lock().unwrap() = Some(status);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Every event received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.received()
            .iter()
            .flat_map(|r| r.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until at least `n` requests arrived (10 s at most).
    pub async fn wait_requests(&self, n: usize) {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("expected {n} requests, got {}", self.received().len()))
            .unwrap();
    }
}
