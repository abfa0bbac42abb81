//! The store's one error type. sqlx errors never leave this crate.

use std::fmt;

/// The kinds of stored things, for errors and change records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A workspace.
    Workspace,
    /// An environment of a workspace.
    Environment,
    /// A flag.
    Flag,
    /// A segment.
    Segment,
    /// An admin or SDK token.
    Token,
    /// A metric of the metric tree.
    Metric,
    /// A team's initiative.
    Initiative,
    /// A flag's rollout plan in one environment.
    RolloutPlan,
    /// A flag change scheduled for a time.
    ScheduledChange,
    /// An experiment.
    Experiment,
    /// A change request (an irreversible change awaiting approval).
    ChangeRequest,
    /// A change record.
    Change,
    /// A workspace's approval policy.
    Policy,
    /// A strategic principle.
    Principle,
    /// A declared violation of a principle.
    Violation,
    /// A flag's 30-day review.
    Review,
    /// An entry of the learnings log.
    Learning,
    /// An initiative's post-mortem.
    PostMortem,
    /// A webhook subscription.
    Webhook,
    /// A webhook delivery.
    Delivery,
    /// A deploy event.
    Deploy,
    /// Stored events of one name (deleted by an approved change).
    Events,
}

impl Kind {
    /// The lower-case name used in change records and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::Environment => "environment",
            Kind::Flag => "flag",
            Kind::Segment => "segment",
            Kind::Token => "token",
            Kind::Metric => "metric",
            Kind::Initiative => "initiative",
            Kind::RolloutPlan => "rollout_plan",
            Kind::ScheduledChange => "scheduled_change",
            Kind::Experiment => "experiment",
            Kind::ChangeRequest => "change_request",
            Kind::Change => "change",
            Kind::Policy => "policy",
            Kind::Principle => "principle",
            Kind::Violation => "violation",
            Kind::Review => "review",
            Kind::Learning => "learning",
            Kind::PostMortem => "post_mortem",
            Kind::Webhook => "webhook",
            Kind::Delivery => "delivery",
            Kind::Deploy => "deploy",
            Kind::Events => "events",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One wrong field of a write, located by a JSON-pointer-like path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Where (`/variations`, `/environments/production/rules/0`, …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such thing.
    #[error("{kind} `{key}` not found")]
    NotFound {
        /// What was looked for.
        kind: Kind,
        /// Its key (or id).
        key: String,
    },
    /// A thing with that key already exists.
    #[error("{kind} `{key}` already exists")]
    Conflict {
        /// What.
        kind: Kind,
        /// Its key.
        key: String,
    },
    /// The write carried a stale version (optimistic concurrency).
    #[error("version mismatch: the current version is {current}")]
    VersionMismatch {
        /// The version now stored.
        current: i64,
    },
    /// The write would store something invalid; every problem is listed.
    #[error("invalid: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The thing exists but its state does not allow the operation
    /// (starting a running rollout, deciding a draft experiment, …).
    #[error("{kind} `{key}`: {detail}")]
    State {
        /// What.
        kind: Kind,
        /// Its key.
        key: String,
        /// Why the operation is refused now.
        detail: String,
    },
    /// A change request was already decided.
    #[error("change request {id} is {status}, not pending")]
    NotPending {
        /// Request id.
        id: i64,
        /// Its status.
        status: &'static str,
    },
    /// The requester tried to approve or reject their own change request.
    #[error("change request {id} must be decided by someone other than its requester")]
    SelfApproval {
        /// Request id.
        id: i64,
    },
    /// The database was migrated by a newer Sextant.
    #[error(
        "the database schema is at version {database}, newer than this binary supports ({binary}); upgrade sextant"
    )]
    DatabaseTooNew {
        /// Schema version found in the database.
        database: i64,
        /// Latest schema version this binary knows.
        binary: i64,
    },
    /// The database URL names a backend this build does not have.
    #[error("unsupported database URL `{0}` (expected postgres://…, sqlite:PATH or a file path)")]
    UnsupportedUrl(String),
    /// Stored data could not be read back (edited by hand?).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed (connection, IO, lock timeout).
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::Database("row not found".into()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// Shorthand.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
