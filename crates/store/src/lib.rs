//! Sextant's persistence layer.
//!
//! [`Store`] is the whole interface the server uses. Every mutation is one
//! transaction that writes the new state, a change record (actor, reason,
//! before/after JSON) and its audit entry — or nothing. Flags and segments
//! are validated by compiling every affected environment's snapshot with
//! `sextant-core` before anything is written, so an invalid flag is never
//! stored. Each environment has a monotonic snapshot version, bumped in the
//! same transaction as the change that alters its snapshot.
//!
//! Only this crate speaks SQL; sqlx errors are mapped to [`StoreError`]
//! and never leave it. Two backends sit behind the same methods, each with
//! its own SQL and migrations: SQLite (WAL mode, one process) and
//! PostgreSQL (any number of replicas on one database, which serialises
//! their writes; see `postgres.rs`). Replicas follow each other's writes
//! through [`Store::change_feed`] and elect a leader per duty with
//! [`Store::try_lead`].

mod audit;
mod doc;
mod error;
mod migrate;
mod model;
mod postgres;
mod replica;
mod sqlite;
mod token;

use sextant_core::{Flag, Segment, Targeting};

pub use error::{FieldError, Kind, Result, StoreError};
pub use experiments::*;
pub use migrate::LATEST as SCHEMA_VERSION;
pub use model::*;
pub use replica::{ChangeFeed, ChangeNotice, FeedEvent, Leadership};
pub use rollouts::*;
pub use token::hash_token;

/// The current time as RFC 3339 UTC with milliseconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The default database location.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:sextant.db";

mod event_encoding;
mod events;
mod metrics;

pub use events::*;
pub use metrics::{Aggregation, Direction, InitiativeDef, InitiativeRecord, MetricDef, MetricRecord};

/// A database backend.
enum Backend {
    Sqlite(sqlite::SqliteStore),
    /// Boxed: its connect options are large and a store is built once.
    Postgres(Box<postgres::PgStore>),
}

/// Dispatches a call to the backend.
macro_rules! on {
    ($self:ident, $db:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call,
        }
    };
}

mod alignment;
mod alignment_sql;
mod event_deletion;
mod experiments;
mod rollouts;
pub use alignment::*;
pub use event_deletion::*;

/// The store: a handle to the database, cheap to share behind an `Arc`.
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Opens the database at `url` (`postgres://…`/`postgresql://…`,
    /// `sqlite:PATH`, `sqlite::memory:` or a plain file path), creating
    /// (SQLite) and migrating it. Refuses a database migrated by a newer
    /// binary ([`StoreError::DatabaseTooNew`]).
    pub async fn open(url: &str) -> Result<Store> {
        let backend = if postgres::is_postgres_url(url) {
            Backend::Postgres(Box::new(postgres::PgStore::open(url).await?))
        } else {
            Backend::Sqlite(sqlite::SqliteStore::open(url).await?)
        };
        Ok(Store { backend })
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    // Replicas.

    /// The changes every process sharing this database commits, or `None`
    /// when the database cannot be shared (SQLite: one process).
    pub async fn change_feed(&self) -> Result<Option<ChangeFeed>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(db) => db.change_feed().await.map(Some),
        }
    }

    /// Every environment's id and stored snapshot version, to compare with
    /// what a replica has published.
    pub async fn snapshot_versions(&self) -> Result<Vec<(i64, i64)>> {
        on!(self, db => db.snapshot_versions().await)
    }

    /// The stored snapshots of the environments `ids`; ids that no longer
    /// exist are left out.
    pub async fn load_environment_snapshots(&self, ids: &[i64]) -> Result<Vec<EnvSnapshot>> {
        on!(self, db => db.load_environment_snapshots(ids).await)
    }

    /// Leadership of the duty `name` (e.g. `scheduler`) if nobody holds it:
    /// exactly one replica holds a name at a time, and when its holder dies
    /// the next `try_lead` elsewhere succeeds. `None`: someone else leads.
    pub async fn try_lead(&self, name: &str) -> Result<Option<Leadership>> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.try_lead(name)),
            Backend::Postgres(db) => db.try_lead(name).await,
        }
    }

    /// Waits until this process leads `name`, trying every `retry`.
    pub async fn lead(&self, name: &str, retry: std::time::Duration) -> Result<Leadership> {
        loop {
            if let Some(leadership) = self.try_lead(name).await? {
                return Ok(leadership);
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        on!(self, db => db.ping().await)
    }

    /// Closes all connections (waits for in-flight queries).
    pub async fn close(&self) {
        on!(self, db => db.close().await)
    }

    /// First-start setup: a `default` workspace (development, staging,
    /// production) when there is none, and an admin token. With
    /// `admin_token`, that token is stored (if new) and `None` returned;
    /// otherwise, when no admin token exists, one is generated and returned
    /// — the only time it can be seen.
    pub async fn bootstrap(&self, admin_token: Option<&str>) -> Result<Option<String>> {
        on!(self, db => db.bootstrap(admin_token).await)
    }

    /// Every environment's compiled snapshot at its stored version.
    pub async fn load_snapshots(&self) -> Result<Vec<EnvSnapshot>> {
        on!(self, db => db.load_snapshots().await)
    }

    // Workspaces.

    /// All workspaces.
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        on!(self, db => db.list_workspaces().await)
    }

    /// One workspace.
    pub async fn get_workspace(&self, key: &str) -> Result<Workspace> {
        on!(self, db => db.get_workspace(key).await)
    }

    /// Creates a workspace with its environments.
    pub async fn create_workspace(
        &self,
        key: &str,
        name: &str,
        environments: &[EnvironmentInput],
        meta: &ChangeMeta,
    ) -> Result<Committed<Workspace>> {
        on!(self, db => db.create_workspace(key, name, environments, meta).await)
    }

    /// Renames a workspace.
    pub async fn update_workspace(
        &self,
        key: &str,
        expected: Option<i64>,
        name: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<Workspace>> {
        on!(self, db => db.update_workspace(key, expected, name, meta).await)
    }

    /// Deletes a workspace and everything in it.
    pub async fn delete_workspace(&self, key: &str, expected: Option<i64>, meta: &ChangeMeta) -> Result<Committed<()>> {
        on!(self, db => db.delete_workspace(key, expected, meta).await)
    }

    // Environments.

    /// A workspace's environments.
    pub async fn list_environments(&self, ws: &str) -> Result<Vec<Environment>> {
        on!(self, db => db.list_environments(ws).await)
    }

    /// One environment.
    pub async fn get_environment(&self, ws: &str, env: &str) -> Result<Environment> {
        on!(self, db => db.get_environment(ws, env).await)
    }

    /// Adds an environment (every flag starts disabled there).
    pub async fn create_environment(
        &self,
        ws: &str,
        input: &EnvironmentInput,
        meta: &ChangeMeta,
    ) -> Result<Committed<Environment>> {
        on!(self, db => db.create_environment(ws, input, meta).await)
    }

    /// Renames an environment or changes whether it is production.
    pub async fn update_environment(
        &self,
        ws: &str,
        env: &str,
        expected: Option<i64>,
        name: &str,
        production: bool,
        meta: &ChangeMeta,
    ) -> Result<Committed<Environment>> {
        on!(self, db => db.update_environment(ws, env, expected, name, production, meta).await)
    }

    /// Deletes an environment, its flags' targeting there and its SDK tokens.
    pub async fn delete_environment(
        &self,
        ws: &str,
        env: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        on!(self, db => db.delete_environment(ws, env, expected, meta).await)
    }

    // Flags.

    /// A workspace's flags in creation order.
    pub async fn list_flags(&self, ws: &str) -> Result<Vec<FlagRecord>> {
        on!(self, db => db.list_flags(ws).await)
    }

    /// One flag.
    pub async fn get_flag(&self, ws: &str, key: &str) -> Result<FlagRecord> {
        on!(self, db => db.get_flag(ws, key).await)
    }

    /// Creates a flag (validated in every environment first).
    pub async fn create_flag(&self, ws: &str, flag: Flag, meta: &ChangeMeta) -> Result<Committed<FlagRecord>> {
        on!(self, db => db.create_flag(ws, flag, meta).await)
    }

    /// Replaces a flag's definition (kind, variations, description, …),
    /// keeping its per-environment targeting.
    pub async fn replace_flag(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        definition: Flag,
        meta: &ChangeMeta,
    ) -> Result<Committed<FlagRecord>> {
        let change = move |flag: &mut Flag| {
            let environments = std::mem::take(&mut flag.environments);
            *flag = Flag {
                environments,
                ..definition
            };
            Ok(())
        };
        on!(self, db => db.update_flag(ws, key, expected, None, "update", meta, change).await)
    }

    /// Replaces a flag's targeting in one environment.
    pub async fn set_targeting(
        &self,
        ws: &str,
        key: &str,
        env: &str,
        expected: Option<i64>,
        targeting: Targeting,
        meta: &ChangeMeta,
    ) -> Result<Committed<FlagRecord>> {
        let change = |flag: &mut Flag| {
            doc::set_targeting(flag, env, targeting);
            Ok(())
        };
        on!(self, db => db.update_flag(ws, key, expected, Some(env), "set_targeting", meta, change).await)
    }

    /// Turns a flag on or off in one environment (off is the kill switch).
    /// A flag without targeting there gets an empty one.
    pub async fn toggle(
        &self,
        ws: &str,
        key: &str,
        env: &str,
        expected: Option<i64>,
        enabled: bool,
        meta: &ChangeMeta,
    ) -> Result<Committed<FlagRecord>> {
        let change = |flag: &mut Flag| {
            flag.environments
                .entry(env.to_owned())
                .or_insert_with(|| Targeting {
                    enabled,
                    off_variation: None,
                    prerequisites: Vec::new(),
                    rules: Vec::new(),
                    default_serve: None,
                    salt: None,
                })
                .enabled = enabled;
            Ok(())
        };
        let action = if enabled { "turn_on" } else { "turn_off" };
        on!(self, db => db.update_flag(ws, key, expected, Some(env), action, meta, change).await)
    }

    /// Deletes a flag (refused if another flag depends on it).
    pub async fn delete_flag(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        on!(self, db => db.delete_flag(ws, key, expected, meta).await)
    }

    // Segments.

    /// A workspace's segments.
    pub async fn list_segments(&self, ws: &str) -> Result<Vec<SegmentRecord>> {
        on!(self, db => db.list_segments(ws).await)
    }

    /// One segment.
    pub async fn get_segment(&self, ws: &str, key: &str) -> Result<SegmentRecord> {
        on!(self, db => db.get_segment(ws, key).await)
    }

    /// Creates a segment.
    pub async fn create_segment(
        &self,
        ws: &str,
        segment: Segment,
        meta: &ChangeMeta,
    ) -> Result<Committed<SegmentRecord>> {
        on!(self, db => db.put_segment(ws, segment, true, None, meta).await)
    }

    /// Replaces a segment (its key is `segment.key`).
    pub async fn update_segment(
        &self,
        ws: &str,
        segment: Segment,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<SegmentRecord>> {
        on!(self, db => db.put_segment(ws, segment, false, expected, meta).await)
    }

    /// Deletes a segment (refused if a flag uses it).
    pub async fn delete_segment(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        on!(self, db => db.delete_segment(ws, key, expected, meta).await)
    }

    // Tokens.

    /// All tokens (hashes only).
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        on!(self, db => db.list_tokens().await)
    }

    /// The token with this hash, if any.
    pub async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        on!(self, db => db.find_token(hash).await)
    }

    /// Creates a token; the plaintext is returned once and never stored.
    pub async fn create_token(
        &self,
        name: &str,
        grant: &NewGrant,
        meta: &ChangeMeta,
    ) -> Result<Committed<(TokenRecord, String)>> {
        on!(self, db => db.create_token(name, grant, None, meta).await)
    }

    /// Stores a token chosen by the caller (e.g. from configuration).
    pub async fn create_token_with_secret(
        &self,
        name: &str,
        grant: &NewGrant,
        secret: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<(TokenRecord, String)>> {
        on!(self, db => db.create_token(name, grant, Some(secret), meta).await)
    }

    /// Revokes (deletes) a token.
    pub async fn delete_token(&self, id: i64, meta: &ChangeMeta) -> Result<Committed<TokenRecord>> {
        on!(self, db => db.delete_token(id, meta).await)
    }

    // Audit.

    /// Audit entries matching `filter`, oldest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        on!(self, db => db.list_audit(filter).await)
    }

    /// Verifies the whole audit chain; detects edited, deleted or reordered entries.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        on!(self, db => db.verify_audit().await)
    }
}
