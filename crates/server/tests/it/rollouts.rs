use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use sextant_server::scheduler::{self, Clock};
use sextant_server::{AppState, Config};
use sextant_store::{ChangeMeta, Store};

use crate::support::{ADMIN, Backend, TestServer};

const PLAN: &str = "/api/v1/workspaces/default/flags/checkout/environments/production/rollout";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn plan(extra: Value) -> Value {
    let mut p = json!({
        "control": "off", "treatment": "on",
        "stages": [{"percent": 1, "min_hold_seconds": 3600}, {"percent": 25, "min_hold_seconds": 3600}, {"percent": 100}]
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

/// The flag's production default serve: the treatment weight of the rollout split.
async fn treatment_weight(s: &TestServer) -> Option<u64> {
    let r = s.get("/api/v1/workspaces/default/flags/checkout").await;
    let serve = &r.body["flag"]["environments"]["production"]["default_serve"]["split"];
    serve["weights"][1]["weight"].as_u64()
}

async fn start(s: &TestServer) {
    s.flag("checkout", "production").await;
    let r = s
        .call(Method::PUT, PLAN, ADMIN, Some(json!({"plan": plan(json!({}))})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "draft");
    let r = s.post(&format!("{PLAN}/start"), json!({"reason": "ship it"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "running");
}

async fn a_plan_advances_only_after_each_hold_and_completes_at_100_percent(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    start(&s).await;
    let t0 = t("2030-01-07T10:00:00Z");
    let r = scheduler::tick(&s.state, t0).await.unwrap();
    assert_eq!(r.advanced, vec![("checkout".into(), "production".into(), 0)]);
    assert_eq!(treatment_weight(&s).await, Some(1_000));

    // Within the hold nothing moves.
    let r = scheduler::tick(&s.state, t("2030-01-07T10:59:59Z")).await.unwrap();
    assert!(r.advanced.is_empty(), "{r:?}");
    assert_eq!(treatment_weight(&s).await, Some(1_000));

    scheduler::tick(&s.state, t("2030-01-07T11:00:00Z")).await.unwrap();
    assert_eq!(treatment_weight(&s).await, Some(25_000));
    scheduler::tick(&s.state, t("2030-01-07T12:00:00Z")).await.unwrap();
    assert_eq!(treatment_weight(&s).await, Some(100_000));
    let r = scheduler::tick(&s.state, t("2030-01-07T12:00:01Z")).await.unwrap();
    assert_eq!(r.completed, vec![("checkout".into(), "production".into())]);

    let p = s.get(PLAN).await;
    assert_eq!(p.body["status"], "completed");
    assert_eq!(p.body["current_percent"], 100.0);
    let audit = s
        .get("/api/v1/audit?kind=rollout_plan&key=checkout&action=rollout_advance")
        .await;
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 3, "{:?}", audit.body);
    let flag_changes = s
        .get("/api/v1/audit?kind=flag&key=checkout&action=rollout_advance")
        .await;
    assert_eq!(
        flag_changes.body["entries"][1]["reason"],
        "stage 1 held 3600 s with healthy guardrails; now 25%"
    );
}

async fn raising_a_stage_never_moves_a_unit_off_treatment(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    start(&s).await;
    let token = s.server_token("production").await;
    let on_units = |s: &TestServer, token: String| {
        let s_url = s.url("/ofrep/v1/evaluate/flags/checkout");
        let http = s.http.clone();
        async move {
            let mut on = Vec::new();
            for i in 0..400 {
                let r: Value = http
                    .post(&s_url)
                    .bearer_auth(&token)
                    .json(&json!({"context": {"targetingKey": format!("user-{i}")}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if r["value"] == true {
                    on.push(i);
                }
            }
            on
        }
    };
    scheduler::tick(&s.state, t("2030-01-07T10:00:00Z")).await.unwrap();
    let at_1 = on_units(&s, token.clone()).await;
    scheduler::tick(&s.state, t("2030-01-07T11:00:00Z")).await.unwrap();
    let at_25 = on_units(&s, token.clone()).await;
    assert!(at_1.iter().all(|u| at_25.contains(u)), "{at_1:?} ⊄ {at_25:?}");
    assert!((60..=140).contains(&at_25.len()), "{}", at_25.len());
}

async fn a_schedule_holds_advancing_until_its_start_and_within_business_hours(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    s.flag("checkout", "production").await;
    let schedule = json!({"schedule": {"start_at": "2030-01-08T00:00:00Z",
        "business_hours": {"from": "09:00", "to": "17:00"}}});
    let r = s
        .call(Method::PUT, PLAN, ADMIN, Some(json!({"plan": plan(schedule)})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.post(&format!("{PLAN}/start"), json!({})).await;
    // Monday, before the start.
    assert!(
        scheduler::tick(&s.state, t("2030-01-07T10:00:00Z"))
            .await
            .unwrap()
            .advanced
            .is_empty()
    );
    // Tuesday night: started but outside business hours.
    assert!(
        scheduler::tick(&s.state, t("2030-01-08T20:00:00Z"))
            .await
            .unwrap()
            .advanced
            .is_empty()
    );
    let r = scheduler::tick(&s.state, t("2030-01-09T09:00:00Z")).await.unwrap();
    assert_eq!(r.advanced.len(), 1);
}

async fn an_invalid_plan_names_every_wrong_field(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    s.flag("checkout", "production").await;
    let bad = json!({"control": "off", "treatment": "maybe",
        "stages": [{"percent": 50}, {"percent": 10}],
        "guardrails": [{"metric": "errors", "direction": "decrease", "tolerance": -1}],
        "schedule": {"business_hours": {"from": "18:00", "to": "09:00"}}});
    let r = s.call(Method::PUT, PLAN, ADMIN, Some(json!({"plan": bad}))).await;
    r.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "/plan/treatment",
            "/plan/stages/1/percent",
            "/plan/guardrails/0/tolerance",
            "/plan/schedule/business_hours/to",
            "/plan/guardrails/0/metric"
        ]
    );
    s.get(PLAN).await.assert_problem(404, "rollout_plan_not_found");
}

async fn a_running_plan_cannot_be_replaced_or_started_twice(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    start(&s).await;
    s.call(Method::PUT, PLAN, ADMIN, Some(json!({"plan": plan(json!({}))})))
        .await
        .assert_problem(409, "state_conflict");
    s.post(&format!("{PLAN}/start"), json!({}))
        .await
        .assert_problem(409, "state_conflict");
    let r = s
        .post(&format!("{PLAN}/pause"), json!({"reason": "investigating"}))
        .await;
    assert_eq!(r.body["status"], "paused");
    assert!(
        scheduler::tick(&s.state, t("2030-01-07T10:00:00Z"))
            .await
            .unwrap()
            .advanced
            .is_empty()
    );
    let r = s.post(&format!("{PLAN}/resume"), json!({})).await;
    assert_eq!(r.body["status"], "running");
}

async fn engineers_kill_in_production_and_sdks_hear_it_and_the_rollout_ends(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    start(&s).await;
    scheduler::tick(&s.state, t("2030-01-07T10:00:00Z")).await.unwrap();
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    let viewer = s.token(json!({"kind": "admin", "role": "viewer"})).await;
    let sdk = s.server_token("production").await;
    let mut stream = s.sse("/sdk/v1/stream", &sdk, None).await;
    stream.next().await.unwrap();

    let kill = "/api/v1/workspaces/default/flags/checkout/environments/production/kill";
    s.call(Method::POST, kill, &viewer, Some(json!({})))
        .await
        .assert_problem(403, "permission_denied");
    let r = s
        .call(Method::POST, kill, &engineer, Some(json!({"reason": "errors spiking"})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["flag"]["environments"]["production"]["enabled"], false);

    let change = stream.next().await.unwrap();
    assert_eq!(change.event.as_deref(), Some("change"));
    assert!(change.data.contains("checkout"), "{}", change.data);

    let p = s.get(PLAN).await;
    assert_eq!(p.body["status"], "killed");
    assert!(p.body["status_reason"].as_str().unwrap().contains("errors spiking"));
    // The scheduler leaves a killed plan alone.
    assert!(
        scheduler::tick(&s.state, t("2030-01-07T12:00:00Z"))
            .await
            .unwrap()
            .advanced
            .is_empty()
    );

    let restores = s.get("/api/v1/workspaces/default/restores").await;
    let items = restores.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["action"], "kill");
    assert!(items[0]["seconds_to_restore"].as_f64().unwrap() >= 0.0);
    let audit = s.get("/api/v1/audit?kind=flag&key=checkout&action=kill").await;
    assert_eq!(audit.body["entries"][0]["reason"], "errors spiking");
}

async fn a_plan_whose_flag_was_turned_off_ends_as_killed(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    start(&s).await;
    scheduler::tick(&s.state, t("2030-01-07T10:00:00Z")).await.unwrap();
    s.toggle("checkout", "production", false).await;
    let r = scheduler::tick(&s.state, t("2030-01-07T11:00:00Z")).await.unwrap();
    assert_eq!(r.killed.len(), 1);
    assert_eq!(s.get(PLAN).await.body["status"], "killed");
}

async fn scheduled_changes_apply_at_their_time_and_can_be_cancelled(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    s.flag("checkout", "production").await;
    let url = "/api/v1/workspaces/default/scheduled-changes";
    let off = s
        .post(
            url,
            json!({"flag": "checkout", "environment": "production", "run_at": "2030-01-07T18:00:00+01:00",
            "change": {"kind": "toggle", "enabled": false}, "reason": "end of campaign"}),
        )
        .await;
    assert_eq!(off.status, 201, "{:?}", off.body);
    assert_eq!(off.body["run_at"], "2030-01-07T17:00:00.000Z");
    let other = s
        .post(
            url,
            json!({"flag": "checkout", "environment": "production", "run_at": "2030-01-07T19:00:00Z",
            "change": {"kind": "toggle", "enabled": false}}),
        )
        .await;
    let id = other.body["id"].as_i64().unwrap();
    let r = s.call(Method::DELETE, &format!("{url}/{id}"), ADMIN, None).await;
    assert_eq!(r.body["status"], "cancelled");
    s.call(Method::DELETE, &format!("{url}/{id}"), ADMIN, None)
        .await
        .assert_problem(409, "state_conflict");

    let pending = s.get(&format!("{url}?status=pending")).await;
    assert_eq!(pending.body["items"].as_array().unwrap().len(), 1);

    assert!(
        scheduler::tick(&s.state, t("2030-01-07T16:59:59Z"))
            .await
            .unwrap()
            .applied
            .is_empty()
    );
    let r = scheduler::tick(&s.state, t("2030-01-07T20:00:00Z")).await.unwrap();
    assert_eq!(r.applied, vec![off.body["id"].as_i64().unwrap()]);
    let flag = s.get("/api/v1/workspaces/default/flags/checkout").await;
    assert_eq!(flag.body["flag"]["environments"]["production"]["enabled"], false);
    let audit = s.get("/api/v1/audit?kind=flag&key=checkout&action=turn_off").await;
    let reason = audit.body["entries"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("end of campaign"), "{reason}");
    assert_eq!(audit.body["entries"][0]["actor"], "scheduler");

    s.post(
        url,
        json!({"flag": "checkout", "environment": "production", "run_at": "tomorrow",
        "change": {"kind": "toggle", "enabled": true}}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let engineer = s.token(json!({"kind": "admin", "role": "engineer"})).await;
    s.call(
        Method::POST,
        url,
        &engineer,
        Some(json!({"flag": "checkout", "environment": "production",
        "run_at": "2030-01-08T00:00:00Z", "change": {"kind": "toggle", "enabled": true}})),
    )
    .await
    .assert_problem(403, "permission_denied");
}

#[tokio::test]
async fn scheduled_changes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sextant.db").to_string_lossy().into_owned();
    let store = Store::open(&path).await.unwrap();
    store.bootstrap(None).await.unwrap();
    let flag = serde_json::from_value(json!({"key": "checkout", "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {"enabled": true, "default_serve": {"variation": "on"}}}}))
    .unwrap();
    let meta = ChangeMeta::new("test", None);
    store.create_flag("default", flag, &meta).await.unwrap();
    let change = sextant_store::FlagChange::Toggle { enabled: false };
    store
        .schedule_change(
            "default",
            "checkout",
            "production",
            t("2030-01-07T17:00:00Z"),
            &change,
            &meta,
        )
        .await
        .unwrap();
    store.close().await;
    drop(store);

    let store = Arc::new(Store::open(&path).await.unwrap());
    let state = AppState::new(store.clone(), Config::default()).await.unwrap();
    let r = scheduler::tick(&state, t("2030-01-07T17:00:00Z")).await.unwrap();
    assert_eq!(r.applied.len(), 1);
    let flag = store.get_flag("default", "checkout").await.unwrap();
    assert!(!flag.flag.environments["production"].enabled);
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_evaluates_once_per_interval_and_stops_on_shutdown() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let interval = Duration::from_secs(30);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let looks = Arc::new(AtomicU64::new(0));
    let counter = looks.clone();
    let task = tokio::spawn(scheduler::every(interval, stopped, move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }));
    // Let the loop start and arm its timer.
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_secs(29)).await;
    tokio::task::yield_now().await;
    assert_eq!(looks.load(Ordering::SeqCst), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(looks.load(Ordering::SeqCst), 1);
    tokio::time::advance(interval * 3).await;
    tokio::task::yield_now().await;
    assert!(looks.load(Ordering::SeqCst) >= 2);
    stop.send_replace(true);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_clock_follows_tokio_time() {
    let clock = Clock::starting_at(t("2030-01-07T10:00:00Z"));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(clock.now(), t("2030-01-07T11:00:00Z"));
}

/// Simulated traffic: `units` users split evenly between control and
/// treatment (as SDKs report exposures), each control user erring with
/// probability 10% and each treatment user with `treatment_error_pct`%,
/// assigned deterministically by unit number.
async fn simulate(s: &TestServer, units: u32, treatment_error_pct: u32) {
    let env = s.state.store.get_environment("default", "production").await.unwrap();
    let now_ms = Utc::now().timestamp_millis();
    let mut b = sextant_store::EventBatchBuilder::with_capacity(units as usize * 2);
    for i in 0..units {
        let unit = format!("sim-{i}");
        let (variation, pct) = if i % 2 == 0 {
            ("off", 10)
        } else {
            ("on", treatment_error_pct)
        };
        b.exposure("checkout", variation, &unit, now_ms);
        if (i / 2) % 100 < pct {
            b.track("error", &unit, None, now_ms, None);
        }
    }
    s.state
        .store
        .append_event_batches(&[b.finish(env.id, None)])
        .await
        .unwrap();
    s.state.store.rollup_events(1_000).await.unwrap();
}

async fn guarded(s: &TestServer, on_breach: &str) {
    s.flag("checkout", "production").await;
    let metric = serde_json::from_value(json!({"key": "errors", "name": "Errors", "aggregation": "count",
        "event": "error", "good_direction": "decrease", "north_star": true}))
    .unwrap();
    s.state
        .store
        .create_metric("default", metric, &ChangeMeta::new("test", None))
        .await
        .unwrap();
    let guard = json!({"guardrails": [{"metric": "errors", "direction": "decrease", "tolerance": 0.02}],
        "on_breach": on_breach});
    let r = s
        .call(Method::PUT, PLAN, ADMIN, Some(json!({"plan": plan(guard)})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.post(&format!("{PLAN}/start"), json!({})).await;
    scheduler::tick(&s.state, t("2030-01-07T10:00:00Z")).await.unwrap();
    assert_eq!(treatment_weight(s).await, Some(1_000));
}

async fn a_degrading_treatment_is_rolled_back_at_the_next_evaluation_with_the_reason_recorded(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    guarded(&s, "rollback").await;
    simulate(&s, 4_000, 30).await;
    let r = scheduler::tick(&s.state, t("2030-01-07T10:00:30Z")).await.unwrap();
    assert_eq!(r.breached.len(), 1, "{r:?}");
    assert_eq!(treatment_weight(&s).await, Some(0));
    let p = s.get(PLAN).await;
    assert_eq!(p.body["status"], "rolled_back");
    assert_eq!(p.body["current_percent"], 0.0);
    assert_eq!(p.body["monitors"]["errors"]["looks"], 1);
    let audit = s
        .get("/api/v1/audit?kind=flag&key=checkout&action=rollout_rollback")
        .await;
    let reason = audit.body["entries"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("guardrail `errors` breached"), "{reason}");
    let restores = s.get("/api/v1/workspaces/default/restores").await;
    assert_eq!(restores.body["items"][0]["action"], "rollout_rollback");
    // A rolled-back plan stays put.
    let r = scheduler::tick(&s.state, t("2030-01-07T12:00:00Z")).await.unwrap();
    assert!(r.advanced.is_empty());
}

async fn a_degrading_treatment_pauses_a_plan_whose_action_is_pause(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    guarded(&s, "pause").await;
    simulate(&s, 4_000, 30).await;
    scheduler::tick(&s.state, t("2030-01-07T10:00:30Z")).await.unwrap();
    assert_eq!(treatment_weight(&s).await, Some(1_000));
    assert_eq!(s.get(PLAN).await.body["status"], "paused");
}

async fn the_daily_review_lists_the_last_days_guardrail_breaches_and_stage_advances(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    guarded(&s, "rollback").await;
    simulate(&s, 4_000, 30).await;
    scheduler::tick(&s.state, t("2030-01-07T10:00:30Z")).await.unwrap();
    let now = Utc::now() + chrono::Duration::minutes(1);
    let review =
        |now| sextant_server::reports::review(&s.state.store, "default", sextant_server::reports::Cadence::Daily, now);
    let r = review(now).await.unwrap();
    let g = &r["guardrails"];
    assert_eq!(
        (&g["breaches"], &g["auto_pauses"], &g["rollbacks"], &g["stage_advances"]),
        (&json!(1), &json!(0), &json!(1), &json!(1)),
        "{r:#}"
    );
    let events: Vec<&str> = g["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["stage_advanced", "breach_rolled_back"], "{r:#}");
    let breach = &g["events"][1];
    assert_eq!(
        (&breach["flag"], &breach["environment"]),
        (&json!("checkout"), &json!("production"))
    );
    assert!(
        breach["reason"]
            .as_str()
            .unwrap()
            .starts_with("guardrail `errors` breached"),
        "{breach}"
    );
    let md = sextant_server::reports::markdown(&r);
    assert!(
        md.contains("### Guardrails: 1 breaches (0 paused, 1 rolled back), 1 stage advances"),
        "{md}"
    );
    assert!(
        md.contains("`checkout` in production: breach rolled back — guardrail `errors` breached"),
        "{md}"
    );
    // The API serves it too; a day later the events have left the window.
    let api = s.get("/api/v1/reviews/daily").await;
    assert_eq!(api.body["guardrails"]["breaches"], 1, "{:?}", api.body);
    let later = review(now + chrono::Duration::days(2)).await.unwrap();
    assert_eq!(later["guardrails"]["events"], json!([]));
}

async fn a_healthy_treatment_reaches_100_percent(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    guarded(&s, "rollback").await;
    simulate(&s, 4_000, 10).await;
    for at in ["2030-01-07T11:00:00Z", "2030-01-07T12:00:00Z", "2030-01-07T12:00:01Z"] {
        let r = scheduler::tick(&s.state, t(at)).await.unwrap();
        assert!(r.breached.is_empty(), "{r:?}");
    }
    assert_eq!(treatment_weight(&s).await, Some(100_000));
    assert_eq!(s.get(PLAN).await.body["status"], "completed");
}

/// Starts a plan on `checkout` guarded by `guardrail` after creating
/// `metrics` (the first is the North Star), and takes it to its first stage.
async fn guarded_by(s: &TestServer, metrics: &[Value], guardrail: Value) {
    s.flag("checkout", "production").await;
    for m in metrics {
        let def = serde_json::from_value(m.clone()).unwrap();
        s.state
            .store
            .create_metric("default", def, &ChangeMeta::new("test", None))
            .await
            .unwrap();
    }
    let body = json!({"plan": plan(json!({"guardrails": [guardrail], "on_breach": "rollback"}))});
    let r = s.call(Method::PUT, PLAN, ADMIN, Some(body)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.post(&format!("{PLAN}/start"), json!({})).await;
    scheduler::tick(&s.state, t("2030-01-07T10:00:00Z")).await.unwrap();
}

/// `units` users alternating control/treatment; `events(i, treatment)`
/// lists each user's track events as (event, value).
async fn simulate_events(s: &TestServer, units: u32, events: impl Fn(u32, bool) -> Vec<(&'static str, Option<f64>)>) {
    let env = s.state.store.get_environment("default", "production").await.unwrap();
    let now_ms = Utc::now().timestamp_millis();
    let mut b = sextant_store::EventBatchBuilder::with_capacity(units as usize * 4);
    for i in 0..units {
        let unit = format!("sim-{i}");
        let treatment = i % 2 == 1;
        b.exposure("checkout", if treatment { "on" } else { "off" }, &unit, now_ms);
        for (event, value) in events(i / 2, treatment) {
            b.track(event, &unit, value, now_ms, None);
        }
    }
    let store = &s.state.store;
    store.append_event_batches(&[b.finish(env.id, None)]).await.unwrap();
    store.rollup_events(1_000).await.unwrap();
}

fn conversion_metric() -> Vec<Value> {
    vec![
        json!({"key": "purchase_rate", "name": "Purchase rate", "aggregation": "conversion",
        "event": "purchase", "good_direction": "increase", "north_star": true}),
    ]
}

async fn a_conversion_guardrail_rolls_back_a_treatment_that_converts_less(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    let guard = json!({"metric": "purchase_rate", "direction": "increase", "tolerance": 0.02});
    guarded_by(&s, &conversion_metric(), guard).await;
    // Control converts 40%, treatment 20%.
    simulate_events(&s, 4_000, |i, treatment| {
        let pct = if treatment { 20 } else { 40 };
        if i % 100 < pct {
            vec![("purchase", None)]
        } else {
            vec![]
        }
    })
    .await;
    let r = scheduler::tick(&s.state, t("2030-01-07T10:00:30Z")).await.unwrap();
    assert_eq!(r.breached.len(), 1, "{r:?}");
    assert!(
        r.breached[0].2.starts_with("guardrail `purchase_rate` breached"),
        "{r:?}"
    );
    assert_eq!(treatment_weight(&s).await, Some(0));
    // The look is of rates: the difference is about −0.2.
    let p = s.get(PLAN).await;
    let ci = &p.body["monitors"]["purchase_rate"]["ci"];
    let (lo, hi) = (ci["lower"].as_f64().unwrap(), ci["upper"].as_f64().unwrap());
    assert!(lo < -0.2 && -0.2 < hi && hi < -0.02, "{ci}");
}

async fn a_conversion_guardrail_lets_an_equal_treatment_reach_100_percent(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    let guard = json!({"metric": "purchase_rate", "direction": "increase", "tolerance": 0.02});
    guarded_by(&s, &conversion_metric(), guard).await;
    simulate_events(
        &s,
        4_000,
        |i, _| if i % 100 < 40 { vec![("purchase", None)] } else { vec![] },
    )
    .await;
    for at in ["2030-01-07T11:00:00Z", "2030-01-07T12:00:00Z", "2030-01-07T12:00:01Z"] {
        let r = scheduler::tick(&s.state, t(at)).await.unwrap();
        assert!(r.breached.is_empty(), "{r:?}");
    }
    assert_eq!(s.get(PLAN).await.body["status"], "completed");
}

async fn a_ratio_guardrail_rolls_back_a_treatment_with_less_revenue_per_session(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    let metrics = [
        json!({"key": "revenue", "name": "Revenue", "aggregation": "sum", "event": "purchase",
            "good_direction": "increase", "north_star": true}),
        json!({"key": "sessions", "name": "Sessions", "aggregation": "count", "event": "session",
            "good_direction": "increase", "parent": "revenue"}),
        json!({"key": "revenue_per_session", "name": "Revenue per session", "aggregation": "ratio",
            "numerator": "revenue", "denominator": "sessions", "good_direction": "increase", "parent": "revenue"}),
    ];
    let guard = json!({"metric": "revenue_per_session", "direction": "increase", "tolerance": 0.5});
    guarded_by(&s, &metrics, guard).await;
    // 1–3 sessions per user; control spends 5 per session, treatment 3.
    simulate_events(&s, 2_000, |i, treatment| {
        let sessions = 1 + i % 3;
        let per_session = if treatment { 3.0 } else { 5.0 } + f64::from(i % 5) - 2.0;
        let mut e = vec![("session", None); sessions as usize];
        e.push(("purchase", Some(per_session * f64::from(sessions))));
        e
    })
    .await;
    let r = scheduler::tick(&s.state, t("2030-01-07T10:00:30Z")).await.unwrap();
    assert_eq!(r.breached.len(), 1, "{r:?}");
    assert_eq!(treatment_weight(&s).await, Some(0));
    let p = s.get(PLAN).await;
    let ci = &p.body["monitors"]["revenue_per_session"]["ci"];
    let (lo, hi) = (ci["lower"].as_f64().unwrap(), ci["upper"].as_f64().unwrap());
    // Σnum/Σden per arm: the difference is about −2 per session.
    assert!(lo < -2.0 && -2.0 < hi && hi < -0.5, "{ci}");
}

crate::backend_tests!(
    a_plan_advances_only_after_each_hold_and_completes_at_100_percent,
    raising_a_stage_never_moves_a_unit_off_treatment,
    a_schedule_holds_advancing_until_its_start_and_within_business_hours,
    an_invalid_plan_names_every_wrong_field,
    a_running_plan_cannot_be_replaced_or_started_twice,
    engineers_kill_in_production_and_sdks_hear_it_and_the_rollout_ends,
    a_plan_whose_flag_was_turned_off_ends_as_killed,
    scheduled_changes_apply_at_their_time_and_can_be_cancelled,
    a_degrading_treatment_is_rolled_back_at_the_next_evaluation_with_the_reason_recorded,
    a_degrading_treatment_pauses_a_plan_whose_action_is_pause,
    the_daily_review_lists_the_last_days_guardrail_breaches_and_stage_advances,
    a_healthy_treatment_reaches_100_percent,
    a_conversion_guardrail_rolls_back_a_treatment_that_converts_less,
    a_conversion_guardrail_lets_an_equal_treatment_reach_100_percent,
    a_ratio_guardrail_rolls_back_a_treatment_with_less_revenue_per_session,
);
