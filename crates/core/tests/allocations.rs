//! Evaluation of boolean and string flags must not allocate. Proven with a
//! counting global allocator: deterministic, unlike a timing.

use serde_json::json;
use sextant_core::{Context, Document, Snapshot};

fn benchmark_snapshot() -> Snapshot {
    let mut flags = Vec::new();
    for i in 0..1000 {
        flags.push(json!({
            "key": format!("flag-{i}"), "kind": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": true, "off_variation": "off",
                "rules": [
                    {"conditions": [{"attribute": "tier", "op": "in", "values": ["gold", "platinum", "diamond"]}], "serve": {"variation": "on"}},
                    {"conditions": [{"attribute": "appVersion", "op": "semver_gt", "values": ["4.2.0"]}], "serve": {"variation": "on"}},
                    {"conditions": [{"attribute": "email", "op": "ends_with", "values": ["@corp.com"], "case_insensitive": true}], "serve": {"variation": "on"}}
                ],
                "default_serve": {"split": {"weights": [{"variation": "on", "weight": 10_000}, {"variation": "off", "weight": 90_000}]}}
            }}
        }));
    }
    flags.push(json!({"key": "greeting", "kind": "string",
        "variations": [{"key": "hi", "value": "hi"}, {"key": "hello", "value": "hello"}],
        "environments": {"production": {"enabled": true, "rules": [{"conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}], "serve": {"variation": "hello"}}],
            "default_serve": {"variation": "hi"}}}}));
    let doc: Document = serde_json::from_value(json!({"flags": flags})).unwrap();
    Snapshot::compile(&doc, "production", 1).unwrap()
}

#[test]
fn evaluating_boolean_and_string_flags_does_not_allocate() {
    let snapshot = benchmark_snapshot();
    let ctx = Context::with_key("user-42")
        .attr("tier", "silver")
        .attr("appVersion", "4.1.9-beta.2")
        .attr("email", "someone@example.com")
        .attr("country", "NZ");
    // Warm up lazily initialised regex caches and the like outside the count.
    let _ = snapshot.evaluate("flag-500", &ctx);
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            let r = snapshot.evaluate("flag-500", &ctx);
            assert_eq!(r.reason, sextant_core::Reason::Split);
            let r = snapshot.evaluate("greeting", &ctx);
            assert_eq!(r.variation, Some("hello"));
            let r = snapshot.evaluate("missing", &ctx);
            assert!(r.error.is_some());
        }
    });
    assert_eq!(info.count_total, 0, "evaluation allocated {} times", info.count_total);
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let info = allocation_counter::measure(|| {
        std::hint::black_box(vec![1u8; 64]);
    });
    assert!(info.count_total >= 1);
}
