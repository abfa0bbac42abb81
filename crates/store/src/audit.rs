//! The hash chain of the audit log.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{AuditProblem, AuditVerification};

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

/// One stored audit entry joined with its change record (`None` columns
/// when the change record is missing), as both backends read it.
pub(crate) struct AuditRow {
    pub seq: i64,
    pub change_id: i64,
    pub prev_hash: String,
    pub hash: String,
    /// Whether the change record exists.
    pub found: bool,
    pub at: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub workspace: Option<String>,
    pub kind: Option<String>,
    pub key: Option<String>,
    pub environment: Option<String>,
    pub reason: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Walks the whole chain: contiguous sequence numbers, each entry's
/// `prev_hash` equal to the previous entry's hash, each hash recomputed
/// from its change record, the head matching the last entry, and no
/// change record without an entry (`orphans`).
pub(crate) fn verify(rows: &[AuditRow], head: Option<(i64, String)>, orphans: i64) -> AuditVerification {
    let mut problems = Vec::new();
    let mut expected_prev = GENESIS.to_owned();
    let mut last_seq = 0i64;
    for row in rows {
        let seq = row.seq;
        let mut problem = |p: String| problems.push(AuditProblem { seq, problem: p });
        if seq != last_seq + 1 {
            problem(format!("entries {} to {} are missing", last_seq + 1, seq - 1));
        }
        if row.prev_hash != expected_prev {
            problem("previous-hash link is broken (entry edited, deleted or reordered)".into());
        }
        if !row.found {
            problem("its change record was deleted".into());
        } else {
            let recomputed = Chained {
                seq,
                prev_hash: &row.prev_hash,
                change_id: row.change_id,
                at: row.at.as_deref().unwrap_or_default(),
                actor: row.actor.as_deref().unwrap_or_default(),
                action: row.action.as_deref().unwrap_or_default(),
                workspace: row.workspace.as_deref(),
                kind: row.kind.as_deref().unwrap_or_default(),
                key: row.key.as_deref().unwrap_or_default(),
                environment: row.environment.as_deref(),
                reason: row.reason.as_deref(),
                before: row.before.as_deref(),
                after: row.after.as_deref(),
            }
            .hash();
            if recomputed != row.hash {
                problem("content does not match its hash (entry or change record edited)".into());
            }
        }
        expected_prev = row.hash.clone();
        last_seq = seq;
    }
    match head {
        Some((seq, hash)) if seq != last_seq || hash != expected_prev => problems.push(AuditProblem {
            seq,
            problem: format!("the chain ends at entry {last_seq} but its head records entry {seq}"),
        }),
        Some(_) => {}
        None if !rows.is_empty() => problems.push(AuditProblem {
            seq: last_seq,
            problem: "the chain head is missing".into(),
        }),
        None => {}
    }
    if orphans > 0 {
        problems.push(AuditProblem {
            seq: 0,
            problem: format!("{orphans} change record(s) have no audit entry"),
        });
    }
    AuditVerification {
        entries: rows.len() as i64,
        ok: problems.is_empty(),
        problems,
    }
}
