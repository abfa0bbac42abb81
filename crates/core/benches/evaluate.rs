//! Evaluation benchmarks, side by side with Unleash's Rust engine
//! (`unleash-yggdrasil`) on an equivalent ruleset.
//!
//! Run: `cargo bench -p sextant-core --bench evaluate`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use sextant_core::{Context, Document, Snapshot};
use unleash_yggdrasil::{EngineState, UpdateMessage};

/// A flag with three rules: string in, semver, and a 10% split.
fn sextant_flag(i: usize) -> Value {
    json!({
        "key": format!("flag-{i}"), "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {"enabled": true, "off_variation": "off",
            "rules": [
                {"conditions": [{"attribute": "tier", "op": "in", "values": ["gold", "platinum", "diamond"]}], "serve": {"variation": "on"}},
                {"conditions": [{"attribute": "appVersion", "op": "semver_gt", "values": ["4.2.0"]}], "serve": {"variation": "on"}},
                {"rollout": {"weight": 10_000}, "serve": {"variation": "on"}}
            ],
            "default_serve": {"variation": "off"}
        }}
    })
}

/// The same flag as Unleash strategies (ORed): two constrained default
/// strategies and a 10% flexible rollout.
fn unleash_feature(i: usize) -> Value {
    json!({
        "name": format!("flag-{i}"), "enabled": true, "type": "release", "project": "default",
        "strategies": [
            {"name": "default", "parameters": {}, "constraints": [{"contextName": "tier", "operator": "IN", "values": ["gold", "platinum", "diamond"]}]},
            {"name": "default", "parameters": {}, "constraints": [{"contextName": "appVersion", "operator": "SEMVER_GT", "value": "4.2.0"}]},
            {"name": "flexibleRollout", "parameters": {"rollout": "10", "stickiness": "default", "groupId": format!("flag-{i}")}}
        ]
    })
}

fn sextant_snapshot(n: usize) -> Snapshot {
    let doc: Document = serde_json::from_value(json!({"flags": (0..n).map(sextant_flag).collect::<Vec<_>>()})).unwrap();
    Snapshot::compile(&doc, "production", 1).unwrap()
}

fn unleash_engine(n: usize) -> EngineState {
    let features = json!({"version": 2, "features": (0..n).map(unleash_feature).collect::<Vec<_>>()});
    let engine = EngineState::default();
    engine.take_state(UpdateMessage::FullResponse(serde_json::from_value(features).unwrap()));
    engine
}

fn evaluate_one(c: &mut Criterion) {
    let snapshot = sextant_snapshot(1000);
    let ctx = Context::with_key("user-42")
        .attr("tier", "silver")
        .attr("appVersion", "4.1.9");
    let engine = unleash_engine(1000);
    let uctx: unleash_yggdrasil::Context = serde_json::from_value(json!({
        "userId": "user-42", "properties": {"tier": "silver", "appVersion": "4.1.9"}
    }))
    .unwrap();
    // Both engines must agree on the rules before they are compared. The 10%
    // rollouts hash differently (xxh3 vs MurmurHash3), so for those only the
    // share of flags that are on is compared.
    for (tier, version) in [("gold", "4.1.9"), ("silver", "5.0.0")] {
        let ctx = Context::with_key("user-42")
            .attr("tier", tier)
            .attr("appVersion", version);
        let uctx: unleash_yggdrasil::Context = serde_json::from_value(json!({
            "userId": "user-42", "properties": {"tier": tier, "appVersion": version}
        }))
        .unwrap();
        for i in 0..1000 {
            let key = format!("flag-{i}");
            assert_eq!(snapshot.evaluate(&key, &ctx).value, Some(&json!(true)), "{key}");
            assert!(engine.is_enabled(&key, &uctx, &None), "{key}");
        }
    }
    let ours = (0..1000)
        .filter(|i| snapshot.evaluate(&format!("flag-{i}"), &ctx).value == Some(&json!(true)))
        .count();
    let theirs = (0..1000)
        .filter(|i| engine.is_enabled(&format!("flag-{i}"), &uctx, &None))
        .count();
    assert!(
        (50..150).contains(&ours) && (50..150).contains(&theirs),
        "rollout shares {ours} vs {theirs} of 1000"
    );

    let mut group = c.benchmark_group("evaluate_one_flag_3_rules_of_1000");
    group.bench_function("sextant", |b| {
        b.iter(|| black_box(snapshot.evaluate(black_box("flag-500"), black_box(&ctx))))
    });
    group.bench_function("unleash_yggdrasil", |b| {
        b.iter(|| black_box(engine.is_enabled(black_box("flag-500"), black_box(&uctx), &None)))
    });
    group.finish();

    let mut group = c.benchmark_group("evaluate_all_1000_flags");
    group.bench_function("sextant", |b| {
        b.iter(|| {
            black_box(
                snapshot
                    .evaluate_all(black_box(&ctx))
                    .filter(|(_, r)| r.value.is_some())
                    .count(),
            )
        })
    });
    group.bench_function("unleash_yggdrasil", |b| {
        b.iter(|| black_box(engine.resolve_all(black_box(&uctx), &None)))
    });
    group.finish();
}

fn compile_snapshot(c: &mut Criterion) {
    let doc: Document =
        serde_json::from_value(json!({"flags": (0..10_000).map(sextant_flag).collect::<Vec<_>>()})).unwrap();
    let features: unleash_yggdrasil::UpdateMessage = UpdateMessage::FullResponse(
        serde_json::from_value(json!({"version": 2, "features": (0..10_000).map(unleash_feature).collect::<Vec<_>>()}))
            .unwrap(),
    );
    let mut group = c.benchmark_group("compile_10000_flags");
    group.sample_size(10);
    group.bench_function("sextant", |b| {
        b.iter(|| black_box(Snapshot::compile(&doc, "production", 1).unwrap().len()))
    });
    group.bench_function("unleash_yggdrasil", |b| {
        b.iter_batched(
            || match &features {
                UpdateMessage::FullResponse(f) => UpdateMessage::FullResponse(f.clone()),
                UpdateMessage::PartialUpdate(d) => UpdateMessage::PartialUpdate(d.clone()),
            },
            |message| {
                let engine = EngineState::default();
                engine.take_state(message);
                black_box(engine)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, evaluate_one, compile_snapshot);
criterion_main!(benches);
