use std::time::Duration;

use sextant_sdk::{Client, Context, ErrorCode, Reason, Source, Status};

use crate::support::{TestServer, closed_port, pro_flag};

fn pro() -> Context {
    Context::with_key("u1").attr("plan", "pro")
}

#[tokio::test]
async fn without_the_server_the_client_starts_from_the_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let server = TestServer::start().await;
    server.create_flag(pro_flag("a", "production")).await;
    let token = server.server_token("production").await;
    let online = Client::builder(server.url(), &token)
        .cache_file(&cache)
        .events(false)
        .build()
        .await
        .unwrap();
    let version = online.version();
    online.shutdown().await;
    let url = server.url();
    server.stop().await;

    let client = Client::builder(url, &token)
        .environment("production")
        .cache_file(&cache)
        .timeout(Duration::from_secs(5))
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(client.source(), Some(Source::Cache));
    assert_eq!(client.status(), Status::Stale);
    assert_eq!(client.version(), version);
    assert!(client.bool("a", &pro(), false));
}

const UNLEASH: &str = r#"{"version": 1, "features": [
    {"name": "from-unleash", "enabled": true, "strategies": [{"name": "default"}]}
]}"#;

const FLAGD: &str = r#"{"flags": {
    "from-flagd": {"state": "ENABLED", "variants": {"big": 10, "small": 1}, "defaultVariant": "big"}
}}"#;

#[tokio::test]
async fn without_the_server_the_client_starts_from_a_bootstrap_file_in_any_format() {
    let dir = tempfile::tempdir().unwrap();
    let unleash = dir.path().join("unleash.json");
    let flagd = dir.path().join("flagd.json");
    std::fs::write(&unleash, UNLEASH).unwrap();
    std::fs::write(&flagd, FLAGD).unwrap();

    let client = Client::builder(closed_port().await, "sxs_token")
        .environment("production")
        .bootstrap_file(&unleash)
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(
        (client.source(), client.status()),
        (Some(Source::Bootstrap), Status::Stale)
    );
    // Unleash features import as JSON flags holding what an Unleash client answers.
    let value = client.json("from-unleash", &pro(), serde_json::Value::Null);
    assert_eq!(value["enabled"], true);

    let client = Client::builder(closed_port().await, "sxs_token")
        .bootstrap_file(&flagd)
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(client.number("from-flagd", &pro(), 0.0), 10.0);
}

#[tokio::test]
async fn a_usable_cache_wins_over_the_bootstrap_file_and_a_broken_one_falls_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("flagd.json");
    std::fs::write(&bootstrap, FLAGD).unwrap();
    let cache = dir.path().join("cache.json");
    std::fs::write(&cache, b"{ truncated").unwrap();

    let client = Client::builder(closed_port().await, "sxs_token")
        .cache_file(&cache)
        .bootstrap_file(&bootstrap)
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(client.source(), Some(Source::Bootstrap));

    let body = serde_json::json!({"environment": "production", "version": 3,
        "document": {"flags": [pro_flag("cached", "production")]}});
    std::fs::write(&cache, body.to_string()).unwrap();
    let client = Client::builder(closed_port().await, "sxs_token")
        .cache_file(&cache)
        .bootstrap_file(&bootstrap)
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!((client.source(), client.version()), (Some(Source::Cache), Some(3)));
    assert!(client.bool("cached", &pro(), false));
}

#[tokio::test]
async fn with_nothing_available_every_flag_serves_its_default_with_error_general() {
    let client = Client::builder(closed_port().await, "sxs_token")
        .bootstrap_file("/nonexistent/flags.yaml")
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(client.status(), Status::NotReady);
    assert_eq!(client.source(), None);
    assert!(client.bool("anything", &pro(), true));
    assert_eq!(client.string("anything", &pro(), "fallback"), "fallback");
    assert_eq!(client.number("anything", &pro(), 2.5), 2.5);
    assert_eq!(
        client.json("anything", &pro(), serde_json::json!({"k": 1})),
        serde_json::json!({"k": 1})
    );
    let d = client.number_details("anything", &pro(), 2.5);
    assert_eq!(
        (d.value, d.reason, d.error),
        (2.5, Reason::Error, Some(ErrorCode::General))
    );
}

#[tokio::test(start_paused = true)]
async fn build_returns_after_its_timeout_when_the_server_never_answers() {
    // Accepts connections (the kernel backlog does) but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let started = tokio::time::Instant::now();
    let client = Client::builder(url, "sxs_token")
        .timeout(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(3600))
        .events(false)
        .build()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(client.status(), Status::NotReady);
    assert!(client.bool("a", &pro(), true));
    drop(listener);
}

#[tokio::test]
async fn bad_configuration_is_an_error_not_a_panic() {
    let err = Client::builder("not a url", "t").build().await.unwrap_err();
    assert!(err.to_string().contains("invalid server URL"), "{err}");
    let err = Client::builder("http://127.0.0.1:1", "").build().await.unwrap_err();
    assert!(matches!(err, sextant_sdk::BuildError::InvalidToken));
    let err = Client::builder("http://127.0.0.1:1", "bad\ntoken")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, sextant_sdk::BuildError::InvalidToken));
}

#[tokio::test]
async fn a_client_started_offline_switches_to_the_server_when_it_comes_up() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("a", "production")).await;
    let token = server.server_token("production").await;
    let url = server.url();
    let (dir, addr) = server.stop().await;

    // The bootstrap file has `a` off for everyone.
    let files = tempfile::tempdir().unwrap();
    let bootstrap = files.path().join("flags.json");
    let mut off = pro_flag("a", "production");
    off["environments"]["production"]["enabled"] = serde_json::json!(false);
    std::fs::write(&bootstrap, serde_json::json!({"flags": [off]}).to_string()).unwrap();
    let client = Client::builder(url, &token)
        .bootstrap_file(&bootstrap)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .events(false)
        .build()
        .await
        .unwrap();
    assert_eq!(client.source(), Some(Source::Bootstrap));
    assert!(!client.bool("a", &pro(), true));
    let changed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = changed.clone();
    client.on_change(move |keys| sink.lock().unwrap().extend(keys.to_vec()));

    let _server = TestServer::restart(dir, addr).await;
    assert!(client.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(client.source(), Some(Source::Server));
    assert!(client.bool("a", &pro(), false));
    assert_eq!(*changed.lock().unwrap(), ["a"]);
}
