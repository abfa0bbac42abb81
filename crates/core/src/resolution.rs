//! The result of evaluating a flag.

use serde::Serialize;
use serde_json::Value;

/// Why a value was served (OpenFeature reasons plus Sextant's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no targeting: everyone gets the same value.
    Static,
    /// A rule matched and served a fixed variation.
    TargetingMatch,
    /// A weighted split placed the unit.
    Split,
    /// The flag is off in this environment (kill switch).
    Disabled,
    /// A prerequisite flag did not serve a required variation.
    PrerequisiteFailed,
    /// No rule matched; the default serve applied.
    Default,
    /// Evaluation failed; see the error code.
    Error,
}

impl Reason {
    /// The wire name (`TARGETING_MATCH`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::PrerequisiteFailed => "PREREQUISITE_FAILED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag with that key in the snapshot.
    FlagNotFound,
    /// The flag's kind is not the one asked for.
    TypeMismatch,
    /// A split needed a targeting key (or bucketing attribute) that is absent.
    TargetingKeyMissing,
    /// The context cannot be used.
    InvalidContext,
    /// The flag definition could not be parsed.
    ParseError,
    /// Anything else.
    General,
}

impl ErrorCode {
    /// The wire name (`FLAG_NOT_FOUND`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The outcome of one evaluation. Borrows from the snapshot, so producing
/// it does not allocate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution<'s> {
    /// The served value; `None` means "use the caller's default".
    pub value: Option<&'s Value>,
    /// Key of the served variation.
    pub variation: Option<&'s str>,
    /// Why.
    pub reason: Reason,
    /// Index of the rule that decided, if one did.
    pub rule: Option<usize>,
    /// Set when `reason` is `Error`.
    pub error: Option<ErrorCode>,
    /// The unit was placed by a split, so an exposure should be logged.
    pub in_experiment: bool,
}

impl<'s> Resolution<'s> {
    pub(crate) fn error(code: ErrorCode) -> Self {
        Resolution {
            value: None,
            variation: None,
            reason: Reason::Error,
            rule: None,
            error: Some(code),
            in_experiment: false,
        }
    }

    pub(crate) fn no_value(reason: Reason) -> Self {
        Resolution {
            value: None,
            variation: None,
            reason,
            rule: None,
            error: None,
            in_experiment: false,
        }
    }
}
