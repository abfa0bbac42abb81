//! JSONLogic (flagd targeting) evaluation cost, on flags of the flagd
//! testbed written inline so the bench has no file dependency.
//!
//! Run: `cargo bench -p sextant-core --bench jsonlogic`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sextant_core::{Context, Document, Snapshot};

fn snapshot() -> Snapshot {
    let variations = json!([
        {"key": "clubs", "value": "clubs"}, {"key": "diamonds", "value": "diamonds"},
        {"key": "hearts", "value": "hearts"}, {"key": "spades", "value": "spades"},
        {"key": "internal", "value": "internal"}, {"key": "external", "value": "external"}
    ]);
    let flag = |key: &str, logic| {
        json!({"key": key, "kind": "string", "variations": variations,
            "environments": {"production": {"enabled": true, "rules": [{"serve": {"logic": logic}}],
                "default_serve": {"variation": "external"}}}})
    };
    let doc: Document = serde_json::from_value(json!({"flags": [
        flag("fractional", json!({"fractional": [["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]})),
        flag("fractional-by-attribute", json!({"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
            ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]})),
        flag("email-targeting", json!({"if": [{"ends_with": [{"var": "email"}, "@faas.com"]}, "internal", null]})),
        flag("semver", json!({"if": [{"sem_ver": [{"var": "version"}, ">=", "1.2.3"]}, "internal", "external"]}))
    ]}))
    .unwrap();
    Snapshot::compile(&doc, "production", 1).unwrap()
}

fn jsonlogic(c: &mut Criterion) {
    let s = snapshot();
    let ctx = Context::with_key("jack")
        .attr("email", "ballmer@macrosoft.com")
        .attr("version", "1.3.0")
        .attr("user", json!({"name": "queen"}));
    let mut group = c.benchmark_group("jsonlogic");
    for key in ["fractional", "fractional-by-attribute", "email-targeting", "semver"] {
        assert!(s.evaluate(key, &ctx).value.is_some(), "{key} must resolve");
        group.bench_function(key, |b| {
            b.iter(|| black_box(s.evaluate(black_box(key), black_box(&ctx))))
        });
    }
    group.finish();
}

criterion_group!(benches, jsonlogic);
criterion_main!(benches);
