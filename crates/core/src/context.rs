//! The evaluation context: who is asking.

use serde_json::{Map, Value};

/// Attribute names that address the targeting key.
pub const TARGETING_KEY_ATTRIBUTES: [&str; 2] = ["targetingKey", "targeting_key"];

/// Who a flag is evaluated for: a targeting key plus attributes (string,
/// number, bool, list, nested object; dotted paths address nested values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The unit identity used for bucketing (user id, device id, …).
    pub targeting_key: Option<String>,
    /// Everything else known about the unit.
    pub attributes: Map<String, Value>,
    /// The evaluation time in Unix seconds, for date conditions and
    /// JSONLogic `$flagd.timestamp`. The core has no clock: callers pass it.
    pub now: Option<i64>,
}

/// Why a JSON value could not be turned into a [`Context`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContextError {
    /// The context must be a JSON object.
    #[error("context must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// The targeting key must be a string.
    #[error("targetingKey must be a string, got {0}")]
    TargetingKeyNotString(&'static str),
}

/// A short name for a JSON value's type, for error messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Context {
    /// A context with only a targeting key.
    pub fn with_key(key: impl Into<String>) -> Self {
        Context {
            targeting_key: Some(key.into()),
            ..Context::default()
        }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sets the evaluation time (builder style).
    pub fn at(mut self, unix_seconds: i64) -> Self {
        self.now = Some(unix_seconds);
        self
    }

    /// Builds a context from an OFREP/OpenFeature-style JSON object:
    /// `targetingKey` (or `targeting_key`) plus attributes.
    pub fn from_json(value: Value) -> Result<Self, ContextError> {
        let Value::Object(mut attributes) = value else {
            return Err(ContextError::NotAnObject(json_type_name(&value)));
        };
        let mut targeting_key = None;
        for name in TARGETING_KEY_ATTRIBUTES {
            match attributes.remove(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(key)) => targeting_key = Some(key),
                Some(other) => return Err(ContextError::TargetingKeyNotString(json_type_name(&other))),
            }
        }
        Ok(Context {
            targeting_key,
            attributes,
            now: None,
        })
    }

    /// Looks up a pre-split attribute path. The targeting key is
    /// addressed as `targetingKey`.
    pub(crate) fn lookup<'a>(&'a self, path: &AttributePath) -> Option<Lookup<'a>> {
        match path {
            AttributePath::TargetingKey => self.targeting_key.as_deref().map(Lookup::Str),
            AttributePath::Path(parts) => {
                let (first, rest) = parts.split_first()?;
                let mut value = self.attributes.get(&**first)?;
                for part in rest {
                    value = value.as_object()?.get(&**part)?;
                }
                match value {
                    Value::Null => None,
                    Value::String(s) => Some(Lookup::Str(s)),
                    other => Some(Lookup::Json(other)),
                }
            }
        }
    }

    /// Looks up an attribute by its dotted name (convenience, not the hot path).
    pub fn get(&self, dotted: &str) -> Option<&Value> {
        let mut parts = dotted.split('.');
        let mut value = self.attributes.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }
}

/// A found attribute: the targeting key / a string, or another JSON value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl<'a> Lookup<'a> {
    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self {
            Lookup::Str(s) => Some(s),
            Lookup::Json(_) => None,
        }
    }
}

/// A compiled attribute address (split once at compile time so lookups do
/// not allocate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttributePath {
    TargetingKey,
    Path(Box<[Box<str>]>),
}

impl AttributePath {
    pub(crate) fn parse(name: &str) -> Self {
        if TARGETING_KEY_ATTRIBUTES.contains(&name) {
            return AttributePath::TargetingKey;
        }
        AttributePath::Path(name.split('.').map(Box::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_json_takes_targeting_key_and_attributes() {
        let ctx = Context::from_json(json!({"targetingKey": "u1", "plan": "pro"})).unwrap();
        assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
        assert_eq!(ctx.get("plan"), Some(&json!("pro")));
        assert!(ctx.get("targetingKey").is_none());
    }

    #[test]
    fn from_json_rejects_non_objects_and_bad_keys() {
        assert_eq!(Context::from_json(json!([1])), Err(ContextError::NotAnObject("array")));
        assert_eq!(
            Context::from_json(json!({"targetingKey": 5})),
            Err(ContextError::TargetingKeyNotString("number"))
        );
    }

    #[test]
    fn dotted_paths_address_nested_values() {
        let ctx = Context::default().attr("user", json!({"org": {"tier": "gold"}}));
        let path = AttributePath::parse("user.org.tier");
        assert_eq!(ctx.lookup(&path).and_then(Lookup::as_str), Some("gold"));
        assert!(ctx.lookup(&AttributePath::parse("user.missing.tier")).is_none());
        assert!(ctx.lookup(&AttributePath::parse("user.org.tier.deeper")).is_none());
    }
}
