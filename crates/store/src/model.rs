//! What the store stores and returns. These are storage records, not wire
//! types: the server maps them onto its own API types.

use serde::{Deserialize, Serialize};
use sextant_core::{Document, Snapshot};

use crate::error::Kind;

/// Who makes a change and why; every write takes one.
#[derive(Debug, Clone, Default)]
pub struct ChangeMeta {
    /// The acting token's name (or `system`).
    pub actor: String,
    /// The optional free-text reason given with the write.
    pub reason: Option<String>,
    /// The change request this write applies (its approval): the request
    /// is marked applied in the same transaction, or the write fails.
    pub approves: Option<i64>,
}

impl ChangeMeta {
    /// A change by `actor` with an optional reason.
    pub fn new(actor: impl Into<String>, reason: Option<String>) -> Self {
        ChangeMeta {
            actor: actor.into(),
            reason,
            approves: None,
        }
    }
}

/// A workspace: a set of environments, flags and segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workspace {
    /// Unique key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// An environment (development, staging, production, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    /// Internal id (stable across renames; SDK tokens point at it).
    pub id: i64,
    /// Owning workspace key.
    pub workspace: String,
    /// Key, unique in the workspace.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Production environments restrict who may turn flags on.
    pub production: bool,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// Version of the environment's compiled snapshot (monotonic).
    pub snapshot_version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Input for creating or updating an environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentInput {
    /// Key (ignored on update).
    pub key: String,
    /// Display name.
    pub name: String,
    /// Whether it is production.
    pub production: bool,
}

/// A stored flag: the core definition plus bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRecord {
    /// The declarative flag, with targeting for every environment.
    pub flag: sextant_core::Flag,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A stored segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    /// The declarative segment.
    pub segment: sextant_core::Segment,
    /// Row version for optimistic concurrency.
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Admin roles, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Creates flags and code-side config; toggles outside production; kill switch anywhere.
    Engineer,
    /// Targeting, rollout percentages, turning flags on in production.
    Product,
    /// Everything, including tokens, environments and workspaces.
    Admin,
}

impl Role {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Engineer => "engineer",
            Role::Product => "product",
            Role::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "engineer" => Role::Engineer,
            "product" => Role::Product,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenGrant {
    /// Admin API access with a role and an environment scope.
    Admin {
        /// The role.
        role: Role,
        /// Environment keys the token may act on; `None` = all.
        environments: Option<Vec<String>>,
    },
    /// Server-side SDK: snapshot, stream and OFREP for one environment.
    Server {
        /// Workspace key.
        workspace: String,
        /// Environment key.
        environment: String,
        /// Environment id.
        environment_id: i64,
    },
    /// Client-side SDK: OFREP evaluation only, for one environment.
    Client {
        /// Workspace key.
        workspace: String,
        /// Environment key.
        environment: String,
        /// Environment id.
        environment_id: i64,
        /// Origins allowed to call from a browser (CORS).
        allowed_origins: Vec<String>,
    },
}

/// A stored token (never the token itself, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Id.
    pub id: i64,
    /// Human name; used as the actor of changes made with it.
    pub name: String,
    /// What it may do.
    pub grant: TokenGrant,
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Input for a new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewGrant {
    /// An admin token.
    Admin {
        /// Role.
        role: Role,
        /// Environment scope; `None` = all.
        environments: Option<Vec<String>>,
    },
    /// A server-side SDK token for one environment.
    Server {
        /// Workspace key.
        workspace: String,
        /// Environment key.
        environment: String,
    },
    /// A client-side SDK token for one environment.
    Client {
        /// Workspace key.
        workspace: String,
        /// Environment key.
        environment: String,
        /// Allowed browser origins.
        allowed_origins: Vec<String>,
    },
}

/// The compiled state of one environment after a commit (or at load).
#[derive(Debug, Clone)]
pub struct EnvSnapshot {
    /// Workspace key.
    pub workspace: String,
    /// Environment key.
    pub environment: String,
    /// Environment id.
    pub environment_id: i64,
    /// Whether production.
    pub production: bool,
    /// The document restricted to this environment (what SDKs receive).
    pub document: Document,
    /// The compiled snapshot; its version is the environment's snapshot version.
    pub snapshot: Snapshot,
    /// What changed to produce it (`None` at load).
    pub cause: Option<Cause>,
}

/// The change that produced a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Change record id.
    pub change_id: i64,
    /// Kind of thing changed.
    pub kind: Kind,
    /// Its key.
    pub key: String,
    /// What was done (`create`, `update`, `delete`, `toggle`, …).
    pub action: String,
}

/// The result of a committed write: the new value and the snapshots it changed.
#[derive(Debug, Clone)]
pub struct Committed<T> {
    /// The stored value after the write.
    pub value: T,
    /// The change record's id.
    pub change_id: i64,
    /// Environments whose snapshot changed, with their new snapshot.
    pub snapshots: Vec<EnvSnapshot>,
    /// Environments removed by the write (ids).
    pub removed_environments: Vec<i64>,
}

/// One audit log entry with its change record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain (1-based).
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// Workspace key, if any.
    pub workspace: Option<String>,
    /// Kind of thing.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Environment, for environment-specific changes.
    pub environment: Option<String>,
    /// Reason given.
    pub reason: Option<String>,
    /// JSON before the change.
    pub before: Option<serde_json::Value>,
    /// JSON after the change.
    pub after: Option<serde_json::Value>,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Filters for listing the audit log; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Workspace key.
    pub workspace: Option<String>,
    /// Kind of thing.
    pub kind: Option<String>,
    /// Key of the thing.
    pub key: Option<String>,
    /// Actor.
    pub actor: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Only entries with `seq` greater than this.
    pub after_seq: Option<i64>,
    /// Maximum entries (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A broken link found by [`crate::Store::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditProblem {
    /// Sequence number where the chain breaks.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The result of verifying the audit chain end to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: i64,
    /// True when no problem was found.
    pub ok: bool,
    /// Every problem found.
    pub problems: Vec<AuditProblem>,
}
