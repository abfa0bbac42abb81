use reqwest::Method;
use serde_json::json;

use crate::support::{ADMIN, TestServer};

#[tokio::test]
async fn flag_lifecycle_with_versions_and_if_match() {
    let s = TestServer::start().await;
    s.flag("checkout", "staging").await;
    let r = s.get("/api/v1/workspaces/default/flags/checkout").await;
    assert_eq!((r.status, r.header("etag")), (200, Some("\"1\"")));
    assert_eq!(r.body["flag"]["environments"]["staging"]["enabled"], true);

    let toggle = "/api/v1/workspaces/default/flags/checkout/environments/staging/toggle";
    let ok = s
        .req(Method::POST, toggle, ADMIN)
        .header("if-match", "\"1\"")
        .json(&json!({"enabled": false, "reason": "incident 42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "\"2\"");

    // A write carrying the version it read before that change is refused.
    let stale = s
        .req(Method::POST, toggle, ADMIN)
        .header("if-match", "\"1\"")
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    let stale = crate::support::Reply::from(stale).await;
    stale.assert_problem(412, "version_mismatch");
    assert_eq!(stale.body["current_version"], 2);

    let list = s.get("/api/v1/workspaces/default/flags").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // Deleting is irreversible: it files a change request that another
    // person with the product role approves.
    let del = s
        .call(
            Method::DELETE,
            "/api/v1/workspaces/default/flags/checkout?reason=cleanup",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(del.status, 202, "{:?}", del.body);
    let product = s.token(json!({"kind": "admin", "role": "product"})).await;
    let id = del.body["id"].as_i64().unwrap();
    let approve = format!("/api/v1/workspaces/default/change-requests/{id}/approve");
    let ok = s.call(Method::POST, &approve, &product, Some(json!({}))).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    s.get("/api/v1/workspaces/default/flags/checkout")
        .await
        .assert_problem(404, "flag_not_found");
}

#[tokio::test]
async fn an_invalid_flag_lists_every_wrong_field_and_is_not_stored() {
    let s = TestServer::start().await;
    let flag = json!({
        "key": "bad", "kind": "boolean",
        "hypothesis": {"operational": true, "reason": "validation test"},
        "variations": [{"key": "on", "value": "yes"}, {"key": "on", "value": false}],
        "environments": {"production": {"enabled": false, "off_variation": "nope",
            "rules": [{"serve": {"variation": "missing"}}]}, "mars": {"enabled": false}}
    });
    let r = s.post("/api/v1/workspaces/default/flags", json!({"flag": flag})).await;
    r.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"/environments/mars"), "{fields:?}");

    let flag = json!({
        "key": "bad", "kind": "boolean",
        "hypothesis": {"operational": true, "reason": "validation test"},
        "variations": [{"key": "on", "value": "yes"}, {"key": "on", "value": false}],
        "environments": {"production": {"enabled": false, "off_variation": "nope",
            "rules": [{"serve": {"variation": "missing"}}]}}
    });
    let r = s.post("/api/v1/workspaces/default/flags", json!({"flag": flag})).await;
    r.assert_problem(422, "validation_failed");
    let errors = r.body["errors"].as_array().unwrap();
    assert!(errors.len() >= 4, "{errors:?}");
    s.get("/api/v1/workspaces/default/flags/bad")
        .await
        .assert_problem(404, "flag_not_found");
}

#[tokio::test]
async fn malformed_requests_get_problem_json_with_stable_codes() {
    let s = TestServer::start().await;
    let bad_json = s
        .req(Method::POST, "/api/v1/workspaces/default/flags", ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    crate::support::Reply::from(bad_json)
        .await
        .assert_problem(400, "body_invalid_json");
    s.post("/api/v1/workspaces/default/flags", json!({"flag": {"key": 1}}))
        .await
        .assert_problem(422, "validation_failed");
    s.get("/api/v1/nope").await.assert_problem(404, "route_not_found");
    s.call(Method::PATCH, "/api/v1/workspaces", ADMIN, None)
        .await
        .assert_problem(405, "method_not_allowed");
    s.call(Method::GET, "/api/v1/workspaces", "", None)
        .await
        .assert_problem(401, "token_missing");
    s.call(Method::GET, "/api/v1/workspaces", "sxa_wrong", None)
        .await
        .assert_problem(401, "token_invalid");
    let sdk = s.server_token("production").await;
    s.call(Method::GET, "/api/v1/workspaces", &sdk, None)
        .await
        .assert_problem(403, "token_kind_forbidden");
    let r = s
        .req(Method::PUT, "/api/v1/workspaces/default", ADMIN)
        .header("if-match", "banana")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    crate::support::Reply::from(r)
        .await
        .assert_problem(400, "if_match_invalid");
    s.post("/api/v1/workspaces", json!({"key": "default"}))
        .await
        .assert_problem(409, "workspace_exists");
}

#[tokio::test]
async fn workspaces_environments_and_segments_have_crud() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/api/v1/workspaces",
            json!({"key": "shop", "environments": [{"key": "prod", "production": true}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .post("/api/v1/workspaces/shop/environments", json!({"key": "qa"}))
        .await;
    assert_eq!(r.status, 201);
    let envs = s.get("/api/v1/workspaces/shop/environments").await;
    assert_eq!(envs.body["items"].as_array().unwrap().len(), 2);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/shop/environments/qa",
            ADMIN,
            Some(json!({"name": "QA", "production": false})),
        )
        .await;
    assert_eq!((r.status, r.body["version"].as_i64()), (200, Some(2)));
    let r = s
        .post(
            "/api/v1/workspaces/shop/segments",
            json!({"segment": {"key": "beta", "included": ["u1"]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/shop/segments/beta",
            ADMIN,
            Some(json!({"segment": {"key": "beta", "included": ["u1", "u2"]}})),
        )
        .await;
    assert_eq!(r.body["version"], 2);
    assert_eq!(
        s.call(Method::DELETE, "/api/v1/workspaces/shop/segments/beta", ADMIN, None)
            .await
            .status,
        204
    );
    assert_eq!(
        s.call(Method::DELETE, "/api/v1/workspaces/shop/environments/qa", ADMIN, None)
            .await
            .status,
        204
    );
    assert_eq!(
        s.call(Method::DELETE, "/api/v1/workspaces/shop", ADMIN, None)
            .await
            .status,
        204
    );
    s.get("/api/v1/workspaces/shop")
        .await
        .assert_problem(404, "workspace_not_found");
}

#[tokio::test]
async fn tokens_are_shown_once_and_revocation_takes_effect() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "kind": "admin", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        s.call(Method::GET, "/api/v1/workspaces", &token, None).await.status,
        200
    );
    let list = s.get("/api/v1/tokens").await;
    assert!(!list.body.to_string().contains(&token));
    assert_eq!(
        s.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), ADMIN, None)
            .await
            .status,
        204
    );
    s.call(Method::GET, "/api/v1/workspaces", &token, None)
        .await
        .assert_problem(401, "token_invalid");

    let r = s.post("/api/v1/tokens", json!({"name": "x", "kind": "server"})).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2, "{:?}", r.body);
}
