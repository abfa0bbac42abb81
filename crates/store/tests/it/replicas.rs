//! Several stores on one database, as replicas open it. PostgreSQL is the
//! shared backend; SQLite (one process) has no change feed and leads in-process.

use std::time::Duration;

use sextant_store::{FeedEvent, Store, StoreError};

use crate::support::{Backend, TestDb, TestStore, flag, meta, tamper};

/// A fresh PostgreSQL store, or `None` when skipped (see `TestDb::new`).
async fn postgres() -> Option<TestStore> {
    TestStore::on(Backend::Postgres).await
}

/// The next feed event, failing the test instead of hanging.
async fn next(feed: &mut sextant_store::ChangeFeed) -> FeedEvent {
    tokio::time::timeout(Duration::from_secs(20), feed.next())
        .await
        .expect("no feed event")
        .expect("feed failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_and_bootstrap_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let url = db.url();
    let (a, c) = tokio::join!(Store::open(&url), Store::open(&url));
    let (a, c) = (a.unwrap(), c.unwrap());
    let (x, y) = tokio::join!(a.bootstrap(None), c.bootstrap(None));
    let printed = [x.unwrap(), y.unwrap()].into_iter().flatten().count();
    assert_eq!(printed, 1, "exactly one replica creates the first admin token");
    assert_eq!(a.list_workspaces().await.unwrap().len(), 1);
    assert!(c.verify_audit().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_reaches_the_change_feed_of_another() {
    let Some(t) = postgres().await else { return };
    let b = t.replica().await;
    let mut feed = t.store.change_feed().await.unwrap().expect("postgres has a feed");
    assert_eq!(
        next(&mut feed).await,
        FeedEvent::Resync,
        "a new feed starts with a resync"
    );
    b.create_flag("default", flag("f"), &meta()).await.unwrap();
    let c = b
        .toggle("default", "f", "staging", Some(1), true, &meta())
        .await
        .unwrap();
    let staging = c.snapshots[0].environment_id;
    let version = c.snapshots[0].snapshot.version() as i64;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let FeedEvent::Change(n) = next(&mut feed).await {
            seen.push(n);
        }
    }
    assert_eq!(seen[0].snapshots.len(), 3, "create touches every environment");
    let toggle = &seen[1];
    assert_eq!(toggle.snapshots, vec![(staging, version)]);
    let cause = toggle.cause_of(staging, version).expect("the notice names its cause");
    assert_eq!((cause.key.as_str(), cause.action.as_str()), ("f", "turn_on"));
    let loaded = t.store.load_environment_snapshots(&[staging]).await.unwrap();
    assert_eq!(loaded[0].snapshot.version() as i64, version);
    assert!(loaded[0].document.flags[0].environments["staging"].enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reconnects_and_resyncs_after_its_connection_is_killed() {
    let Some(t) = postgres().await else { return };
    let mut feed = t.store.change_feed().await.unwrap().unwrap();
    assert_eq!(next(&mut feed).await, FeedEvent::Resync);
    // Kill the feed's session, as a network failure or a restart would.
    tamper(
        &t.url(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'sextant-feed'",
    )
    .await;
    assert_eq!(
        next(&mut feed).await,
        FeedEvent::Resync,
        "a lost connection means a resync"
    );
    t.store.create_flag("default", flag("after"), &meta()).await.unwrap();
    loop {
        if let FeedEvent::Change(n) = next(&mut feed).await {
            assert_eq!(n.key.as_deref(), Some("after"));
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_the_same_version_one_wins_and_the_other_conflicts() {
    let Some(t) = postgres().await else { return };
    let b = t.replica().await;
    t.store.create_flag("default", flag("f"), &meta()).await.unwrap();
    for round in 0..5 {
        let (expected, m) = (Some(1 + round), meta());
        let (x, y) = tokio::join!(
            t.store
                .toggle("default", "f", "production", expected, round % 2 == 0, &m),
            b.toggle("default", "f", "production", expected, round % 2 == 0, &m),
        );
        let won = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {x:?} / {y:?}");
        let lost = if x.is_ok() { y } else { x };
        assert!(
            matches!(lost, Err(StoreError::VersionMismatch { current }) if current == 2 + round),
            "{lost:?}"
        );
    }
    assert_eq!(b.get_flag("default", "f").await.unwrap().version, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_from_two_replicas_keep_the_audit_chain_linear() {
    let Some(t) = postgres().await else { return };
    let b = t.replica().await;
    let writes = (0..12).map(|i| {
        let store = if i % 2 == 0 { &t.store } else { &b };
        async move { store.create_flag("default", flag(&format!("f{i}")), &meta()).await }
    });
    for r in futures_util::future::join_all(writes).await {
        r.unwrap();
    }
    let v = b.verify_audit().await.unwrap();
    assert!(v.ok, "{v:?}");
    let versions = t.store.snapshot_versions().await.unwrap();
    assert!(versions.iter().all(|(_, v)| *v == 13), "{versions:?}");
}

async fn only_one_holder_leads_a_duty_until_it_lets_go(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let other = match b {
        Backend::Sqlite => None,
        Backend::Postgres => Some(t.replica().await),
    };
    let contender = other.as_ref().unwrap_or(&t.store);
    let mut lead = t.store.try_lead("scheduler").await.unwrap().expect("nobody leads yet");
    lead.check().await.unwrap();
    assert!(contender.try_lead("scheduler").await.unwrap().is_none());
    assert!(
        contender.try_lead("another-duty").await.unwrap().is_some(),
        "duties are independent"
    );
    lead.release().await;
    let taken = contender.lead("scheduler", Duration::from_millis(20));
    tokio::time::timeout(Duration::from_secs(20), taken)
        .await
        .expect("leadership was not handed over")
        .unwrap();
}

crate::backend_tests!(only_one_holder_leads_a_duty_until_it_lets_go);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_takes_over_leadership_when_the_first_dies() {
    let Some(t) = postgres().await else { return };
    let b = t.replica().await;
    let mut lead = t.store.try_lead("scheduler").await.unwrap().unwrap();
    assert!(b.try_lead("scheduler").await.unwrap().is_none());
    // The leader's session dies, as when its process is killed.
    tamper(
        &t.url(),
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted",
    )
    .await;
    let mut taken = tokio::time::timeout(Duration::from_secs(20), b.lead("scheduler", Duration::from_millis(20)))
        .await
        .expect("the second replica never took over")
        .unwrap();
    taken.check().await.unwrap();
    assert!(lead.check().await.is_err(), "the dead leader learns it lost");
    assert!(lead.check().await.is_err(), "and stays demoted");
}

#[tokio::test]
async fn sqlite_has_no_change_feed() {
    let t = TestStore::new().await;
    assert!(t.store.change_feed().await.unwrap().is_none());
}
