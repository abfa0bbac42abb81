//! Why a document could not be compiled into a snapshot.

use std::fmt;

use crate::FlagKind;
use crate::logic::LogicError;

/// Every problem found in a document; compilation reports all of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct CompileError {
    /// The problems, in document order.
    pub issues: Vec<Issue>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(f, "{n} problem{} in flag definitions", if n == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            write!(f, "\n- {issue}")?;
        }
        Ok(())
    }
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct Issue {
    /// Where.
    pub location: Location,
    /// What.
    pub problem: Problem,
}

/// Where in a document a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A flag, optionally one of its rules (0-based index).
    Flag {
        /// Flag key.
        key: String,
        /// Rule index, if the problem is inside a rule.
        rule: Option<usize>,
    },
    /// A segment.
    Segment {
        /// Segment key.
        key: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Flag { key, rule: None } => write!(f, "flag `{key}`"),
            Location::Flag { key, rule: Some(r) } => write!(f, "flag `{key}`, rule {r}"),
            Location::Segment { key } => write!(f, "segment `{key}`"),
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// Two flags (or segments) share a key.
    #[error("duplicate key")]
    DuplicateKey,
    /// A key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// A flag has no variations.
    #[error("a flag needs at least one variation")]
    NoVariations,
    /// Two variations share a key.
    #[error("duplicate variation `{0}`")]
    DuplicateVariation(String),
    /// A variation's value does not have the flag's kind.
    #[error("variation `{variation}` is not a {expected} value", expected = expected.as_str())]
    VariationKind {
        /// Variation key.
        variation: String,
        /// The flag's kind.
        expected: FlagKind,
    },
    /// A reference to a variation that does not exist.
    #[error("unknown variation `{0}`")]
    UnknownVariation(String),
    /// Split weights do not add up.
    #[error("split weights sum to {sum}, expected {expected}")]
    WeightsSum {
        /// Actual sum.
        sum: u64,
        /// Required sum.
        expected: u32,
    },
    /// A split with no weight at all.
    #[error("split has no weight")]
    EmptySplit,
    /// A rollout gate above 100%.
    #[error("rollout weight {0} exceeds 100000 (100%)")]
    RolloutWeight(u32),
    /// A regular expression that does not compile.
    #[error("regex `{pattern}` does not compile: {message}")]
    BadRegex {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// An operand the operator cannot use.
    #[error("operator `{op}` cannot use value {value}: expected {expected}")]
    BadOperand {
        /// Operator name.
        op: &'static str,
        /// The offending value, as JSON.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An operator that needs operands got none.
    #[error("operator `{0}` needs at least one value")]
    NoOperands(&'static str),
    /// A reference to a segment that does not exist.
    #[error("unknown segment `{0}`")]
    UnknownSegment(String),
    /// Segments may not reference segments.
    #[error("segments cannot contain `in_segment` conditions")]
    NestedSegment,
    /// A prerequisite names a flag that does not exist.
    #[error("prerequisite flag `{0}` does not exist")]
    UnknownPrerequisite(String),
    /// A prerequisite names a variation its flag does not have.
    #[error("prerequisite flag `{flag}` has no variation `{variation}`")]
    UnknownPrerequisiteVariation {
        /// The prerequisite flag.
        flag: String,
        /// The missing variation key.
        variation: String,
    },
    /// Prerequisites form a cycle.
    #[error("prerequisite cycle: {}", .0.join(" -> "))]
    PrerequisiteCycle(Vec<String>),
    /// A JSONLogic expression was rejected.
    #[error(transparent)]
    Logic(#[from] LogicError),
}
