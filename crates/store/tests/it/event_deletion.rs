use sextant_store::{
    Aggregation, ChangeMeta, Direction, EventBatchBuilder, EventDeletion, HOUR_MS, HourRange, MetricDef,
    NewChangeRequest, RequestStatus, StoreError,
};

use crate::support::{Backend, TestStore, meta};

/// Any fixed hour will do.
const H: i64 = 480_000;

fn by(actor: &str, approves: i64) -> ChangeMeta {
    let mut m = ChangeMeta::new(actor, Some("privacy request".into()));
    m.approves = Some(approves);
    m
}

fn hour(h: i64) -> String {
    chrono::DateTime::from_timestamp_millis(h * HOUR_MS)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn deleting_an_event_removes_its_raw_events_and_rollups_in_range_after_another_persons_approval(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    let env = s.get_environment("default", "production").await.unwrap().id;
    s.create_metric(
        "default",
        MetricDef {
            key: "checkouts".into(),
            name: "Checkouts".into(),
            aggregation: Aggregation::Count,
            event: Some("checkout".into()),
            numerator: None,
            denominator: None,
            good_direction: Direction::Increase,
            unit: None,
            description: None,
            owner: None,
            parent: None,
            north_star: true,
        },
        &meta(),
    )
    .await
    .unwrap();
    let mut first = EventBatchBuilder::default();
    first.track("checkout", "u1", Some(2.0), H * HOUR_MS, Some(r#"{"plan":"pro"}"#));
    first.track("checkout", "u2", None, (H + 1) * HOUR_MS + 5, None);
    first.track("signup", "u1", None, H * HOUR_MS, None);
    first.exposure("checkout", "on", "u1", H * HOUR_MS);
    let mut second = EventBatchBuilder::default();
    second.track("checkout", "u1", None, (H + 2) * HOUR_MS, None);
    second.track("checkout", "u4", Some(1.5), (H + 30) * HOUR_MS, None);
    // Staging gets only what production keeps after the deletion: every
    // rollup figure of production must then equal staging's.
    let staging = s.get_environment("default", "staging").await.unwrap().id;
    let mut kept = EventBatchBuilder::default();
    kept.track("signup", "u1", None, H * HOUR_MS, None);
    kept.exposure("checkout", "on", "u1", H * HOUR_MS);
    kept.track("checkout", "u1", None, (H + 2) * HOUR_MS, None);
    kept.track("checkout", "u4", Some(1.5), (H + 30) * HOUR_MS, None);
    s.append_event_batches(&[
        first.finish(env, None),
        second.finish(env, None),
        kept.finish(staging, None),
    ])
    .await
    .unwrap();
    while !s.rollup_events(10).await.unwrap().caught_up {}
    // Not rolled up yet: the deletion lets the rollup catch up first.
    let mut late = EventBatchBuilder::default();
    late.track("checkout", "u3", None, H * HOUR_MS, None);
    s.append_event_batches(&[late.finish(env, Some("late".into()))])
        .await
        .unwrap();
    let all = HourRange { from: H, to: H + 3 };
    let before = s.metric_sums("default", "production", "checkouts", all).await.unwrap();
    assert_eq!((before.n, before.sum), (2, 3.0));

    let deletion = EventDeletion {
        environment: "production".into(),
        event: "checkout".into(),
        from: Some(hour(H)),
        to: Some(hour(H + 2)),
    };
    assert_eq!(s.count_rolled_up_events("default", &deletion).await.unwrap(), 2);
    let request = s
        .create_change_request(
            "default",
            &NewChangeRequest {
                action: "events.delete".into(),
                kind: "events".into(),
                key: "checkout".into(),
                environment: Some("production".into()),
                payload: Some(serde_json::to_value(&deletion).unwrap()),
                reverts_change_id: None,
            },
            &ChangeMeta::new("erin", None),
        )
        .await
        .unwrap()
        .value;

    // The requester cannot apply it, and the failed attempt deletes nothing.
    let err = s
        .delete_events("default", &deletion, &by("erin", request.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SelfApproval { .. }), "{err}");
    assert_eq!(s.count_rolled_up_events("default", &deletion).await.unwrap(), 3);

    let done = s
        .delete_events("default", &deletion, &by("pat", request.id))
        .await
        .unwrap();
    let d = &done.value;
    assert_eq!(
        (
            d.raw_events,
            d.batches_rewritten,
            d.rolled_up_events,
            d.rollup_rows,
            d.batches_not_rolled_up
        ),
        (3, 2, 3, 3, 0)
    );
    // Left: u1's checkout at H+2 (outside the range) and its signup.
    let totals = s.event_totals(Some(env)).await.unwrap();
    assert_eq!((totals.batches, totals.events), (3, 4));
    let after = s.metric_sums("default", "production", "checkouts", all).await.unwrap();
    assert_eq!((after.n, after.sum), (1, 1.0), "u2 and u3 had no other events");
    assert_eq!(s.count_rolled_up_events("default", &deletion).await.unwrap(), 0);
    // Hourly and daily rows and bucket totals agree with a store that never had the events.
    let days = HourRange {
        from: (H / 24 - 2) * 24,
        to: (H / 24 + 3) * 24,
    };
    for range in [
        all,
        days,
        HourRange {
            from: H + 1,
            to: H + 40,
        },
    ] {
        for bucket in [0, 1, 24] {
            let prod = s
                .metric_series("default", "production", "checkouts", range, bucket)
                .await
                .unwrap();
            let stag = s
                .metric_series("default", "staging", "checkouts", range, bucket)
                .await
                .unwrap();
            assert_eq!(prod, stag, "range {range:?}, buckets of {bucket} h");
        }
    }
    // Rolling up again brings nothing back.
    assert!(s.rollup_events(10).await.unwrap().caught_up);
    assert_eq!(
        s.metric_sums("default", "production", "checkouts", all).await.unwrap(),
        after
    );

    let request = s.get_change_request("default", request.id).await.unwrap();
    assert_eq!(
        (request.status, request.decided_by.as_deref(), request.applied_change_id),
        (RequestStatus::Applied, Some("pat"), Some(done.change_id))
    );
    let change = s.get_change(done.change_id).await.unwrap();
    assert_eq!(
        (change.kind.as_str(), change.action.as_str(), change.key.as_str()),
        ("events", "delete", "checkout")
    );
    assert_eq!(change.environment.as_deref(), Some("production"));
    assert!(s.verify_audit().await.unwrap().ok);
}

async fn a_deletion_in_an_unknown_environment_or_with_a_bad_range_is_refused(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    let mut d = EventDeletion {
        environment: "nowhere".into(),
        event: "checkout".into(),
        from: None,
        to: None,
    };
    let err = s.count_rolled_up_events("default", &d).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    d.environment = "production".into();
    d.from = Some("2026-01-01T10:15:00Z".into());
    let err = s.delete_events("default", &d, &meta()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref e) if e[0].field == "/from"),
        "{err}"
    );
}

crate::backend_tests!(
    deleting_an_event_removes_its_raw_events_and_rollups_in_range_after_another_persons_approval,
    a_deletion_in_an_unknown_environment_or_with_a_bad_range_is_refused,
);
