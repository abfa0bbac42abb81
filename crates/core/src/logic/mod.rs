//! JSONLogic targeting (flagd's rule language), compiled once per snapshot.
//!
//! INTERFACE NOTE: the evaluator body is being written; the signatures below
//! are what `snapshot.rs` relies on.

use serde_json::Value;

use crate::Context;

/// Why a JSONLogic expression was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicError {
    /// The expression uses something this evaluator does not implement.
    #[error("unsupported JSONLogic: {0}")]
    Unsupported(String),
}

/// Which `fractional` bucketing flagd variant to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FractionalVersion {
    /// Legacy float bucketing: `abs(hash) / i32::MAX * 100`.
    V1,
    /// Integer bucketing: `(hash * total_weight) >> 32`.
    #[default]
    V2,
}

/// A compiled JSONLogic expression.
#[derive(Debug, Clone)]
pub struct Logic {
    _source: Value,
}

impl Logic {
    /// Compiles an expression.
    pub fn compile(expr: &Value, _fractional: FractionalVersion) -> Result<Logic, LogicError> {
        Err(LogicError::Unsupported(expr.to_string()))
    }

    /// Evaluates the expression; the result names a variation (a string, or
    /// a bool/number turned into its string), `Ok(None)` means no match.
    pub fn evaluate(&self, _ctx: &Context, _flag_key: &str) -> Result<Option<Value>, LogicError> {
        Ok(None)
    }
}
