//! The Unleash client specification, run against the Unleash importer:
//! every file listed in `index.json`, every `tests` and `variantTests` case.

use std::path::PathBuf;

use serde_json::Value;
use sextant_core::Snapshot;
use sextant_formats::unleash::{
    ImportOptions, UnknownPolicy, UnleashError, context_from_unleash, import_value, is_enabled, variant,
};

const ENVIRONMENT: &str = "production";

/// Cases not run, as (file name, case description, reason). Every entry
/// must name a case that exists.
const SKIPPED: &[(&str, &str, &str)] = &[];

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/unleash-client-spec/specifications")
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// What Unleash clients do with unknown operators and custom strategies;
/// the specification expects it (`F7.invalid-operator`).
const CLIENT_BEHAVIOUR: ImportOptions = ImportOptions {
    unknown: UnknownPolicy::NeverMatch,
};

/// Compares a variant with the specification's expectation, which spells
/// the feature flag `feature_enabled` or `featureEnabled`.
fn variant_matches(actual: &Value, expected: &Value) -> bool {
    let feature_enabled = |v: &Value| v.get("feature_enabled").or_else(|| v.get("featureEnabled")).cloned();
    actual.get("name") == expected.get("name")
        && actual.get("enabled") == expected.get("enabled")
        && actual.get("payload") == expected.get("payload")
        && (feature_enabled(expected).is_none() || feature_enabled(actual) == feature_enabled(expected))
}

#[test]
fn unleash_client_specification_passes() {
    let dir = spec_dir();
    let index = read_json(&dir.join("index.json"));
    let files: Vec<&str> = index
        .as_array()
        .expect("index.json is a list")
        .iter()
        .map(|f| f.as_str().expect("index entries are file names"))
        .collect();
    assert!(files.len() >= 22, "index lists {} files", files.len());

    let mut seen_skips = vec![false; SKIPPED.len()];
    let (mut passed, mut skipped) = (0usize, 0usize);
    let mut failures = Vec::new();
    for file in &files {
        let spec = read_json(&dir.join(file));
        let document = import_value(&spec["state"], ENVIRONMENT, CLIENT_BEHAVIOUR)
            .unwrap_or_else(|e| panic!("{file}: import failed: {e}"));
        let snapshot =
            Snapshot::compile(&document, ENVIRONMENT, 1).unwrap_or_else(|e| panic!("{file}: compile failed: {e}"));

        let cases = spec["tests"].as_array().into_iter().flatten().map(|c| (false, c));
        let variant_cases = spec["variantTests"].as_array().into_iter().flatten().map(|c| (true, c));
        for (is_variant, case) in cases.chain(variant_cases) {
            let description = case["description"].as_str().unwrap_or("(no description)");
            if let Some(i) = SKIPPED.iter().position(|(f, d, _)| f == file && *d == description) {
                seen_skips[i] = true;
                skipped += 1;
                continue;
            }
            let toggle = case["toggleName"].as_str().expect("toggleName is a string");
            let ctx = context_from_unleash(&case["context"])
                .unwrap_or_else(|e| panic!("{file}: {description}: context rejected: {e}"));
            let resolution = snapshot.evaluate(toggle, &ctx);
            let expected = &case["expectedResult"];
            let ok = if is_variant {
                variant_matches(&variant(resolution.value), expected)
            } else {
                Some(is_enabled(resolution.value)) == expected.as_bool()
            };
            if ok {
                passed += 1;
            } else {
                failures.push(format!(
                    "{file}: {description}: expected {expected}, got {:?} ({:?})",
                    resolution.value, resolution.reason
                ));
            }
        }
    }
    for (i, seen) in seen_skips.iter().enumerate() {
        assert!(seen, "SKIPPED names a case that does not exist: {:?}", SKIPPED[i]);
    }
    eprintln!(
        "unleash client specification: {} files, {passed} passed, {skipped} skipped, {} failed",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unknown_operator_in_the_specification_is_rejected_by_default() {
    let spec = read_json(&spec_dir().join("13-constraint-operators.json"));
    let err = import_value(&spec["state"], ENVIRONMENT, ImportOptions::default()).unwrap_err();
    match err {
        UnleashError::UnknownOperator { location, operator } => {
            assert_eq!(operator, "NOT_A_VALID_OPERATOR");
            assert_eq!(location.feature.as_deref(), Some("F7.invalid-operator"));
        }
        other => panic!("unexpected error: {other}"),
    }
}
