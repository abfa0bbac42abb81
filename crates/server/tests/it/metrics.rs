use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN, Reply, TestServer};

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn create(s: &TestServer, token: &str, metric: Value) -> Reply {
    s.call(
        Method::POST,
        "/api/v1/workspaces/default/metrics",
        token,
        Some(json!({"metric": metric, "reason": "test"})),
    )
    .await
}

async fn tree_setup(s: &TestServer) {
    let r = create(
        s,
        ADMIN,
        json!({"key": "revenue", "name": "Revenue", "aggregation": "sum", "event": "purchase",
        "good_direction": "increase", "unit": "EUR", "north_star": true}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = create(
        s,
        ADMIN,
        json!({"key": "buyers", "name": "Buyers", "aggregation": "conversion", "event": "purchase",
        "good_direction": "increase", "parent": "revenue"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn the_north_star_needs_the_admin_role_and_other_metrics_do_not() {
    let s = TestServer::start().await;
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    let ns = json!({"key": "revenue", "name": "Revenue", "aggregation": "sum", "event": "purchase",
        "good_direction": "increase", "north_star": true});
    create(&s, &engineer, ns.clone())
        .await
        .assert_problem(403, "permission_denied");
    assert_eq!(create(&s, ADMIN, ns).await.status, 201);
    let child = json!({"key": "orders", "name": "Orders", "aggregation": "count", "event": "purchase",
        "good_direction": "increase", "parent": "revenue"});
    assert_eq!(create(&s, &engineer, child).await.status, 201);
    let change = "/api/v1/workspaces/default/metrics/orders/north-star";
    s.call(Method::POST, change, &engineer, Some(json!({"reason": "pivot"})))
        .await
        .assert_problem(403, "permission_denied");
    // Changing the North Star is irreversible: another person approves it.
    let r = s
        .call(Method::POST, change, ADMIN, Some(json!({"reason": "pivot"})))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let approve = format!("/api/v1/workspaces/default/change-requests/{}/approve", r.body["id"]);
    let product = s.token(json!({"kind": "admin", "role": "product"})).await;
    let r = s.call(Method::POST, &approve, &product, Some(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s.get("/api/v1/workspaces/default/metrics/orders").await;
    assert_eq!(r.body["metric"]["north_star"], true);
    let audit = s.get("/api/v1/audit?action=change_north_star").await;
    assert_eq!(
        audit.body["entries"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        audit.body
    );
}

#[tokio::test]
async fn a_cycle_or_a_second_north_star_is_a_validation_error() {
    let s = TestServer::start().await;
    tree_setup(&s).await;
    let r = create(
        &s,
        ADMIN,
        json!({"key": "other", "name": "Other", "aggregation": "count", "event": "x",
        "good_direction": "increase", "north_star": true}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/north_star");
    let r = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/metrics/revenue",
            ADMIN,
            Some(
                json!({"metric": {"key": "revenue", "name": "Revenue", "aggregation": "sum", "event": "purchase",
                "good_direction": "increase", "parent": "buyers", "north_star": true}}),
            ),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let missing = s.get("/api/v1/workspaces/default/metrics/nope").await;
    missing.assert_problem(404, "metric_not_found");
    create(
        &s,
        ADMIN,
        json!({"key": "buyers", "name": "B", "aggregation": "count", "event": "x",
        "good_direction": "increase", "parent": "revenue"}),
    )
    .await
    .assert_problem(409, "metric_exists");
}

#[tokio::test]
async fn new_events_show_up_in_the_tree_series_and_breakdown() {
    let s = TestServer::start().await;
    tree_setup(&s).await;
    let r = s
        .post(
            "/api/v1/workspaces/default/initiatives",
            json!({"initiative": {"key": "one-click", "name": "One-click buy", "team": "checkout", "owner": "ana",
                "metric": "buyers", "direction": "increase", "expected_change": 0.1,
                "starts_on": "2026-01-01", "ends_on": "2026-06-30"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = s.server_token("production").await;
    let t = now();
    let events = json!({"batch_id": "live-1", "events": [
        {"kind": "exposure", "flag": "one-click", "variation": "on", "targeting_key": "u1", "timestamp": t},
        {"kind": "exposure", "flag": "one-click", "variation": "off", "targeting_key": "u2", "timestamp": t},
        {"kind": "track", "event": "purchase", "targeting_key": "u1", "value": 30.0, "timestamp": t},
        {"kind": "track", "event": "purchase", "targeting_key": "u1", "value": 10.0, "timestamp": t},
    ]});
    let r = s.call(Method::POST, "/events/v1/batch", &token, Some(events)).await;
    assert_eq!(r.status, 202, "{:?}", r.body);

    // Ordered by events, not time: the 202 means committed, and the rollup
    // task announces each run; once it has taken in these 4 events the
    // tree, series and breakdown must show them.
    s.state.events.rolled_up(4).await;
    let tree = s
        .get("/api/v1/metrics/tree?workspace=default&environment=production&window=24h")
        .await;
    assert_eq!(tree.status, 200, "{:?}", tree.body);
    let ns = &tree.body["north_star"];
    assert_eq!(ns["metric"]["key"], "revenue");
    assert_eq!(ns["current"]["stats"], json!({"n": 2, "sum": 40.0, "sum_sq": 1600.0}));
    assert_eq!(ns["trend"], "unknown");
    let buyers = &ns["children"][0];
    assert_eq!(buyers["metric"]["key"], "buyers");
    assert_eq!(buyers["current"]["value"], 0.5);
    assert_eq!(buyers["current"]["stats"], json!({"n": 2, "conversions": 1}));
    assert_eq!(buyers["initiatives"], json!(["one-click"]));

    let series = s
        .get("/api/v1/workspaces/default/metrics/revenue/series?environment=production&granularity=hour")
        .await;
    assert_eq!(series.status, 200, "{:?}", series.body);
    let points = series.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0]["value"], 40.0);

    let b = s
        .get("/api/v1/workspaces/default/metrics/revenue/breakdown?environment=production&flag=one-click")
        .await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert_eq!(
        b.body["variations"],
        json!([
            {"variation": "off", "value": 0.0, "units": 1, "stats": {"n": 1, "sum": 0.0, "sum_sq": 0.0}},
            {"variation": "on", "value": 40.0, "units": 1, "stats": {"n": 1, "sum": 40.0, "sum_sq": 1600.0}}
        ])
    );

    // A later event is added to the values incrementally.
    let more = json!({"batch_id": "live-2", "events": [
        {"kind": "track", "event": "purchase", "targeting_key": "u2", "value": 5.0, "timestamp": now()},
    ]});
    let r = s.call(Method::POST, "/events/v1/batch", &token, Some(more)).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    s.state.events.rolled_up(5).await;
    let tree = s
        .get("/api/v1/metrics/tree?workspace=default&environment=production&window=24h")
        .await;
    assert_eq!(tree.body["north_star"]["current"]["value"], 45.0);
    assert_eq!(tree.body["north_star"]["children"][0]["current"]["value"], 1.0);

    s.get("/api/v1/metrics/tree?window=3w")
        .await
        .assert_problem(400, "query_invalid");
}
