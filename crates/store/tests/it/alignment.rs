use serde_json::json;
use sextant_store::{
    AttemptOutcome, ChangeMeta, DeployStatus, LearningFilter, NewChangeRequest, NewDeploy, NewLearning, NewViolation,
    Policy, RequestStatus, ReviewDecision, ReviewOutcome, StoreError,
};

use crate::support::{Backend, TestStore, flag, meta};

fn by(actor: &str) -> ChangeMeta {
    ChangeMeta::new(actor, Some("because".into()))
}

fn request(action: &str, key: &str) -> NewChangeRequest {
    NewChangeRequest {
        action: action.into(),
        kind: "flag".into(),
        key: key.into(),
        environment: None,
        payload: None,
        reverts_change_id: None,
    }
}

async fn an_approved_change_applies_with_its_request_in_one_transaction(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    let r = s
        .create_change_request("default", &request("flag.delete", "f"), &by("erin"))
        .await
        .unwrap()
        .value;
    assert_eq!(r.status, RequestStatus::Pending);
    // The requester's own approval fails and leaves the flag in place.
    let mut own = by("erin");
    own.approves = Some(r.id);
    let err = s.delete_flag("default", "f", None, &own).await.unwrap_err();
    assert!(matches!(err, StoreError::SelfApproval { .. }), "{err}");
    assert!(s.get_flag("default", "f").await.is_ok());
    let mut other = by("pat");
    other.approves = Some(r.id);
    let done = s.delete_flag("default", "f", None, &other).await.unwrap();
    let r = s.get_change_request("default", r.id).await.unwrap();
    assert_eq!(
        (r.status, r.decided_by.as_deref()),
        (RequestStatus::Applied, Some("pat"))
    );
    assert_eq!(r.applied_change_id, Some(done.change_id));
    let err = s.delete_flag("default", "f", None, &other).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let last = s.last_change("default", "flag", "f").await.unwrap().unwrap();
    assert_eq!(last.action, "delete");
    assert!(s.verify_audit().await.unwrap().ok);

    let r2 = s
        .create_change_request("default", &request("flag.archive", "g"), &by("erin"))
        .await
        .unwrap()
        .value;
    s.reject_change_request("default", r2.id, &by("pat")).await.unwrap();
    let err = s.reject_change_request("default", r2.id, &by("ada")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotPending { .. }), "{err}");
    assert_eq!(
        s.list_change_requests("default", Some(RequestStatus::Rejected))
            .await
            .unwrap()
            .len(),
        1
    );

    let policy = Policy {
        require_approval: vec!["flag.update".into()],
    };
    s.set_policy("default", &policy, &meta()).await.unwrap();
    assert_eq!(s.get_policy("default").await.unwrap().version, 1);
}

async fn exposures_reviews_learnings_and_post_mortems_round_trip(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    let review = s
        .record_exposure("default", "production", "f", "2025-01-01T00:00:00.000Z")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(review.due_at, "2025-01-31T00:00:00.000Z");
    assert_eq!(
        s.record_exposure("default", "production", "f", "2025-02-01T00:00:00Z")
            .await
            .unwrap(),
        None
    );
    let outcome = ReviewOutcome {
        decision: ReviewDecision::Keep,
        observed_effect: Some(0.04),
        notes: Some("lifted conversion 100% of the time".into()),
        evidence: None,
    };
    s.complete_review("default", "f", &outcome, &by("pat")).await.unwrap();
    s.record_learning(
        "default",
        &NewLearning {
            source: "experiment".into(),
            source_ref: Some("experiment:x".into()),
            what: "Blue_button won".into(),
            evidence: None,
            owner: "li".into(),
        },
        &meta(),
    )
    .await
    .unwrap();
    let search = |text: &str| LearningFilter {
        text: Some(text.into()),
        ..LearningFilter::default()
    };
    assert_eq!(s.list_learnings("default", &search("100%")).await.unwrap().len(), 1);
    assert_eq!(s.list_learnings("default", &search("blue_b")).await.unwrap().len(), 1);
    assert_eq!(s.list_learnings("default", &search("blue%b")).await.unwrap().len(), 0);
    s.open_post_mortem("default", "i", "li", "2030-01-01T00:00:00Z", "up", &meta())
        .await
        .unwrap();
    let pm = s
        .complete_post_mortem("default", "i", None, "flat", "why", &meta())
        .await
        .unwrap()
        .value;
    assert_eq!(pm.expected.as_deref(), Some("up"));
    s.create_principle("default", "p", "P", "d", &meta()).await.unwrap();
    let v = NewViolation {
        principle: "p".into(),
        subject: "flag:f".into(),
        justification: "j".into(),
        owner: "o".into(),
        review_date: "2030-01-01".into(),
    };
    let v = s.create_violation("default", &v, &meta()).await.unwrap().value;
    assert_eq!(s.list_violations("default", true).await.unwrap().len(), 1);
    s.resolve_violation("default", v.id, "done", &meta()).await.unwrap();
    assert!(s.list_violations("default", true).await.unwrap().is_empty());
    assert_eq!(s.list_violations("default", false).await.unwrap().len(), 1);
}

async fn deploys_kill_switches_and_webhook_deliveries_round_trip(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    let d = NewDeploy {
        service: "api".into(),
        version: "1".into(),
        commit_at: "2025-01-01T00:00:00.000Z".into(),
        deployed_at: "2025-01-01T01:00:00.000Z".into(),
        status: DeployStatus::Rollback,
    };
    s.record_deploy("default", &d, &meta()).await.unwrap();
    let listed = s.list_deploys("default", "2025-01-01", "2025-01-02").await.unwrap();
    assert_eq!((listed.len(), listed[0].status), (1, DeployStatus::Rollback));
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    s.toggle("default", "f", "production", None, false, &meta())
        .await
        .unwrap();
    s.toggle("default", "f", "staging", None, false, &meta()).await.unwrap();
    // The kill switch endpoint (`sextant kill`) counts too, not only toggles.
    s.create_flag("default", flag("g"), &meta()).await.unwrap();
    s.kill("default", "g", "production", &meta()).await.unwrap();
    s.kill("default", "g", "staging", &meta()).await.unwrap();
    let kills = s
        .list_kill_switches("default", "2000-01-01", "2100-01-01")
        .await
        .unwrap();
    let killed: Vec<(&str, &str)> = kills
        .iter()
        .map(|k| (k.flag.as_str(), k.environment.as_str()))
        .collect();
    assert_eq!(killed, [("f", "production"), ("g", "production")]);

    let hook = s
        .create_webhook(
            "default",
            "http://127.0.0.1:9/h",
            "0123456789abcdef",
            &["kill_switch".into()],
            &meta(),
        )
        .await
        .unwrap()
        .value;
    assert!(
        s.enqueue_event("default", "flag.changed", &json!({}))
            .await
            .unwrap()
            .is_empty()
    );
    let queued = s
        .enqueue_event("default", "kill_switch", &json!({"flag": "f"}))
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    let due = s.due_deliveries("2100-01-01T00:00:00Z", 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0.secret, "0123456789abcdef");
    let retry = AttemptOutcome {
        status: Some(503),
        error: Some("HTTP 503".into()),
        delivered: false,
        retry_at: Some("2099-01-01T00:00:00.000Z".into()),
    };
    let d = s.record_attempt(queued[0].id, &retry).await.unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 1));
    assert!(s.due_deliveries("2098-01-01T00:00:00Z", 10).await.unwrap().is_empty());
    let ok = AttemptOutcome {
        status: Some(200),
        error: None,
        delivered: true,
        retry_at: None,
    };
    let d = s.record_attempt(queued[0].id, &ok).await.unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 2));
    assert!(d.delivered_at.is_some());
    let again = s.redeliver("default", hook.id, d.id).await.unwrap();
    assert_eq!((again.status.as_str(), again.payload), ("pending", d.payload));
    assert_eq!(s.list_deliveries("default", hook.id).await.unwrap().len(), 2);
    s.delete_webhook("default", hook.id, &meta()).await.unwrap();
    assert!(s.list_webhooks("default").await.unwrap().is_empty());
}

crate::backend_tests!(
    an_approved_change_applies_with_its_request_in_one_transaction,
    exposures_reviews_learnings_and_post_mortems_round_trip,
    deploys_kill_switches_and_webhook_deliveries_round_trip,
);
