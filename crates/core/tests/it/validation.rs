use serde_json::json;
use sextant_core::{Location, Problem, Snapshot};

use crate::support::{bool_flag, document};

fn problems(value: serde_json::Value) -> Vec<(Location, Problem)> {
    match Snapshot::compile(&document(value), "production", 1) {
        Ok(_) => panic!("document should be rejected"),
        Err(e) => e.issues.into_iter().map(|i| (i.location, i.problem)).collect(),
    }
}

fn at(key: &str, rule: Option<usize>) -> Location {
    Location::Flag { key: key.into(), rule }
}

#[test]
fn weights_must_sum_to_one_hundred_thousand() {
    let p = problems(
        json!({"flags": [bool_flag("f", json!({"enabled": true, "rules": [{"serve": {"split": {"weights": [
        {"variation": "on", "weight": 10}, {"variation": "off", "weight": 20}]}}}]}))]}),
    );
    assert_eq!(
        p,
        vec![(
            at("f", Some(0)),
            Problem::WeightsSum {
                sum: 30,
                expected: 100_000
            }
        )]
    );
}

#[test]
fn every_problem_is_reported_with_flag_and_rule() {
    let p = problems(
        json!({"flags": [bool_flag("f", json!({"enabled": true, "off_variation": "gone",
        "rules": [
            {"conditions": [{"attribute": "e", "op": "matches", "values": ["(unclosed"]}], "serve": {"variation": "on"}},
            {"conditions": [{"attribute": "", "op": "in_segment", "values": ["nobody"]}], "serve": {"variation": "maybe"}}
        ]}))]}),
    );
    assert_eq!(p.len(), 4, "{p:?}");
    assert_eq!(p[0], (at("f", None), Problem::UnknownVariation("gone".into())));
    assert!(
        matches!(&p[1], (l, Problem::BadRegex { pattern, .. }) if *l == at("f", Some(0)) && pattern == "(unclosed")
    );
    assert_eq!(p[2], (at("f", Some(1)), Problem::UnknownSegment("nobody".into())));
    assert_eq!(p[3], (at("f", Some(1)), Problem::UnknownVariation("maybe".into())));
}

#[test]
fn error_message_names_flag_rule_and_problem() {
    let err = Snapshot::compile(
        &document(json!({"flags": [bool_flag("checkout", json!({"enabled": true, "rules": [{"serve": {"variation": "nope"}}]}))]})),
        "production",
        1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 problem in flag definitions\n- flag `checkout`, rule 0: unknown variation `nope`"
    );
}

#[test]
fn prerequisite_cycles_are_rejected_naming_the_cycle() {
    let dep = |on: &str| json!({"enabled": true, "prerequisites": [{"flag": on, "variations": ["on"]}], "default_serve": {"variation": "on"}});
    let p = problems(json!({"flags": [bool_flag("a", dep("b")), bool_flag("b", dep("c")), bool_flag("c", dep("a"))]}));
    assert_eq!(
        p,
        vec![(
            at("a", None),
            Problem::PrerequisiteCycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        )]
    );
    let self_loop = problems(json!({"flags": [bool_flag("a", dep("a"))]}));
    assert_eq!(self_loop[0].1, Problem::PrerequisiteCycle(vec!["a".into(), "a".into()]));
}

#[test]
fn values_must_match_the_flag_kind_and_keys_be_unique() {
    let p = problems(json!({"flags": [
        {"key": "n", "kind": "number", "variations": [{"key": "a", "value": "1"}, {"key": "a", "value": 2}]},
        {"key": "n", "kind": "string", "variations": []}
    ]}));
    assert!(p.contains(&(at("n", None), Problem::DuplicateKey)), "{p:?}");
    assert!(p.contains(&(
        at("n", None),
        Problem::VariationKind {
            variation: "a".into(),
            expected: sextant_core::FlagKind::Number
        }
    )));
    assert!(p.contains(&(at("n", None), Problem::DuplicateVariation("a".into()))));
    assert!(p.contains(&(at("n", None), Problem::NoVariations)));
}

#[test]
fn operands_are_checked_at_compile_time() {
    for (op, value, expected) in [
        ("gt", json!("ten"), "a number"),
        ("before", json!("yesterday"), "an RFC 3339 date or epoch seconds"),
        ("semver_lt", json!("1.x"), "a semantic version such as 1.2.3-beta.1"),
        ("cidr", json!("10.0.0.0/33"), "a CIDR block or IP address"),
    ] {
        let p = problems(json!({"flags": [bool_flag("f", json!({"enabled": true,
            "rules": [{"conditions": [{"attribute": "x", "op": op, "values": [value]}], "serve": {"variation": "on"}}]}))]}));
        assert!(
            matches!(&p[0].1, Problem::BadOperand { expected: e, .. } if *e == expected),
            "{op}: {p:?}"
        );
    }
}

#[test]
fn unknown_prerequisites_and_their_variations_are_named() {
    let p = problems(json!({"flags": [
        bool_flag("a", json!({"enabled": true, "prerequisites": [{"flag": "ghost", "variations": ["on"]}]})),
        bool_flag("b", json!({"enabled": true, "prerequisites": [{"flag": "a", "variations": ["sideways"]}]}))
    ]}));
    assert_eq!(p[0], (at("a", None), Problem::UnknownPrerequisite("ghost".into())));
    assert_eq!(
        p[1],
        (
            at("b", None),
            Problem::UnknownPrerequisiteVariation {
                flag: "a".into(),
                variation: "sideways".into()
            }
        )
    );
}
