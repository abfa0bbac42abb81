use serde_json::{Value, json};
use sextant_core::{Context, Document, Snapshot};

/// A document from JSON, panicking with serde's message on a typo in a test.
pub fn document(value: Value) -> Document {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("test document does not parse: {e}"))
}

/// A boolean flag `key` with variations on/off and the given production targeting.
pub fn bool_flag(key: &str, targeting: Value) -> Value {
    json!({
        "key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": targeting}
    })
}

pub fn compile(value: Value) -> Snapshot {
    Snapshot::compile(&document(value), "production", 1).unwrap_or_else(|e| panic!("{e}"))
}

/// Evaluates `key` and returns (variation, reason) as strings, the shape
/// most assertions need.
pub fn check(snapshot: &Snapshot, key: &str, ctx: &Context) -> (Option<String>, &'static str) {
    let r = snapshot.evaluate(key, ctx);
    (r.variation.map(str::to_owned), r.reason.as_str())
}

pub fn ctx(value: Value) -> Context {
    Context::from_json(value).unwrap()
}
