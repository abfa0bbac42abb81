use reqwest::Method;
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn health_and_readiness() {
    let s = TestServer::start().await;
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["environments"], 3);
}

#[tokio::test]
async fn metrics_count_requests_streams_versions_and_evaluations() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    let token = s.server_token("production").await;
    for plan in ["pro", "free", "pro"] {
        s.call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/a",
            &token,
            Some(json!({"context": {"targetingKey": "u", "plan": plan}})),
        )
        .await;
    }
    let _stream = s.sse("/sdk/v1/stream", &token, None).await;
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"sextant_evaluations_total{workspace="default",environment="production",flag="a",reason="TARGETING_MATCH"} 2"#,
        r#"sextant_evaluations_total{workspace="default",environment="production",flag="a",reason="DEFAULT"} 1"#,
        r#"sextant_http_requests_total{route="/ofrep/v1/evaluate/flags/{key}",method="POST",status="200"} 3"#,
        r#"sextant_sse_clients{stream="sdk"} 1"#,
        r#"sextant_snapshot_version{workspace="default",environment="production"}"#,
        "sextant_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let s = TestServer::start().await;
    let doc: serde_json::Value = s
        .http
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/workspaces/{ws}/flags/{key}/environments/{env}/toggle"].is_object());
    assert!(doc["paths"]["/ofrep/v1/evaluate/flags"].is_object());
    let ui = s.http.get(s.url("/api/docs/")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
}
