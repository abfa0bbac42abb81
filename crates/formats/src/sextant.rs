//! Sextant's own declarative format: the core [`Document`] written as YAML
//! or JSON, for GitOps. Export then import gives an equal document.

use sextant_core::Document;

/// Why a Sextant file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SextantFormatError {
    /// Not valid JSON for a Sextant document.
    #[error("invalid Sextant JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde said (names the field).
        message: String,
    },
    /// Not valid YAML for a Sextant document.
    #[error("invalid Sextant YAML{}: {message}", location.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
    Yaml {
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
        /// What the parser said (names the field).
        message: String,
    },
    /// Serialization failed (should not happen for valid documents).
    #[error("cannot write document: {0}")]
    Write(String),
}

/// Parses a Sextant document from JSON (if the text starts with `{`) or YAML.
pub fn parse(text: &str) -> Result<Document, SextantFormatError> {
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_yaml(text)
    }
}

/// Parses a Sextant document from JSON.
pub fn parse_json(text: &str) -> Result<Document, SextantFormatError> {
    serde_json::from_str(text).map_err(|e| SextantFormatError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Parses a Sextant document from YAML.
pub fn parse_yaml(text: &str) -> Result<Document, SextantFormatError> {
    serde_norway::from_str(text).map_err(|e| SextantFormatError::Yaml {
        location: e.location().map(|l| (l.line(), l.column())),
        message: e.to_string(),
    })
}

/// Writes a document as pretty JSON.
pub fn to_json(document: &Document) -> Result<String, SextantFormatError> {
    serde_json::to_string_pretty(document).map_err(|e| SextantFormatError::Write(e.to_string()))
}

/// Writes a document as YAML.
pub fn to_yaml(document: &Document) -> Result<String, SextantFormatError> {
    serde_norway::to_string(document).map_err(|e| SextantFormatError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
flags:
  - key: new-checkout
    kind: boolean
    owner: payments
    hypothesis:
      metric: checkout-conversion
      direction: increase
      minimum_effect: 0.02
      reason: Fewer steps convert better
    variations:
      - { key: "on", value: true }
      - { key: "off", value: false }
    environments:
      production:
        enabled: true
        off_variation: "off"
        rules:
          - conditions:
              - { attribute: country, op: in, values: [NZ, AU] }
            serve:
              split:
                weights:
                  - { variation: "on", weight: 10000 }
                  - { variation: "off", weight: 90000 }
        default_serve: { variation: "off" }
"#;

    #[test]
    fn yaml_and_json_describe_the_same_document() {
        let from_yaml = parse(EXAMPLE).unwrap();
        let json = to_json(&from_yaml).unwrap();
        assert_eq!(parse(&json).unwrap(), from_yaml);
        let yaml = to_yaml(&from_yaml).unwrap();
        assert_eq!(parse(&yaml).unwrap(), from_yaml);
        assert_eq!(from_yaml.flags[0].key, "new-checkout");
    }

    #[test]
    fn unknown_fields_are_named_with_their_location() {
        let err = parse("flags:\n  - key: a\n    kind: boolean\n    variations: []\n    colour: red\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("colour"), "{text}");
        assert!(text.contains("line"), "{text}");
    }

    #[test]
    fn issue_13_a_yaml_minimum_effect_that_is_nan_or_infinite_is_refused_with_its_location() {
        // Found by fuzzing: `.nan` parsed, JSON export wrote `null`, and the
        // re-imported document had no minimum effect.
        for bad in [".nan", ".NaN", ".inf", "-.inf"] {
            let yaml = format!(
                "flags:\n  - key: a\n    kind: boolean\n    variations: []\n    hypothesis:\n      reason: r\n      minimum_effect: {bad}\n"
            );
            let err = parse(&yaml).unwrap_err().to_string();
            assert!(err.contains("minimum_effect must be a finite number"), "{bad}: {err}");
            assert!(err.contains("flags[0].hypothesis"), "{bad}: {err}");
            assert!(err.contains("line 6"), "{bad}: {err}");
        }
        let ok = parse("flags:\n  - key: a\n    kind: boolean\n    variations: []\n    hypothesis:\n      reason: r\n      minimum_effect: 0.05\n").unwrap();
        let json = to_json(&ok).unwrap();
        assert_eq!(parse(&json).unwrap(), ok);
        assert_eq!(ok.flags[0].hypothesis.as_ref().unwrap().minimum_effect, Some(0.05));
    }

    #[test]
    fn wrong_types_are_rejected_not_coerced() {
        let err = parse(r#"{"flags": [{"key": "a", "kind": "boolean", "variations": "on"}]}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
