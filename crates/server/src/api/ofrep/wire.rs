//! OFREP response bodies, written straight into one pre-sized buffer.
//!
//! Why not `serde_json::Value` trees: bulk evaluation of 50 flags built a
//! map per flag (plus one for its metadata) only to serialize and free it;
//! under load, `malloc`/`free` were the largest cost of the whole request
//! (see BENCHMARKS.md). Here a flag costs no allocation unless it failed
//! (its error message). Keys are written in sorted order, so a body is
//! byte for byte what serializing the equivalent `Value` gives — the
//! tests below compare both.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde_json::Value;
use sextant_core::{ErrorCode, Reason, Resolution};

/// Metadata key that keeps Sextant's own reason when OFREP's differs.
const OWN_REASON: &str = "sextant.reason";

/// The OFREP reason for a Sextant reason (`DEFAULT` and errors are
/// `UNKNOWN`, a failed prerequisite is `DISABLED`).
pub(super) fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::Static => "STATIC",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Disabled | Reason::PrerequisiteFailed => "DISABLED",
        Reason::Default | Reason::Error => "UNKNOWN",
    }
}

/// The `errorDetails` of a failed evaluation.
pub(super) fn error_details(code: ErrorCode, key: &str) -> String {
    match code {
        ErrorCode::FlagNotFound => format!("flag `{key}` was not found"),
        ErrorCode::TargetingKeyMissing => {
            "the context has no targetingKey (or bucketing attribute) this flag needs".into()
        }
        ErrorCode::InvalidContext => "the context cannot be used".into(),
        ErrorCode::TypeMismatch => "the flag has a different type".into(),
        ErrorCode::ParseError => "the flag definition could not be parsed".into(),
        ErrorCode::General => format!("flag `{key}` could not be evaluated"),
    }
}

/// Appends `s` as a JSON string (quoted, escaped).
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends a JSON value.
fn value(out: &mut Vec<u8>, v: &Value) {
    // A `Value` always serializes (its map keys are strings); a `Vec`
    // never fails to take the bytes.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Appends an unsigned integer.
pub(super) fn number(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

/// Whether OFREP metadata can carry the value: booleans, strings and
/// numbers only.
fn scalar(v: &Value) -> bool {
    v.is_boolean() || v.is_string() || v.is_number()
}

/// Appends `,"metadata":{…}` with the flag's scalar metadata plus
/// `own_reason` (under [`OWN_REASON`], replacing a flag entry of that name),
/// in key order; nothing when there is nothing to say.
fn metadata(out: &mut Vec<u8>, flag: Option<&BTreeMap<String, Value>>, own_reason: Option<&str>) {
    let entries = flag
        .into_iter()
        .flatten()
        .filter(|(k, v)| scalar(v) && !(own_reason.is_some() && k.as_str() == OWN_REASON));
    let mut own = own_reason;
    let mut first = true;
    let mut open = |out: &mut Vec<u8>| {
        out.extend_from_slice(if first { b",\"metadata\":{" } else { b"," });
        first = false;
    };
    for (k, v) in entries {
        if let Some(reason) = own.filter(|_| k.as_str() > OWN_REASON) {
            open(out);
            string(out, OWN_REASON);
            out.push(b':');
            string(out, reason);
            own = None;
        }
        open(out);
        string(out, k);
        out.push(b':');
        value(out, v);
    }
    if let Some(reason) = own {
        open(out);
        string(out, OWN_REASON);
        out.push(b':');
        string(out, reason);
    }
    if !first {
        out.push(b'}');
    }
}

/// Appends one evaluation as OFREP JSON: `evaluationSuccess`
/// (`key`, `metadata`, `reason`, `value`, `variant`) or, when `r` failed,
/// `evaluationFailure` (`errorCode`, `errorDetails`, `key`, `metadata`).
pub(super) fn evaluation(
    out: &mut Vec<u8>,
    flag_metadata: Option<&BTreeMap<String, Value>>,
    key: &str,
    r: &Resolution<'_>,
) {
    if let Some(code) = r.error {
        out.extend_from_slice(b"{\"errorCode\":");
        string(out, code.as_str());
        out.extend_from_slice(b",\"errorDetails\":");
        string(out, &error_details(code, key));
        out.extend_from_slice(b",\"key\":");
        string(out, key);
        metadata(out, flag_metadata, None);
        out.push(b'}');
        return;
    }
    let name = reason_name(r.reason);
    let own = (name != r.reason.as_str()).then(|| r.reason.as_str());
    out.extend_from_slice(b"{\"key\":");
    string(out, key);
    metadata(out, flag_metadata, own);
    out.extend_from_slice(b",\"reason\":");
    string(out, name);
    if let Some(v) = r.value {
        out.extend_from_slice(b",\"value\":");
        value(out, v);
    }
    if let Some(v) = r.variation {
        out.extend_from_slice(b",\"variant\":");
        string(out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    /// What the body was before it was written by hand: a `Value` tree.
    fn as_value(flag_metadata: Option<&BTreeMap<String, Value>>, key: &str, r: &Resolution<'_>) -> Value {
        let mut metadata = Map::new();
        for (k, v) in flag_metadata.into_iter().flatten() {
            if scalar(v) {
                metadata.insert(k.clone(), v.clone());
            }
        }
        let mut out = match r.error {
            Some(code) => json!({"key": key, "errorCode": code.as_str(), "errorDetails": error_details(code, key)}),
            None => {
                let name = reason_name(r.reason);
                if name != r.reason.as_str() {
                    metadata.insert(OWN_REASON.into(), Value::String(r.reason.as_str().into()));
                }
                let mut out = json!({"key": key, "reason": name});
                if let Some(v) = r.value {
                    out["value"] = v.clone();
                }
                if let Some(v) = r.variation {
                    out["variant"] = Value::String(v.into());
                }
                out
            }
        };
        if !metadata.is_empty() {
            out["metadata"] = Value::Object(metadata);
        }
        out
    }

    fn written(flag_metadata: Option<&BTreeMap<String, Value>>, key: &str, r: &Resolution<'_>) -> String {
        let mut out = Vec::new();
        evaluation(&mut out, flag_metadata, key, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn written_evaluations_are_byte_for_byte_the_serialized_value_tree() {
        let values = [
            json!(true),
            json!("blue \"quoted\" \u{e9}"),
            json!(2.5),
            json!({"b": [1, null], "a": {}}),
        ];
        let metadatas: Vec<Option<BTreeMap<String, Value>>> = vec![
            None,
            Some(BTreeMap::new()),
            Some(BTreeMap::from([
                ("team".into(), json!("growth")),
                ("object".into(), json!({"x": 1})),
            ])),
            Some(BTreeMap::from([
                ("a.first".into(), json!(1)),
                ("sextant.reason".into(), json!("from the flag")),
                ("z.last".into(), json!(false)),
            ])),
            Some(BTreeMap::from([("zzz".into(), json!(null)), ("zz".into(), json!(7))])),
        ];
        let reasons = [
            Reason::Static,
            Reason::TargetingMatch,
            Reason::Split,
            Reason::Disabled,
            Reason::PrerequisiteFailed,
            Reason::Default,
        ];
        let mut checked = 0;
        for m in &metadatas {
            for v in &values {
                for reason in reasons {
                    for variation in [Some("on"), None] {
                        let r = Resolution {
                            value: Some(v),
                            variation,
                            reason,
                            rule: None,
                            error: None,
                            in_experiment: false,
                        };
                        let expected = as_value(m.as_ref(), "k\"ey", &r).to_string();
                        assert_eq!(written(m.as_ref(), "k\"ey", &r), expected);
                        checked += 1;
                    }
                }
            }
            for code in [ErrorCode::FlagNotFound, ErrorCode::TypeMismatch, ErrorCode::General] {
                let r = Resolution {
                    value: None,
                    variation: None,
                    reason: Reason::Error,
                    rule: None,
                    error: Some(code),
                    in_experiment: false,
                };
                assert_eq!(
                    written(m.as_ref(), "flag", &r),
                    as_value(m.as_ref(), "flag", &r).to_string()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 5 * (4 * 6 * 2 + 3));
    }

    #[test]
    fn a_resolution_without_a_value_has_only_key_reason_and_metadata() {
        let r = Resolution {
            value: None,
            variation: None,
            reason: Reason::Disabled,
            rule: None,
            error: None,
            in_experiment: false,
        };
        assert_eq!(written(None, "f", &r), r#"{"key":"f","reason":"DISABLED"}"#);
    }
}
