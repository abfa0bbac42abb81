use reqwest::Method;
use serde_json::json;
use sextant_server::Config;

use crate::support::{ADMIN, Reply, TestServer};

async fn eval(s: &TestServer, token: &str, key: &str, body: serde_json::Value) -> Reply {
    s.call(
        Method::POST,
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        token,
        Some(body),
    )
    .await
}

#[tokio::test]
async fn single_evaluation_returns_value_reason_and_variant() {
    let s = TestServer::start().await;
    s.flag("checkout", "production").await;
    let client = s
        .token(json!({"kind": "client", "workspace": "default", "environment": "production"}))
        .await;
    let r = eval(
        &s,
        &client,
        "checkout",
        json!({"context": {"targetingKey": "u1", "plan": "pro"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"key": "checkout", "value": true, "reason": "TARGETING_MATCH", "variant": "on"})
    );
    let r = eval(&s, &client, "checkout", json!({"context": {"targetingKey": "u1"}})).await;
    assert_eq!(r.body["reason"], "UNKNOWN");
    assert_eq!(r.body["metadata"]["sextant.reason"], "DEFAULT");
    assert_eq!(r.body["value"], false);
}

#[tokio::test]
async fn errors_follow_the_protocol() {
    let s = TestServer::start().await;
    s.flag("checkout", "production").await;
    let token = s.server_token("production").await;
    let r = eval(&s, &token, "nope", json!({"context": {"targetingKey": "u1"}})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(r.body["key"], "nope");
    let r = eval(&s, &token, "checkout", json!({"context": [1]})).await;
    assert_eq!((r.status, r.body["errorCode"].as_str()), (400, Some("INVALID_CONTEXT")));
    let r = eval(&s, &token, "checkout", json!({"context": {"targetingKey": 7}})).await;
    assert_eq!((r.status, r.body["errorCode"].as_str()), (400, Some("INVALID_CONTEXT")));
    let raw = s
        .req(Method::POST, "/ofrep/v1/evaluate/flags/checkout", &token)
        .body("{oops")
        .send()
        .await
        .unwrap();
    let r = Reply::from(raw).await;
    assert_eq!((r.status, r.body["errorCode"].as_str()), (400, Some("PARSE_ERROR")));
    assert_eq!(eval(&s, "", "checkout", json!({"context": {}})).await.status, 401);
    assert_eq!(
        eval(&s, "sxc_unknown", "checkout", json!({"context": {}})).await.status,
        401
    );
    assert_eq!(eval(&s, ADMIN, "checkout", json!({"context": {}})).await.status, 403);
    // X-API-Key works too.
    let r = s
        .http
        .post(s.url("/ofrep/v1/evaluate/flags/checkout"))
        .header("x-api-key", &token)
        .json(&json!({"context": {"targetingKey": "u"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_disabled_flag_without_off_variation_defers_to_the_code_default() {
    let s = TestServer::start().await;
    let flag = json!({"key": "dark", "kind": "string", "variations": [{"key": "a", "value": "A"}],
        "hypothesis": {"operational": true, "reason": "theme switch"}});
    s.post("/api/v1/workspaces/default/flags", json!({"flag": flag})).await;
    let token = s.server_token("production").await;
    let r = eval(&s, &token, "dark", json!({"context": {"targetingKey": "u"}})).await;
    assert_eq!(r.body, json!({"key": "dark", "reason": "DISABLED"}));
}

#[tokio::test]
async fn bulk_evaluation_has_etag_304_and_event_streams() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    s.flag("b", "production").await;
    let token = s
        .token(json!({"kind": "client", "workspace": "default", "environment": "production"}))
        .await;
    let body = json!({"context": {"targetingKey": "u1", "plan": "pro"}});
    let r = s
        .call(Method::POST, "/ofrep/v1/evaluate/flags", &token, Some(body.clone()))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["flags"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["flags"][0]["value"], true);
    let stream = &r.body["eventStreams"][0];
    assert_eq!(stream["type"], "sse");
    assert!(stream["url"].as_str().unwrap().contains("/ofrep/v1/events?token="));
    let etag = r.header("etag").unwrap().to_owned();

    let again = s
        .req(Method::POST, "/ofrep/v1/evaluate/flags", &token)
        .header("if-none-match", &etag)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Another context is another ETag.
    let other = s
        .req(Method::POST, "/ofrep/v1/evaluate/flags", &token)
        .header("if-none-match", &etag)
        .json(&json!({"context": {"targetingKey": "u2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    // A change makes the old ETag stale.
    s.toggle("a", "production", false).await;
    let changed = s
        .req(Method::POST, "/ofrep/v1/evaluate/flags?flagConfigEtag=x", &token)
        .header("if-none-match", &etag)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed = Reply::from(changed).await;
    assert_eq!(changed.body["flags"][0]["reason"], "DISABLED");

    let bad = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            &token,
            Some(json!({"context": "x"})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["errorCode"].as_str()),
        (400, Some("INVALID_CONTEXT"))
    );
}

#[tokio::test]
async fn overload_answers_429_with_retry_after() {
    let s = TestServer::start_with(Config {
        max_inflight_evaluations: 0,
        ..Config::default()
    })
    .await;
    let token = s.server_token("production").await;
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            &token,
            Some(json!({"context": {}})),
        )
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn cors_follows_the_client_tokens_allowed_origins() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    let token = s
        .token(
            json!({"kind": "client", "workspace": "default", "environment": "production",
            "allowed_origins": ["https://app.example.com"]}),
        )
        .await;
    let pre = s
        .http
        .request(Method::OPTIONS, s.url("/ofrep/v1/evaluate/flags"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "https://app.example.com");
    let evil = s
        .http
        .request(Method::OPTIONS, s.url("/ofrep/v1/evaluate/flags"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());

    let post = |origin: &'static str| {
        s.req(Method::POST, "/ofrep/v1/evaluate/flags", &token)
            .header("origin", origin)
            .json(&json!({"context": {"targetingKey": "u"}}))
            .send()
    };
    let ok = post("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(
        ok.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ETag")
    );
    let no = post("https://evil.example").await.unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_event_stream_sends_refetch_messages_with_ids() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    let token = s
        .token(json!({"kind": "client", "workspace": "default", "environment": "production"}))
        .await;
    let r = s
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            &token,
            Some(json!({"context": {}})),
        )
        .await;
    let url = r.body["eventStreams"][0]["url"].as_str().unwrap().to_owned();
    let path = url.split_once(&s.addr.to_string()).unwrap().1.to_owned();
    // EventSource cannot send headers: the token is in the URL.
    let mut events = s.sse(&path, "", None).await;
    s.toggle("a", "production", false).await;
    let e = events.next().await.unwrap();
    assert_eq!(e.event.as_deref(), Some("message"));
    assert_eq!(e.json()["type"], "refetchEvaluation");
    let id: u64 = e.id.clone().unwrap().parse().unwrap();
    assert!(e.json()["etag"].as_str().unwrap().ends_with(&format!("-{id}\"")));

    // Resuming from an older id gets a message at once.
    let mut resumed = s.sse(&path, "", Some(&(id - 1).to_string())).await;
    assert_eq!(
        resumed.next().await.unwrap().id.as_deref(),
        Some(id.to_string().as_str())
    );
}
