//! unleash_spec
