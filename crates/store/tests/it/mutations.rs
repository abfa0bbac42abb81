use sextant_core::{Context, Reason};
use sextant_store::{Kind, StoreError};

use crate::support::{Backend, TestStore, flag, meta};

async fn creating_a_flag_bumps_every_environment_snapshot_version(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let before = t.store.load_snapshots().await.unwrap();
    let c = t.store.create_flag("default", flag("f"), &meta()).await.unwrap();
    assert_eq!(c.value.version, 1);
    assert_eq!(c.snapshots.len(), 3);
    for (old, new) in before.iter().zip(&c.snapshots) {
        assert_eq!(new.snapshot.version(), old.snapshot.version() + 1);
    }
}

async fn toggling_changes_only_that_environment_and_evaluates_through_core(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    t.store.create_flag("default", flag("f"), &meta()).await.unwrap();
    let c = t
        .store
        .toggle("default", "f", "staging", Some(1), true, &meta())
        .await
        .unwrap();
    assert_eq!(c.value.version, 2);
    assert_eq!(c.snapshots.len(), 1);
    assert_eq!(c.snapshots[0].environment, "staging");
    let r = c.snapshots[0].snapshot.evaluate("f", &Context::with_key("u"));
    assert_eq!(r.reason, Reason::Default);
    let loaded = t.store.load_snapshots().await.unwrap();
    let staging = loaded.iter().find(|s| s.environment == "staging").unwrap();
    assert_eq!(staging.snapshot.version(), c.snapshots[0].snapshot.version());
    assert_eq!(staging.document.flags[0].environments.len(), 1);
}

async fn a_stale_version_is_refused_with_the_current_one(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    t.store.create_flag("default", flag("f"), &meta()).await.unwrap();
    t.store
        .toggle("default", "f", "staging", Some(1), true, &meta())
        .await
        .unwrap();
    let err = t
        .store
        .toggle("default", "f", "staging", Some(1), false, &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { current: 2 }));
}

async fn an_invalid_flag_is_never_stored_and_every_problem_is_listed(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let bad: sextant_core::Flag = serde_json::from_value(serde_json::json!({
        "key": "bad", "kind": "boolean",
        "variations": [{"key": "on", "value": "yes"}, {"key": "on", "value": false}],
        "environments": {"production": {"enabled": true, "off_variation": "nope",
            "rules": [{"serve": {"variation": "missing"}}]}}
    }))
    .unwrap();
    let err = t.store.create_flag("default", bad, &meta()).await.unwrap_err();
    let StoreError::Invalid(fields) = err else {
        panic!("{err:?}")
    };
    let text = format!("{fields:?}");
    for needle in [
        "duplicate variation",
        "not a boolean",
        "unknown variation `nope`",
        "rules/0",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
    assert!(matches!(
        t.store.get_flag("default", "bad").await,
        Err(StoreError::NotFound { kind: Kind::Flag, .. })
    ));
    assert!(
        t.store
            .list_audit(&Default::default())
            .await
            .unwrap()
            .iter()
            .all(|e| e.key != "bad")
    );
}

async fn deleting_a_segment_in_use_is_refused_and_nothing_changes(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let seg = serde_json::from_value(serde_json::json!({"key": "beta", "included": ["u1"]})).unwrap();
    t.store.create_segment("default", seg, &meta()).await.unwrap();
    let mut f = flag("f");
    f.environments.insert(
        "development".into(),
        serde_json::from_value(serde_json::json!({"enabled": true,
            "rules": [{"conditions": [{"attribute": "x", "op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}]}))
        .unwrap(),
    );
    t.store.create_flag("default", f, &meta()).await.unwrap();
    let err = t
        .store
        .delete_segment("default", "beta", None, &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(t.store.get_segment("default", "beta").await.is_ok());
}

async fn duplicate_keys_conflict_and_unknown_environments_are_invalid(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    t.store.create_flag("default", flag("f"), &meta()).await.unwrap();
    assert!(matches!(
        t.store.create_flag("default", flag("f"), &meta()).await,
        Err(StoreError::Conflict { kind: Kind::Flag, .. })
    ));
    assert!(matches!(
        t.store.toggle("default", "f", "moon", None, true, &meta()).await,
        Err(StoreError::NotFound {
            kind: Kind::Environment,
            ..
        })
    ));
}

async fn deleting_an_environment_strips_its_targeting(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    t.store.create_flag("default", flag("f"), &meta()).await.unwrap();
    t.store
        .toggle("default", "f", "staging", None, true, &meta())
        .await
        .unwrap();
    let c = t
        .store
        .delete_environment("default", "staging", None, &meta())
        .await
        .unwrap();
    assert_eq!(c.removed_environments.len(), 1);
    let f = t.store.get_flag("default", "f").await.unwrap();
    assert!(f.flag.environments.is_empty());
}

crate::backend_tests!(
    creating_a_flag_bumps_every_environment_snapshot_version,
    toggling_changes_only_that_environment_and_evaluates_through_core,
    a_stale_version_is_refused_with_the_current_one,
    an_invalid_flag_is_never_stored_and_every_problem_is_listed,
    deleting_a_segment_in_use_is_refused_and_nothing_changes,
    duplicate_keys_conflict_and_unknown_environments_are_invalid,
    deleting_an_environment_strips_its_targeting,
);
