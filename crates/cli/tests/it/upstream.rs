//! Upstream loss: an SDK client keeps serving its last snapshot while the
//! server is killed, and resyncs on its own once the server is back.

use std::time::Duration;

use serde_json::json;
use sextant_core::Context;
use sextant_sdk::{Client, Status};

use crate::process::{ADMIN, ServerProcess, database_url};

/// Polls `cond` every 50 ms for at most `limit`; the limit only bounds a
/// hung test, it is not a latency claim.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_serves_its_last_snapshot_while_the_server_is_down_and_resyncs_after() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let log = dir.path().join("server.log");
    let server = ServerProcess::spawn(&url, &log, &[]);
    let addr = server.addr;
    let http = reqwest::Client::new();
    let flag = json!({"flag": {"key": "checkout", "kind": "boolean",
        "hypothesis": {"operational": true, "reason": "reliability test"},
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {"enabled": true, "off_variation": "off",
            "default_serve": {"variation": "on"}}}}});
    let r = http
        .post(server.url("/api/v1/workspaces/default/flags"))
        .bearer_auth(ADMIN)
        .json(&flag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(server.url("/api/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "backend", "kind": "server", "workspace": "default", "environment": "production"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let client = Client::builder(format!("http://{addr}"), token)
        .events(false)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    assert!(client.wait_ready(Duration::from_secs(20)).await);
    let ctx = Context::from_json(json!({"targetingKey": "user-1"})).unwrap();
    assert!(client.bool("checkout", &ctx, false));
    let version = client.version();

    // Upstream gone without a goodbye.
    server.kill9();
    assert!(
        eventually(Duration::from_secs(30), || client.status() == Status::Stale).await,
        "the client never noticed the server was gone (status {:?})",
        client.status()
    );
    assert!(
        client.bool("checkout", &ctx, false),
        "the last snapshot is still served"
    );
    assert_eq!(client.version(), version);

    // Back on the same address and database; a kill switch meanwhile.
    let server = ServerProcess::spawn_at(&addr.to_string(), &url, &log, &[]);
    let r = http
        .post(server.url("/api/v1/workspaces/default/flags/checkout/environments/production/toggle"))
        .bearer_auth(ADMIN)
        .json(&json!({"enabled": false, "reason": "upstream test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        eventually(Duration::from_secs(30), || !client.bool("checkout", &ctx, true)).await,
        "the client did not resync after the server came back"
    );
    assert!(eventually(Duration::from_secs(10), || client.status() == Status::Ready).await);
    assert!(client.version() > version);
    assert!(server.terminate().success());
}
