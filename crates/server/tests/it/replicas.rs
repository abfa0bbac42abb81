//! Two servers on one PostgreSQL database, as two replicas: changes made
//! through one reach the SSE clients of the other, by notice or, when a
//! notice is lost, by the periodic comparison of snapshot versions.
//! Skipped without `SEXTANT_TEST_POSTGRES_URL`, except with `CI=true`.

use std::time::Duration;

use serde_json::json;
use sextant_server::Config;
use sqlx::ConnectOptions;

use crate::support::{Sse, TestServer};

/// A fresh PostgreSQL database's URL, or `None` (skipped).
async fn database() -> Option<String> {
    crate::support::postgres_database().await
}

/// Runs SQL on the database behind the servers' backs.
async fn sql(url: &str, sql: &str) {
    let mut conn = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}

/// Waits for the next `change` event that mentions `needle`.
async fn change_with(sse: &mut Sse, needle: &str) -> serde_json::Value {
    loop {
        let e = sse.next().await.expect("the stream ended");
        if e.event.as_deref() == Some("change") && e.data.contains(needle) {
            return e.json();
        }
    }
}

/// A stream of `development` on `server` with a token made on `maker`.
async fn stream(server: &TestServer, token: &str) -> Sse {
    // The token may have been made on the other replica a moment ago.
    for _ in 0..600 {
        let r = server
            .req(reqwest::Method::GET, "/sdk/v1/stream", token)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            drop(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sse = server.sse("/sdk/v1/stream", token, None).await;
    assert_eq!(sse.next().await.unwrap().event.as_deref(), Some("snapshot"));
    sse
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_reaches_sse_clients_of_the_other_as_the_same_delta() {
    let Some(url) = database().await else { return };
    let a = TestServer::start_on(Some(&url), Config::default()).await;
    let b = TestServer::start_on(Some(&url), Config::default()).await;
    let token = a.server_token("development").await;
    let mut on_a = stream(&a, &token).await;
    let mut on_b = stream(&b, &token).await;
    a.flag("f", "development").await;
    let (da, db) = (
        change_with(&mut on_a, "\"f\"").await,
        change_with(&mut on_b, "\"f\"").await,
    );
    assert_eq!(da, db, "replica B forwards exactly the delta A sent");
    assert!(db["flags"].is_array() && db["document"].is_null());
    b.toggle("f", "development", false).await;
    let (da, db) = (
        change_with(&mut on_a, "\"f\"").await,
        change_with(&mut on_b, "\"f\"").await,
    );
    assert_eq!(da, db);
    assert_eq!(db["flags"][0]["environments"]["development"]["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_a_notice_catches_up_by_snapshot_version() {
    let Some(url) = database().await else { return };
    let quick = Config {
        resync_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let a = TestServer::start_on(Some(&url), Config::default()).await;
    let b = TestServer::start_on(Some(&url), quick).await;
    let token = a.server_token("development").await;
    let mut on_b = stream(&b, &token).await;
    a.flag("f", "development").await;
    change_with(&mut on_b, "\"f\"").await;
    // A write no notice announces: the flag edited and the version bumped in SQL.
    sql(
        &url,
        "UPDATE flags SET definition = replace(definition, '\"enabled\":true', '\"enabled\":false'), version = version + 1;
         UPDATE environments SET snapshot_version = snapshot_version + 1 WHERE key = 'development';",
    )
    .await;
    let change = change_with(&mut on_b, "\"f\"").await;
    assert!(
        change["document"].is_object(),
        "a catch-up sends the whole document: {change}"
    );
    assert_eq!(
        change["document"]["flags"][0]["environments"]["development"]["enabled"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_feed_connection_dies_reconnects_and_misses_nothing() {
    let Some(url) = database().await else { return };
    let a = TestServer::start_on(Some(&url), Config::default()).await;
    let b = TestServer::start_on(Some(&url), Config::default()).await;
    let token = a.server_token("development").await;
    let mut on_b = stream(&b, &token).await;
    sql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'sextant-feed'",
    )
    .await;
    a.flag("after-loss", "development").await;
    change_with(&mut on_b, "after-loss").await;
    let r = a
        .post(
            "/api/v1/workspaces/default/flags",
            json!({"flag": {"key": "later", "kind": "boolean",
            "hypothesis": {"operational": true, "reason": "replication test"},
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    change_with(&mut on_b, "later").await;
}
