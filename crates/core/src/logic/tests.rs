use serde_json::{Value, json};

use super::*;

fn ctx() -> Context {
    Context::with_key("user-1")
        .attr("email", "ada@example.com")
        .attr("age", 36)
        .attr("score", 2.5)
        .attr("beta", true)
        .attr("tags", json!(["a", "b"]))
        .attr("user", json!({"org": {"tier": "gold"}, "list": [10, 20]}))
        .attr("empty", "")
        .attr("version", "1.4.2")
        .at(1_700_000_000)
}

fn run_with(expr: Value, ctx: &Context, version: FractionalVersion) -> Option<Value> {
    let logic = Logic::compile(&expr, version).unwrap_or_else(|e| panic!("{expr} did not compile: {e}"));
    logic.evaluate(ctx, "my-flag").expect("evaluation is infallible")
}

fn run(expr: Value) -> Option<Value> {
    run_with(expr, &ctx(), FractionalVersion::V2)
}

#[track_caller]
fn check(expr: Value, expected: Value) {
    let got = run(expr.clone()).unwrap_or(Value::Null);
    assert_eq!(got, expected, "{expr}");
}

#[test]
fn literals_evaluate_to_themselves() {
    check(json!("on"), json!("on"));
    check(json!(3), json!(3));
    check(json!(true), json!(true));
    check(json!(null), json!(null));
    check(json!([1, "a"]), json!([1, "a"]));
}

#[test]
fn var_reads_dotted_paths_defaults_and_specials() {
    check(json!({"var": "email"}), json!("ada@example.com"));
    check(json!({"var": ["email"]}), json!("ada@example.com"));
    check(json!({"var": "user.org.tier"}), json!("gold"));
    check(json!({"var": "user.list.1"}), json!(20));
    check(json!({"var": "user.nope.tier"}), json!(null));
    check(json!({"var": ["missing", "dflt"]}), json!("dflt"));
    check(json!({"var": ["email", "dflt"]}), json!("ada@example.com"));
    check(json!({"var": "targetingKey"}), json!("user-1"));
    check(json!({"var": "$flagd.flagKey"}), json!("my-flag"));
    check(json!({"var": "$flagd.timestamp"}), json!(1_700_000_000));
    check(json!({"var": {"cat": ["us", "er.org.tier"]}}), json!("gold"));
    let whole = run(json!({"var": ""})).unwrap();
    assert_eq!(whole["targetingKey"], json!("user-1"));
    assert_eq!(whole["$flagd"]["flagKey"], json!("my-flag"));
}

#[test]
fn timestamp_is_null_without_a_clock() {
    let ctx = Context::with_key("u");
    assert_eq!(
        run_with(json!({"var": "$flagd.timestamp"}), &ctx, FractionalVersion::V2),
        None
    );
}

#[test]
fn if_chains_and_ternary() {
    check(json!({"if": [true, "a", "b"]}), json!("a"));
    check(json!({"if": [false, "a", "b"]}), json!("b"));
    check(json!({"if": [false, "a"]}), json!(null));
    check(json!({"if": [false, "a", 0, "b", "c"]}), json!("c"));
    check(json!({"if": [false, "a", 1, "b", "c"]}), json!("b"));
    check(json!({"if": []}), json!(null));
    check(json!({"?:": [{"var": "beta"}, "yes", "no"]}), json!("yes"));
}

#[test]
fn equality_follows_javascript() {
    check(json!({"==": [1, "1"]}), json!(true));
    check(json!({"==": [0, false]}), json!(true));
    check(json!({"==": [null, 0]}), json!(false));
    check(json!({"==": [null, null]}), json!(true));
    check(json!({"===": [1, "1"]}), json!(false));
    check(json!({"===": [1, 1.0]}), json!(true));
    check(json!({"!=": [1, "2"]}), json!(true));
    check(json!({"!==": [1, "1"]}), json!(true));
    check(json!({"==": [{"var": "email"}, "ada@example.com"]}), json!(true));
}

#[test]
fn negation_and_boolean_logic() {
    check(json!({"!": [true]}), json!(false));
    check(json!({"!": true}), json!(false));
    check(json!({"!": [[]]}), json!(true));
    check(json!({"!!": ["0"]}), json!(true));
    check(json!({"!!": [0]}), json!(false));
    check(json!({"!!": [""]}), json!(false));
    check(json!({"and": [true, "x", 3]}), json!(3));
    check(json!({"and": [true, 0, 3]}), json!(0));
    check(json!({"or": [false, "", "x"]}), json!("x"));
    check(json!({"or": [false, 0]}), json!(0));
    check(json!({"and": []}), json!(null));
}

#[test]
fn comparisons_including_between() {
    check(json!({"<": [1, 2]}), json!(true));
    check(json!({"<": [2, 2]}), json!(false));
    check(json!({"<=": [2, 2]}), json!(true));
    check(json!({">": [3, 2]}), json!(true));
    check(json!({">=": [2, 3]}), json!(false));
    check(json!({"<": [1, 2, 3]}), json!(true));
    check(json!({"<": [1, 3, 3]}), json!(false));
    check(json!({"<=": [1, 3, 3]}), json!(true));
    check(json!({"<": ["a", "b"]}), json!(true));
    check(json!({"<": ["10", 9]}), json!(false));
    check(json!({">": [{"var": "age"}, 18]}), json!(true));
    check(json!({"<": ["x", 1]}), json!(false));
    check(json!({"<": [{"var": "missing"}, 1]}), json!(true));
}

#[test]
fn in_checks_strings_and_arrays() {
    check(json!({"in": ["example", {"var": "email"}]}), json!(true));
    check(json!({"in": ["zzz", {"var": "email"}]}), json!(false));
    check(json!({"in": ["b", {"var": "tags"}]}), json!(true));
    check(json!({"in": ["c", ["a", "b"]]}), json!(false));
    check(json!({"in": [1, [1, 2]]}), json!(true));
    check(json!({"in": ["a", 5]}), json!(false));
}

#[test]
fn string_operators() {
    check(json!({"cat": ["a", 1, 2.5, true, null]}), json!("a12.5truenull"));
    check(json!({"cat": "solo"}), json!("solo"));
    check(json!({"substr": ["jsonlogic", 4]}), json!("logic"));
    check(json!({"substr": ["jsonlogic", -5]}), json!("logic"));
    check(json!({"substr": ["jsonlogic", 1, 3]}), json!("son"));
    check(json!({"substr": ["jsonlogic", 4, -2]}), json!("log"));
    check(json!({"substr": ["abc", 10]}), json!(""));
    check(json!({"substr": ["abc", 1, -10]}), json!(""));
    check(json!({"substr": ["héllo", 1, 2]}), json!("él"));
}

#[test]
fn array_operators() {
    check(json!({"merge": [[1, 2], 3, [4]]}), json!([1, 2, 3, 4]));
    check(json!({"merge": []}), json!([]));
    check(json!({"missing": ["email", "nope", "empty"]}), json!(["nope", "empty"]));
    check(json!({"missing": [["email", "nope"]]}), json!(["nope"]));
    check(json!({"missing": {"merge": [["a"], "email"]}}), json!(["a"]));
    check(json!({"missing_some": [1, ["email", "nope"]]}), json!([]));
    check(json!({"missing_some": [2, ["email", "nope"]]}), json!(["nope"]));
}

#[test]
fn arithmetic() {
    check(json!({"+": [1, 2, "3"]}), json!(6));
    check(json!({"+": ["3.5"]}), json!(3.5));
    check(json!({"-": [5, 2]}), json!(3));
    check(json!({"-": [5]}), json!(-5));
    check(json!({"*": [2, 3, 4]}), json!(24));
    check(json!({"/": [7, 2]}), json!(3.5));
    check(json!({"%": [7, 3]}), json!(1));
    check(json!({"min": [3, 1, 2]}), json!(1));
    check(json!({"max": [3, 1, 2]}), json!(3));
    check(json!({"+": [{"var": "age"}, {"var": "score"}]}), json!(38.5));
}

#[test]
fn arithmetic_never_produces_nan_or_infinity() {
    check(json!({"/": [1, 0]}), json!(null));
    check(json!({"%": [1, 0]}), json!(null));
    check(json!({"/": [1]}), json!(null));
    check(json!({"+": ["abc", 1]}), json!(null));
    check(json!({"*": [1e308, 10]}), json!(null));
    check(json!({"min": []}), json!(null));
    check(json!({"max": [1, "x"]}), json!(null));
    check(json!({"-": []}), json!(null));
    check(json!({"+": ["inf"]}), json!(null));
}

#[test]
fn starts_with_and_ends_with() {
    check(json!({"starts_with": [{"var": "email"}, "ada"]}), json!(true));
    check(json!({"starts_with": [{"var": "email"}, "bob"]}), json!(false));
    check(json!({"ends_with": [{"var": "email"}, ".com"]}), json!(true));
    check(json!({"ends_with": [{"var": "age"}, "6"]}), json!(null));
    check(json!({"starts_with": ["abc"]}), json!(null));
    check(json!({"ends_with": ["abc", "c", "x"]}), json!(null));
}

#[test]
fn sem_ver_operators() {
    let cases = [
        ("1.4.2", "=", "1.4.2", true),
        ("1.4.2", "!=", "1.4.2", false),
        ("1.4.2", "<", "1.5.0", true),
        ("1.4.2", "<=", "1.4.2", true),
        ("1.4.2", ">", "1.4.1", true),
        ("1.4.2", ">=", "2.0.0", false),
        ("1.4.2", "^", "1.0.0", true),
        ("2.0.0", "^", "1.0.0", false),
        ("1.4.2", "~", "1.4.0", true),
        ("1.5.0", "~", "1.4.0", false),
        ("2.0.0-alpha", "<", "2.0.0", true),
        ("v1.0.0", "=", "1.0.0", true),
        ("V1.0.0", "=", "1.0.0", true),
        ("1.0.0+build", "=", "1.0.0+other", true),
        ("1", "=", "1.0.0", true),
        ("1.2", ">", "1.1", true),
    ];
    for (version, op, target, expected) in cases {
        check(json!({"sem_ver": [version, op, target]}), json!(expected));
    }
    check(json!({"sem_ver": [1.2, ">", "1.1"]}), json!(true));
    check(json!({"sem_ver": [2, "=", "2.0.0"]}), json!(true));
    check(json!({"sem_ver": [{"var": "version"}, ">=", "1.4.0"]}), json!(true));
}

#[test]
fn sem_ver_rejects_bad_input_with_null() {
    check(json!({"sem_ver": ["2.0.0.0", "=", "2.0.0"]}), json!(null));
    check(json!({"sem_ver": ["not-a-version", "=", "1.0.0"]}), json!(null));
    check(json!({"sem_ver": ["1.0.0", "===", "1.0.0"]}), json!(null));
    check(json!({"sem_ver": ["1.0.0", "="]}), json!(null));
    check(json!({"sem_ver": ["01.0.0", "=", "1.0.0"]}), json!(null));
    check(json!({"sem_ver": ["1.0-beta", "=", "1.0.0"]}), json!(null));
    check(json!({"sem_ver": [{"var": "missing"}, "=", "1.0.0"]}), json!(null));
    check(json!({"sem_ver": [true, "=", "1.0.0"]}), json!(null));
}

/// The v2 bucket of a unit for a total weight, computed independently.
fn v2_point(input: &str, total: u64) -> u64 {
    let hash = murmur3::murmur3_32(&mut input.as_bytes(), 0).unwrap();
    (u64::from(hash) * total) >> 32
}

#[test]
fn fractional_v2_buckets_by_flag_key_and_targeting_key() {
    let expr = json!({"fractional": [["a", 50], ["b", 50]]});
    for key in ["u1", "u2", "u3", "u4", "jon@company.com"] {
        let expected = if v2_point(&format!("my-flag{key}"), 100) < 50 {
            "a"
        } else {
            "b"
        };
        let got = run_with(expr.clone(), &Context::with_key(key), FractionalVersion::V2);
        assert_eq!(got, Some(json!(expected)), "{key}");
    }
}

#[test]
fn fractional_v2_buckets_by_an_explicit_string() {
    let expr = json!({"fractional": [{"cat": ["seed", {"var": "email"}]}, ["a", 1], ["b", 3]]});
    let expected = if v2_point("seedada@example.com", 4) < 1 {
        "a"
    } else {
        "b"
    };
    check(expr, json!(expected));
}

#[test]
fn fractional_v1_uses_the_legacy_float_bucket() {
    let expr = json!({"fractional": [{"var": "targetingKey"}, ["a", 50], ["b", 50]]});
    for key in ["u1", "u2", "u3", "u4"] {
        let hash = murmur3::murmur3_32(&mut key.as_bytes(), 0).unwrap() as i32;
        let point = f64::from(hash).abs() / f64::from(i32::MAX) * 100.0;
        let expected = if point < 50.0 { "a" } else { "b" };
        let got = run_with(expr.clone(), &Context::with_key(key), FractionalVersion::V1);
        assert_eq!(got, Some(json!(expected)), "{key}");
    }
}

#[test]
fn fractional_edge_cases() {
    // One bucket always wins; a missing weight counts as 1.
    check(json!({"fractional": [["only"]]}), json!("only"));
    check(json!({"fractional": [["only", 1]]}), json!("only"));
    // All weights zero, or no buckets: null.
    check(
        json!({"fractional": [{"var": "targetingKey"}, ["a", 0], ["b", 0]]}),
        json!(null),
    );
    check(json!({"fractional": [{"var": "targetingKey"}]}), json!(null));
    // Negative weights count as zero.
    check(
        json!({"fractional": [{"var": "targetingKey"}, ["a", -50], ["b", 10]]}),
        json!("b"),
    );
    // Bad weights and buckets: null.
    check(json!({"fractional": [["a", 1.5], ["b", 1]]}), json!(null));
    check(json!({"fractional": [["a", "x"], ["b", 1]]}), json!(null));
    check(json!({"fractional": [["a", 3_000_000_000_u64], ["b", 1]]}), json!(null));
    check(
        json!({"fractional": [["a", 2_000_000_000], ["b", 2_000_000_000]]}),
        json!(null),
    );
    check(json!({"fractional": ["key", "notabucket"]}), json!(null));
    check(json!({"fractional": ["key", [[1], 1]]}), json!(null));
    check(json!({"fractional": []}), json!(null));
    // Variants may be booleans or computed.
    check(json!({"fractional": [[false, 0], [true, 100]]}), json!(true));
    check(json!({"fractional": [[{"var": "user.org.tier"}, 1]]}), json!("gold"));
}

#[test]
fn fractional_without_targeting_key_is_null() {
    let ctx = Context::default();
    let expr = json!({"fractional": [{"var": "missing"}, ["a", 50], ["b", 50]]});
    assert_eq!(run_with(expr, &ctx, FractionalVersion::V2), None);
}

#[test]
fn unknown_operators_are_rejected_by_name() {
    let err = Logic::compile(&json!({"if": [{"frobnicate": [1]}, "a"]}), FractionalVersion::V2).unwrap_err();
    assert_eq!(err, LogicError::UnknownOperator("frobnicate".into()));
    assert!(err.to_string().contains("frobnicate"));
}

#[test]
fn objects_must_hold_exactly_one_operator() {
    assert_eq!(
        Logic::compile(&json!({"==": [1, 1], "!=": [1, 2]}), FractionalVersion::V2).unwrap_err(),
        LogicError::NotAnOperation(2)
    );
    assert_eq!(
        Logic::compile(&json!({}), FractionalVersion::V2).unwrap_err(),
        LogicError::NotAnOperation(0)
    );
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let mut expr = json!(true);
    for _ in 0..10_000 {
        let mut map = serde_json::Map::new();
        map.insert("!".into(), Value::Array(vec![expr]));
        expr = Value::Object(map);
    }
    assert_eq!(
        Logic::compile(&expr, FractionalVersion::V2).unwrap_err(),
        LogicError::TooDeep
    );
    let mut arrays = json!(1);
    for _ in 0..10_000 {
        arrays = Value::Array(vec![arrays]);
    }
    assert_eq!(
        Logic::compile(&arrays, FractionalVersion::V2).unwrap_err(),
        LogicError::TooDeep
    );
    // Dropping such deep values is serde_json's business; avoid recursion there.
    std::mem::forget(expr);
    std::mem::forget(arrays);
}

#[test]
fn wrong_types_never_panic() {
    let weird = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("x"),
        json!([]),
        json!([null, [1]]),
        json!({"a": 1}),
    ];
    let ops = [
        "if",
        "==",
        "===",
        "!=",
        "!==",
        "!",
        "!!",
        "and",
        "or",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "cat",
        "substr",
        "merge",
        "missing",
        "missing_some",
        "+",
        "-",
        "*",
        "/",
        "%",
        "min",
        "max",
        "fractional",
        "sem_ver",
        "starts_with",
        "ends_with",
    ];
    for op in ops {
        for a in &weird {
            for b in &weird {
                let a = if a.is_object() {
                    json!({"var": "user"})
                } else {
                    a.clone()
                };
                let b = if b.is_object() {
                    json!({"var": "user"})
                } else {
                    b.clone()
                };
                for args in [
                    json!([]),
                    json!([a.clone()]),
                    json!([a.clone(), b.clone()]),
                    json!([a, b, -3]),
                ] {
                    let expr = json!({ op: args });
                    let logic = Logic::compile(&expr, FractionalVersion::V2).unwrap();
                    let _ = logic.evaluate(&ctx(), "f");
                    let logic = Logic::compile(&expr, FractionalVersion::V1).unwrap();
                    let _ = logic.evaluate(&Context::default(), "f");
                }
            }
        }
    }
}

#[test]
fn evaluate_with_borrows_string_results() {
    let logic = Logic::compile(&json!({"if": [true, "on", "off"]}), FractionalVersion::V2).unwrap();
    let got = logic.evaluate_with(&ctx(), "f", |r| r == LogicResult::Str("on"));
    assert!(got);
}

#[test]
fn murmur3_matches_the_reference_crate_across_part_boundaries() {
    let words = [
        "",
        "a",
        "ab",
        "abc",
        "abcd",
        "abcde",
        "fractional-flag",
        "jon@company.com",
        "héllo wörld!",
    ];
    for a in words {
        for b in words {
            let joined = format!("{a}{b}");
            let expected = murmur3::murmur3_32(&mut joined.as_bytes(), 0).unwrap();
            assert_eq!(
                flagd::murmur3_x86_32(&[a.as_bytes(), b.as_bytes()]),
                expected,
                "{a:?} + {b:?}"
            );
            let thirds: Vec<&[u8]> = vec![a.as_bytes(), b.as_bytes(), a.as_bytes()];
            let joined3 = format!("{a}{b}{a}");
            let expected3 = murmur3::murmur3_32(&mut joined3.as_bytes(), 0).unwrap();
            assert_eq!(flagd::murmur3_x86_32(&thirds), expected3);
        }
    }
}
