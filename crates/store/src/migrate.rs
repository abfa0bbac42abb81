//! Forward-only, versioned schema migrations, embedded in the binary: one
//! list per SQL dialect, with the same versions in both.

use sqlx::{PgPool, Row, SqlitePool};

use crate::error::{Result, StoreError};

/// SQLite migrations: (version, name, SQL). Append only; never edit a shipped one.
const SQLITE: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/sqlite/0001_initial.sql")),
    (
        2,
        "events_metrics",
        include_str!("../migrations/sqlite/0002_events_metrics.sql"),
    ),
    (3, "rollouts", include_str!("../migrations/sqlite/0003_rollouts.sql")),
    (4, "alignment", include_str!("../migrations/sqlite/0004_alignment.sql")),
    (
        5,
        "rollup_units",
        include_str!("../migrations/sqlite/0005_rollup_units.sql"),
    ),
    (
        6,
        "event_batch_encoding",
        include_str!("../migrations/sqlite/0006_event_batch_encoding.sql"),
    ),
];

/// PostgreSQL migrations: the same versions as [`SQLITE`], in PostgreSQL's dialect.
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/postgres/0001_initial.sql")),
    (
        2,
        "events_metrics",
        include_str!("../migrations/postgres/0002_events_metrics.sql"),
    ),
    (3, "rollouts", include_str!("../migrations/postgres/0003_rollouts.sql")),
    (
        4,
        "alignment",
        include_str!("../migrations/postgres/0004_alignment.sql"),
    ),
    (
        5,
        "rollup_units",
        include_str!("../migrations/postgres/0005_rollup_units.sql"),
    ),
    (
        6,
        "event_batch_encoding",
        include_str!("../migrations/postgres/0006_event_batch_encoding.sql"),
    ),
];

/// The newest schema version this binary knows.
pub const LATEST: i64 = SQLITE[SQLITE.len() - 1].0;

// Both dialects must reach the same schema version.
const _: () = assert!(POSTGRES[POSTGRES.len() - 1].0 == LATEST && POSTGRES.len() == SQLITE.len());

/// Session advisory lock key held while migrating PostgreSQL, so replicas
/// starting together apply each migration once ("SEXTMIGR").
const MIGRATION_LOCK: i64 = 0x5345_5854_4d49_4752;

/// Applies missing migrations in order, each in its own transaction.
/// Refuses a database whose schema is newer than this binary.
pub(crate) async fn run(pool: &SqlitePool) -> Result<i64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("version"))
        .collect::<Result<_, _>>()?;
    let current = applied.iter().copied().max().unwrap_or(0);
    if current > LATEST {
        return Err(StoreError::DatabaseTooNew {
            database: current,
            binary: LATEST,
        });
    }
    // Numbers are reserved per feature and may land out of order, so apply
    // every migration not yet recorded rather than only those above the maximum.
    for &(version, name, sql) in SQLITE.iter().filter(|(v, _, _)| !applied.contains(v)) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(version)
            .bind(name)
            .bind(crate::now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(LATEST)
}

/// Applies missing PostgreSQL migrations in order, each in its own
/// transaction, holding an advisory lock so concurrent starts wait for
/// each other. Refuses a database whose schema is newer than this binary.
pub(crate) async fn run_postgres(pool: &PgPool) -> Result<i64> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get("version"))
            .collect::<Result<_, _>>()?;
        let current = applied.iter().copied().max().unwrap_or(0);
        if current > LATEST {
            return Err(StoreError::DatabaseTooNew {
                database: current,
                binary: LATEST,
            });
        }
        for &(version, name, sql) in POSTGRES.iter().filter(|(v, _, _)| !applied.contains(v)) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(crate::now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, name, "applied migration");
        }
        Ok(LATEST)
    }
    .await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // A session that cannot unlock is not reused: closing it releases the lock.
        conn.detach();
    }
    result
}
