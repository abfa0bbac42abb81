use sextant_store::{SCHEMA_VERSION, Store, StoreError};

use crate::support::{TestStore, tamper};

#[tokio::test]
async fn first_open_creates_and_migrates_and_reopen_is_a_no_op() {
    let t = TestStore::new().await;
    let path = t.path();
    t.store.close().await;
    let again = Store::open(&path).await.unwrap();
    assert_eq!(again.list_workspaces().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused_with_a_clear_error() {
    let t = TestStore::new().await;
    let path = t.path();
    t.store.close().await;
    tamper(
        &path,
        &format!(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ({}, 'future', 'x')",
            SCHEMA_VERSION + 1
        ),
    )
    .await;
    let err = Store::open(&path).await.err().unwrap();
    assert!(
        matches!(err, StoreError::DatabaseTooNew { database, binary } if database == SCHEMA_VERSION + 1 && binary == SCHEMA_VERSION)
    );
    assert!(err.to_string().contains("upgrade sextant"), "{err}");
}

#[tokio::test]
async fn bootstrap_creates_default_workspace_and_prints_a_token_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&crate::support::db_path(&dir)).await.unwrap();
    let first = store.bootstrap(None).await.unwrap();
    assert!(first.unwrap().starts_with("sxa_"));
    assert_eq!(store.bootstrap(None).await.unwrap(), None);
    let envs = store.list_environments("default").await.unwrap();
    let keys: Vec<_> = envs.iter().map(|e| (e.key.as_str(), e.production)).collect();
    assert_eq!(keys, [("development", false), ("staging", false), ("production", true)]);
}

#[tokio::test]
async fn postgres_urls_are_not_supported_yet() {
    let err = Store::open("postgres://localhost/x").await.err().unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
}
