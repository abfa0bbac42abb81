//! The hash chain of the audit log.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Exactly what an entry's hash covers: its position, the previous hash and
/// every column of its change record, as stored.
#[derive(Serialize)]
pub(crate) struct Chained<'a> {
    pub seq: i64,
    pub prev_hash: &'a str,
    pub change_id: i64,
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub workspace: Option<&'a str>,
    pub kind: &'a str,
    pub key: &'a str,
    pub environment: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
}

impl Chained<'_> {
    /// Hex SHA-256 of the canonical JSON (fields in declaration order).
    pub(crate) fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}
