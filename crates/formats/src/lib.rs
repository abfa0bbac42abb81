//! Import and export of flag files: Unleash feature JSON, flagd flag JSON
//! and Sextant's own declarative format (YAML or JSON, for GitOps).
//!
//! Every importer produces a [`sextant_core::Document`]; nothing here
//! evaluates flags.

pub mod flagd;
pub mod sextant;
pub mod unleash;
