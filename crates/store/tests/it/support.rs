#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sextant_store::{ChangeMeta, Store};
use sqlx::ConnectOptions;
use tempfile::TempDir;

/// The backend a test runs on. Every store test runs on both (see
/// [`backend_tests!`]): SQLite always, PostgreSQL from
/// `SEXTANT_TEST_POSTGRES_URL` (or a `postgres://` `DATABASE_URL`), on a
/// fresh database per test. Without a URL the PostgreSQL variant is
/// skipped, except with `CI=true`, where it fails; a URL that does not
/// answer always fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares, for each `async fn name(b: Backend)` listed, a module `name`
/// with the tests `sqlite` and `postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server the tests may create databases on.
pub fn postgres_admin_url() -> Option<String> {
    let from = |var: &str| std::env::var(var).ok().filter(|u| u.starts_with("postgres"));
    from("SEXTANT_TEST_POSTGRES_URL").or_else(|| from("DATABASE_URL"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A scratch database: a temp SQLite file, or a fresh PostgreSQL database.
pub enum TestDb {
    Sqlite(TempDir),
    Postgres { url: String },
}

impl TestDb {
    /// A fresh database on `backend`; `None` only for PostgreSQL when no
    /// server is configured outside CI (the test is then skipped).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite(tempfile::tempdir().unwrap())),
            Backend::Postgres => {
                let Some(admin) = postgres_admin_url() else {
                    assert!(
                        !in_ci(),
                        "CI=true but no PostgreSQL: set SEXTANT_TEST_POSTGRES_URL (scripts/test does)"
                    );
                    eprintln!("skipped: PostgreSQL tests need SEXTANT_TEST_POSTGRES_URL");
                    return None;
                };
                Some(TestDb::Postgres {
                    url: create_postgres_database(&admin).await,
                })
            }
        }
    }

    /// The URL `Store::open` takes.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => db_path(dir),
            TestDb::Postgres { url } => url.clone(),
        }
    }
}

/// Creates `sextant_test_<pid>_<n>` on the server of `admin` and returns its URL.
pub async fn create_postgres_database(admin: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "sextant_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let options: sqlx::postgres::PgConnectOptions = admin.parse().expect("SEXTANT_TEST_POSTGRES_URL is not a URL");
    let mut conn = options
        .connect()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} does not answer: {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
    }
    let mut url = url_without_database(admin);
    url.push('/');
    url.push_str(&name);
    url
}

/// `postgres://user:pw@host:port` of a URL (path and query removed).
fn url_without_database(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let end = rest.find(['/', '?']).map_or(url.len(), |i| scheme_end + i);
    url[..end].to_owned()
}

/// A store on a fresh database, bootstrapped; the database lives as long as it.
pub struct TestStore {
    pub store: Store,
    pub db: TestDb,
}

impl TestStore {
    /// On SQLite.
    pub async fn new() -> TestStore {
        TestStore::on(Backend::Sqlite).await.unwrap()
    }

    /// On `backend`; `None`: skipped (see [`TestDb::new`]).
    pub async fn on(backend: Backend) -> Option<TestStore> {
        let db = TestDb::new(backend).await?;
        let store = Store::open(&db.url()).await.unwrap();
        store.bootstrap(Some("sxa_test")).await.unwrap();
        Some(TestStore { store, db })
    }

    /// Another store on the same database, as a second replica would open it.
    pub async fn replica(&self) -> Store {
        Store::open(&self.db.url()).await.unwrap()
    }

    pub fn url(&self) -> String {
        self.db.url()
    }

    pub fn path(&self) -> String {
        self.db.url()
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

/// Runs SQL directly against the database, bypassing the store.
pub async fn tamper(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        let mut conn = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(url)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
}
