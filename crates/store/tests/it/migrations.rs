use sextant_store::{SCHEMA_VERSION, Store, StoreError};

use crate::support::{Backend, TestDb, TestStore, tamper};

async fn first_open_creates_and_migrates_and_reopen_is_a_no_op(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let url = t.url();
    t.store.close().await;
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.list_workspaces().await.unwrap().len(), 1);
    assert_eq!(
        again.backend_name(),
        if b == Backend::Sqlite { "sqlite" } else { "postgres" }
    );
}

async fn a_database_newer_than_the_binary_is_refused_with_a_clear_error(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let url = t.url();
    t.store.close().await;
    tamper(
        &url,
        &format!(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ({}, 'future', 'x')",
            SCHEMA_VERSION + 1
        ),
    )
    .await;
    let err = Store::open(&url).await.err().unwrap();
    assert!(
        matches!(err, StoreError::DatabaseTooNew { database, binary } if database == SCHEMA_VERSION + 1 && binary == SCHEMA_VERSION)
    );
    assert!(err.to_string().contains("upgrade sextant"), "{err}");
}

async fn bootstrap_creates_default_workspace_and_prints_a_token_only_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else { return };
    let store = Store::open(&db.url()).await.unwrap();
    let first = store.bootstrap(None).await.unwrap();
    assert!(first.unwrap().starts_with("sxa_"));
    assert_eq!(store.bootstrap(None).await.unwrap(), None);
    let envs = store.list_environments("default").await.unwrap();
    let keys: Vec<_> = envs.iter().map(|e| (e.key.as_str(), e.production)).collect();
    assert_eq!(keys, [("development", false), ("staging", false), ("production", true)]);
}

crate::backend_tests!(
    first_open_creates_and_migrates_and_reopen_is_a_no_op,
    a_database_newer_than_the_binary_is_refused_with_a_clear_error,
    bootstrap_creates_default_workspace_and_prints_a_token_only_once,
);

#[tokio::test]
async fn an_unknown_url_scheme_is_refused_with_a_clear_error() {
    let err = Store::open("mysql://localhost/x").await.err().unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
}
