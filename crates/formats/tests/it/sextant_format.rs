//! Sextant's declarative format round-trips losslessly (property-tested).

use proptest::prelude::*;
use serde_json::{Value, json};
use sextant_core::Document;
use sextant_formats::sextant;

/// Strings that trip YAML writers: keywords, numbers, indicators, unicode.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "on",
            "off",
            "yes",
            "no",
            "null",
            "~",
            "true",
            "1e3",
            "0x10",
            "-",
            "- a",
            ": b",
            "#c",
            "'q'",
            "\"dq\"",
            "",
            " lead",
            "trail ",
            "multi\nline",
            "tab\tbed",
            "ünïcødé",
            "emoji 🚀",
            "{}",
            "[x]",
            "*ref",
            "&anchor",
            "!tag",
            "%dir",
            "@at",
        ])
        .prop_map(str::to_owned),
        ".{0,16}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(tricky_string(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn condition() -> impl Strategy<Value = Value> {
    (
        tricky_string(),
        prop::sample::select(vec!["in", "not_in", "matches", "gt", "semver_lt", "cidr", "in_segment", "exists", "before"]),
        prop::collection::vec(json_value(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(attribute, op, values, negate, ci)| {
            json!({"attribute": attribute, "op": op, "values": values, "negate": negate, "case_insensitive": ci})
        })
}

fn serve() -> impl Strategy<Value = Value> {
    prop_oneof![
        tricky_string().prop_map(|v| json!({"variation": v})),
        (
            prop::collection::vec((tricky_string(), any::<u32>()), 0..4),
            prop::collection::vec(tricky_string(), 0..2),
            prop::option::of(tricky_string()),
            prop::sample::select(vec![
                json!({"kind": "sextant"}),
                json!({"kind": "unleash_variant", "group_id": "g"})
            ]),
        )
            .prop_map(|(w, by, seed, hash)| json!({"split": {
                "weights": w.into_iter().map(|(v, w)| json!({"variation": v, "weight": w})).collect::<Vec<_>>(),
                "bucket_by": by, "seed": seed, "hash": hash}})),
        json_value().prop_map(|logic| json!({"logic": logic})),
    ]
}

fn document() -> impl Strategy<Value = Document> {
    let rule = (
        prop::option::of(tricky_string()),
        prop::collection::vec(condition(), 0..3),
        serve(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(id, conditions, serve, rollout)| {
            let mut r = json!({"id": id, "conditions": conditions, "serve": serve});
            if let Some(w) = rollout {
                r["rollout"] = json!({"weight": w, "hash": {"kind": "unleash_rollout", "group_id": "g"}});
            }
            r
        });
    let targeting = (
        any::<bool>(),
        prop::option::of(tricky_string()),
        prop::collection::vec(rule, 0..3),
        prop::option::of(serve()),
        prop::option::of(tricky_string()),
    )
        .prop_map(|(enabled, off, rules, default, salt)| {
            json!({"enabled": enabled, "off_variation": off, "rules": rules, "default_serve": default, "salt": salt,
                   "prerequisites": [{"flag": "other", "variations": ["a"]}]})
        });
    let flag = (
        tricky_string(),
        prop::sample::select(vec!["boolean", "string", "number", "json"]),
        prop::collection::vec((tricky_string(), json_value()), 0..3),
        prop::collection::vec(tricky_string(), 0..2),
        any::<bool>(),
        prop::collection::btree_map(tricky_string(), targeting, 0..2),
        prop::option::of(tricky_string()),
    )
        .prop_map(|(key, kind, variations, tags, temporary, environments, owner)| {
            json!({"key": key, "kind": kind, "tags": tags, "temporary": temporary, "owner": owner,
                "variations": variations.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "hypothesis": {"metric": "m", "direction": "increase", "minimum_effect": 0.05, "reason": "why"},
                "metadata": {"team": "x"},
                "environments": environments})
        });
    let segment = (tricky_string(), prop::collection::vec(tricky_string(), 0..3), prop::collection::vec(condition(), 0..2))
        .prop_map(|(key, included, conditions)| json!({"key": key, "included": included, "excluded": ["x"], "conditions": conditions}));
    (prop::collection::vec(flag, 0..3), prop::collection::vec(segment, 0..2)).prop_map(|(flags, segments)| {
        serde_json::from_value(json!({"flags": flags, "segments": segments})).expect("generator writes valid documents")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn yaml_export_then_import_is_lossless(doc in document()) {
        let yaml = sextant::to_yaml(&doc).unwrap();
        let back = sextant::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        prop_assert_eq!(back, doc);
    }

    #[test]
    fn json_export_then_import_is_lossless(doc in document()) {
        let text = sextant::to_json(&doc).unwrap();
        prop_assert_eq!(sextant::parse(&text).unwrap(), doc);
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in ".{0,200}") {
        let _ = sextant::parse(&text);
        let _ = sextant_formats::import(&text, None, "production");
    }
}
