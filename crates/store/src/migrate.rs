//! Forward-only, versioned schema migrations, embedded in the binary.

use sqlx::{Row, SqlitePool};

use crate::error::{Result, StoreError};

/// SQLite migrations: (version, name, SQL). Append only; never edit a shipped one.
const SQLITE: &[(i64, &str, &str)] = &[(1, "initial", include_str!("../migrations/sqlite/0001_initial.sql"))];

/// The newest schema version this binary knows.
pub const LATEST: i64 = SQLITE[SQLITE.len() - 1].0;

/// Applies missing migrations in order, each in its own transaction.
/// Refuses a database whose schema is newer than this binary.
pub(crate) async fn run(pool: &SqlitePool) -> Result<i64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(pool)
        .await?
        .try_get("v")?;
    if current > LATEST {
        return Err(StoreError::DatabaseTooNew {
            database: current,
            binary: LATEST,
        });
    }
    for &(version, name, sql) in SQLITE.iter().filter(|(v, _, _)| *v > current) {
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
