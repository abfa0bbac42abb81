use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use sextant_store::ChangeMeta;

use crate::support::{ADMIN, Backend, TestServer};

const EXPERIMENTS: &str = "/api/v1/workspaces/default/experiments";

/// SplitMix64: a seeded, dependency-free generator for simulated traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn metrics(s: &TestServer) {
    for m in [
        json!({"key": "conversion", "name": "Conversion", "aggregation": "conversion", "event": "purchase",
               "good_direction": "increase", "north_star": true}),
        json!({"key": "revenue", "name": "Revenue", "aggregation": "mean", "event": "purchase",
               "good_direction": "increase", "parent": "conversion"}),
        json!({"key": "errors", "name": "Errors", "aggregation": "count", "event": "error",
               "good_direction": "decrease", "parent": "conversion"}),
    ] {
        s.state
            .store
            .create_metric(
                "default",
                serde_json::from_value(m).unwrap(),
                &ChangeMeta::new("test", None),
            )
            .await
            .unwrap();
    }
}

fn experiment(extra: Value) -> Value {
    let mut e = json!({
        "key": "checkout-button", "environment": "production", "flag": "checkout",
        "arms": [{"variation": "off", "weight": 50}, {"variation": "on", "weight": 50}],
        "primary_metric": "conversion", "guardrails": ["revenue", "errors"],
        "hypothesis": {"direction": "increase", "minimum_effect": 0.05},
        "success_criteria": "conversion up by at least 5% with errors not worse",
        "planned_sample_size": 20000
    });
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(extra.clone());
    }
    e
}

async fn create(s: &TestServer, extra: Value) {
    s.flag("checkout", "production").await;
    metrics(s).await;
    let r = s.post(EXPERIMENTS, json!({"experiment": experiment(extra)})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["status"], "draft");
}

/// Stores `b`'s events in production and rolls them up.
async fn store(s: &TestServer, b: sextant_store::EventBatchBuilder) {
    let env = s.state.store.get_environment("default", "production").await.unwrap();
    s.state
        .store
        .append_event_batches(&[b.finish(env.id, None)])
        .await
        .unwrap();
    s.state.store.rollup_events(1_000).await.unwrap();
}

/// `units` simulated users alternating between control (`off`) and
/// treatment (`on`) as SDKs report exposures: each buys with probability
/// 10% (control) or 13% (treatment), spending uniform(0, 100), and errs
/// with probability 5% in both arms. Seeded.
async fn simulate(s: &TestServer, units: u32, seed: u64) {
    let now_ms = Utc::now().timestamp_millis();
    let mut rng = Rng(seed);
    let mut b = sextant_store::EventBatchBuilder::with_capacity(units as usize * 3);
    for i in 0..units {
        let unit = format!("sim-{i}");
        let (variation, buy) = if i % 2 == 0 { ("off", 0.10) } else { ("on", 0.13) };
        b.exposure("checkout", variation, &unit, now_ms);
        if rng.next() < buy {
            b.track("purchase", &unit, Some(100.0 * rng.next()), now_ms, None);
        }
        if rng.next() < 0.05 {
            b.track("error", &unit, None, now_ms, None);
        }
    }
    store(s, b).await;
}

fn within(ci: &Value, truth: f64) -> bool {
    ci["lower"].as_f64().unwrap() <= truth && truth <= ci["upper"].as_f64().unwrap()
}

async fn a_simulated_effect_is_recovered_within_the_reported_intervals(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    create(&s, json!({})).await;
    let r = s.post(&format!("{EXPERIMENTS}/checkout-button/start"), json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    simulate(&s, 20_000, 8).await;
    let r = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let a = &r.body["analysis"];
    assert_eq!(a["units"], 20_000);
    assert_eq!(a["horizon_reached"], true);
    assert_eq!(a["srm"]["mismatch"], false, "{}", a["srm"]);
    // Conversion: 10% → 13%, +0.03 absolute, +30% relative.
    let c = &a["primary"]["comparisons"][0];
    assert_eq!(c["variation"], "on");
    assert!(within(&c["difference_ci"], 0.03), "{c}");
    assert!(within(&c["lift_ci"], 0.30), "{c}");
    assert!(c["p_value"].as_f64().unwrap() < 0.001, "{c}");
    assert_eq!(c["significant"], true);
    assert!(c["chance_to_win"].as_f64().unwrap() > 0.99, "{c}");
    // Revenue per unit: 0.10 × 50 = 5 → 0.13 × 50 = 6.5.
    let rev = &a["guardrails"][0];
    assert_eq!(rev["metric"], "revenue");
    assert!(within(&rev["comparisons"][0]["difference_ci"], 1.5), "{rev}");
    assert!(within(&rev["comparisons"][0]["lift_ci"], 0.30), "{rev}");
    // Errors: no effect, and the interval says so.
    let err = &a["guardrails"][1]["comparisons"][0];
    assert!(within(&err["difference_ci"], 0.0), "{err}");
    // The first significant look is recorded, with the deadline a week later.
    let e = &r.body["experiment"];
    let at = sextant_store::parse_time(e["significant_at"].as_str().unwrap()).unwrap();
    let by = sextant_store::parse_time(e["decide_by"].as_str().unwrap()).unwrap();
    assert_eq!(by - at, chrono::Duration::days(7));
    assert_eq!(r.body["decision_overdue"], false);
    let again = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    assert_eq!(again.body["experiment"]["significant_at"], e["significant_at"]);
}

async fn a_sequential_analysis_reports_wider_always_valid_intervals_that_still_cover_the_effect(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    create(&s, json!({"analysis": "sequential"})).await;
    s.post(&format!("{EXPERIMENTS}/checkout-button/start"), json!({})).await;
    simulate(&s, 20_000, 8).await;
    let r = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let c = &r.body["analysis"]["primary"]["comparisons"][0];
    assert!(within(&c["difference_ci"], 0.03), "{c}");
    assert!(within(&c["lift_ci"], 0.30), "{c}");
    assert_eq!(c["significant"], true, "{c}");
    assert_eq!(r.body["analysis"]["method"], "sequential");
}

/// `units` users alternating control/treatment, each with a spending
/// propensity uniform(20, 60): one purchase two days before exposure worth
/// propensity + noise, one after worth propensity + noise (+2 on
/// treatment). Noise is uniform(−10, 10). Seeded.
async fn simulate_with_history(s: &TestServer, units: u32, seed: u64) {
    let now_ms = Utc::now().timestamp_millis();
    let before_ms = now_ms - 48 * 3_600_000;
    let mut rng = Rng(seed);
    let mut b = sextant_store::EventBatchBuilder::with_capacity(units as usize * 3);
    for i in 0..units {
        let unit = format!("sim-{i}");
        let treated = i % 2 == 1;
        let propensity = 20.0 + 40.0 * rng.next();
        let pre = propensity + 20.0 * rng.next() - 10.0;
        let post = propensity + 20.0 * rng.next() - 10.0 + if treated { 2.0 } else { 0.0 };
        b.track("purchase", &unit, Some(pre), before_ms, None);
        b.exposure("checkout", if treated { "on" } else { "off" }, &unit, now_ms);
        b.track("purchase", &unit, Some(post), now_ms, None);
    }
    store(s, b).await;
}

async fn cuped_with_a_pre_period_recovers_the_effect_with_a_narrower_interval(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    let extra = json!({"primary_metric": "revenue", "guardrails": ["errors"], "pre_period_days": 7,
        "planned_sample_size": 4000});
    create(&s, extra).await;
    s.post(&format!("{EXPERIMENTS}/checkout-button/start"), json!({})).await;
    simulate_with_history(&s, 4_000, 11).await;
    let r = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let a = &r.body["analysis"];
    let cuped = &a["cuped"];
    assert_eq!(cuped["applied"], true, "{cuped}");
    let adjusted = &cuped["comparisons"][0];
    assert_eq!(adjusted["variation"], "on");
    assert!(within(&adjusted["difference_ci"], 2.0), "{adjusted}");
    // Var(propensity) = 1600/12, Var(noise) = 400/12: ρ² = 0.8² = 0.64.
    let reduction = adjusted["variance_reduction"].as_f64().unwrap();
    assert!((0.55..0.72).contains(&reduction), "{adjusted}");
    let width = |ci: &Value| ci["upper"].as_f64().unwrap() - ci["lower"].as_f64().unwrap();
    let plain = &a["primary"]["comparisons"][0];
    assert!(within(&plain["difference_ci"], 2.0), "{plain}");
    assert!(
        width(&adjusted["difference_ci"]) < 0.7 * width(&plain["difference_ci"]),
        "{adjusted} vs {plain}"
    );
    // The adjusted test decides significance.
    assert_eq!(adjusted["significant"], true, "{adjusted}");
    assert!(r.body["experiment"]["significant_at"].is_string());
}

/// `units` users alternating control/treatment, each with a spending level
/// uniform(20, 60) and 1 or 2 sessions (the same number before and after
/// exposure). Every session is a visit with one purchase worth level +
/// noise (uniform(−10, 10); +2 on treatment after exposure); the pre-period
/// sessions are two days before exposure. 5% of units err once after
/// exposure (and never before). Seeded.
async fn simulate_sessions(s: &TestServer, units: u32, seed: u64) {
    let now_ms = Utc::now().timestamp_millis();
    let before_ms = now_ms - 48 * 3_600_000;
    let mut rng = Rng(seed);
    let mut b = sextant_store::EventBatchBuilder::with_capacity(units as usize * 10);
    for i in 0..units {
        let unit = format!("sim-{i}");
        let treated = i % 2 == 1;
        let level = 20.0 + 40.0 * rng.next();
        let sessions = if rng.next() < 0.5 { 1 } else { 2 };
        for (at, lift) in [(before_ms, 0.0), (now_ms, if treated { 2.0 } else { 0.0 })] {
            if at == now_ms {
                b.exposure("checkout", if treated { "on" } else { "off" }, &unit, now_ms);
            }
            for _ in 0..sessions {
                b.track("visit", &unit, None, at, None);
                b.track(
                    "purchase",
                    &unit,
                    Some(level + 20.0 * rng.next() - 10.0 + lift),
                    at,
                    None,
                );
            }
        }
        if rng.next() < 0.05 {
            b.track("error", &unit, None, now_ms, None);
        }
    }
    store(s, b).await;
}

async fn cuped_adjusts_every_metric_and_a_ratio_by_its_pre_period_ratio(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    s.flag("checkout", "production").await;
    metrics(&s).await;
    for m in [
        json!({"key": "visits", "name": "Visits", "aggregation": "count", "event": "visit",
               "good_direction": "increase", "parent": "conversion"}),
        json!({"key": "revenue_per_visit", "name": "Revenue per visit", "aggregation": "ratio",
               "numerator": "revenue", "denominator": "visits", "good_direction": "increase",
               "parent": "conversion"}),
    ] {
        let def = serde_json::from_value(m).unwrap();
        let meta = ChangeMeta::new("test", None);
        s.state.store.create_metric("default", def, &meta).await.unwrap();
    }
    let extra = json!({"primary_metric": "revenue_per_visit", "guardrails": ["revenue", "errors"],
        "pre_period_days": 7, "planned_sample_size": 4000});
    let r = s.post(EXPERIMENTS, json!({"experiment": experiment(extra)})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    s.post(&format!("{EXPERIMENTS}/checkout-button/start"), json!({})).await;
    simulate_sessions(&s, 4_000, 17).await;
    let r = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let a = &r.body["analysis"];
    let width = |ci: &Value| ci["upper"].as_f64().unwrap() - ci["lower"].as_f64().unwrap();
    // Each metric: (its result, true difference, variance removed, width
    // of the adjusted interval at most this share of the plain one).
    //
    // Revenue per visit: 40 → 42 per visit. Linearised (delta method), a
    // unit's ratio term is (sessions·(level − 40) + Σnoise)/1.5 before and
    // after, so ρ = 2.5·Var(level) / (2.5·Var(level) + 1.5·Var(noise)) =
    // 0.87 and ρ² ≈ 0.76 of the variance goes.
    // Revenue per unit: 60 → 63 (2 per session, 1.5 sessions); the same
    // level and sessions before and after give ρ² ≈ 0.88.
    for (m, truth, removed, narrower) in [
        (&a["primary"], 2.0, 0.70..0.81, 0.6),
        (&a["guardrails"][0], 3.0, 0.84..0.91, 0.45),
    ] {
        let cuped = &m["cuped"];
        assert_eq!(cuped["applied"], true, "{cuped}");
        assert_eq!(cuped["pre_period_days"], 7, "{cuped}");
        let adjusted = &cuped["comparisons"][0];
        assert_eq!(adjusted["variation"], "on");
        assert!(within(&adjusted["difference_ci"], truth), "{}: {adjusted}", m["metric"]);
        let reduction = adjusted["variance_reduction"].as_f64().unwrap();
        let plain = &m["comparisons"][0];
        println!(
            "{}: CUPED removed {reduction:.3} of the variance, θ {}, interval {} wide against {}",
            m["metric"],
            adjusted["theta"],
            width(&adjusted["difference_ci"]),
            width(&plain["difference_ci"])
        );
        assert!(removed.contains(&reduction), "{}: {adjusted}", m["metric"]);
        assert!(adjusted["theta"].as_f64().unwrap() > 0.5, "{adjusted}");
        assert!(within(&plain["difference_ci"], truth), "{plain}");
        assert!(
            width(&adjusted["difference_ci"]) < narrower * width(&plain["difference_ci"]),
            "{}: {adjusted} vs {plain}",
            m["metric"]
        );
        assert!(
            adjusted["std_error"].as_f64().unwrap() < adjusted["unadjusted_std_error"].as_f64().unwrap(),
            "{adjusted}"
        );
    }
    assert_eq!(a["primary"]["metric"], "revenue_per_visit");
    assert_eq!(a["cuped"], a["primary"]["cuped"]);
    // Errors never happen before exposure: no covariate, and it says so.
    let errors = &a["guardrails"][1]["cuped"];
    assert_eq!(errors["applied"], false, "{errors}");
    let why = errors["comparisons"][0]["error"].as_str().unwrap();
    assert!(why.contains("CUPED covariate has zero variance"), "{why}");
    // The adjusted primary comparison decides significance.
    assert_eq!(a["cuped"]["comparisons"][0]["significant"], true);
    assert!(r.body["experiment"]["significant_at"].is_string());
}

async fn without_a_pre_period_results_say_cuped_was_not_applied(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    create(&s, json!({})).await;
    s.post(&format!("{EXPERIMENTS}/checkout-button/start"), json!({})).await;
    simulate(&s, 1_000, 3).await;
    let r = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    let cuped = &r.body["analysis"]["cuped"];
    assert_eq!(cuped["applied"], false);
    assert_eq!(cuped["reason"], "no pre-period configured (pre_period_days = 0)");
}

async fn a_fixed_horizon_result_is_not_significant_before_the_planned_sample_size(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    create(&s, json!({"planned_sample_size": 100_000})).await;
    s.post(&format!("{EXPERIMENTS}/checkout-button/start"), json!({})).await;
    simulate(&s, 20_000, 8).await;
    let r = s.get(&format!("{EXPERIMENTS}/checkout-button/results")).await;
    assert_eq!(r.body["analysis"]["horizon_reached"], false);
    assert_eq!(r.body["analysis"]["primary"]["comparisons"][0]["significant"], false);
    assert_eq!(r.body["experiment"]["significant_at"], Value::Null);
}

async fn a_started_experiment_is_frozen_and_a_decision_needs_a_product_owner_and_a_learning(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    create(&s, json!({})).await;
    let one = format!("{EXPERIMENTS}/checkout-button");
    let r = s
        .call(
            Method::PUT,
            &one,
            ADMIN,
            Some(json!({"experiment": experiment(json!({"planned_sample_size": 30000}))})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.post(&format!("{one}/results"), json!({}))
        .await
        .assert_problem(405, "method_not_allowed");
    s.get(&format!("{one}/results"))
        .await
        .assert_problem(409, "state_conflict");
    let engineer = s
        .token(json!({"name": "eng", "kind": "admin", "role": "engineer"}))
        .await;
    let r = s
        .call(Method::POST, &format!("{one}/start"), &engineer, Some(json!({})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "running");
    let r = s
        .call(
            Method::PUT,
            &one,
            ADMIN,
            Some(json!({"experiment": experiment(json!({"planned_sample_size": 40000}))})),
        )
        .await;
    // A running experiment's criteria change only by approval (tests in alignment.rs).
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["action"], "experiment.criteria");
    s.post(&format!("{one}/start"), json!({}))
        .await
        .assert_problem(409, "state_conflict");
    let decide = json!({"decision": "ship", "learning": "a bigger button sells more"});
    s.call(Method::POST, &format!("{one}/decide"), &engineer, Some(decide.clone()))
        .await
        .assert_problem(403, "permission_denied");
    s.post(&format!("{one}/decide"), json!({"decision": "ship", "learning": "  "}))
        .await
        .assert_problem(422, "validation_failed");
    let product = s.token(json!({"name": "pm", "kind": "admin", "role": "product"})).await;
    let r = s
        .call(Method::POST, &format!("{one}/decide"), &product, Some(decide))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "decided");
    assert_eq!(r.body["decision"], "ship");
    assert!(r.body["decided_by"].as_str().unwrap().starts_with("pm"), "{:?}", r.body);
    assert_eq!(r.body["definition"]["planned_sample_size"], 30000);
    let log = s.get(&format!("{EXPERIMENTS}?status=decided")).await;
    assert_eq!(log.body["items"][0]["learning"], "a bigger button sells more");
    let learnings = s
        .state
        .store
        .list_learnings("default", &Default::default())
        .await
        .unwrap();
    assert_eq!(learnings.len(), 1);
    assert_eq!(learnings[0].what, "a bigger button sells more");
    assert_eq!(learnings[0].source, "experiment");
    s.post(
        &format!("{one}/decide"),
        json!({"decision": "kill", "learning": "again"}),
    )
    .await
    .assert_problem(409, "state_conflict");
    // The refused decision wrote no learning either: both are one transaction.
    let learnings = s
        .state
        .store
        .list_learnings("default", &Default::default())
        .await
        .unwrap();
    assert_eq!(learnings.len(), 1);
}

async fn an_invalid_experiment_names_every_wrong_field(b: Backend) {
    let Some(s) = TestServer::on(b).await else { return };
    s.flag("checkout", "production").await;
    metrics(&s).await;
    let bad = experiment(json!({
        "arms": [{"variation": "off", "weight": 50}, {"variation": "blue", "weight": 0}],
        "primary_metric": "nope", "guardrails": ["errors", "errors"],
        "hypothesis": {"direction": "increase", "minimum_effect": 0}, "success_criteria": " ", "alpha": 0.7
    }));
    let r = s.post(EXPERIMENTS, json!({"experiment": bad})).await;
    r.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "/experiment/arms/1/variation",
            "/experiment/arms/1/weight",
            "/experiment/primary_metric",
            "/experiment/guardrails/1",
            "/experiment/hypothesis/minimum_effect",
            "/experiment/success_criteria",
            "/experiment/alpha",
        ]
    );
    let r = s
        .post(
            EXPERIMENTS,
            json!({"experiment": experiment(json!({"flag": "missing"}))}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let viewer = s.token(json!({"name": "v", "kind": "admin", "role": "viewer"})).await;
    s.call(
        Method::POST,
        EXPERIMENTS,
        &viewer,
        Some(json!({"experiment": experiment(json!({}))})),
    )
    .await
    .assert_problem(403, "permission_denied");
    s.get(&format!("{EXPERIMENTS}/nope"))
        .await
        .assert_problem(404, "experiment_not_found");
    let r = s.post(EXPERIMENTS, json!({"experiment": experiment(json!({}))})).await;
    assert_eq!(r.status, 201);
    s.post(EXPERIMENTS, json!({"experiment": experiment(json!({}))}))
        .await
        .assert_problem(409, "experiment_exists");
}

crate::backend_tests!(
    a_simulated_effect_is_recovered_within_the_reported_intervals,
    a_sequential_analysis_reports_wider_always_valid_intervals_that_still_cover_the_effect,
    cuped_with_a_pre_period_recovers_the_effect_with_a_narrower_interval,
    cuped_adjusts_every_metric_and_a_ratio_by_its_pre_period_ratio,
    without_a_pre_period_results_say_cuped_was_not_applied,
    a_fixed_horizon_result_is_not_significant_before_the_planned_sample_size,
    a_started_experiment_is_frozen_and_a_decision_needs_a_product_owner_and_a_learning,
    an_invalid_experiment_names_every_wrong_field,
);
