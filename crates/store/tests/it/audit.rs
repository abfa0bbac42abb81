use sextant_store::AuditFilter;

use crate::support::{TestStore, flag, meta, tamper};

async fn with_history() -> TestStore {
    let t = TestStore::new().await;
    t.store.create_flag("default", flag("a"), &meta()).await.unwrap();
    t.store
        .toggle("default", "a", "production", None, true, &meta())
        .await
        .unwrap();
    t.store
        .toggle("default", "a", "production", None, false, &meta())
        .await
        .unwrap();
    t
}

#[tokio::test]
async fn an_untouched_chain_verifies() {
    let t = with_history().await;
    let v = t.store.verify_audit().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert!(v.entries >= 3);
}

#[tokio::test]
async fn every_change_records_actor_reason_and_before_after() {
    let t = with_history().await;
    let f = AuditFilter {
        key: Some("a".into()),
        action: Some("turn_off".into()),
        ..Default::default()
    };
    let entries = t.store.list_audit(&f).await.unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e.actor.as_str(), e.reason.as_deref()), ("tester", Some("because")));
    assert_eq!(
        e.before.as_ref().unwrap()["environments"]["production"]["enabled"],
        true
    );
    assert_eq!(
        e.after.as_ref().unwrap()["environments"]["production"]["enabled"],
        false
    );
}

async fn verify_after(sql: &str) -> Vec<String> {
    let t = with_history().await;
    let path = t.path();
    t.store.close().await;
    tamper(&path, sql).await;
    let store = sextant_store::Store::open(&path).await.unwrap();
    let v = store.verify_audit().await.unwrap();
    assert!(!v.ok, "tampering with `{sql}` was not detected");
    v.problems.into_iter().map(|p| p.problem).collect()
}

#[tokio::test]
async fn an_edited_change_record_is_detected() {
    let problems =
        verify_after("UPDATE changes SET reason = 'nothing to see' WHERE id = (SELECT MAX(id) FROM changes)").await;
    assert!(
        problems.iter().any(|p| p.contains("does not match its hash")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn an_edited_hash_is_detected() {
    verify_after("UPDATE audit_log SET hash = 'abc' WHERE seq = 2").await;
}

#[tokio::test]
async fn a_deleted_middle_entry_is_detected() {
    let problems = verify_after("DELETE FROM audit_log WHERE seq = 2").await;
    assert!(problems.iter().any(|p| p.contains("missing")), "{problems:?}");
}

#[tokio::test]
async fn a_deleted_last_entry_is_detected() {
    verify_after("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)").await;
}

#[tokio::test]
async fn reordered_entries_are_detected() {
    verify_after(
        "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -1;",
    )
    .await;
}
