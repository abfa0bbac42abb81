use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use sextant_server::Config;
use tokio::sync::mpsc;

use crate::support::{ADMIN, Reply, TestServer};

const FLAGS: &str = "/api/v1/workspaces/default/flags";

fn bare(key: &str, hypothesis: Option<Value>) -> Value {
    let mut flag = json!({"key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
    if let Some(h) = hypothesis {
        flag["hypothesis"] = h;
    }
    json!({"flag": flag})
}

fn fields(r: &Reply) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn approve(s: &TestServer, token: &str, id: i64) -> Reply {
    let path = format!("/api/v1/workspaces/default/change-requests/{id}/approve");
    s.call(Method::POST, &path, token, Some(json!({"reason": "ok"}))).await
}

#[tokio::test]
async fn a_flag_without_a_hypothesis_is_refused_naming_what_is_missing() {
    let s = TestServer::start().await;
    let r = s.post(FLAGS, bare("nohyp", None)).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(fields(&r), ["/flag/hypothesis"]);
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("operational"));

    let r = s
        .post(FLAGS, bare("partial", Some(json!({"reason": "", "metric": "revenue"}))))
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(
        fields(&r),
        [
            "/flag/hypothesis/reason",
            "/flag/hypothesis/direction",
            "/flag/hypothesis/minimum_effect"
        ]
    );
    let r = s
        .post(
            FLAGS,
            bare(
                "neg",
                Some(json!({"reason": "x", "metric": "m", "direction": "increase", "minimum_effect": -1})),
            ),
        )
        .await;
    assert_eq!(fields(&r), ["/flag/hypothesis/minimum_effect"]);

    // An operational flag (kill switch) needs only a reason; a full hypothesis passes.
    let ops = s
        .post(
            FLAGS,
            bare("ops", Some(json!({"operational": true, "reason": "kill switch"}))),
        )
        .await;
    assert_eq!(ops.status, 201, "{:?}", ops.body);
    let full = json!({"metric": "checkout_conversion", "direction": "increase", "minimum_effect": 0.02,
        "reason": "fewer steps convert better"});
    assert_eq!(s.post(FLAGS, bare("full", Some(full))).await.status, 201);
    // Replacing the definition cannot drop the hypothesis either.
    let put = s
        .call(Method::PUT, &format!("{FLAGS}/full"), ADMIN, Some(bare("full", None)))
        .await;
    put.assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn deleting_a_flag_needs_approval_by_a_different_product_or_admin_person() {
    let s = TestServer::start().await;
    s.flag("doomed", "production").await;
    let engineer = s
        .token(json!({"kind": "admin", "role": "engineer", "name": "erin"}))
        .await;
    let product = s
        .token(json!({"kind": "admin", "role": "product", "name": "pat"}))
        .await;
    let admin2 = s.token(json!({"kind": "admin", "role": "admin", "name": "ada"})).await;

    let r = s
        .call(
            Method::DELETE,
            &format!("{FLAGS}/doomed?reason=unused"),
            &engineer,
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["action"], "flag.delete");
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/workspaces/default/change-requests/{id}").as_str())
    );
    // Nothing changed yet.
    assert_eq!(s.get(&format!("{FLAGS}/doomed")).await.status, 200);

    // Engineers cannot decide; a requester cannot approve their own request.
    approve(&s, &engineer, id)
        .await
        .assert_problem(403, "permission_denied");
    let own = s.call(Method::DELETE, &format!("{FLAGS}/doomed"), &admin2, None).await;
    let own_id = own.body["id"].as_i64().unwrap();
    approve(&s, &admin2, own_id)
        .await
        .assert_problem(403, "self_approval_refused");
    let path = format!("/api/v1/workspaces/default/change-requests/{own_id}/reject");
    s.call(Method::POST, &path, &admin2, Some(json!({})))
        .await
        .assert_problem(403, "self_approval_refused");

    // A different person with the product role approves: it applies.
    let ok = approve(&s, &product, id).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["status"], "applied");
    assert!(ok.body["decided_by"].as_str().unwrap().starts_with("pat"));
    assert!(ok.body["applied_change_id"].is_i64());
    s.get(&format!("{FLAGS}/doomed"))
        .await
        .assert_problem(404, "flag_not_found");
    approve(&s, &admin2, id)
        .await
        .assert_problem(409, "change_request_not_pending");
    // The other request can no longer apply: the flag is gone, nothing is half-applied.
    approve(&s, &product, own_id)
        .await
        .assert_problem(404, "flag_not_found");
    let pending = s.get("/api/v1/workspaces/default/change-requests?status=pending").await;
    assert_eq!(pending.body["items"].as_array().unwrap().len(), 1);

    // Request and approval are in the audit log, and the chain verifies.
    let audit = s.get("/api/v1/audit?kind=change_request").await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["request", "request", "approve"]);
    assert_eq!(s.get("/api/v1/audit/verify").await.body["ok"], true);
}

#[tokio::test]
async fn a_rejection_changes_nothing_and_is_audited() {
    let s = TestServer::start().await;
    s.flag("kept", "production").await;
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    let product = s.token(json!({"kind": "admin", "role": "product"})).await;
    let r = s.call(Method::DELETE, &format!("{FLAGS}/kept"), &engineer, None).await;
    let id = r.body["id"].as_i64().unwrap();
    let path = format!("/api/v1/workspaces/default/change-requests/{id}/reject");
    let rejected = s
        .call(Method::POST, &path, &product, Some(json!({"reason": "still used"})))
        .await;
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["decision_reason"], "still used");
    assert_eq!(s.get(&format!("{FLAGS}/kept")).await.status, 200);
    approve(&s, &product, id)
        .await
        .assert_problem(409, "change_request_not_pending");
    let audit = s.get("/api/v1/audit?kind=change_request&action=reject").await;
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn archiving_restoring_and_reverting_are_gated_with_no_back_door() {
    let s = TestServer::start().await;
    s.flag("old", "production").await;
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    let product = s.token(json!({"kind": "admin", "role": "product"})).await;

    let r = s
        .call(
            Method::POST,
            &format!("{FLAGS}/old/archive"),
            &engineer,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(approve(&s, &product, r.body["id"].as_i64().unwrap()).await.status, 200);
    let flag = s.get(&format!("{FLAGS}/old")).await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], false);
    // An archived flag cannot be turned back on or retargeted: restoring is gated.
    s.toggle("old", "production", true)
        .await
        .assert_problem(409, "flag_archived");
    let r = s
        .call(
            Method::POST,
            &format!("{FLAGS}/old/restore"),
            &engineer,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(approve(&s, &product, r.body["id"].as_i64().unwrap()).await.status, 200);
    assert_eq!(s.toggle("old", "production", true).await.status, 200);

    // Delete it; re-creating it under the same key would undo the deletion.
    let r = s.call(Method::DELETE, &format!("{FLAGS}/old"), &engineer, None).await;
    let applied = approve(&s, &product, r.body["id"].as_i64().unwrap()).await;
    let change = applied.body["applied_change_id"].as_i64().unwrap();
    let again = json!({"flag": {"key": "old", "kind": "boolean",
        "hypothesis": {"operational": true, "reason": "sneaky"},
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}});
    s.post(FLAGS, again).await.assert_problem(409, "revert_required");
    // The revert is itself a change request.
    let revert = format!("/api/v1/workspaces/default/changes/{change}/revert");
    let r = s
        .call(
            Method::POST,
            &revert,
            &engineer,
            Some(json!({"reason": "needed after all"})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["action"], "change.revert");
    s.get(&format!("{FLAGS}/old"))
        .await
        .assert_problem(404, "flag_not_found");
    assert_eq!(approve(&s, &product, r.body["id"].as_i64().unwrap()).await.status, 200);
    let back = s.get(&format!("{FLAGS}/old")).await;
    assert_eq!(back.status, 200);
    assert_eq!(back.body["flag"]["hypothesis"]["metric"], "checkout_conversion");
}

#[tokio::test]
async fn changing_the_policy_is_itself_gated_and_then_gates_targeting() {
    let s = TestServer::start().await;
    s.flag("ramp", "staging").await;
    let product = s.token(json!({"kind": "admin", "role": "product"})).await;
    let policy = s.get("/api/v1/workspaces/default/policy").await;
    assert_eq!(policy.body["version"], 0);
    assert!(
        policy.body["always_irreversible"]
            .as_array()
            .unwrap()
            .contains(&json!("flag.delete"))
    );

    let bad = json!({"policy": {"require_approval": ["flag.teleport"]}});
    s.call(Method::PUT, "/api/v1/workspaces/default/policy", ADMIN, Some(bad))
        .await
        .assert_problem(422, "validation_failed");
    // Product may not request a policy change (admin only).
    let body = json!({"policy": {"require_approval": ["flag.targeting"]}, "reason": "freeze"});
    s.call(
        Method::PUT,
        "/api/v1/workspaces/default/policy",
        &product,
        Some(body.clone()),
    )
    .await
    .assert_problem(403, "permission_denied");
    let r = s
        .call(Method::PUT, "/api/v1/workspaces/default/policy", ADMIN, Some(body))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(s.get("/api/v1/workspaces/default/policy").await.body["version"], 0);
    assert_eq!(approve(&s, &product, r.body["id"].as_i64().unwrap()).await.status, 200);
    assert_eq!(s.get("/api/v1/workspaces/default/policy").await.body["version"], 1);

    // Targeting now needs approval; the toggle (kill switch) still applies at once.
    let targeting = json!({"targeting": {"enabled": true, "default_serve": {"variation": "on"}}});
    let path = format!("{FLAGS}/ramp/environments/staging");
    let r = s.call(Method::PUT, &path, ADMIN, Some(targeting)).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["environment"], "staging");
    assert_eq!(s.toggle("ramp", "staging", false).await.status, 200);
    assert_eq!(approve(&s, &product, r.body["id"].as_i64().unwrap()).await.status, 200);
    let flag = s.get(&format!("{FLAGS}/ramp")).await;
    assert_eq!(
        flag.body["flag"]["environments"]["staging"]["default_serve"]["variation"],
        "on"
    );
}

#[tokio::test]
async fn dora_figures_count_deploys_rollbacks_and_kill_switches() {
    let s = TestServer::start().await;
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    let now = chrono::Utc::now();
    let t = |h: i64| (now - chrono::Duration::hours(h)).to_rfc3339();
    let deploys = [
        json!({"service": "api", "version": "1", "commit_time": t(10), "deploy_time": t(8)}),
        json!({"service": "api", "version": "2", "commit_time": t(6), "deploy_time": t(4), "status": "success"}),
        json!({"service": "api", "version": "1", "commit_time": t(10), "deploy_time": t(3), "status": "rollback"}),
        json!({"service": "web", "version": "9", "commit_time": t(2), "deploy_time": t(1)}),
    ];
    for d in deploys {
        let r = s.call(Method::POST, "/api/v1/deploys", &engineer, Some(d)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // The kill switch after web's deploy counts as web's failed change.
    s.flag("webfeature", "production").await;
    assert_eq!(s.toggle("webfeature", "production", false).await.status, 200);

    let bad = json!({"service": "", "version": "1", "commit_time": "yesterday"});
    let r = s.call(Method::POST, "/api/v1/deploys", &engineer, Some(bad)).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(fields(&r), ["/service", "/commit_time"]);

    let dora = s.get("/api/v1/dora?weeks=2").await;
    let items = dora.body["items"].as_array().unwrap();
    let total = |svc: &str, k: &str| -> i64 {
        items
            .iter()
            .filter(|w| w["service"] == svc)
            .map(|w| w[k].as_i64().unwrap())
            .sum()
    };
    assert_eq!(total("api", "deploys"), 3);
    assert_eq!(total("api", "failed_changes"), 1);
    assert_eq!(total("web", "deploys"), 1);
    assert_eq!(total("web", "failed_changes"), 1);
}

#[tokio::test]
async fn violations_need_justification_owner_and_date_and_stay_in_the_weekly_review_until_resolved() {
    let s = TestServer::start().await;
    let p = json!({"key": "no-dark-patterns", "name": "No dark patterns", "description": "Never trick users."});
    assert_eq!(
        s.post("/api/v1/workspaces/default/principles", p.clone()).await.status,
        201
    );
    s.post("/api/v1/workspaces/default/principles", p)
        .await
        .assert_problem(409, "principle_exists");
    let r = s
        .post(
            "/api/v1/workspaces/default/violations",
            json!({"principle": "no-dark-patterns", "subject": "flag:x"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(fields(&r), ["/justification", "/owner", "/review_date"]);
    let unknown = json!({"principle": "nope", "subject": "flag:x", "justification": "j", "owner": "o",
        "review_date": "2030-01-01"});
    s.post("/api/v1/workspaces/default/violations", unknown)
        .await
        .assert_problem(404, "principle_not_found");
    let v = json!({"principle": "no-dark-patterns", "subject": "flag:urgency-banner",
        "justification": "Black Friday test, two weeks only", "owner": "maria", "review_date": "2030-01-01"});
    let created = s.post("/api/v1/workspaces/default/violations", v).await;
    assert_eq!(created.status, 201);
    let weekly = s.get("/api/v1/reviews/weekly").await;
    let open = weekly.body["stop"]["principle_violations"].as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["owner"], "maria");
    let md = s
        .req(Method::GET, "/api/v1/reviews/weekly?format=markdown", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");
    let md = md.text().await.unwrap();
    assert!(md.contains("## What to stop"), "{md}");
    assert!(
        md.contains("no-dark-patterns violated by flag:urgency-banner — owner maria"),
        "{md}"
    );

    let id = created.body["id"].as_i64().unwrap();
    let path = format!("/api/v1/workspaces/default/violations/{id}/resolve");
    let r = s.post(&path, json!({"resolution": "banner removed"})).await;
    assert_eq!(r.status, 200);
    let weekly = s.get("/api/v1/reviews/weekly").await;
    assert!(
        weekly.body["stop"]["principle_violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let quarterly = s.get("/api/v1/reviews/quarterly").await;
    assert_eq!(quarterly.body["violations"].as_array().unwrap().len(), 1);
    s.get("/api/v1/reviews/yearly")
        .await
        .assert_problem(404, "route_not_found");
}

#[tokio::test]
async fn learnings_are_searchable_and_reported_per_owner_each_month() {
    let s = TestServer::start().await;
    for (what, owner) in [
        ("Shorter checkout raised conversion 3%", "maria"),
        ("Dark mode did not change retention", "li"),
        ("Free shipping banner: no effect on CHECKOUT value", "maria"),
    ] {
        let r = s
            .post(
                "/api/v1/workspaces/default/learnings",
                json!({"what": what, "owner": owner, "evidence": "https://dash/1"}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let found = s.get("/api/v1/workspaces/default/learnings?q=checkout").await;
    assert_eq!(found.body["items"].as_array().unwrap().len(), 2);
    let li = s.get("/api/v1/workspaces/default/learnings?owner=li").await;
    assert_eq!(li.body["items"].as_array().unwrap().len(), 1);
    let none = s.get("/api/v1/workspaces/default/learnings?q=100%25").await;
    assert!(none.body["items"].as_array().unwrap().is_empty());
    let monthly = s.get("/api/v1/reviews/monthly").await;
    let by_owner = monthly.body["learnings_by_owner"].as_object().unwrap();
    assert_eq!(by_owner["maria"].as_array().unwrap().len(), 2);
    assert_eq!(by_owner["li"].as_array().unwrap().len(), 1);
    s.post("/api/v1/workspaces/default/learnings", json!({"what": " "}))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn an_initiative_post_mortem_follows_the_template_and_logs_its_learning() {
    let s = TestServer::start().await;
    let open = json!({"initiative": "faster-onboarding", "owner": "li", "due_at": "2030-01-01T00:00:00Z",
        "expected": "activation +5%"});
    assert_eq!(
        s.post("/api/v1/workspaces/default/post-mortems", open).await.status,
        201
    );
    let list = s.get("/api/v1/workspaces/default/post-mortems").await;
    assert_eq!(
        list.body["template"],
        json!(["What we expected", "What happened", "What we learned"])
    );
    let done = s
        .post(
            "/api/v1/workspaces/default/post-mortems/faster-onboarding",
            json!({"happened": "activation flat", "learned": "the bottleneck is email verification"}),
        )
        .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.body["expected"], "activation +5%");
    let l = s.get("/api/v1/workspaces/default/learnings?source=post_mortem").await;
    assert_eq!(l.body["items"][0]["what"], "the bottleneck is email verification");
    assert_eq!(l.body["items"][0]["owner"], "li");
}

#[tokio::test]
async fn the_first_production_evaluation_opens_a_review_due_thirty_days_later() {
    let s = TestServer::start().await;
    s.flag("exposed", "production").await;
    s.flag("unseen", "production").await;
    let ops = bare("killswitch", Some(json!({"operational": true, "reason": "ops"})));
    assert_eq!(s.post(FLAGS, ops).await.status, 201);
    let token = s.server_token("production").await;
    let r = s
        .req(Method::POST, "/ofrep/v1/evaluate/flags/exposed", &token)
        .json(&json!({"context": {"targetingKey": "u1", "plan": "pro"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut seen = std::collections::HashSet::new();
    sextant_server::api::reviews::sweep(&s.state, &mut seen).await;
    let reviews = s.get("/api/v1/workspaces/default/flag-reviews").await;
    let items = reviews.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["flag"], "exposed");
    assert_eq!(items[0]["overdue"], false);
    assert_eq!(items[0]["hypothesised_effect"], 0.02);
    let first = chrono::DateTime::parse_from_rfc3339(items[0]["first_exposed_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(items[0]["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due - first, chrono::Duration::days(30));
    // Later exposures change nothing.
    assert_eq!(
        s.state
            .store
            .record_exposure("default", "production", "exposed", "2020-01-01T00:00:00Z")
            .await
            .unwrap(),
        None
    );

    // A flag first exposed 40 days ago is overdue and surfaced in the weekly review.
    let then = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    s.state
        .store
        .record_exposure("default", "production", "unseen", &then)
        .await
        .unwrap()
        .unwrap();
    // Operational flags get no review.
    assert_eq!(
        s.state
            .store
            .record_exposure("default", "production", "killswitch", &then)
            .await
            .unwrap(),
        None
    );
    let reviews = s.get("/api/v1/workspaces/default/flag-reviews").await;
    assert_eq!(reviews.body["overdue"], 1);
    let weekly = s.get("/api/v1/reviews/weekly").await;
    assert_eq!(weekly.body["stop"]["overdue_reviews"][0]["flag"], "unseen");

    // The review records kill / iterate / keep and movement vs hypothesis, and a learning.
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    let body = json!({"decision": "kill", "observed_effect": 0.001, "notes": "no lift", "evidence": "https://dash/9"});
    s.call(
        Method::POST,
        &format!("{FLAGS}/unseen/review"),
        &engineer,
        Some(body.clone()),
    )
    .await
    .assert_problem(403, "permission_denied");
    let done = s.post(&format!("{FLAGS}/unseen/review"), body).await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.body["decision"], "kill");
    let weekly = s.get("/api/v1/reviews/weekly").await;
    assert!(weekly.body["stop"]["overdue_reviews"].as_array().unwrap().is_empty());
    assert_eq!(weekly.body["stop"]["not_moved"][0]["flag"], "unseen");
    let learned = s.get("/api/v1/workspaces/default/learnings?source=review").await;
    let what = learned.body["items"][0]["what"].as_str().unwrap();
    assert!(
        what.contains("`unseen`: kill; observed +0.1% vs hypothesised +2.0%"),
        "{what}"
    );
    s.post(&format!("{FLAGS}/nope/review"), json!({"decision": "keep"}))
        .await
        .assert_problem(404, "review_not_found");
}

/// The receiver's state: where to report requests, and the statuses to answer.
type Hook = (
    mpsc::UnboundedSender<(HeaderMap, String)>,
    std::sync::Arc<std::sync::Mutex<std::vec::IntoIter<u16>>>,
);

/// A webhook receiver: answers each request with the next status, then 200.
async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(statuses.into_iter()));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State((tx, statuses)): State<Hook>, headers: HeaderMap, body: String| async move {
                    let _ = tx.send((headers, body));
                    let next = statuses.lock().unwrap().next().unwrap_or(200);
                    StatusCode::from_u16(next).unwrap()
                },
            ),
        )
        .with_state((tx, statuses));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, String)>) -> (HeaderMap, String) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no webhook delivery within 10 s")
        .unwrap()
}

#[tokio::test]
async fn webhooks_are_signed_retried_with_backoff_logged_and_redeliverable() {
    let s = TestServer::start_with(Config {
        webhook_backoff: Duration::from_millis(20),
        alignment_tick: Duration::from_millis(20),
        ..Config::default()
    })
    .await;
    let (url, mut rx) = receiver(vec![500]).await;
    let secret = "0123456789abcdef-secret";
    let bad = json!({"url": "ftp://x", "secret": "short", "events": ["flag.teleported"]});
    let r = s.post("/api/v1/workspaces/default/webhooks", bad).await;
    assert_eq!(fields(&r), ["/url", "/secret", "/events/0"]);
    let hook = s
        .post(
            "/api/v1/workspaces/default/webhooks",
            json!({"url": url, "secret": secret, "events": ["kill_switch"]}),
        )
        .await;
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    assert!(hook.body.get("secret").is_none());
    let id = hook.body["id"].as_i64().unwrap();

    s.flag("boom", "production").await;
    assert_eq!(s.toggle("boom", "production", false).await.status, 200);

    // First attempt gets 500, the retry succeeds; both carry the same signed body.
    let (h1, b1) = next(&mut rx).await;
    let (h2, b2) = next(&mut rx).await;
    assert_eq!(b1, b2);
    let expected = sextant_server::api::webhooks::signature(secret, b1.as_bytes());
    assert_eq!(h1["x-sextant-signature"], expected.as_str());
    assert_eq!(h2["x-sextant-signature"], expected.as_str());
    assert_eq!(h1["x-sextant-event"], "kill_switch");
    let body: Value = serde_json::from_str(&b1).unwrap();
    assert_eq!(body["data"]["flag"], "boom");
    assert_eq!(body["event"], "kill_switch");

    let log_path = format!("/api/v1/workspaces/default/webhooks/{id}/deliveries");
    let mut log = s.get(&log_path).await;
    for _ in 0..100 {
        if log.body["items"][0]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = s.get(&log_path).await;
    }
    let d = &log.body["items"][0];
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64(), d["last_status"].as_i64()),
        (Some("delivered"), Some(2), Some(200))
    );

    let delivery = d["id"].as_i64().unwrap();
    let again = s.post(&format!("{log_path}/{delivery}/redeliver"), json!({})).await;
    assert_eq!(again.status, 202);
    let (h3, b3) = next(&mut rx).await;
    assert_eq!(b3, b1);
    assert_eq!(h3["x-sextant-delivery"], again.body["id"].to_string().as_str());
    s.stop().await;
}

#[test]
fn webhook_backoff_doubles_per_failure() {
    use sextant_server::api::webhooks::backoff;
    let base = Duration::from_secs(10);
    assert_eq!(
        [1, 2, 3, 4].map(|n| backoff(base, n)),
        [10, 20, 40, 80].map(Duration::from_secs)
    );
}

// ------------------------------------------------ issue 9: the rest of the rules

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Revenue (North Star, sum of `purchase`) with `orders` under it.
async fn metric_tree(s: &TestServer) {
    for m in [
        json!({"key": "revenue", "name": "Revenue", "aggregation": "sum", "event": "purchase",
               "good_direction": "increase", "north_star": true}),
        json!({"key": "orders", "name": "Orders", "aggregation": "count", "event": "purchase",
               "good_direction": "increase", "parent": "revenue"}),
    ] {
        let r = s.post("/api/v1/workspaces/default/metrics", json!({"metric": m})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
}

/// Stores `purchase` events (unit, value, time) in production and rolls them up.
async fn purchases(s: &TestServer, events: &[(&str, f64, &str)]) {
    let store = &s.state.store;
    let env = store.get_environment("default", "production").await.unwrap();
    let mut b = sextant_store::EventBatchBuilder::with_capacity(events.len());
    for (unit, value, t) in events {
        b.track("purchase", unit, Some(*value), at(t).timestamp_millis(), None);
    }
    store.append_event_batches(&[b.finish(env.id, None)]).await.unwrap();
    store.rollup_events(1000).await.unwrap();
}

#[tokio::test]
async fn a_hypothesis_must_name_a_node_of_the_metric_tree() {
    let s = TestServer::start().await;
    metric_tree(&s).await;
    let h = |metric: &str| json!({"metric": metric, "direction": "increase", "minimum_effect": 0.02, "reason": "r"});
    let r = s.post(FLAGS, bare("lost", Some(h("conversoin")))).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(fields(&r), ["/flag/hypothesis/metric"]);
    let msg = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("`conversoin` is not in the metric tree") && msg.contains("orders, revenue"),
        "{msg}"
    );
    assert_eq!(s.post(FLAGS, bare("found", Some(h("orders")))).await.status, 201);
    // Replacing the definition is checked the same way.
    let put = s
        .call(
            Method::PUT,
            &format!("{FLAGS}/found"),
            ADMIN,
            Some(bare("found", Some(h("nope")))),
        )
        .await;
    put.assert_problem(422, "validation_failed");
    assert_eq!(fields(&put), ["/flag/hypothesis/metric"]);
}

#[tokio::test]
async fn changing_the_north_star_needs_another_persons_approval_and_so_does_its_revert() {
    let s = TestServer::start().await;
    metric_tree(&s).await;
    let product = s
        .token(json!({"kind": "admin", "role": "product", "name": "pat"}))
        .await;
    let engineer = s
        .token(json!({"kind": "admin", "role": "engineer", "name": "erin"}))
        .await;
    let ada = s.token(json!({"kind": "admin", "role": "admin", "name": "ada"})).await;
    let change = "/api/v1/workspaces/default/metrics/orders/north-star";
    let r = s.post(change, json!({"reason": "pivot to volume"})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["action"], "north_star.update");
    let id = r.body["id"].as_i64().unwrap();
    // Nothing changed yet; the requester and an engineer cannot approve.
    let ns = s.get("/api/v1/workspaces/default/metrics/revenue").await;
    assert_eq!(ns.body["metric"]["north_star"], true);
    approve(&s, ADMIN, id)
        .await
        .assert_problem(403, "self_approval_refused");
    approve(&s, &engineer, id)
        .await
        .assert_problem(403, "permission_denied");
    let ok = approve(&s, &product, id).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["status"], "applied");
    let orders = s.get("/api/v1/workspaces/default/metrics/orders").await;
    assert_eq!(orders.body["metric"]["north_star"], true);

    // Reverting it is gated too: a change request, applied on approval.
    let applied = ok.body["applied_change_id"].as_i64().unwrap();
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/changes/{applied}/revert"),
            &ada,
            Some(json!({"reason": "volume was the wrong call"})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let revert = r.body["id"].as_i64().unwrap();
    approve(&s, &ada, revert)
        .await
        .assert_problem(403, "self_approval_refused");
    assert_eq!(approve(&s, &product, revert).await.status, 200);
    let ns = s.get("/api/v1/workspaces/default/metrics/revenue").await;
    assert_eq!(ns.body["metric"]["north_star"], true);
    assert_eq!(s.get("/api/v1/audit/verify").await.body["ok"], true);
}

fn experiment_body(sample: u64) -> Value {
    json!({"experiment": {
        "key": "bigger-button", "environment": "production", "flag": "checkout",
        "arms": [{"variation": "off", "weight": 50}, {"variation": "on", "weight": 50}],
        "primary_metric": "revenue", "guardrails": ["orders"],
        "hypothesis": {"direction": "increase", "minimum_effect": 0.05},
        "success_criteria": "revenue up 5%", "planned_sample_size": sample}})
}

#[tokio::test]
async fn changing_a_running_experiments_criteria_needs_approval_and_keeps_its_arms() {
    let s = TestServer::start().await;
    s.flag("checkout", "production").await;
    metric_tree(&s).await;
    let exp = "/api/v1/workspaces/default/experiments";
    let one = format!("{exp}/bigger-button");
    assert_eq!(s.post(exp, experiment_body(20_000)).await.status, 201);
    let engineer = s
        .token(json!({"kind": "admin", "role": "engineer", "name": "erin"}))
        .await;
    let product = s
        .token(json!({"kind": "admin", "role": "product", "name": "pat"}))
        .await;
    // A draft changes at once.
    let r = s
        .call(Method::PUT, &one, &engineer, Some(experiment_body(30_000)))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(s.post(&format!("{one}/start"), json!({})).await.status, 200);

    let r = s
        .call(Method::PUT, &one, &engineer, Some(experiment_body(40_000)))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["action"], "experiment.criteria");
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(s.get(&one).await.body["definition"]["planned_sample_size"], 30_000);
    approve(&s, &engineer, id)
        .await
        .assert_problem(403, "permission_denied");
    let ok = approve(&s, &product, id).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(s.get(&one).await.body["definition"]["planned_sample_size"], 40_000);

    // Arms cannot change while it runs: refused when filed, naming the field.
    let mut arms = experiment_body(40_000);
    arms["experiment"]["arms"][0]["weight"] = json!(90);
    arms["experiment"]["arms"][1]["weight"] = json!(10);
    let r = s.call(Method::PUT, &one, &engineer, Some(arms)).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/experiment/arms");

    // Its revert is a change request too.
    let applied = ok.body["applied_change_id"].as_i64().unwrap();
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/changes/{applied}/revert"),
            &engineer,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(approve(&s, &product, r.body["id"].as_i64().unwrap()).await.status, 200);
    assert_eq!(s.get(&one).await.body["definition"]["planned_sample_size"], 30_000);
}

#[tokio::test]
async fn the_weekly_review_shows_significance_ready_rollouts_tree_movement_and_overdue_kills() {
    let s = TestServer::start().await;
    s.flag("checkout", "production").await;
    s.flag("banner", "production").await;
    s.flag("legacy", "production").await;
    metric_tree(&s).await;
    let store = s.state.store.clone();
    let now = at("2030-03-10T00:00:00Z");
    // Revenue 100 the week before, 150 this week.
    purchases(
        &s,
        &[
            ("u1", 100.0, "2030-03-01T10:00:00Z"),
            ("u1", 50.0, "2030-03-05T10:00:00Z"),
            ("u2", 100.0, "2030-03-06T10:00:00Z"),
        ],
    )
    .await;
    // An experiment that reached significance.
    let exp = "/api/v1/workspaces/default/experiments";
    assert_eq!(s.post(exp, experiment_body(20_000)).await.status, 201);
    assert_eq!(
        s.post(&format!("{exp}/bigger-button/start"), json!({})).await.status,
        200
    );
    store
        .mark_experiment_significant("default", "bigger-button", at("2030-03-08T00:00:00Z"))
        .await
        .unwrap();
    // A rollout whose 1-hour hold at 1% has passed.
    let plan = json!({"plan": {"control": "off", "treatment": "on",
        "stages": [{"percent": 1, "min_hold_seconds": 3600}, {"percent": 25}]}});
    let path = "/api/v1/workspaces/default/flags/banner/environments/production/rollout";
    assert_eq!(s.call(Method::PUT, path, ADMIN, Some(plan)).await.status, 200);
    assert_eq!(s.post(&format!("{path}/start"), json!({})).await.status, 200);
    sextant_server::scheduler::tick(&s.state, at("2030-03-09T20:00:00Z"))
        .await
        .unwrap();
    // A flag whose 30-day review said kill, still on in production.
    store
        .record_exposure("default", "production", "legacy", "2030-01-01T00:00:00Z")
        .await
        .unwrap();
    let r = s
        .post(&format!("{FLAGS}/legacy/review"), json!({"decision": "kill"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let r = sextant_server::reports::review(&store, "default", sextant_server::reports::Cadence::Weekly, now)
        .await
        .unwrap();
    let sig = &r["start"]["significant_experiments"];
    assert_eq!(sig[0]["experiment"], "bigger-button", "{r:#}");
    assert!(sig[0]["decide_by"].as_str().unwrap().starts_with("2030-03-15"), "{r:#}");
    let ready = &r["start"]["rollouts_ready"];
    assert_eq!(
        (&ready[0]["flag"], &ready[0]["percent"], &ready[0]["next_percent"]),
        (&json!("banner"), &json!(1.0), &json!(25.0)),
        "{r:#}"
    );
    let ns = &r["metrics"][0];
    assert_eq!(
        (
            &ns["metric"],
            &ns["north_star"],
            &ns["current"],
            &ns["previous"],
            &ns["trend"]
        ),
        (
            &json!("revenue"),
            &json!(true),
            &json!(150.0),
            &json!(100.0),
            &json!("improving")
        ),
        "{r:#}"
    );
    assert_eq!(r["metrics"][1]["metric"], "orders");
    assert_eq!(r["stop"]["overdue_kills"][0]["flag"], "legacy");
    assert_eq!(r["stop"]["overdue_kills"][0]["still_on_in"], json!(["production"]));

    let md = sextant_server::reports::markdown(&r);
    for line in [
        "### Experiments reaching significance",
        "- experiment `bigger-button` (flag `checkout`) reached significance on `revenue`",
        "- `banner` in production: 1% held long enough, next 25%",
        "- `revenue` (North Star): 150.0000 (was 100.0000), +50.0% — improving",
        "- `legacy` was to be killed at its review",
    ] {
        assert!(md.contains(line), "missing {line:?} in\n{md}");
    }
    // Within the hold the rollout is not listed.
    let early = sextant_server::reports::review(
        &store,
        "default",
        sextant_server::reports::Cadence::Weekly,
        at("2030-03-09T20:30:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(early["start"]["rollouts_ready"], json!([]));
    // The API serves the same report, as JSON or Markdown.
    let api = s.get("/api/v1/reviews/weekly").await;
    assert!(
        api.body["start"]["significant_experiments"].is_array(),
        "{:?}",
        api.body
    );
    let md = s
        .req(Method::GET, "/api/v1/reviews/quarterly?format=markdown", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");
    assert!(md.text().await.unwrap().contains("## North Star"));
}

#[tokio::test]
async fn an_initiative_whose_metric_did_not_move_gets_a_post_mortem_due_once() {
    let s = TestServer::start().await;
    metric_tree(&s).await;
    let init = |key: &str, metric: &str, ends: &str| {
        json!({"initiative": {"key": key, "name": key, "team": "growth", "owner": "li", "metric": metric,
            "direction": "increase", "expected_change": 0.1, "starts_on": "2030-03-01", "ends_on": ends}})
    };
    for body in [
        init("one-click", "revenue", "2030-03-07"),
        init("more-orders", "orders", "2030-03-07"),
        init("still-running", "revenue", "2030-03-31"),
    ] {
        let r = s.post("/api/v1/workspaces/default/initiatives", body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // Before the window: revenue 100 in 2 orders; during it: 105 in 4 orders.
    purchases(
        &s,
        &[
            ("u1", 50.0, "2030-02-25T10:00:00Z"),
            ("u2", 50.0, "2030-02-26T10:00:00Z"),
            ("u1", 30.0, "2030-03-02T10:00:00Z"),
            ("u2", 25.0, "2030-03-03T10:00:00Z"),
            ("u3", 25.0, "2030-03-04T10:00:00Z"),
            ("u4", 25.0, "2030-03-05T10:00:00Z"),
        ],
    )
    .await;
    let store = s.state.store.clone();
    let now = at("2030-03-09T00:00:00Z");
    let opened = sextant_server::reports::open_due_post_mortems(&store, "default", now)
        .await
        .unwrap();
    assert_eq!(opened.len(), 1, "{opened:?}");
    let pm = &opened[0];
    assert_eq!((pm.initiative.as_str(), pm.owner.as_str()), ("one-click", "li"));
    assert_eq!(pm.due_at, "2030-03-22T00:00:00.000Z");
    assert_eq!(
        pm.expected.as_deref(),
        Some("`revenue` to increase by at least 10.0% between 2030-03-01 and 2030-03-07 (observed: +5.0%)")
    );
    // Idempotent.
    assert!(
        sextant_server::reports::open_due_post_mortems(&store, "default", now)
            .await
            .unwrap()
            .is_empty()
    );
    // The monthly review shows each initiative with its metric.
    let r = sextant_server::reports::review(&store, "default", sextant_server::reports::Cadence::Monthly, now)
        .await
        .unwrap();
    let by_key = |k: &str| {
        r["initiatives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["initiative"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            by_key("one-click")["moved"].clone(),
            by_key("one-click")["phase"].clone()
        ),
        (json!(false), json!("ended"))
    );
    assert_eq!(by_key("more-orders")["moved"], true);
    assert_eq!(by_key("still-running")["phase"], "active");
    assert!(sextant_server::reports::markdown(&r).contains(
        "- `one-click` (growth, li): `revenue` increase by +10.0% expected, +5.0% so far, not moved as expected"
    ));
    // Writing it from the template records a learning.
    let done = s
        .post(
            "/api/v1/workspaces/default/post-mortems/one-click",
            json!({"happened": "revenue +5%", "learned": "one-click mostly moved existing buyers"}),
        )
        .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    let l = s.get("/api/v1/workspaces/default/learnings?source=post_mortem").await;
    assert_eq!(l.body["items"][0]["what"], "one-click mostly moved existing buyers");
}

#[tokio::test]
async fn every_alignment_endpoint_is_in_the_openapi_document() {
    let s = TestServer::start().await;
    let doc = s.get("/api/openapi.json").await.body;
    for path in [
        "/api/v1/workspaces/{ws}/policy",
        "/api/v1/workspaces/{ws}/change-requests/{id}/approve",
        "/api/v1/workspaces/{ws}/changes/{id}/revert",
        "/api/v1/workspaces/{ws}/event-deletions",
        "/api/v1/workspaces/{ws}/principles",
        "/api/v1/workspaces/{ws}/flag-reviews",
        "/api/v1/workspaces/{ws}/flag-lifecycle",
        "/api/v1/workspaces/{ws}/stale-flags",
        "/api/v1/reviews/{cadence}",
        "/api/v1/workspaces/{ws}/learnings",
        "/api/v1/workspaces/{ws}/post-mortems",
        "/api/v1/workspaces/{ws}/webhooks",
        "/api/v1/deploys",
        "/api/v1/dora",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not in the OpenAPI document");
    }
}

#[tokio::test]
async fn an_id_that_cannot_exist_in_a_path_is_a_problem_json_404_not_a_plain_text_400() {
    let s = TestServer::start().await;
    for path in [
        "/api/v1/workspaces/default/change-requests/9223372036854775808",
        "/api/v1/workspaces/default/change-requests/abc",
        "/api/v1/workspaces/default/webhooks/1/deliveries/x/redeliver",
    ] {
        let r = if path.ends_with("redeliver") {
            s.post(path, serde_json::json!({})).await
        } else {
            s.get(path).await
        };
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{path}");
        assert_eq!(r.body["code"], "route_not_found", "{path}");
    }
}

#[tokio::test]
async fn deleting_events_needs_another_product_persons_approval_and_cannot_be_reverted() {
    let s = TestServer::start().await;
    metric_tree(&s).await;
    purchases(
        &s,
        &[
            ("u1", 10.0, "2026-11-20T10:05:00Z"),
            ("u2", 5.0, "2026-11-20T11:30:00Z"),
            ("u1", 3.0, "2026-11-21T09:00:00Z"),
        ],
    )
    .await;
    let engineer = s
        .token(json!({"kind": "admin", "role": "engineer", "name": "erin"}))
        .await;
    let product = s
        .token(json!({"kind": "admin", "role": "product", "name": "pat"}))
        .await;
    let viewer = s.token(json!({"kind": "admin", "role": "viewer", "name": "vic"})).await;
    let staging_only = s
        .token(json!({"kind": "admin", "role": "product", "name": "sam", "environments": ["staging"]}))
        .await;
    let request = async |token: &str, event: &str, env: &str, from: &str| {
        let body = json!({"environment": env, "event": event, "from": from, "to": "2026-11-21T00:00:00Z",
                          "reason": "a customer asked us to erase their data"});
        s.call(
            Method::POST,
            "/api/v1/workspaces/default/event-deletions",
            token,
            Some(body),
        )
        .await
    };
    const MIDNIGHT: &str = "2026-11-20T00:00:00Z";

    // Bad requests are refused before anything is filed.
    let bad = request(&engineer, "purchase", "production", "2026-11-20T10:30:00Z").await;
    bad.assert_problem(422, "validation_failed");
    assert_eq!(fields(&bad), ["/from"]);
    request(&engineer, "purchase", "nowhere", MIDNIGHT)
        .await
        .assert_problem(404, "environment_not_found");
    request(&engineer, "refund", "production", MIDNIGHT)
        .await
        .assert_problem(404, "events_not_found");
    for token in [&viewer, &staging_only] {
        request(token, "purchase", "production", MIDNIGHT)
            .await
            .assert_problem(403, "permission_denied");
    }

    let r = request(&engineer, "purchase", "production", MIDNIGHT).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        (&r.body["action"], &r.body["status"], &r.body["environment"]),
        (&json!("events.delete"), &json!("pending"), &json!("production"))
    );
    assert_eq!(r.body["payload"]["rolled_up_events"], 2);
    assert!(r.body["payload"]["revert"].as_str().unwrap().starts_with("impossible"));
    let id = r.body["id"].as_i64().unwrap();
    let store = &s.state.store;
    let env = store.get_environment("default", "production").await.unwrap();
    assert_eq!(
        store.event_totals(Some(env.id)).await.unwrap().events,
        3,
        "nothing deleted yet"
    );

    // Engineers, tokens scoped elsewhere and the requester cannot decide.
    approve(&s, &engineer, id)
        .await
        .assert_problem(403, "permission_denied");
    approve(&s, &staging_only, id)
        .await
        .assert_problem(403, "permission_denied");
    let own = request(&product, "purchase", "production", MIDNIGHT).await;
    approve(&s, &product, own.body["id"].as_i64().unwrap())
        .await
        .assert_problem(403, "self_approval_refused");
    assert_eq!(store.event_totals(Some(env.id)).await.unwrap().events, 3);

    // Another person with the product role approves: raw events and rollups go.
    let ok = approve(&s, &product, id).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["status"], "applied");
    let change = ok.body["applied_change_id"].as_i64().unwrap();
    assert_eq!(store.event_totals(Some(env.id)).await.unwrap().events, 1);
    let range = sextant_store::HourRange {
        from: at("2026-11-20T00:00:00Z").timestamp() / 3600,
        to: at("2026-11-22T00:00:00Z").timestamp() / 3600,
    };
    let left = store
        .metric_sums("default", "production", "revenue", range)
        .await
        .unwrap();
    assert_eq!((left.n, left.sum), (1, 3.0), "only u1's purchase on the 21st is left");
    let audit = s.get("/api/v1/audit?kind=events&action=delete").await;
    let entries = audit.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{:?}", audit.body);
    assert_eq!(entries[0]["key"], "purchase");

    // There is no revert: deleted events are not kept anywhere.
    let revert = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/changes/{change}/revert"),
            ADMIN,
            Some(json!({"reason": "undo"})),
        )
        .await;
    revert.assert_problem(409, "change_not_revertible");
    assert!(
        revert.body["detail"].as_str().unwrap().contains("impossible"),
        "{:?}",
        revert.body
    );
    // The same request cannot apply twice.
    approve(&s, ADMIN, id)
        .await
        .assert_problem(409, "change_request_not_pending");
}
