use sextant_store::AuditFilter;

use crate::support::{Backend, TestStore, flag, meta, tamper};

async fn with_history(b: Backend) -> Option<TestStore> {
    let t = TestStore::on(b).await?;
    t.store.create_flag("default", flag("a"), &meta()).await.unwrap();
    t.store
        .toggle("default", "a", "production", None, true, &meta())
        .await
        .unwrap();
    t.store
        .toggle("default", "a", "production", None, false, &meta())
        .await
        .unwrap();
    Some(t)
}

async fn an_untouched_chain_verifies(b: Backend) {
    let Some(t) = with_history(b).await else { return };
    let v = t.store.verify_audit().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert!(v.entries >= 3);
}

async fn every_change_records_actor_reason_and_before_after(b: Backend) {
    let Some(t) = with_history(b).await else { return };
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

/// The problems found after `sql` tampered with a history; `None`: skipped.
async fn verify_after(b: Backend, sql: &str) -> Option<Vec<String>> {
    let t = with_history(b).await?;
    let path = t.path();
    t.store.close().await;
    tamper(&path, sql).await;
    let store = sextant_store::Store::open(&path).await.unwrap();
    let v = store.verify_audit().await.unwrap();
    assert!(!v.ok, "tampering with `{sql}` was not detected");
    Some(v.problems.into_iter().map(|p| p.problem).collect())
}

async fn an_edited_change_record_is_detected(b: Backend) {
    let Some(problems) = verify_after(
        b,
        "UPDATE changes SET reason = 'nothing to see' WHERE id = (SELECT MAX(id) FROM changes)",
    )
    .await
    else {
        return;
    };
    assert!(
        problems.iter().any(|p| p.contains("does not match its hash")),
        "{problems:?}"
    );
}

async fn an_edited_hash_is_detected(b: Backend) {
    verify_after(b, "UPDATE audit_log SET hash = 'abc' WHERE seq = 2").await;
}

async fn a_deleted_middle_entry_is_detected(b: Backend) {
    let Some(problems) = verify_after(b, "DELETE FROM audit_log WHERE seq = 2").await else {
        return;
    };
    assert!(problems.iter().any(|p| p.contains("missing")), "{problems:?}");
}

async fn a_deleted_last_entry_is_detected(b: Backend) {
    verify_after(b, "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)").await;
}

async fn reordered_entries_are_detected(b: Backend) {
    verify_after(
        b,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -1;",
    )
    .await;
}

crate::backend_tests!(
    an_untouched_chain_verifies,
    every_change_records_actor_reason_and_before_after,
    an_edited_change_record_is_detected,
    an_edited_hash_is_detected,
    a_deleted_middle_entry_is_detected,
    a_deleted_last_entry_is_detected,
    reordered_entries_are_detected,
);
