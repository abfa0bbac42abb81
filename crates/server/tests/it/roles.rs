use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN, TestServer, rand_suffix};

/// An action in the matrix: (name, method, path, body) built for a fresh flag key.
type Build = fn(&str) -> (Method, String, Option<Value>);

fn actions() -> Vec<(&'static str, Build)> {
    vec![
        ("read flags", |_| {
            (Method::GET, "/api/v1/workspaces/default/flags".into(), None)
        }),
        ("read audit", |_| (Method::GET, "/api/v1/audit".into(), None)),
        ("create flag", |k| {
            let flag = json!({"key": format!("{k}-new"), "kind": "boolean",
                "hypothesis": {"operational": true, "reason": "ops toggle"},
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
            (
                Method::POST,
                "/api/v1/workspaces/default/flags".into(),
                Some(json!({"flag": flag})),
            )
        }),
        ("change flag definition", |k| {
            let flag = json!({"key": k, "kind": "boolean", "description": "changed",
                "hypothesis": {"operational": true, "reason": "ops toggle"},
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
            (
                Method::PUT,
                format!("/api/v1/workspaces/default/flags/{k}"),
                Some(json!({"flag": flag})),
            )
        }),
        ("delete flag", |k| {
            (Method::DELETE, format!("/api/v1/workspaces/default/flags/{k}"), None)
        }),
        ("targeting in development", |k| targeting(k, "development")),
        ("targeting in production", |k| targeting(k, "production")),
        ("turn on in staging", |k| toggle(k, "staging", true)),
        ("turn on in production", |k| toggle(k, "production", true)),
        ("kill switch in production", |k| toggle(k, "production", false)),
        ("create segment", |k| {
            (
                Method::POST,
                "/api/v1/workspaces/default/segments".into(),
                Some(json!({"segment": {"key": k}})),
            )
        }),
        ("create environment", |k| {
            (
                Method::POST,
                "/api/v1/workspaces/default/environments".into(),
                Some(json!({"key": k})),
            )
        }),
        ("create token", |k| {
            (
                Method::POST,
                "/api/v1/tokens".into(),
                Some(json!({"name": k, "kind": "admin", "role": "viewer"})),
            )
        }),
        ("list tokens", |_| (Method::GET, "/api/v1/tokens".into(), None)),
    ]
}

fn targeting(k: &str, env: &str) -> (Method, String, Option<Value>) {
    let body = json!({"targeting": {"enabled": false, "off_variation": "off",
        "rules": [{"rollout": {"weight": 50000}, "serve": {"variation": "on"}}]}, "reason": "ramp"});
    (
        Method::PUT,
        format!("/api/v1/workspaces/default/flags/{k}/environments/{env}"),
        Some(body),
    )
}

fn toggle(k: &str, env: &str, enabled: bool) -> (Method, String, Option<Value>) {
    let path = format!("/api/v1/workspaces/default/flags/{k}/environments/{env}/toggle");
    (Method::POST, path, Some(json!({"enabled": enabled})))
}

/// The expected matrix: which roles may do each action.
fn expected(role: &str, action: &str) -> bool {
    match action {
        "read flags" | "read audit" => true,
        "create flag" | "change flag definition" | "delete flag" => matches!(role, "engineer" | "admin"),
        "targeting in development" | "turn on in staging" => matches!(role, "engineer" | "product" | "admin"),
        "targeting in production" | "turn on in production" => matches!(role, "product" | "admin"),
        "kill switch in production" => matches!(role, "engineer" | "product" | "admin"),
        "create segment" => matches!(role, "product" | "admin"),
        "create environment" | "create token" | "list tokens" => role == "admin",
        other => panic!("unknown action {other}"),
    }
}

#[tokio::test]
async fn every_role_can_do_exactly_its_actions() {
    let s = TestServer::start().await;
    for role in ["viewer", "engineer", "product", "admin"] {
        let token = s.token(json!({"kind": "admin", "role": role})).await;
        for (action, build) in actions() {
            // A fresh flag per cell, on in production, so cells are independent.
            let key = format!("m{}", rand_suffix());
            s.flag(&key, "production").await;
            let (method, path, body) = build(&key);
            let r = s.call(method, &path, &token, body).await;
            let allowed = expected(role, action);
            if allowed {
                assert!(
                    (200..300).contains(&r.status),
                    "{role} should {action}: {} {:?}",
                    r.status,
                    r.body
                );
            } else {
                r.assert_problem(403, "permission_denied");
            }
        }
    }
}

#[tokio::test]
async fn environment_scope_limits_environment_actions() {
    let s = TestServer::start().await;
    let token = s
        .token(json!({"kind": "admin", "role": "engineer", "environments": ["development"]}))
        .await;
    s.flag("scoped", "production").await;
    let (m, p, b) = toggle("scoped", "development", true);
    assert_eq!(s.call(m, &p, &token, b).await.status, 200);
    let (m, p, b) = toggle("scoped", "staging", true);
    s.call(m, &p, &token, b).await.assert_problem(403, "permission_denied");
    let (m, p, b) = toggle("scoped", "production", false);
    s.call(m, &p, &token, b).await.assert_problem(403, "permission_denied");
    // The actor is recorded by token name.
    let audit = s
        .call(Method::GET, "/api/v1/audit?key=scoped&action=turn_on", ADMIN, None)
        .await;
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn turning_on_in_production_through_targeting_needs_the_product_role() {
    let s = TestServer::start().await;
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    s.flag("sneaky", "staging").await;
    let body = json!({"targeting": {"enabled": true}});
    let path = "/api/v1/workspaces/default/flags/sneaky/environments/production";
    s.call(Method::PUT, path, &engineer, Some(body))
        .await
        .assert_problem(403, "permission_denied");
}
