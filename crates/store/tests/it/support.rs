use sextant_store::{ChangeMeta, Store};
use tempfile::TempDir;

/// A store on a fresh SQLite file, bootstrapped; the dir lives as long as it.
pub struct TestStore {
    pub store: Store,
    pub dir: TempDir,
}

impl TestStore {
    pub async fn new() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&db_path(&dir)).await.unwrap();
        store.bootstrap(Some("sxa_test")).await.unwrap();
        TestStore { store, dir }
    }

    pub fn path(&self) -> String {
        db_path(&self.dir)
    }
}

pub fn db_path(dir: &TempDir) -> String {
    dir.path().join("sextant.db").to_string_lossy().into_owned()
}

pub fn meta() -> ChangeMeta {
    ChangeMeta::new("tester", Some("because".into()))
}

pub fn flag(key: &str) -> sextant_core::Flag {
    serde_json::from_value(serde_json::json!({
        "key": key, "kind": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
    }))
    .unwrap()
}

/// Runs SQL directly against the database file, bypassing the store.
pub async fn tamper(path: &str, sql: &str) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}
