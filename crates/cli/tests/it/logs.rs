//! No secret in logs: the server's whole log at `trace`, in both formats,
//! never contains the admin token or an SDK token, however they are sent.

use serde_json::{Value, json};

use crate::process::{ADMIN, ServerProcess, database_url};

async fn exercise(server: &ServerProcess) -> Vec<String> {
    let http = reqwest::Client::new();
    let create = |spec: Value| {
        let http = http.clone();
        let url = server.url("/api/v1/tokens");
        async move {
            let r = http.post(url).bearer_auth(ADMIN).json(&spec).send().await.unwrap();
            assert_eq!(r.status(), 201);
            let body: Value = r.json().await.unwrap();
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let server_token = create(json!({"name": "srv", "kind": "server", "workspace": "default",
        "environment": "production"}))
    .await;
    let client_token = create(json!({"name": "web", "kind": "client", "workspace": "default",
        "environment": "production", "allowed_origins": ["https://app.example.com"]}))
    .await;
    let viewer = create(json!({"name": "viewer", "kind": "admin", "role": "viewer"})).await;
    let ctx = json!({"context": {"targetingKey": "u1"}});
    // Header, X-API-Key and query-string forms; good and bad; each surface.
    let requests = [
        http.get(server.url("/api/v1/workspaces")).bearer_auth(&viewer),
        http.get(server.url("/api/v1/workspaces")).header("x-api-key", ADMIN),
        http.get(server.url("/api/v1/workspaces")).bearer_auth(&server_token),
        http.post(server.url("/api/v1/tokens"))
            .bearer_auth(&viewer)
            .json(&json!({})),
        http.post(server.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(&client_token)
            .json(&ctx),
        http.post(server.url("/ofrep/v1/evaluate/flags/nope"))
            .bearer_auth(&server_token)
            .json(&ctx),
        http.post(server.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(&client_token)
            .body("{oops"),
        http.post(server.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(ADMIN)
            .json(&ctx),
        http.get(server.url(&format!("/ofrep/v1/events?token={client_token}&x=1"))),
        http.get(server.url("/sdk/v1/snapshot")).bearer_auth(&server_token),
        http.get(server.url("/sdk/v1/snapshot"))
            .bearer_auth(format!("{server_token}x")),
        http.get(server.url(&format!("/no/such/route?token={server_token}"))),
    ];
    for r in requests {
        // Status and headers are enough; streams are dropped at once.
        let _ = r.send().await.unwrap().status();
    }
    vec![server_token, client_token, viewer]
}

async fn check(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path());
    let log = dir.path().join("server.log");
    let server = ServerProcess::spawn(&url, &log, &[("SEXTANT_LOG", "trace"), ("SEXTANT_LOG_FORMAT", format)]);
    let mut secrets = exercise(&server).await;
    secrets.push(ADMIN.to_owned());
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    // The log really is the server's, at a level that logs each request.
    assert!(text.contains("serving"), "{text}");
    assert!(text.contains("/ofrep/v1/evaluate/flags"), "no request lines at trace");
    for secret in &secrets {
        // The random part alone, so a token split or re-prefixed is caught too.
        let core = secret.get(4..).unwrap_or(secret);
        assert!(!text.contains(core), "a token appears in the {format} log");
    }
}

#[tokio::test]
async fn no_token_appears_in_the_json_log_at_trace() {
    check("json").await;
}

#[tokio::test]
async fn no_token_appears_in_the_pretty_log_at_trace() {
    check("pretty").await;
}
