//! Integration tests of the evaluation core through its public API.

/// Evaluation semantics, one case per behaviour.
mod evaluation;
/// Properties that must hold for all inputs (proptest).
mod properties;
/// Support: documents built from compact JSON.
mod support;
/// Compile-time validation: bad documents name the flag, rule and problem.
mod validation;
