use std::sync::{Arc, Mutex};
use std::time::Duration;

use sextant_sdk::{Client, ClientEvent, Context, ErrorCode, Reason, Source, Status};
use sextant_store::{ChangeMeta, Store};

use crate::support::{TestServer, db_path, eventually, pro_flag};

fn pro() -> Context {
    Context::with_key("u1").attr("plan", "pro")
}

fn free() -> Context {
    Context::with_key("u2").attr("plan", "free")
}

async fn client(server: &TestServer, token: &str) -> Client {
    Client::builder(server.url(), token)
        .environment("production")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .events(false)
        .build()
        .await
        .unwrap()
}

/// Collects what `on_change` reports.
fn record_changes(client: &Client) -> Arc<Mutex<Vec<Vec<String>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    client.on_change(move |keys| sink.lock().unwrap().push(keys.to_vec()));
    seen
}

#[tokio::test]
async fn the_initial_snapshot_is_evaluated_in_process() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("new-checkout", "production")).await;
    let token = server.server_token("production").await;
    let client = client(&server, &token).await;

    assert_eq!(client.status(), Status::Ready);
    assert_eq!(client.source(), Some(Source::Server));
    assert!(client.bool("new-checkout", &pro(), false));
    assert!(!client.bool("new-checkout", &free(), true));

    let details = client.bool_details("new-checkout", &pro(), false);
    assert_eq!(details.reason, Reason::TargetingMatch);
    assert_eq!(details.variation.as_deref(), Some("on"));
    assert_eq!(details.rule, Some(0));

    let missing = client.bool_details("nope", &pro(), true);
    assert_eq!(
        (missing.value, missing.reason, missing.error),
        (true, Reason::Error, Some(ErrorCode::FlagNotFound))
    );
    let mismatch = client.string_details("new-checkout", &pro(), "x");
    assert_eq!(
        (mismatch.value.as_str(), mismatch.error),
        ("x", Some(ErrorCode::TypeMismatch))
    );
    assert_eq!(client.flag_keys(), ["new-checkout"]);
}

#[tokio::test]
async fn a_change_through_the_admin_api_reaches_the_client_and_fires_on_change() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("new-checkout", "production")).await;
    server.create_flag(pro_flag("other", "production")).await;
    let token = server.server_token("production").await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("sextant.json");
    let client = Client::builder(server.url(), &token)
        .cache_file(&cache)
        .events(false)
        .build()
        .await
        .unwrap();
    let changes = record_changes(&client);
    let mut events = client.subscribe();
    let before = client.version().unwrap();

    server.toggle("new-checkout", "production", false).await;
    eventually("the change to reach on_change", || !changes.lock().unwrap().is_empty()).await;

    assert_eq!(*changes.lock().unwrap(), [vec!["new-checkout".to_owned()]]);
    let details = client.bool_details("new-checkout", &pro(), true);
    assert_eq!((details.value, details.reason), (false, Reason::Disabled));
    assert!(client.bool("other", &pro(), false), "other flags are untouched");
    assert_eq!(client.version(), Some(before + 1));
    assert_eq!(
        events.recv().await.unwrap(),
        ClientEvent::FlagsChanged(vec!["new-checkout".to_owned()].into())
    );

    // The cache on disk follows every update.
    let cached_version = || {
        let text = std::fs::read(&cache).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["version"].as_u64())
    };
    eventually("the cache to be rewritten", || cached_version() == Some(before + 1)).await;
}

#[tokio::test]
async fn a_panicking_listener_does_not_stop_updates() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("a", "production")).await;
    let token = server.server_token("production").await;
    let client = client(&server, &token).await;
    client.on_change(|_| panic!("listener bug"));
    let changes = record_changes(&client);

    server.toggle("a", "production", false).await;
    eventually("the first change", || changes.lock().unwrap().len() == 1).await;
    server.toggle("a", "production", true).await;
    eventually("the second change", || changes.lock().unwrap().len() == 2).await;
    assert!(client.bool("a", &pro(), false));
}

#[tokio::test]
async fn the_client_reconnects_after_a_restart_and_catches_up_on_missed_changes() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("a", "production")).await;
    let token = server.server_token("production").await;
    let client = client(&server, &token).await;
    let changes = record_changes(&client);
    let mut events = client.subscribe();

    let (dir, addr) = server.stop().await;
    loop {
        if events.recv().await.unwrap() == ClientEvent::Status(Status::Stale) {
            break;
        }
    }
    assert!(client.bool("a", &pro(), false), "the last snapshot is still served");

    // A change committed while the server is down.
    {
        let store = Store::open(&db_path(&dir)).await.unwrap();
        let meta = ChangeMeta::new("tester", Some("while down".into()));
        store
            .toggle("default", "a", "production", None, false, &meta)
            .await
            .unwrap();
        store.close().await;
    }
    let server = TestServer::restart(dir, addr).await;
    eventually("the missed change", || !changes.lock().unwrap().is_empty()).await;
    assert!(!client.bool("a", &pro(), true));
    assert!(client.wait_ready(Duration::from_secs(10)).await);

    // And the new stream carries later changes.
    server.toggle("a", "production", true).await;
    eventually("a change after the restart", || changes.lock().unwrap().len() == 2).await;
    assert!(client.bool("a", &pro(), false));
}

#[tokio::test]
async fn a_token_the_server_refuses_gives_status_error_and_defaults() {
    let server = TestServer::start().await;
    let client = Client::builder(server.url(), "sxs_not_a_token")
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(client.status(), Status::Error);
    let d = client.bool_details("a", &pro(), true);
    assert_eq!(
        (d.value, d.reason, d.error),
        (true, Reason::Error, Some(ErrorCode::General))
    );
}

#[test]
fn the_client_can_be_shared_across_threads_and_tasks() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<Client>();
}
