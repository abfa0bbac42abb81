//! flagd flag JSON import (and export of what flagd can express).
//!
//! A flagd file is `{"$schema"?, "flags": {key: {state, variants,
//! defaultVariant?, targeting?, metadata?}}, "$evaluators"?, "metadata"?}`.
//! Each flag becomes a [`Flag`] with one environment:
//!
//! - `variants` → variations; the kind is inferred (all booleans →
//!   boolean, all strings → string, all numbers → number, else JSON);
//! - `state` → `enabled` (a disabled flag serves the caller's default with
//!   reason `DISABLED`, as in flagd, so there is no off variation);
//! - `defaultVariant` (a string, `null` or absent) → the default serve;
//! - non-empty `targeting` → one rule serving [`Serve::Logic`], with every
//!   `{"$ref": name}` replaced by `$evaluators[name]` here, at import;
//! - flag-set `metadata` merged under the flag's own `metadata`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sextant_core::{Document, Flag, FlagKind, Rule, Serve, Targeting, Variation};

/// Deepest `$ref` substitution accepted (guards against cycles).
const MAX_REF_DEPTH: usize = 64;

/// Why a flagd file (or one of its flags) could not be imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagdError {
    /// Not JSON at all.
    #[error("flagd file is not valid JSON: {0}")]
    Json(String),
    /// A top-level field has the wrong shape.
    #[error("flagd file: `{field}` {problem}")]
    File {
        /// The field (`flags`, `$evaluators`, `metadata`).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A flag's field has the wrong shape.
    #[error("flag `{flag}`: `{field}` {problem}")]
    Field {
        /// Flag key.
        flag: String,
        /// The field (`state`, `variants`, …).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Targeting refers to an evaluator `$evaluators` does not define.
    #[error("flag `{flag}`: `targeting` refers to evaluator `{evaluator}`, which `$evaluators` does not define")]
    MissingEvaluator {
        /// Flag key.
        flag: String,
        /// The missing evaluator's name.
        evaluator: String,
    },
    /// Export: a flag uses something flagd cannot express.
    #[error("flag `{flag}` cannot be exported to flagd: {problem}")]
    Inexpressible {
        /// Flag key.
        flag: String,
        /// What flagd lacks.
        problem: String,
    },
}

impl FlagdError {
    /// The flag the error is about, if it is about one flag.
    pub fn flag(&self) -> Option<&str> {
        match self {
            FlagdError::Field { flag, .. }
            | FlagdError::MissingEvaluator { flag, .. }
            | FlagdError::Inexpressible { flag, .. } => Some(flag),
            FlagdError::Json(_) | FlagdError::File { .. } => None,
        }
    }
}

/// The result of a lenient import: the flags that could be imported, and
/// one error per flag that could not.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The importable flags.
    pub document: Document,
    /// Flags left out, each with its reason.
    pub rejected: Vec<FlagdError>,
}

/// Imports a flagd file into a document whose flags are configured for
/// `environment`. Any bad flag fails the whole import.
pub fn import(json: &str, environment: &str) -> Result<Document, FlagdError> {
    let imported = import_lenient(json, environment)?;
    match imported.rejected.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(imported.document),
    }
}

/// Imports a flagd file, leaving out (and reporting) the flags that cannot
/// be imported, as flagd itself serves the rest of a file and answers
/// `PARSE_ERROR` for a broken flag. Fails only when the file as a whole is
/// unusable.
pub fn import_lenient(json: &str, environment: &str) -> Result<Imported, FlagdError> {
    let root: Value = serde_json::from_str(json).map_err(|e| FlagdError::Json(e.to_string()))?;
    let Value::Object(root) = root else {
        return Err(FlagdError::File {
            field: "$",
            problem: format!("must be an object, got {}", sextant_core::json_type_name(&root)),
        });
    };
    let flags = match root.get("flags") {
        Some(Value::Object(flags)) => flags,
        None => {
            return Err(FlagdError::File {
                field: "flags",
                problem: "is missing".into(),
            });
        }
        Some(other) => {
            return Err(FlagdError::File {
                field: "flags",
                problem: format!("must be an object, got {}", sextant_core::json_type_name(other)),
            });
        }
    };
    let empty = Map::new();
    let evaluators = match root.get("$evaluators") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(evaluators)) => evaluators,
        Some(other) => {
            return Err(FlagdError::File {
                field: "$evaluators",
                problem: format!("must be an object, got {}", sextant_core::json_type_name(other)),
            });
        }
    };
    let set_metadata = match root.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            return Err(FlagdError::File {
                field: "metadata",
                problem: format!("must be an object, got {}", sextant_core::json_type_name(other)),
            });
        }
    };

    let mut document = Document::default();
    let mut rejected = Vec::new();
    for (key, definition) in flags {
        match import_flag(key, definition, evaluators, set_metadata, environment) {
            Ok(flag) => document.flags.push(flag),
            Err(error) => rejected.push(error),
        }
    }
    Ok(Imported { document, rejected })
}

fn field_error(flag: &str, field: &'static str, problem: impl Into<String>) -> FlagdError {
    FlagdError::Field {
        flag: flag.to_owned(),
        field,
        problem: problem.into(),
    }
}

fn import_flag(
    key: &str,
    definition: &Value,
    evaluators: &Map<String, Value>,
    set_metadata: &Map<String, Value>,
    environment: &str,
) -> Result<Flag, FlagdError> {
    let Value::Object(definition) = definition else {
        return Err(field_error(
            key,
            "$",
            format!("must be an object, got {}", sextant_core::json_type_name(definition)),
        ));
    };
    let enabled = match definition.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => true,
        Some(Value::String(s)) if s == "DISABLED" => false,
        Some(other) => {
            return Err(field_error(
                key,
                "state",
                format!("must be \"ENABLED\" or \"DISABLED\", got {other}"),
            ));
        }
        None => return Err(field_error(key, "state", "is missing")),
    };
    let variants = match definition.get("variants") {
        Some(Value::Object(variants)) if !variants.is_empty() => variants,
        Some(Value::Object(_)) => return Err(field_error(key, "variants", "must not be empty")),
        Some(other) => {
            return Err(field_error(
                key,
                "variants",
                format!("must be an object, got {}", sextant_core::json_type_name(other)),
            ));
        }
        None => return Err(field_error(key, "variants", "is missing")),
    };
    let kind = infer_kind(variants.values());
    let variations = variants
        .iter()
        .map(|(name, value)| Variation {
            key: name.clone(),
            value: value.clone(),
            description: None,
        })
        .collect();

    let default_serve = match definition.get("defaultVariant") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if variants.contains_key(name) => Some(Serve::Variation(name.clone())),
        Some(Value::String(name)) => {
            return Err(field_error(
                key,
                "defaultVariant",
                format!("names no variant: `{name}`"),
            ));
        }
        Some(other) => {
            return Err(field_error(
                key,
                "defaultVariant",
                format!("must be a string or null, got {}", sextant_core::json_type_name(other)),
            ));
        }
    };

    let rules = match definition.get("targeting") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) if map.is_empty() => Vec::new(),
        Some(targeting @ Value::Object(_)) => {
            let expr = substitute_refs(targeting, evaluators, key, 0)?;
            vec![Rule {
                id: None,
                description: None,
                conditions: Vec::new(),
                rollout: None,
                serve: Serve::Logic(expr),
            }]
        }
        Some(other) => {
            return Err(field_error(
                key,
                "targeting",
                format!("must be an object, got {}", sextant_core::json_type_name(other)),
            ));
        }
    };

    let mut metadata: BTreeMap<String, Value> = set_metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match definition.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(own)) => metadata.extend(own.iter().map(|(k, v)| (k.clone(), v.clone()))),
        Some(other) => {
            return Err(field_error(
                key,
                "metadata",
                format!("must be an object, got {}", sextant_core::json_type_name(other)),
            ));
        }
    }

    let targeting = Targeting {
        enabled,
        off_variation: None,
        prerequisites: Vec::new(),
        rules,
        default_serve,
        salt: None,
    };
    Ok(Flag {
        key: key.to_owned(),
        kind,
        variations,
        description: None,
        owner: None,
        tags: Vec::new(),
        temporary: true,
        hypothesis: None,
        metadata,
        environments: BTreeMap::from([(environment.to_owned(), targeting)]),
    })
}

/// The narrowest kind that accepts every value.
fn infer_kind<'v>(values: impl Iterator<Item = &'v Value> + Clone) -> FlagKind {
    [FlagKind::Boolean, FlagKind::String, FlagKind::Number]
        .into_iter()
        .find(|kind| values.clone().all(|v| kind.accepts(v)))
        .unwrap_or(FlagKind::Json)
}

/// Replaces every `{"$ref": name}` with the named evaluator (recursively,
/// so evaluators may use evaluators).
fn substitute_refs(
    value: &Value,
    evaluators: &Map<String, Value>,
    flag: &str,
    depth: usize,
) -> Result<Value, FlagdError> {
    if depth > MAX_REF_DEPTH + 128 {
        return Err(field_error(
            flag,
            "targeting",
            "is nested too deeply (or `$ref`s form a cycle)",
        ));
    }
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(reference) = map.get("$ref")
            {
                let Value::String(name) = reference else {
                    return Err(field_error(
                        flag,
                        "targeting",
                        format!("`$ref` must be a string, got {reference}"),
                    ));
                };
                let Some(evaluator) = evaluators.get(name) else {
                    return Err(FlagdError::MissingEvaluator {
                        flag: flag.to_owned(),
                        evaluator: name.clone(),
                    });
                };
                return substitute_refs(evaluator, evaluators, flag, depth + 1);
            }
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), substitute_refs(v, evaluators, flag, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| substitute_refs(item, evaluators, flag, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        scalar => Ok(scalar.clone()),
    }
}

/// Exports the flags of `environment` as a flagd file. Only what flagd can
/// express is accepted: no conditions, prerequisites, splits or off
/// variations, at most one rule and it must serve JSONLogic.
pub fn export(document: &Document, environment: &str) -> Result<Value, FlagdError> {
    let mut flags = Map::new();
    for flag in &document.flags {
        let inexpressible = |problem: &str| FlagdError::Inexpressible {
            flag: flag.key.clone(),
            problem: problem.to_owned(),
        };
        if !document.segments.is_empty() {
            return Err(inexpressible("flagd has no segments"));
        }
        let mut out = Map::new();
        let variants: Map<String, Value> = flag
            .variations
            .iter()
            .map(|v| (v.key.clone(), v.value.clone()))
            .collect();
        let targeting = flag.environments.get(environment);
        let enabled = targeting.is_some_and(|t| t.enabled);
        out.insert(
            "state".into(),
            Value::String(if enabled { "ENABLED" } else { "DISABLED" }.into()),
        );
        out.insert("variants".into(), Value::Object(variants));
        if let Some(t) = targeting {
            if t.off_variation.is_some() {
                return Err(inexpressible("flagd has no off variation"));
            }
            if !t.prerequisites.is_empty() {
                return Err(inexpressible("flagd has no prerequisites"));
            }
            match t.default_serve.as_ref() {
                None => {}
                Some(Serve::Variation(v)) => {
                    out.insert("defaultVariant".into(), Value::String(v.clone()));
                }
                Some(_) => return Err(inexpressible("the default serve must be a fixed variation")),
            }
            match t.rules.as_slice() {
                [] => {}
                [rule] if rule.conditions.is_empty() && rule.rollout.is_none() => match &rule.serve {
                    Serve::Logic(expr) => {
                        out.insert("targeting".into(), expr.clone());
                    }
                    _ => return Err(inexpressible("rules must serve JSONLogic")),
                },
                _ => return Err(inexpressible("flagd has one JSONLogic targeting expression, not rules")),
            }
        }
        if !flag.metadata.is_empty() {
            let metadata: Map<String, Value> = flag.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            out.insert("metadata".into(), Value::Object(metadata));
        }
        flags.insert(flag.key.clone(), Value::Object(out));
    }
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        Value::String("https://flagd.dev/schema/v0/flags.json".into()),
    );
    root.insert("flags".into(), Value::Object(flags));
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sextant_core::{Context, Snapshot};

    use super::*;

    const FILE: &str = r#"{
      "$schema": "https://flagd.dev/schema/v0/flags.json",
      "metadata": {"flagSetId": "shop", "version": "1"},
      "flags": {
        "banner": {
          "state": "ENABLED",
          "variants": {"on": true, "off": false},
          "defaultVariant": "off",
          "targeting": {"if": [{"$ref": "is_staff"}, "on"]},
          "metadata": {"version": "2", "owner": "web"}
        },
        "color": {"state": "DISABLED", "variants": {"red": "red", "blue": "blue"}, "defaultVariant": "red"},
        "limit": {"state": "ENABLED", "variants": {"low": 1, "high": 2.5}},
        "layout": {"state": "ENABLED", "variants": {"a": {"cols": 2}, "b": "x"}, "defaultVariant": null, "targeting": {}}
      },
      "$evaluators": {"is_staff": {"ends_with": [{"var": "email"}, "@shop.test"]}}
    }"#;

    fn flag<'d>(doc: &'d Document, key: &str) -> &'d Flag {
        doc.flags.iter().find(|f| f.key == key).unwrap()
    }

    #[test]
    fn imports_variants_state_default_targeting_and_metadata() {
        let doc = import(FILE, "production").unwrap();
        let banner = flag(&doc, "banner");
        assert_eq!(banner.kind, FlagKind::Boolean);
        let t = &banner.environments["production"];
        assert!(t.enabled);
        assert_eq!(t.default_serve, Some(Serve::Variation("off".into())));
        assert_eq!(
            t.rules[0].serve,
            Serve::Logic(json!({"if": [{"ends_with": [{"var": "email"}, "@shop.test"]}, "on"]}))
        );
        assert_eq!(banner.metadata["flagSetId"], json!("shop"));
        assert_eq!(banner.metadata["version"], json!("2"));
        assert_eq!(banner.metadata["owner"], json!("web"));

        assert!(!flag(&doc, "color").environments["production"].enabled);
        assert_eq!(flag(&doc, "color").kind, FlagKind::String);
        assert_eq!(flag(&doc, "limit").kind, FlagKind::Number);
        assert_eq!(flag(&doc, "limit").environments["production"].default_serve, None);
        let layout = flag(&doc, "layout");
        assert_eq!(layout.kind, FlagKind::Json);
        assert!(layout.environments["production"].rules.is_empty());
    }

    #[test]
    fn imported_flags_evaluate() {
        let doc = import(FILE, "production").unwrap();
        let snapshot = Snapshot::compile(&doc, "production", 1).unwrap();
        let staff = Context::with_key("u").attr("email", "ann@shop.test");
        assert_eq!(snapshot.evaluate("banner", &staff).value, Some(&json!(true)));
        let guest = Context::with_key("u").attr("email", "bob@example.com");
        assert_eq!(snapshot.evaluate("banner", &guest).value, Some(&json!(false)));
        assert_eq!(snapshot.evaluate("color", &guest).value, None);
    }

    #[test]
    fn a_missing_evaluator_is_named() {
        let file = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": "a"},
                       "targeting": {"if": [{"$ref": "nope"}, "a"]}}}}"#;
        let err = import(file, "prod").unwrap_err();
        assert_eq!(
            err,
            FlagdError::MissingEvaluator {
                flag: "f".into(),
                evaluator: "nope".into()
            }
        );
        assert!(err.to_string().contains("`nope`"));
        let lenient = import_lenient(file, "prod").unwrap();
        assert!(lenient.document.flags.is_empty());
        assert_eq!(lenient.rejected[0].flag(), Some("f"));
    }

    #[test]
    fn cyclic_refs_are_errors_not_overflows() {
        let file = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": "a"}, "targeting": {"$ref": "x"}}},
                       "$evaluators": {"x": {"!": [{"$ref": "y"}]}, "y": {"$ref": "x"}}}"#;
        let err = import(file, "prod").unwrap_err();
        assert_eq!(err.flag(), Some("f"));
    }

    #[test]
    fn bad_input_is_an_error_naming_flag_and_field() {
        let cases = [
            ("not json", None, None),
            ("[]", None, None),
            (r#"{"flags": 3}"#, None, None),
            (r#"{"flags": {"f": 1}}"#, Some("f"), Some("$")),
            (r#"{"flags": {"f": {"variants": {"a": 1}}}}"#, Some("f"), Some("state")),
            (
                r#"{"flags": {"f": {"state": "ON", "variants": {"a": 1}}}}"#,
                Some("f"),
                Some("state"),
            ),
            (r#"{"flags": {"f": {"state": "ENABLED"}}}"#, Some("f"), Some("variants")),
            (
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {}}}}"#,
                Some("f"),
                Some("variants"),
            ),
            (
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}}"#,
                Some("f"),
                Some("defaultVariant"),
            ),
            (
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": 1}}}"#,
                Some("f"),
                Some("defaultVariant"),
            ),
            (
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "targeting": "x"}}}"#,
                Some("f"),
                Some("targeting"),
            ),
            (
                r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "metadata": []}}}"#,
                Some("f"),
                Some("metadata"),
            ),
        ];
        for (file, flag, field) in cases {
            let err = import(file, "prod").unwrap_err();
            assert_eq!(err.flag(), flag, "{file}");
            if let (Some(field), FlagdError::Field { field: got, .. }) = (field, &err) {
                assert_eq!(*got, field, "{file}");
            }
            if let Some(flag) = flag {
                assert!(err.to_string().contains(flag), "{err}");
            }
        }
    }

    #[test]
    fn export_round_trips_what_flagd_expresses() {
        let doc = import(FILE, "production").unwrap();
        let exported = export(&doc, "production").unwrap();
        let again = import(&exported.to_string(), "production").unwrap();
        // Flag-set metadata was folded into each flag on import.
        assert_eq!(doc, again);
    }

    #[test]
    fn export_refuses_what_flagd_cannot_express() {
        let mut doc = import(FILE, "production").unwrap();
        let t = doc.flags[0].environments.get_mut("production").unwrap();
        t.off_variation = Some("off".into());
        let err = export(&doc, "production").unwrap_err();
        assert!(matches!(err, FlagdError::Inexpressible { .. }));
    }
}
