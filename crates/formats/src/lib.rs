//! Import and export of flag files: Unleash feature JSON, flagd flag JSON
//! and Sextant's own declarative format (YAML or JSON, for GitOps).
//!
//! Every importer produces a [`sextant_core::Document`]; nothing here
//! evaluates flags.

use std::fmt;
use std::str::FromStr;

use sextant_core::Document;

pub mod flagd;
pub mod sextant;
pub mod unleash;

/// The file formats Sextant reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// Sextant's declarative format (YAML or JSON).
    Sextant,
    /// Unleash client features JSON (`features` + `segments`).
    Unleash,
    /// flagd flag definitions JSON.
    Flagd,
}

impl SourceFormat {
    /// Guesses the format from the content: a `features` (or delta `events`) array is Unleash,
    /// a `flags` object is flagd, anything else is Sextant.
    pub fn detect(text: &str) -> SourceFormat {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
            return SourceFormat::Sextant;
        };
        // Unleash's full payload has `features`; its delta payload `events`.
        if map.get("features").is_some_and(|f| f.is_array()) || map.get("events").is_some_and(|e| e.is_array()) {
            SourceFormat::Unleash
        } else if map.get("flags").is_some_and(|f| f.is_object()) {
            SourceFormat::Flagd
        } else {
            SourceFormat::Sextant
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceFormat::Sextant => "sextant",
            SourceFormat::Unleash => "unleash",
            SourceFormat::Flagd => "flagd",
        })
    }
}

impl FromStr for SourceFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sextant" => Ok(SourceFormat::Sextant),
            "unleash" => Ok(SourceFormat::Unleash),
            "flagd" => Ok(SourceFormat::Flagd),
            other => Err(format!("unknown format `{other}` (expected sextant, unleash or flagd)")),
        }
    }
}

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A Sextant file was invalid.
    #[error(transparent)]
    Sextant(#[from] sextant::SextantFormatError),
    /// An Unleash file was invalid.
    #[error(transparent)]
    Unleash(#[from] unleash::UnleashError),
    /// A flagd file was invalid.
    #[error(transparent)]
    Flagd(#[from] flagd::FlagdError),
}

/// Imports a file in `format` (detected when `None`). Unleash and flagd
/// files become flags configured in `environment`.
pub fn import(
    text: &str,
    format: Option<SourceFormat>,
    environment: &str,
) -> Result<(SourceFormat, Document), ImportError> {
    let format = format.unwrap_or_else(|| SourceFormat::detect(text));
    let document = match format {
        SourceFormat::Sextant => sextant::parse(text)?,
        SourceFormat::Unleash => unleash::import(text, environment)?,
        SourceFormat::Flagd => flagd::import(text, environment)?,
    };
    Ok((format, document))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format_from_its_shape() {
        assert_eq!(
            SourceFormat::detect(r#"{"version":1,"features":[]}"#),
            SourceFormat::Unleash
        );
        assert_eq!(SourceFormat::detect(r#"{"flags":{}}"#), SourceFormat::Flagd);
        assert_eq!(SourceFormat::detect(r#"{"flags":[]}"#), SourceFormat::Sextant);
        assert_eq!(SourceFormat::detect("flags: []"), SourceFormat::Sextant);
    }
}
