//! The one error type of the crate.

use thiserror::Error;

/// Why a statistic could not be computed.
///
/// Every variant names the offending input, so a caller (the server, a
/// guardrail) can show the problem instead of a bare "invalid input".
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// Fewer units than the method needs (a variance needs two).
    #[error("{what} needs at least {min} units, got {got}")]
    TooFewUnits {
        /// Which input was too small.
        what: &'static str,
        /// The minimum the method needs.
        min: u64,
        /// The count that was given.
        got: u64,
    },
    /// A NaN or infinite value where a finite number is needed.
    #[error("{what} must be finite, got {value}")]
    NotFinite {
        /// Which input was not finite.
        what: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// A value outside the range the method accepts.
    #[error("{what} must be {range}, got {value}")]
    OutOfRange {
        /// Which input was out of range.
        what: &'static str,
        /// The accepted range, in words.
        range: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// The sums imply a variance below zero beyond rounding: they cannot
    /// come from real data.
    #[error("{what}: the sums imply a negative variance ({value})")]
    NegativeVariance {
        /// Which variance.
        what: &'static str,
        /// The impossible variance.
        value: f64,
    },
    /// More conversions than units in a proportion.
    #[error("{what}: {conversions} conversions exceed {n} units")]
    ConversionsExceedUnits {
        /// Which arm.
        what: &'static str,
        /// Conversions given.
        conversions: u64,
        /// Units given.
        n: u64,
    },
    /// The standard error is zero, so the statistic is undefined.
    #[error("{what} has zero variance, so the statistic is undefined")]
    ZeroVariance {
        /// Which quantity.
        what: &'static str,
    },
    /// The control's mean is zero, so a relative lift is undefined.
    #[error("{what} is zero, so a relative lift is undefined")]
    ZeroBaseline {
        /// Which quantity.
        what: &'static str,
    },
    /// Two lists that must pair up have different lengths.
    #[error("{what}: {left} versus {right} entries")]
    LengthMismatch {
        /// Which lists.
        what: &'static str,
        /// Length of the first list.
        left: usize,
        /// Length of the second list.
        right: usize,
    },
    /// A list that needs entries is empty (or too short).
    #[error("{what} needs at least {min} entries, got {got}")]
    TooFewEntries {
        /// Which list.
        what: &'static str,
        /// Entries needed.
        min: usize,
        /// Entries given.
        got: usize,
    },
    /// The question has no answer for these inputs, e.g. no effect size
    /// is detectable with the traffic at hand.
    #[error("no solution: {what}")]
    NoSolution {
        /// What could not be solved.
        what: &'static str,
    },
    /// An iterative method failed to converge (a bug or an extreme input).
    #[error("numerical method did not converge: {what}")]
    NoConvergence {
        /// Which method.
        what: &'static str,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = StatsError> = std::result::Result<T, E>;

/// Checks that `value` is finite.
pub(crate) fn finite(what: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StatsError::NotFinite { what, value })
    }
}

/// Checks that `value` lies strictly between 0 and 1 (a level α, a power).
pub(crate) fn open_unit(what: &'static str, value: f64) -> Result<f64> {
    finite(what, value)?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(StatsError::OutOfRange {
            what,
            range: "strictly between 0 and 1",
            value,
        })
    }
}

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(what: &'static str, value: f64) -> Result<f64> {
    finite(what, value)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(StatsError::OutOfRange {
            what,
            range: "greater than 0",
            value,
        })
    }
}
