//! The PostgreSQL backend, for several replicas on one database. All SQL
//! of the PostgreSQL dialect lives here (events and metrics in the
//! `events` and `metrics` submodules).
//!
//! Replicas share nothing but the database, so the database serialises
//! writes: every write transaction first takes one transaction-scoped
//! advisory lock ([`WRITE_LOCK`]) and only then reads the rows it checks.
//! Optimistic versions are therefore compared with what is committed,
//! whichever replica committed it (the loser gets `VersionMismatch`), and
//! audit entries are appended one at a time, keeping the hash chain linear.
//! Each write also sends a `NOTIFY` (delivered on commit) that other
//! replicas follow through [`ChangeFeed`](crate::ChangeFeed).

pub(crate) mod alignment;
mod events;
pub(crate) use events::ROLLUP_LOCK;
mod metrics;

use std::str::FromStr;

use serde_json::Value;
use sextant_core::{Flag, Segment};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Row, Transaction};

use crate::audit::{AuditRow, Chained, GENESIS};
use crate::doc::{self, *};
use crate::error::{FieldError, Kind, Result, StoreError};
use crate::model::*;
use crate::replica::{CHANNEL, ChangeFeed, ChangeNotice, Leadership};
use crate::{migrate, now, token};

/// Transaction advisory lock every write takes first ("SEXTWRIT").
const WRITE_LOCK: i64 = 0x5345_5854_5752_4954;

/// A PostgreSQL database shared by any number of replicas.
pub(crate) struct PgStore {
    pub(crate) pool: PgPool,
    options: PgConnectOptions,
    /// Writers of this process queue here before taking a pooled connection
    /// to wait on the database lock, so waiting writers hold one connection
    /// per replica rather than one each; readers never take it.
    write: tokio::sync::Mutex<()>,
}

/// Whether `url` names a PostgreSQL database.
pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgStore {
    /// Connects to and migrates the database at `url`.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("sextant")
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options.clone())
            .await?;
        migrate::run_postgres(&pool).await?;
        Ok(PgStore {
            pool,
            options,
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// Starts a write: queues in-process, then takes the database-wide write lock.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Transaction<'static, Postgres>)> {
        let guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok((guard, tx))
    }

    /// Tells every replica about a write (delivered when `tx` commits), then commits.
    pub(crate) async fn finish<T>(
        mut tx: Transaction<'static, Postgres>,
        committed: Committed<T>,
    ) -> Result<Committed<T>> {
        let notice = ChangeNotice::of(&committed);
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(notice.to_payload())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(committed)
    }

    /// A feed of the changes every replica commits.
    pub(crate) async fn change_feed(&self) -> Result<ChangeFeed> {
        ChangeFeed::connect(self.options.clone()).await
    }

    /// Leadership of `name` if no other session holds it: a session
    /// advisory lock on a connection of its own, released when that
    /// connection ends (the holder released it, exited or died).
    pub(crate) async fn try_lead(&self, name: &str) -> Result<Option<Leadership>> {
        let mut conn = self.options.connect().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
            .bind(crate::replica::lock_key(name))
            .fetch_one(&mut conn)
            .await?
            .try_get("got")?;
        if got {
            Ok(Some(Leadership::postgres(name, conn)))
        } else {
            conn.close().await.ok();
            Ok(None)
        }
    }

    /// Every environment's id and stored snapshot version.
    pub(crate) async fn snapshot_versions(&self) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query("SELECT id, snapshot_version FROM environments ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("snapshot_version")?)))
            .collect()
    }

    /// The current snapshots of the environments `ids` (those that still exist).
    pub(crate) async fn load_environment_snapshots(&self, ids: &[i64]) -> Result<Vec<EnvSnapshot>> {
        let mut tx = self.pool.begin().await?;
        // One consistent view of the workspace rows (PostgreSQL snapshots are per statement otherwise).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let workspaces: Vec<String> = sqlx::query(
            "SELECT DISTINCT w.key FROM environments e JOIN workspaces w ON w.id = e.workspace_id WHERE e.id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("key"))
        .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for ws in workspaces {
            let state = Self::doc_state(&mut tx, &ws).await?;
            out.extend(
                compile_stored(&state)?
                    .into_iter()
                    .filter(|s| ids.contains(&s.environment_id)),
            );
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    // ---------------------------------------------------------------- reads

    async fn ws_row(conn: &mut PgConnection, key: &str) -> Result<WsRow> {
        let row = sqlx::query("SELECT * FROM workspaces WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: Kind::Workspace,
                key: key.to_owned(),
            })?;
        Ok(WsRow {
            id: row.try_get("id")?,
            ws: workspace_from(&row)?,
        })
    }

    async fn env_rows(conn: &mut PgConnection, ws_id: i64) -> Result<Vec<Environment>> {
        let rows = sqlx::query(
            "SELECT e.*, w.key AS ws_key FROM environments e JOIN workspaces w ON w.id = e.workspace_id
             WHERE e.workspace_id = $1 ORDER BY e.id",
        )
        .bind(ws_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(environment_from).collect()
    }

    async fn flag_rows(conn: &mut PgConnection, ws_id: i64) -> Result<Vec<FlagRecord>> {
        let rows = sqlx::query("SELECT * FROM flags WHERE workspace_id = $1 ORDER BY id")
            .bind(ws_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("definition")?;
                Ok(FlagRecord {
                    flag: serde_json::from_str(&text).map_err(|e| corrupt("flag definition", e))?,
                    version: row.try_get("version")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn segment_rows(conn: &mut PgConnection, ws_id: i64) -> Result<Vec<SegmentRecord>> {
        let rows = sqlx::query("SELECT * FROM segments WHERE workspace_id = $1 ORDER BY id")
            .bind(ws_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("definition")?;
                Ok(SegmentRecord {
                    segment: serde_json::from_str(&text).map_err(|e| corrupt("segment definition", e))?,
                    version: row.try_get("version")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn doc_state(conn: &mut PgConnection, ws: &str) -> Result<DocState> {
        let ws = Self::ws_row(conn, ws).await?;
        let envs = Self::env_rows(conn, ws.id).await?;
        let flags = Self::flag_rows(conn, ws.id).await?;
        let segments = Self::segment_rows(conn, ws.id).await?;
        Ok(DocState {
            ws,
            envs,
            flags,
            segments,
        })
    }

    pub(crate) async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        let rows = sqlx::query("SELECT * FROM workspaces ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(workspace_from).collect()
    }

    pub(crate) async fn get_workspace(&self, key: &str) -> Result<Workspace> {
        let mut conn = self.pool.acquire().await?;
        Ok(Self::ws_row(&mut conn, key).await?.ws)
    }

    pub(crate) async fn list_environments(&self, ws: &str) -> Result<Vec<Environment>> {
        let mut conn = self.pool.acquire().await?;
        let ws = Self::ws_row(&mut conn, ws).await?;
        Self::env_rows(&mut conn, ws.id).await
    }

    pub(crate) async fn get_environment(&self, ws: &str, env: &str) -> Result<Environment> {
        self.list_environments(ws)
            .await?
            .into_iter()
            .find(|e| e.key == env)
            .ok_or_else(|| not_found(Kind::Environment, env))
    }

    pub(crate) async fn list_flags(&self, ws: &str) -> Result<Vec<FlagRecord>> {
        let mut conn = self.pool.acquire().await?;
        let ws = Self::ws_row(&mut conn, ws).await?;
        Self::flag_rows(&mut conn, ws.id).await
    }

    pub(crate) async fn get_flag(&self, ws: &str, key: &str) -> Result<FlagRecord> {
        self.list_flags(ws)
            .await?
            .into_iter()
            .find(|f| f.flag.key == key)
            .ok_or_else(|| not_found(Kind::Flag, key))
    }

    pub(crate) async fn list_segments(&self, ws: &str) -> Result<Vec<SegmentRecord>> {
        let mut conn = self.pool.acquire().await?;
        let ws = Self::ws_row(&mut conn, ws).await?;
        Self::segment_rows(&mut conn, ws.id).await
    }

    pub(crate) async fn get_segment(&self, ws: &str, key: &str) -> Result<SegmentRecord> {
        self.list_segments(ws)
            .await?
            .into_iter()
            .find(|s| s.segment.key == key)
            .ok_or_else(|| not_found(Kind::Segment, key))
    }

    /// Every environment's current snapshot, compiled.
    pub(crate) async fn load_snapshots(&self) -> Result<Vec<EnvSnapshot>> {
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::new();
        for ws in self.list_workspaces().await? {
            let state = Self::doc_state(&mut conn, &ws.key).await?;
            out.extend(compile_stored(&state)?);
        }
        Ok(out)
    }

    // ------------------------------------------------------- change records

    /// Inserts the change record and appends its audit entry to the chain.
    pub(crate) async fn record(conn: &mut PgConnection, c: NewChange<'_>) -> Result<i64> {
        let at = now();
        let before = c.before.map(|v| v.to_string());
        let after = c.after.map(|v| v.to_string());
        let change_id = sqlx::query(
            "INSERT INTO changes (at, actor, action, workspace, kind, key, environment, reason, before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&at)
        .bind(&c.meta.actor)
        .bind(c.action)
        .bind(c.workspace)
        .bind(c.kind.as_str())
        .bind(c.key)
        .bind(c.environment)
        .bind(&c.meta.reason)
        .bind(&before)
        .bind(&after)
        .fetch_one(&mut *conn)
        .await?
        .try_get("id")?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
        let (prev_seq, prev_hash) = match head {
            Some(row) => (row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?),
            None => (0, GENESIS.to_owned()),
        };
        let seq = prev_seq + 1;
        let hash = Chained {
            seq,
            prev_hash: &prev_hash,
            change_id,
            at: &at,
            actor: &c.meta.actor,
            action: c.action,
            workspace: c.workspace,
            kind: c.kind.as_str(),
            key: c.key,
            environment: c.environment,
            reason: c.meta.reason.as_deref(),
            before: before.as_deref(),
            after: after.as_deref(),
        }
        .hash();
        sqlx::query("INSERT INTO audit_log (seq, change_id, prev_hash, hash) VALUES ($1, $2, $3, $4)")
            .bind(seq)
            .bind(change_id)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
        alignment::after_record(conn, c.meta, c.action, c.workspace, (c.kind, c.key), change_id).await?;
        Ok(change_id)
    }

    // ------------------------------------------------------ document writes

    /// Runs one flag/segment edit as one transaction: load, edit, validate by
    /// compiling every affected environment, persist the row, bump snapshot
    /// versions, record the change and its audit entry — or nothing.
    async fn doc_write<T>(
        &self,
        ws: &str,
        meta: &ChangeMeta,
        edit: impl FnOnce(&mut DocState) -> Result<DocEdit<T>>,
    ) -> Result<Committed<T>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let mut state = Self::doc_state(&mut tx, ws).await?;
        let e = edit(&mut state)?;
        let (mut snapshots, affected) = compile_affected(&state, &e)?;
        let ws_id = state.ws.id;
        match &e.row {
            RowWrite::UpsertFlag(key) => {
                let rec = state.flags.iter().find(|f| f.flag.key == *key);
                if let Some(rec) = rec {
                    upsert(
                        &mut tx,
                        "flags",
                        ws_id,
                        key,
                        &json(&rec.flag),
                        rec.version,
                        &rec.created_at,
                    )
                    .await?;
                }
            }
            RowWrite::UpsertSegment(key) => {
                let rec = state.segments.iter().find(|s| s.segment.key == *key);
                if let Some(rec) = rec {
                    upsert(
                        &mut tx,
                        "segments",
                        ws_id,
                        key,
                        &json(&rec.segment),
                        rec.version,
                        &rec.created_at,
                    )
                    .await?;
                }
            }
            RowWrite::DeleteFlag(key) => {
                sqlx::query("DELETE FROM flags WHERE workspace_id = $1 AND key = $2")
                    .bind(ws_id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            RowWrite::DeleteSegment(key) => {
                sqlx::query("DELETE FROM segments WHERE workspace_id = $1 AND key = $2")
                    .bind(ws_id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for id in &affected {
            bump_snapshot(&mut tx, *id).await?;
        }
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: e.action,
                workspace: Some(&state.ws.ws.key),
                kind: e.kind,
                key: &e.key,
                environment: e.environment.as_deref(),
                before: e.before,
                after: e.after,
            },
        )
        .await?;
        let cause = Cause {
            change_id,
            kind: e.kind,
            key: e.key,
            action: e.action.to_owned(),
        };
        for s in &mut snapshots {
            s.cause = Some(cause.clone());
        }
        Self::finish(
            tx,
            Committed {
                value: e.value,
                change_id,
                snapshots,
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    pub(crate) async fn create_flag(&self, ws: &str, flag: Flag, meta: &ChangeMeta) -> Result<Committed<FlagRecord>> {
        self.doc_write(ws, meta, move |state| doc::create_flag(state, flag))
            .await
    }

    /// Applies `change` to a stored flag. `environment` names the only
    /// environment the change touches, if any.
    #[expect(clippy::too_many_arguments, reason = "internal; the public methods are narrow")]
    pub(crate) async fn update_flag(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        environment: Option<&str>,
        action: &'static str,
        meta: &ChangeMeta,
        change: impl FnOnce(&mut Flag) -> Result<()>,
    ) -> Result<Committed<FlagRecord>> {
        self.doc_write(ws, meta, move |state| {
            doc::update_flag(state, key, expected, environment, action, change)
        })
        .await
    }

    pub(crate) async fn delete_flag(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        self.doc_write(ws, meta, move |state| doc::delete_flag(state, key, expected))
            .await
    }

    pub(crate) async fn put_segment(
        &self,
        ws: &str,
        segment: Segment,
        create: bool,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<SegmentRecord>> {
        self.doc_write(ws, meta, move |state| {
            doc::put_segment(state, segment, create, expected)
        })
        .await
    }

    pub(crate) async fn delete_segment(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        self.doc_write(ws, meta, move |state| doc::delete_segment(state, key, expected))
            .await
    }

    // ------------------------------------------- workspaces and environments

    pub(crate) async fn create_workspace(
        &self,
        key: &str,
        name: &str,
        environments: &[EnvironmentInput],
        meta: &ChangeMeta,
    ) -> Result<Committed<Workspace>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let value = Self::insert_workspace(&mut tx, key, name, environments, meta).await?;
        let state = Self::doc_state(&mut tx, key).await?;
        let doc = document(&state);
        let snapshots = state
            .envs
            .iter()
            .map(|env| compile_env(key, env, &doc, env.snapshot_version, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Self::finish(
            tx,
            Committed {
                value,
                change_id: 0,
                snapshots,
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    async fn insert_workspace(
        conn: &mut PgConnection,
        key: &str,
        name: &str,
        environments: &[EnvironmentInput],
        meta: &ChangeMeta,
    ) -> Result<Workspace> {
        let exists = sqlx::query("SELECT 1 FROM workspaces WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict {
                kind: Kind::Workspace,
                key: key.to_owned(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        let dups: Vec<FieldError> = environments
            .iter()
            .enumerate()
            .filter(|(_, e)| !seen.insert(e.key.as_str()))
            .map(|(i, e)| FieldError {
                field: format!("/environments/{i}/key"),
                message: format!("duplicate environment `{}`", e.key),
            })
            .collect();
        if !dups.is_empty() {
            return Err(StoreError::Invalid(dups));
        }
        let at = now();
        let id =
            sqlx::query("INSERT INTO workspaces (key, name, version, created_at, updated_at) VALUES ($1, $2, 1, $3, $4) RETURNING id")
                .bind(key)
                .bind(name)
                .bind(&at)
                .bind(&at)
                .fetch_one(&mut *conn)
                .await?
                .try_get("id")?;
        let ws = Workspace {
            key: key.to_owned(),
            name: name.to_owned(),
            version: 1,
            created_at: at.clone(),
            updated_at: at,
        };
        Self::record(
            conn,
            NewChange {
                meta,
                action: "create",
                workspace: Some(key),
                kind: Kind::Workspace,
                key,
                environment: None,
                before: None,
                after: Some(json(&ws)),
            },
        )
        .await?;
        for env in environments {
            Self::insert_environment(conn, id, key, env, meta).await?;
        }
        Ok(ws)
    }

    async fn insert_environment(
        conn: &mut PgConnection,
        ws_id: i64,
        ws_key: &str,
        input: &EnvironmentInput,
        meta: &ChangeMeta,
    ) -> Result<Environment> {
        let at = now();
        let result = sqlx::query(
            "INSERT INTO environments (workspace_id, key, name, production, version, snapshot_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 1, 1, $5, $6) RETURNING id",
        )
        .bind(ws_id)
        .bind(&input.key)
        .bind(&input.name)
        .bind(input.production)
        .bind(&at)
        .bind(&at)
        .fetch_one(&mut *conn)
        .await;
        let id: i64 = match result {
            Ok(r) => r.try_get("id")?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict {
                    kind: Kind::Environment,
                    key: input.key.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let env = Environment {
            id,
            workspace: ws_key.to_owned(),
            key: input.key.clone(),
            name: input.name.clone(),
            production: input.production,
            version: 1,
            snapshot_version: 1,
            created_at: at.clone(),
            updated_at: at,
        };
        Self::record(
            conn,
            NewChange {
                meta,
                action: "create",
                workspace: Some(ws_key),
                kind: Kind::Environment,
                key: &input.key,
                environment: Some(&input.key),
                before: None,
                after: Some(json(&env)),
            },
        )
        .await?;
        Ok(env)
    }

    pub(crate) async fn update_workspace(
        &self,
        key: &str,
        expected: Option<i64>,
        name: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<Workspace>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let row = Self::ws_row(&mut tx, key).await?;
        check_version(expected, row.ws.version)?;
        let at = now();
        sqlx::query("UPDATE workspaces SET name = $1, version = version + 1, updated_at = $2 WHERE id = $3")
            .bind(name)
            .bind(&at)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        let after = Workspace {
            name: name.to_owned(),
            version: row.ws.version + 1,
            updated_at: at,
            ..row.ws.clone()
        };
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "update",
                workspace: Some(key),
                kind: Kind::Workspace,
                key,
                environment: None,
                before: Some(json(&row.ws)),
                after: Some(json(&after)),
            },
        )
        .await?;
        Self::finish(
            tx,
            Committed {
                value: after,
                change_id,
                snapshots: Vec::new(),
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    pub(crate) async fn delete_workspace(
        &self,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let row = Self::ws_row(&mut tx, key).await?;
        check_version(expected, row.ws.version)?;
        let envs = Self::env_rows(&mut tx, row.id).await?;
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "delete",
                workspace: Some(key),
                kind: Kind::Workspace,
                key,
                environment: None,
                before: Some(json(&row.ws)),
                after: None,
            },
        )
        .await?;
        Self::finish(
            tx,
            Committed {
                value: (),
                change_id,
                snapshots: Vec::new(),
                removed_environments: envs.iter().map(|e| e.id).collect(),
            },
        )
        .await
    }

    pub(crate) async fn create_environment(
        &self,
        ws: &str,
        input: &EnvironmentInput,
        meta: &ChangeMeta,
    ) -> Result<Committed<Environment>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let row = Self::ws_row(&mut tx, ws).await?;
        let env = Self::insert_environment(&mut tx, row.id, ws, input, meta).await?;
        let state = Self::doc_state(&mut tx, ws).await?;
        let snapshot = compile_env(ws, &env, &document(&state), env.snapshot_version, None)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Self::finish(
            tx,
            Committed {
                value: env,
                change_id: 0,
                snapshots: vec![snapshot],
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    pub(crate) async fn update_environment(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        name: &str,
        production: bool,
        meta: &ChangeMeta,
    ) -> Result<Committed<Environment>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let row = Self::ws_row(&mut tx, ws).await?;
        let envs = Self::env_rows(&mut tx, row.id).await?;
        let env = envs
            .into_iter()
            .find(|e| e.key == key)
            .ok_or_else(|| not_found(Kind::Environment, key))?;
        check_version(expected, env.version)?;
        let at = now();
        sqlx::query(
            "UPDATE environments SET name = $1, production = $2, version = version + 1, updated_at = $3 WHERE id = $4",
        )
        .bind(name)
        .bind(production)
        .bind(&at)
        .bind(env.id)
        .execute(&mut *tx)
        .await?;
        let after = Environment {
            name: name.to_owned(),
            production,
            version: env.version + 1,
            updated_at: at,
            ..env.clone()
        };
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "update",
                workspace: Some(ws),
                kind: Kind::Environment,
                key,
                environment: Some(key),
                before: Some(json(&env)),
                after: Some(json(&after)),
            },
        )
        .await?;
        Self::finish(
            tx,
            Committed {
                value: after,
                change_id,
                snapshots: Vec::new(),
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    /// Deletes an environment, removing its targeting from every flag (each
    /// such flag gets a new version) and its SDK tokens.
    pub(crate) async fn delete_environment(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let state = Self::doc_state(&mut tx, ws).await?;
        let env = state
            .envs
            .iter()
            .find(|e| e.key == key)
            .ok_or_else(|| not_found(Kind::Environment, key))?;
        check_version(expected, env.version)?;
        let at = now();
        for rec in &state.flags {
            if rec.flag.environments.contains_key(key) {
                let mut flag = rec.flag.clone();
                flag.environments.remove(key);
                sqlx::query(
                    "UPDATE flags SET definition = $1, version = version + 1, updated_at = $2 WHERE workspace_id = $3 AND key = $4",
                )
                .bind(json(&flag).to_string())
                .bind(&at)
                .bind(state.ws.id)
                .bind(&flag.key)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("DELETE FROM environments WHERE id = $1")
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "delete",
                workspace: Some(ws),
                kind: Kind::Environment,
                key,
                environment: Some(key),
                before: Some(json(env)),
                after: None,
            },
        )
        .await?;
        Self::finish(
            tx,
            Committed {
                value: (),
                change_id,
                snapshots: Vec::new(),
                removed_environments: vec![env.id],
            },
        )
        .await
    }

    // ---------------------------------------------------------------- tokens

    async fn token_rows(conn: &mut PgConnection, filter: TokenFilter<'_>) -> Result<Vec<TokenRecord>> {
        let sql = "SELECT t.*, e.key AS env_key, w.key AS ws_key FROM tokens t
                   LEFT JOIN environments e ON e.id = t.environment_id
                   LEFT JOIN workspaces w ON w.id = e.workspace_id";
        let rows = match filter {
            TokenFilter::Hash(hash) => {
                // sql-format: `sql` is the fixed query above; values are bound.
                let q = format!("{sql} WHERE t.hash = $1 ORDER BY t.id");
                sqlx::query(&q).bind(hash).fetch_all(&mut *conn).await?
            }
            TokenFilter::Id(id) => {
                // sql-format: `sql` is the fixed query above; values are bound.
                let q = format!("{sql} WHERE t.id = $1 ORDER BY t.id");
                sqlx::query(&q).bind(id).fetch_all(&mut *conn).await?
            }
            TokenFilter::All => {
                // sql-format: `sql` is the fixed query above; values are bound.
                let q = format!("{sql} ORDER BY t.id");
                sqlx::query(&q).fetch_all(&mut *conn).await?
            }
        };
        rows.iter().map(token_from).collect()
    }

    pub(crate) async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut conn = self.pool.acquire().await?;
        Self::token_rows(&mut conn, TokenFilter::All).await
    }

    pub(crate) async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(Self::token_rows(&mut conn, TokenFilter::Hash(hash)).await?.pop())
    }

    async fn insert_token(
        conn: &mut PgConnection,
        name: &str,
        grant: &NewGrant,
        secret: &str,
        meta: &ChangeMeta,
    ) -> Result<TokenRecord> {
        let (kind, role, environments, env, origins) = grant_columns(grant);
        let env_id = match env {
            None => None,
            Some((ws, env)) => {
                let row = Self::ws_row(conn, ws).await?;
                let envs = Self::env_rows(conn, row.id).await?;
                Some(
                    envs.iter()
                        .find(|e| e.key == *env)
                        .ok_or_else(|| not_found(Kind::Environment, env))?
                        .id,
                )
            }
        };
        let hash = token::hash_token(secret);
        let result = sqlx::query(
            "INSERT INTO tokens (name, kind, role, environments, environment_id, allowed_origins, hash, prefix, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(name)
        .bind(kind)
        .bind(role)
        .bind(environments)
        .bind(env_id)
        .bind(json(&origins).to_string())
        .bind(&hash)
        .bind(token::display_prefix(secret))
        .bind(now())
        .fetch_one(&mut *conn)
        .await;
        let id: i64 = match result {
            Ok(r) => r.try_get("id")?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict {
                    kind: Kind::Token,
                    key: name.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let rec = Self::token_rows(conn, TokenFilter::Id(id))
            .await?
            .pop()
            .ok_or_else(|| not_found(Kind::Token, &id.to_string()))?;
        Self::record(
            conn,
            NewChange {
                meta,
                action: "create",
                workspace: None,
                kind: Kind::Token,
                key: &id.to_string(),
                environment: None,
                before: None,
                after: Some(token_json(&rec)),
            },
        )
        .await?;
        Ok(rec)
    }

    pub(crate) async fn create_token(
        &self,
        name: &str,
        grant: &NewGrant,
        secret: Option<&str>,
        meta: &ChangeMeta,
    ) -> Result<Committed<(TokenRecord, String)>> {
        let secret = match secret {
            Some(s) => s.to_owned(),
            None => token::generate(match grant {
                NewGrant::Admin { .. } => "admin",
                NewGrant::Server { .. } => "server",
                NewGrant::Client { .. } => "client",
            })?,
        };
        let (_guard, mut tx) = self.begin_write().await?;
        let rec = Self::insert_token(&mut tx, name, grant, &secret, meta).await?;
        Self::finish(
            tx,
            Committed {
                value: (rec, secret),
                change_id: 0,
                snapshots: Vec::new(),
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    pub(crate) async fn delete_token(&self, id: i64, meta: &ChangeMeta) -> Result<Committed<TokenRecord>> {
        let (_guard, mut tx) = self.begin_write().await?;
        let rec = Self::token_rows(&mut tx, TokenFilter::Id(id))
            .await?
            .pop()
            .ok_or_else(|| not_found(Kind::Token, &id.to_string()))?;
        sqlx::query("DELETE FROM tokens WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "delete",
                workspace: None,
                kind: Kind::Token,
                key: &id.to_string(),
                environment: None,
                before: Some(token_json(&rec)),
                after: None,
            },
        )
        .await?;
        Self::finish(
            tx,
            Committed {
                value: rec,
                change_id,
                snapshots: Vec::new(),
                removed_environments: Vec::new(),
            },
        )
        .await
    }

    /// First start: a `default` workspace with development, staging and
    /// production; and an admin token — `admin_token` if given (stored if
    /// new), else a generated one when no admin token exists, returned once.
    pub(crate) async fn bootstrap(&self, admin_token: Option<&str>) -> Result<Option<String>> {
        let meta = ChangeMeta::new("system", Some("first start".into()));
        let (_guard, mut tx) = self.begin_write().await?;
        let workspaces: i64 = sqlx::query("SELECT COUNT(*) AS n FROM workspaces")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if workspaces == 0 {
            let envs = default_environments();
            Self::insert_workspace(&mut tx, "default", "Default", &envs, &meta).await?;
        }
        let grant = NewGrant::Admin {
            role: Role::Admin,
            environments: None,
        };
        let created = match admin_token {
            Some(secret) => {
                let known = sqlx::query("SELECT 1 FROM tokens WHERE hash = $1")
                    .bind(token::hash_token(secret))
                    .fetch_optional(&mut *tx)
                    .await?;
                if known.is_none() {
                    Self::insert_token(&mut tx, "bootstrap-admin", &grant, secret, &meta).await?;
                }
                None
            }
            None => {
                let admins: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM tokens WHERE kind = 'admin' AND role = 'admin'")
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("n")?;
                if admins == 0 {
                    let secret = token::generate("admin")?;
                    Self::insert_token(&mut tx, "bootstrap-admin", &grant, &secret, &meta).await?;
                    Some(secret)
                } else {
                    None
                }
            }
        };
        let committed = Committed {
            value: created,
            change_id: 0,
            snapshots: Vec::new(),
            removed_environments: Vec::new(),
        };
        Ok(Self::finish(tx, committed).await?.value)
    }

    // ----------------------------------------------------------------- audit

    pub(crate) async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(f.limit.unwrap_or(100).clamp(1, 1000));
        let rows = sqlx::query(
            "SELECT a.seq, a.prev_hash, a.hash, c.* FROM audit_log a JOIN changes c ON c.id = a.change_id
             WHERE ($1::TEXT IS NULL OR c.workspace = $1) AND ($2::TEXT IS NULL OR c.kind = $2)
               AND ($3::TEXT IS NULL OR c.key = $3) AND ($4::TEXT IS NULL OR c.actor = $4)
               AND ($5::TEXT IS NULL OR c.action = $5) AND ($6::TEXT IS NULL OR c.environment = $6)
               AND ($7::BIGINT IS NULL OR a.seq > $7)
             ORDER BY a.seq LIMIT $8",
        )
        .bind(&f.workspace)
        .bind(&f.kind)
        .bind(&f.key)
        .bind(&f.actor)
        .bind(&f.action)
        .bind(&f.environment)
        .bind(f.after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let parse = |col: &str| -> Result<Option<Value>> {
                    let text: Option<String> = row.try_get(col)?;
                    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
                };
                Ok(AuditEntry {
                    seq: row.try_get("seq")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    workspace: row.try_get("workspace")?,
                    kind: row.try_get("kind")?,
                    key: row.try_get("key")?,
                    environment: row.try_get("environment")?,
                    reason: row.try_get("reason")?,
                    before: parse("before")?,
                    after: parse("after")?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Verifies the whole chain (see [`crate::audit::verify`]).
    pub(crate) async fn verify_audit(&self) -> Result<AuditVerification> {
        let rows = sqlx::query(
            "SELECT a.seq, a.change_id AS cid, a.prev_hash, a.hash, c.id AS found, c.at, c.actor, c.action, c.workspace,
                    c.kind, c.key, c.environment, c.reason, c.before, c.after
             FROM audit_log a LEFT JOIN changes c ON c.id = a.change_id ORDER BY a.seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .iter()
            .map(|row| {
                let s = |c: &str| row.try_get::<Option<String>, _>(c);
                Ok(AuditRow {
                    seq: row.try_get("seq")?,
                    change_id: row.try_get("cid")?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                    found: row.try_get::<Option<i64>, _>("found")?.is_some(),
                    at: s("at")?,
                    actor: s("actor")?,
                    action: s("action")?,
                    workspace: s("workspace")?,
                    kind: s("kind")?,
                    key: s("key")?,
                    environment: s("environment")?,
                    reason: s("reason")?,
                    before: s("before")?,
                    after: s("after")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .map(|row| Ok::<_, StoreError>((row.try_get("seq")?, row.try_get("hash")?)))
            .transpose()?;
        let orphans: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM changes c WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.change_id = c.id)",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(crate::audit::verify(&rows, head, orphans))
    }
}

// -------------------------------------------------------------------- helpers

/// Which tokens to read.
enum TokenFilter<'a> {
    All,
    Hash(&'a str),
    Id(i64),
}

async fn upsert(
    conn: &mut PgConnection,
    table: &str,
    ws_id: i64,
    key: &str,
    definition: &Value,
    version: i64,
    created_at: &str,
) -> Result<()> {
    // sql-format: `table` is `flags` or `segments`, chosen in this file; every value is bound.
    let sql = format!(
        "INSERT INTO {table} (workspace_id, key, definition, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (workspace_id, key) DO UPDATE SET definition = excluded.definition,
             version = excluded.version, updated_at = excluded.updated_at"
    );
    sqlx::query(&sql)
        .bind(ws_id)
        .bind(key)
        .bind(definition.to_string())
        .bind(version)
        .bind(created_at)
        .bind(now())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn bump_snapshot(conn: &mut PgConnection, env_id: i64) -> Result<()> {
    sqlx::query("UPDATE environments SET snapshot_version = snapshot_version + 1 WHERE id = $1")
        .bind(env_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn workspace_from(row: &PgRow) -> Result<Workspace> {
    Ok(Workspace {
        key: row.try_get("key")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn environment_from(row: &PgRow) -> Result<Environment> {
    Ok(Environment {
        id: row.try_get("id")?,
        workspace: row.try_get("ws_key")?,
        key: row.try_get("key")?,
        name: row.try_get("name")?,
        production: row.try_get("production")?,
        version: row.try_get("version")?,
        snapshot_version: row.try_get("snapshot_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn token_from(row: &PgRow) -> Result<TokenRecord> {
    let kind: String = row.try_get("kind")?;
    let env = || -> Result<(String, String, i64)> {
        Ok((
            row.try_get::<Option<String>, _>("ws_key")?.unwrap_or_default(),
            row.try_get::<Option<String>, _>("env_key")?.unwrap_or_default(),
            row.try_get::<Option<i64>, _>("environment_id")?.unwrap_or_default(),
        ))
    };
    let grant = match kind.as_str() {
        "admin" => {
            let role: Option<String> = row.try_get("role")?;
            let role = role
                .as_deref()
                .and_then(Role::parse)
                .ok_or_else(|| corrupt("token role", "unknown"))?;
            let environments: Option<String> = row.try_get("environments")?;
            let environments = environments
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| corrupt("token environments", e))?;
            TokenGrant::Admin { role, environments }
        }
        "server" => {
            let (workspace, environment, environment_id) = env()?;
            TokenGrant::Server {
                workspace,
                environment,
                environment_id,
            }
        }
        "client" => {
            let (workspace, environment, environment_id) = env()?;
            let origins: String = row.try_get("allowed_origins")?;
            TokenGrant::Client {
                workspace,
                environment,
                environment_id,
                allowed_origins: serde_json::from_str(&origins).map_err(|e| corrupt("token origins", e))?,
            }
        }
        other => return Err(corrupt("token kind", other)),
    };
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        grant,
        hash: row.try_get("hash")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
    })
}
