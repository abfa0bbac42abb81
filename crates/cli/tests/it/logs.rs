//! No secret in logs: the server's whole log at `trace`, in both formats,
//! never contains the admin token or an SDK token, however they are sent,
//! nor a dashboard session cookie or CSRF token.

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
        http.post(server.url("/events/v1/batch"))
            .bearer_auth(&client_token)
            .json(&json!({"events": [{"kind": "track", "event": "e", "targeting_key": "u"}]})),
    ];
    for r in requests {
        // Status and headers are enough; streams are dropped at once.
        let _ = r.send().await.unwrap().status();
    }
    let mut secrets = vec![server_token, client_token, viewer];
    secrets.extend(dashboard_sign_in(server).await);
    secrets
}

/// Signs in to the dashboard with the admin token (a form body, not a
/// header) and loads a page; returns the session cookie and the CSRF tokens.
async fn dashboard_sign_in(server: &ServerProcess) -> Vec<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_of = |r: &reqwest::Response, name: &str| -> String {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie"))
            .to_owned()
    };
    let hidden = |page: &str, name: &str| -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in {page}")) + marker.len();
        page[start..].split('"').next().unwrap().to_owned()
    };
    let form = http.get(server.url("/login")).send().await.unwrap();
    let login = cookie_of(&form, "sextant_login");
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let signed_in = http
        .post(server.url("/login"))
        .header("cookie", format!("sextant_login={login}"))
        .form(&[("token", ADMIN), ("csrf", csrf.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "dashboard sign-in failed");
    let session = cookie_of(&signed_in, "sextant_session");
    let page = http
        .get(server.url("/w/default/flags"))
        .header("cookie", format!("sextant_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page_csrf = hidden(&page.text().await.unwrap(), "csrf");
    vec![login, csrf, session, page_csrf]
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
        assert!(!text.contains(core), "a secret appears in the {format} log");
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
