use proptest::prelude::*;
use serde_json::{Value, json};
use sextant_core::{Context, Document, Snapshot};

use crate::support::{bool_flag, compile};

fn split_flag(key: &str, salt: &str, on_weight: u32) -> Value {
    let mut flag = bool_flag(
        key,
        json!({"enabled": true, "salt": salt, "default_serve": {"split": {"weights": [
        {"variation": "on", "weight": on_weight}, {"variation": "off", "weight": 100_000 - on_weight}]}}}),
    );
    flag["key"] = json!(key);
    flag
}

/// Chi-square statistic of observed counts against expected shares.
fn chi_square(observed: &[u64], shares: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(shares)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn split_distribution_passes_chi_square_over_one_million_keys() {
    let s = compile(json!({"flags": [{"key": "f", "kind": "string",
        "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}, {"key": "c", "value": "c"}, {"key": "d", "value": "d"}],
        "environments": {"production": {"enabled": true, "default_serve": {"split": {"weights": [
            {"variation": "a", "weight": 10_000}, {"variation": "b", "weight": 20_000},
            {"variation": "c", "weight": 30_000}, {"variation": "d", "weight": 40_000}]}}}}}]}));
    let mut counts = [0u64; 4];
    let mut ctx = Context::with_key("");
    for i in 0..1_000_000u32 {
        let key = ctx.targeting_key.as_mut().unwrap();
        key.clear();
        key.push_str("user-");
        key.push_str(&i.to_string());
        let v = s.evaluate("f", &ctx).variation.unwrap();
        counts[(v.as_bytes()[0] - b'a') as usize] += 1;
    }
    let stat = chi_square(&counts, &[0.1, 0.2, 0.3, 0.4]);
    // Critical value of chi-square with 3 degrees of freedom at alpha = 0.001.
    assert!(stat < 16.266, "chi-square {stat} for counts {counts:?}");
}

#[test]
fn flags_with_different_salts_assign_independently() {
    let s = compile(json!({"flags": [split_flag("a", "salt-a", 50_000), split_flag("b", "salt-b", 50_000)]}));
    let mut table = [[0u64; 2]; 2];
    for i in 0..200_000u32 {
        let ctx = Context::with_key(format!("u{i}"));
        let a = s.evaluate("a", &ctx).variation == Some("on");
        let b = s.evaluate("b", &ctx).variation == Some("on");
        table[a as usize][b as usize] += 1;
    }
    let n = 200_000f64;
    let row = |r: usize| (table[r][0] + table[r][1]) as f64;
    let col = |c: usize| (table[0][c] + table[1][c]) as f64;
    let stat: f64 = (0..2)
        .flat_map(|r| (0..2).map(move |c| (r, c)))
        .map(|(r, c)| {
            let e = row(r) * col(c) / n;
            (table[r][c] as f64 - e).powi(2) / e
        })
        .sum();
    // Critical value of chi-square with 1 degree of freedom at alpha = 0.001.
    assert!(stat < 10.828, "independence chi-square {stat}, table {table:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn raising_a_rollout_never_removes_a_unit(key in ".{0,40}", p in 0u32..=100_000, q in 0u32..=100_000) {
        let (low, high) = if p <= q { (p, q) } else { (q, p) };
        let s = compile(json!({"flags": [split_flag("low", "same", low), split_flag("high", "same", high)]}));
        let ctx = Context::with_key(key);
        if s.evaluate("low", &ctx).variation == Some("on") {
            prop_assert_eq!(s.evaluate("high", &ctx).variation, Some("on"));
        }
    }

    #[test]
    fn assignment_is_sticky_across_snapshots(key in ".{0,40}", w in 0u32..=100_000) {
        let doc = json!({"flags": [split_flag("f", "s", w)]});
        let first = compile(doc.clone());
        let second = compile(doc);
        let ctx = Context::with_key(key);
        prop_assert_eq!(first.evaluate("f", &ctx).variation, second.evaluate("f", &ctx).variation);
        prop_assert_eq!(first.evaluate("f", &ctx).variation, first.evaluate("f", &ctx).variation);
    }

    #[test]
    fn arbitrary_contexts_never_panic(ctx in arb_json(3)) {
        let s = &*EVERY_OPERATOR;
        let ctx = match Context::from_json(ctx) { Ok(c) => c, Err(_) => return Ok(()) };
        for (_, r) in s.evaluate_all(&ctx) {
            prop_assert!(r.value.is_some() || r.error.is_some() || r.variation.is_none());
        }
    }

    #[test]
    fn arbitrary_flag_json_never_panics(flag in arb_flag(), ctx in arb_json(2)) {
        let doc: Result<Document, _> = serde_json::from_value(json!({"flags": [flag]}));
        if let Ok(doc) = doc
            && let Ok(s) = Snapshot::compile(&doc, "production", 1)
            && let Ok(ctx) = Context::from_json(ctx)
        {
            let _ = s.evaluate_all(&ctx).count();
        }
    }
}

fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "10.0.0.1",
            "1.2.3-beta",
            "2024-01-01T00:00:00Z",
            "u1",
            "::1",
            "NZ"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "targetingKey",
                    "country",
                    "v",
                    "ip",
                    "age",
                    "user",
                    "org",
                    "when",
                    "x"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const OPERATORS: [&str; 19] = [
    "in",
    "not_in",
    "starts_with",
    "ends_with",
    "contains",
    "matches",
    "eq",
    "lt",
    "lte",
    "gt",
    "gte",
    "before",
    "after",
    "semver_eq",
    "semver_lt",
    "semver_gt",
    "cidr",
    "in_segment",
    "exists",
];

fn arb_flag() -> impl Strategy<Value = Value> {
    let condition = (
        prop::sample::select(vec!["country", "v", "ip", "user.org", "targetingKey", ""]),
        prop::sample::select(OPERATORS.to_vec()),
        prop::collection::vec(arb_json(1), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(a, op, values, negate, ci)| json!({"attribute": a, "op": op, "values": values, "negate": negate, "case_insensitive": ci}));
    let weights =
        prop::collection::vec((prop::sample::select(vec!["on", "off", "zz"]), 0u32..120_000), 0..4).prop_map(|ws| {
            ws.into_iter()
                .map(|(v, w)| json!({"variation": v, "weight": w}))
                .collect::<Vec<_>>()
        });
    let serve = prop_oneof![
        prop::sample::select(vec!["on", "off", "missing"]).prop_map(|v| json!({"variation": v})),
        (
            weights,
            prop::collection::vec(prop::sample::select(vec!["country", "targetingKey", "user"]), 0..2)
        )
            .prop_map(|(w, by)| json!({"split": {"weights": w, "bucket_by": by}})),
    ];
    let rule = (
        prop::collection::vec(condition, 0..4),
        serve.clone(),
        prop::option::of(0u32..200_000),
    )
        .prop_map(|(c, s, r)| match r {
            Some(weight) => json!({"conditions": c, "serve": s, "rollout": {"weight": weight}}),
            None => json!({"conditions": c, "serve": s}),
        });
    (prop::collection::vec(rule, 0..4), serve, any::<bool>()).prop_map(|(rules, default, enabled)| {
        bool_flag(
            "f",
            json!({"enabled": enabled, "off_variation": "off", "rules": rules, "default_serve": default}),
        )
    })
}

/// Compiled once: 133 flags, one per operator × attribute shape.
static EVERY_OPERATOR: std::sync::LazyLock<Snapshot> = std::sync::LazyLock::new(every_operator_snapshot);

fn every_operator_snapshot() -> Snapshot {
    let value_for = |op: &str| match op {
        "matches" => json!(["^N.$"]),
        "eq" | "lt" | "lte" | "gt" | "gte" => json!([18]),
        "before" | "after" => json!(["2024-01-01T00:00:00Z"]),
        "semver_eq" | "semver_lt" | "semver_gt" => json!(["1.2.3"]),
        "cidr" => json!(["10.0.0.0/8", "::1/128"]),
        "in_segment" => json!(["seg"]),
        "exists" => json!([]),
        _ => json!(["NZ", "u1"]),
    };
    let flags: Vec<Value> = OPERATORS
        .iter()
        .flat_map(|op| ["country", "user.org", "targetingKey", "v", "ip", "age", "when"].map(|attr| (op, attr)))
        .enumerate()
        .map(|(i, (op, attr))| {
            let mut f = bool_flag("x", json!({"enabled": true, "off_variation": "off", "default_serve": {"split": {
                "bucket_by": [attr], "weights": [{"variation": "on", "weight": 30_000}, {"variation": "off", "weight": 70_000}]}},
                "rules": [{"conditions": [{"attribute": attr, "op": op, "values": value_for(op), "case_insensitive": i % 2 == 0}],
                    "serve": {"variation": "on"}, "rollout": {"weight": 50_000, "bucket_by": [attr]}}]}));
            f["key"] = json!(format!("{op}-{attr}"));
            f
        })
        .collect();
    compile(
        json!({"segments": [{"key": "seg", "included": ["u1"], "conditions": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}], "flags": flags}),
    )
}
