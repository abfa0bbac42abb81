//! SQLite instance of the alignment workflows' SQL, which is written once
//! for both backends in `crate::alignment_sql`.

crate::alignment_sql::alignment_sql!(super::SqliteStore, sqlx::SqliteConnection, sqlx::sqlite::SqliteRow);
