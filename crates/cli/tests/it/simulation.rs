use serde_json::Value;

use crate::support::sextant;

fn simulate(treatment: &str, seed: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = sextant(
        dir.path(),
        &["demo", "--simulate", "--json", "--treatment", treatment, "--seed", seed],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn a_degraded_treatment_is_rolled_back_by_its_guardrail_in_the_simulation() {
    let r = simulate("degraded", "42");
    assert_eq!(r["status"], "rolled_back", "{r:#}");
    assert_eq!(r["percent"], 0.0);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.starts_with("guardrail `checkout-errors` breached"), "{reason}");
    // It got some way before the evidence was conclusive.
    let steps = r["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["percent"].as_f64() > Some(0.0)), "{r:#}");
}

#[test]
fn a_healthy_treatment_reaches_100_percent_in_the_simulation() {
    let r = simulate("healthy", "42");
    assert_eq!(r["status"], "completed", "{r:#}");
    assert_eq!(r["percent"], 100.0);
    let percents: Vec<f64> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["percent"].as_f64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
}

#[test]
fn the_simulation_is_deterministic_for_a_seed() {
    let (a, b) = (simulate("degraded", "7"), simulate("degraded", "7"));
    assert_eq!(a["steps"], b["steps"]);
    assert_eq!((&a["events"], &a["status"]), (&b["events"], &b["status"]));
}
