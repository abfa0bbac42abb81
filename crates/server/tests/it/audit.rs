use reqwest::Method;

use crate::support::{ADMIN, TestServer};

#[tokio::test]
async fn audit_lists_changes_with_filters_and_verifies() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    s.toggle("a", "production", false).await;
    let r = s.get("/api/v1/audit?key=a").await;
    let entries = r.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["action"], "turn_off");
    assert_eq!(entries[1]["reason"], "test");
    assert!(entries[1]["actor"].as_str().unwrap().starts_with("bootstrap-admin"));
    let r = s.get("/api/v1/audit?limit=1").await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    let v = s.get("/api/v1/audit/verify").await;
    assert_eq!(v.body["ok"], true, "{:?}", v.body);
    s.get("/api/v1/audit?bogus=1")
        .await
        .assert_problem(400, "query_invalid");
}

#[tokio::test]
async fn tampering_with_the_database_is_detected() {
    let s = TestServer::start().await;
    s.flag("a", "production").await;
    s.toggle("a", "production", false).await;
    s.toggle("a", "production", true).await;
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(s.db_path())
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("UPDATE changes SET actor = 'someone else' WHERE action = 'turn_off'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let v = s.call(Method::GET, "/api/v1/audit/verify", ADMIN, None).await;
    assert_eq!(v.body["ok"], false);
    assert!(!v.body["problems"].as_array().unwrap().is_empty());
}
