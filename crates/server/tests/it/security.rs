//! Secrets at rest, body size limits and per-token rate limits.

use reqwest::Method;
use serde_json::json;
use sextant_server::Config;
use sextant_server::ratelimit::RateLimit;
use sha2::{Digest, Sha256};

use crate::support::{ADMIN, Reply, TestServer};

/// Every byte the database keeps on disk: the file, its WAL and shared memory.
fn database_bytes(s: &TestServer) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{}{suffix}", s.db_path())) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn tokens_are_stored_only_as_their_sha256() {
    let s = TestServer::start().await;
    let tokens = [
        s.token(json!({"kind": "admin", "role": "viewer"})).await,
        s.server_token("production").await,
        s.token(json!({"kind": "client", "workspace": "default", "environment": "staging"}))
            .await,
    ];
    // Use them once, so any cache that could write them back has run.
    for t in &tokens[..1] {
        assert_eq!(s.call(Method::GET, "/api/v1/workspaces", t, None).await.status, 200);
    }
    let disk = database_bytes(&s);
    assert!(!disk.is_empty());
    for secret in tokens.iter().map(String::as_str).chain([ADMIN]) {
        assert!(!contains(&disk, secret), "a token is stored in clear");
        let digest = hex::encode(Sha256::digest(secret.as_bytes()));
        assert!(contains(&disk, &digest), "the token's SHA-256 is not stored");
    }
}

#[tokio::test]
async fn a_huge_admin_body_gets_413_problem_json() {
    let s = TestServer::start().await;
    let huge = format!("{{\"flag\": {{\"key\": \"{}\"}}}}", "x".repeat(3 << 20));
    let r = s
        .req(Method::POST, "/api/v1/workspaces/default/flags", ADMIN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    Reply::from(r).await.assert_problem(413, "body_too_large");
    assert_eq!(s.get("/api/v1/workspaces/default/flags").await.body["items"], json!([]));
}

#[tokio::test]
async fn a_huge_ofrep_body_gets_413_with_an_ofrep_error() {
    let s = TestServer::start().await;
    let token = s.server_token("production").await;
    let huge = format!("{{\"context\": {{\"blob\": \"{}\"}}}}", "x".repeat(2 << 20));
    for path in ["/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/a"] {
        let r = s
            .req(Method::POST, path, &token)
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        let r = Reply::from(r).await;
        assert_eq!(r.status, 413, "{path}");
        assert_eq!(r.body["errorCode"], "PARSE_ERROR", "{path}");
    }
}

#[tokio::test]
async fn a_token_over_its_rate_limit_gets_429_with_retry_after_and_other_tokens_do_not() {
    // One request a second after a burst of two: the third of twenty
    // back-to-back requests is refused unless the twenty took 18 s.
    let s = TestServer::start_with(Config {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..Config::default()
    })
    .await;
    let viewer = s.token(json!({"kind": "admin", "role": "viewer"})).await;
    let sdk = s.server_token("production").await;
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let r = s.call(Method::GET, "/api/v1/workspaces", &viewer, None).await;
        statuses.push(r.status);
        if r.status == 429 && refused.is_none() {
            refused = Some(r);
        }
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    let refused = refused.expect("no request was rate limited");
    refused.assert_problem(429, "rate_limited");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);

    // The SDK token has its own bucket, and OFREP answers in its own format.
    let mut ofrep = Vec::new();
    for _ in 0..20 {
        let r = s
            .call(
                Method::POST,
                "/ofrep/v1/evaluate/flags",
                &sdk,
                Some(json!({"context": {"targetingKey": "u"}})),
            )
            .await;
        ofrep.push(r);
    }
    assert_eq!(ofrep[0].status, 200);
    let limited = ofrep
        .iter()
        .find(|r| r.status == 429)
        .expect("OFREP was not rate limited");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.body["errorCode"], "GENERAL");
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("sextant_rate_limited_total 0\n"), "{metrics}");
}

#[tokio::test]
async fn unknown_tokens_do_not_grow_the_rate_limit_table() {
    let s = TestServer::start().await;
    for i in 0..50 {
        let r = s
            .call(Method::GET, "/api/v1/workspaces", &format!("sxa_guess_{i}"), None)
            .await;
        r.assert_problem(401, "token_invalid");
    }
    assert!(s.state.limiter.as_ref().unwrap().is_empty());
}

#[tokio::test]
async fn a_huge_event_batch_gets_413_problem_json_and_stores_nothing() {
    let s = TestServer::start().await;
    let token = s.server_token("production").await;
    // 9 MiB of one string: over the 8 MiB limit of an event batch.
    let huge = format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(9 << 20));
    let r = s
        .req(Method::POST, "/events/v1/batch", &token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    Reply::from(r).await.assert_problem(413, "body_too_large");
    assert_eq!(s.state.store.event_totals(None).await.unwrap().batches, 0);
}

#[tokio::test]
async fn an_sdk_token_over_its_rate_limit_is_refused_on_the_snapshot_and_event_routes_too() {
    // Burst of two, one per second: of twenty back-to-back snapshot
    // requests some are refused unless they took 18 s; the bucket is then
    // empty, so the event batch right after is refused as well.
    let s = TestServer::start_with(Config {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..Config::default()
    })
    .await;
    let sdk = s.server_token("production").await;
    let mut refused = None;
    for _ in 0..20 {
        let r = s.call(Method::GET, "/sdk/v1/snapshot", &sdk, None).await;
        if r.status == 429 {
            refused = Some(r);
        }
    }
    let refused = refused.expect("the snapshot route was not rate limited");
    refused.assert_problem(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!({"events": [{"kind": "track", "event": "e", "targeting_key": "u", "timestamp": now}]});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = s
            .call(Method::POST, "/events/v1/batch", &sdk, Some(batch.clone()))
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            r.assert_problem(429, "rate_limited");
            assert!(r.header("retry-after").is_some());
        }
    }
    assert!(
        statuses.contains(&429),
        "event batches were not rate limited: {statuses:?}"
    );
}

#[tokio::test]
async fn dashboard_cookies_are_secure_httponly_and_samesite_strict_behind_https() {
    let s = TestServer::start_with(Config {
        public_url: Some("https://flags.example.com".into()),
        ..Config::default()
    })
    .await;
    let r = s.http.get(s.url("/login")).send().await.unwrap();
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(!cookies.is_empty(), "the sign-in form sets its CSRF cookie");
    for c in &cookies {
        for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
            assert!(c.split("; ").any(|part| part == flag), "{flag} missing: {c}");
        }
    }
}
