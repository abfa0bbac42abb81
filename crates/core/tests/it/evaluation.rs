use serde_json::json;
use sextant_core::{Context, ErrorCode, FlagKind, Reason};

use crate::support::{bool_flag, check, compile, ctx};

fn one_rule(condition: serde_json::Value) -> sextant_core::Snapshot {
    compile(json!({"flags": [bool_flag("f", json!({
        "enabled": true, "off_variation": "off",
        "rules": [{"conditions": [condition], "serve": {"variation": "on"}}],
        "default_serve": {"variation": "off"}
    }))]}))
}

/// Asserts which contexts match a single condition.
fn assert_matches(condition: serde_json::Value, yes: &[serde_json::Value], no: &[serde_json::Value]) {
    let snapshot = one_rule(condition.clone());
    for c in yes {
        assert_eq!(
            check(&snapshot, "f", &ctx(c.clone())).0.as_deref(),
            Some("on"),
            "{condition} should match {c}"
        );
    }
    for c in no {
        assert_eq!(
            check(&snapshot, "f", &ctx(c.clone())).0.as_deref(),
            Some("off"),
            "{condition} should not match {c}"
        );
    }
}

#[test]
fn disabled_flag_serves_off_variation() {
    let s = compile(
        json!({"flags": [bool_flag("f", json!({"enabled": false, "off_variation": "off", "default_serve": {"variation": "on"}}))]}),
    );
    assert_eq!(check(&s, "f", &Context::default()), (Some("off".into()), "DISABLED"));
}

#[test]
fn disabled_flag_without_off_variation_defers_to_caller() {
    let s = compile(json!({"flags": [bool_flag("f", json!({"enabled": false}))]}));
    let r = s.evaluate("f", &Context::default());
    assert_eq!((r.value, r.reason), (None, Reason::Disabled));
}

#[test]
fn flag_without_rules_is_static_and_rule_miss_is_default() {
    let s = compile(json!({"flags": [
        bool_flag("static", json!({"enabled": true, "default_serve": {"variation": "on"}})),
        bool_flag("ruled", json!({"enabled": true, "default_serve": {"variation": "off"},
            "rules": [{"conditions": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "serve": {"variation": "on"}}]}))
    ]}));
    assert_eq!(check(&s, "static", &Context::default()), (Some("on".into()), "STATIC"));
    assert_eq!(check(&s, "ruled", &Context::default()), (Some("off".into()), "DEFAULT"));
    let r = s.evaluate("ruled", &ctx(json!({"plan": "pro"})));
    assert_eq!(
        (r.variation, r.reason, r.rule),
        (Some("on"), Reason::TargetingMatch, Some(0))
    );
}

#[test]
fn unknown_flag_and_wrong_kind_are_errors() {
    let s = compile(json!({"flags": [bool_flag("f", json!({"enabled": true, "default_serve": {"variation": "on"}}))]}));
    assert_eq!(
        s.evaluate("nope", &Context::default()).error,
        Some(ErrorCode::FlagNotFound)
    );
    let r = s.evaluate_as("f", FlagKind::String, &Context::default());
    assert_eq!(
        (r.reason, r.error, r.value),
        (Reason::Error, Some(ErrorCode::TypeMismatch), None)
    );
    assert_eq!(
        s.evaluate_as("f", FlagKind::Boolean, &Context::default()).value,
        Some(&json!(true))
    );
}

#[test]
fn environment_without_targeting_is_disabled() {
    let s = compile(json!({"flags": [{"key": "f", "kind": "string",
        "variations": [{"key": "a", "value": "A"}], "environments": {"staging": {"enabled": true}}}]}));
    assert_eq!(s.evaluate("f", &Context::default()).reason, Reason::Disabled);
}

#[test]
fn string_operators() {
    assert_matches(
        json!({"attribute": "country", "op": "in", "values": ["NZ", "AU"]}),
        &[json!({"country": "NZ"}), json!({"country": ["FR", "AU"]})],
        &[json!({"country": "nz"}), json!({})],
    );
    assert_matches(
        json!({"attribute": "country", "op": "in", "values": ["nz"], "case_insensitive": true}),
        &[json!({"country": "NZ"})],
        &[json!({"country": "AU"})],
    );
    assert_matches(
        json!({"attribute": "country", "op": "not_in", "values": ["NZ"]}),
        &[json!({"country": "AU"}), json!({})],
        &[json!({"country": "NZ"})],
    );
    assert_matches(
        json!({"attribute": "email", "op": "ends_with", "values": ["@example.com"]}),
        &[json!({"email": "a@example.com"})],
        &[json!({"email": "a@example.org"})],
    );
    assert_matches(
        json!({"attribute": "email", "op": "starts_with", "values": ["admin"]}),
        &[json!({"email": "admin@x"})],
        &[json!({"email": "x@admin"})],
    );
    assert_matches(
        json!({"attribute": "ua", "op": "contains", "values": ["ÉTÉ"], "case_insensitive": true}),
        &[json!({"ua": "un été chaud"})],
        &[json!({"ua": "hiver"})],
    );
    assert_matches(
        json!({"attribute": "email", "op": "matches", "values": ["^[a-z]+@corp\\.com$"]}),
        &[json!({"email": "bob@corp.com"})],
        &[json!({"email": "bob@corp.com.evil"}), json!({"email": 5})],
    );
}

#[test]
fn number_operators_accept_numbers_and_numeric_strings() {
    assert_matches(
        json!({"attribute": "age", "op": "gte", "values": [18]}),
        &[json!({"age": 18}), json!({"age": "30"}), json!({"age": 18.5})],
        &[json!({"age": 17}), json!({"age": "old"}), json!({})],
    );
    assert_matches(
        json!({"attribute": "age", "op": "lt", "values": ["18"]}),
        &[json!({"age": 3})],
        &[json!({"age": 18})],
    );
    assert_matches(
        json!({"attribute": "n", "op": "eq", "values": [2]}),
        &[json!({"n": 2.0})],
        &[json!({"n": 2.1})],
    );
}

#[test]
fn date_operators_take_rfc3339_and_epoch_seconds() {
    let cond = json!({"attribute": "signup", "op": "before", "values": ["2024-01-01T00:00:00Z"]});
    assert_matches(
        cond,
        &[
            json!({"signup": "2023-12-31T23:59:59+00:00"}),
            json!({"signup": 1_600_000_000}),
        ],
        &[
            json!({"signup": "2024-01-01T00:00:00Z"}),
            json!({"signup": "not a date"}),
        ],
    );
    assert_matches(
        json!({"attribute": "signup", "op": "after", "values": [1_700_000_000]}),
        &[json!({"signup": "2024-06-01T00:00:00Z"})],
        &[json!({"signup": 1_600_000_000})],
    );
}

#[test]
fn semver_orders_prereleases_below_releases() {
    assert_matches(
        json!({"attribute": "v", "op": "semver_lt", "values": ["2.0.0"]}),
        &[json!({"v": "2.0.0-rc.1"}), json!({"v": "1.99.0"})],
        &[json!({"v": "2.0.0"}), json!({"v": "banana"})],
    );
    assert_matches(
        json!({"attribute": "v", "op": "semver_gt", "values": ["1.0.0-alpha"]}),
        &[json!({"v": "1.0.0-alpha.1"}), json!({"v": "1.0.0"})],
        &[json!({"v": "1.0.0-alpha"})],
    );
    assert_matches(
        json!({"attribute": "v", "op": "semver_eq", "values": ["1.2.3"]}),
        &[json!({"v": "v1.2.3"}), json!({"v": "1.2.3+build.5"})],
        &[json!({"v": "1.2.4"})],
    );
}

#[test]
fn cidr_matches_v4_and_v6() {
    assert_matches(
        json!({"attribute": "ip", "op": "cidr", "values": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]}),
        &[
            json!({"ip": "10.1.2.3"}),
            json!({"ip": "2001:db8::1"}),
            json!({"ip": "192.168.1.7"}),
        ],
        &[
            json!({"ip": "11.0.0.1"}),
            json!({"ip": "2001:db9::1"}),
            json!({"ip": "nonsense"}),
        ],
    );
}

#[test]
fn exists_negation_and_nested_paths() {
    assert_matches(
        json!({"attribute": "user.org.plan", "op": "exists"}),
        &[json!({"user": {"org": {"plan": "x"}}})],
        &[
            json!({"user": {"org": {}}}),
            json!({"user": "flat"}),
            json!({"user": {"org": {"plan": null}}}),
        ],
    );
    assert_matches(
        json!({"attribute": "plan", "op": "in", "values": ["free"], "negate": true}),
        &[json!({"plan": "pro"}), json!({})],
        &[json!({"plan": "free"})],
    );
    assert_matches(
        json!({"attribute": "targetingKey", "op": "in", "values": ["u1"]}),
        &[json!({"targetingKey": "u1"})],
        &[json!({"targetingKey": "u2"})],
    );
}

#[test]
fn segments_use_include_exclude_then_conditions() {
    let s = compile(json!({
        "segments": [{"key": "beta", "included": ["vip"], "excluded": ["banned"],
            "conditions": [{"attribute": "email", "op": "ends_with", "values": ["@corp.com"]}]}],
        "flags": [bool_flag("f", json!({"enabled": true, "default_serve": {"variation": "off"},
            "rules": [{"conditions": [{"attribute": "", "op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}]}))]
    }));
    let on = |c| check(&s, "f", &ctx(c)).0.unwrap();
    assert_eq!(on(json!({"targetingKey": "vip"})), "on");
    assert_eq!(on(json!({"targetingKey": "a", "email": "a@corp.com"})), "on");
    assert_eq!(on(json!({"targetingKey": "banned", "email": "b@corp.com"})), "off");
    assert_eq!(on(json!({"targetingKey": "c", "email": "c@else.com"})), "off");
}

#[test]
fn prerequisites_gate_dependent_flags() {
    let s = compile(json!({"flags": [
        bool_flag("parent", json!({"enabled": true, "off_variation": "off",
            "rules": [{"conditions": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "serve": {"variation": "on"}}],
            "default_serve": {"variation": "off"}})),
        bool_flag("child", json!({"enabled": true, "off_variation": "off",
            "prerequisites": [{"flag": "parent", "variations": ["on"]}], "default_serve": {"variation": "on"}}))
    ]}));
    assert_eq!(
        check(&s, "child", &ctx(json!({"plan": "pro"}))),
        (Some("on".into()), "STATIC")
    );
    assert_eq!(
        check(&s, "child", &ctx(json!({"plan": "free"}))),
        (Some("off".into()), "PREREQUISITE_FAILED")
    );
}

#[test]
fn splits_report_split_reason_and_experiment_membership() {
    let s = compile(json!({"flags": [bool_flag("f", json!({"enabled": true,
        "default_serve": {"split": {"weights": [{"variation": "on", "weight": 50000}, {"variation": "off", "weight": 50000}]}}}))]}));
    let r = s.evaluate("f", &Context::with_key("user-1"));
    assert_eq!((r.reason, r.in_experiment), (Reason::Split, true));
    let missing = s.evaluate("f", &Context::default());
    assert_eq!(missing.error, Some(ErrorCode::TargetingKeyMissing));
}

#[test]
fn split_can_bucket_by_another_attribute_and_share_a_seed() {
    let split = |seed: &str| {
        json!({"split": {"seed": seed, "bucket_by": ["org.id"],
        "weights": [{"variation": "on", "weight": 50000}, {"variation": "off", "weight": 50000}]}})
    };
    let s = compile(json!({"flags": [
        bool_flag("a", json!({"enabled": true, "default_serve": split("shared")})),
        bool_flag("b", json!({"enabled": true, "default_serve": split("shared")}))
    ]}));
    for i in 0..200 {
        let c = ctx(json!({"targetingKey": format!("u{i}"), "org": {"id": format!("org{}", i / 10)}}));
        assert_eq!(
            check(&s, "a", &c),
            check(&s, "b", &c),
            "same seed must place units identically"
        );
    }
    // Users of one org land together.
    let first = check(&s, "a", &ctx(json!({"targetingKey": "x", "org": {"id": "org7"}})));
    let second = check(&s, "a", &ctx(json!({"targetingKey": "y", "org": {"id": "org7"}})));
    assert_eq!(first, second);
}

#[test]
fn rollout_gate_falls_through_to_next_rule() {
    let s = compile(
        json!({"flags": [bool_flag("f", json!({"enabled": true, "default_serve": {"variation": "off"},
        "rules": [{"rollout": {"weight": 0}, "serve": {"variation": "on"}}, {"serve": {"variation": "off"}}]}))]}),
    );
    let r = s.evaluate("f", &Context::with_key("u"));
    assert_eq!((r.variation, r.rule), (Some("off"), Some(1)));
}

#[test]
fn evaluate_all_lists_every_flag_in_order() {
    let s = compile(json!({"flags": [
        bool_flag("a", json!({"enabled": true, "default_serve": {"variation": "on"}})),
        bool_flag("b", json!({"enabled": false}))
    ]}));
    let all: Vec<_> = s
        .evaluate_all(&Context::default())
        .map(|(k, r)| (k, r.reason))
        .collect();
    assert_eq!(all, vec![("a", Reason::Static), ("b", Reason::Disabled)]);
}
