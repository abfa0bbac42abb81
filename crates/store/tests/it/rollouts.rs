//! Rollout plans, scheduled changes and experiments: the same cases on
//! SQLite and PostgreSQL.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use sextant_store::{
    Aggregation, AuditFilter, Decision, Direction, ExperimentDef, ExperimentStatus, FlagChange, Kind, MetricDef,
    NewLearning, PlanStatus, RolloutPlan, ScheduleStatus, StoreError,
};

use crate::support::{Backend, TestStore, flag, meta};

fn plan() -> RolloutPlan {
    serde_json::from_value(json!({
        "control": "off", "treatment": "on",
        "stages": [{"percent": 1.0}, {"percent": 50.0, "min_hold_seconds": 60}, {"percent": 100.0}],
    }))
    .unwrap()
}

/// The treatment weight the flag serves in `env` (`None`: no rollout split).
async fn weight(s: &sextant_store::Store, env: &str) -> Option<u32> {
    let f = s.get_flag("default", "f").await.unwrap();
    plan().current_weight("f", &f.flag.environments[env])
}

async fn a_plan_is_stored_versioned_and_frozen_while_it_runs(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    let created = s
        .put_rollout_plan("default", "f", "production", plan(), None, &meta())
        .await
        .unwrap()
        .value;
    assert_eq!(
        (created.status, created.stage, created.version),
        (PlanStatus::Draft, None, 1)
    );
    assert_eq!(created.plan, plan());
    let err = s
        .put_rollout_plan("default", "f", "production", plan(), Some(7), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { current: 1 }), "{err:?}");

    let mut progress = created.progress();
    progress.status = PlanStatus::Running;
    progress.stage = Some(0);
    progress.monitors = json!({"errors": {"looks": 1}});
    let running = s
        .set_rollout_progress(
            "default",
            "f",
            "production",
            1,
            progress.clone(),
            "rollout_start",
            &meta(),
        )
        .await
        .unwrap()
        .value;
    assert_eq!(
        (running.status, running.stage, running.version),
        (PlanStatus::Running, Some(0), 2)
    );
    let stale = s
        .set_rollout_progress("default", "f", "production", 1, progress, "rollout_start", &meta())
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::VersionMismatch { current: 2 }), "{stale:?}");
    let frozen = s
        .put_rollout_plan("default", "f", "production", plan(), None, &meta())
        .await
        .unwrap_err();
    assert!(
        matches!(
            frozen,
            StoreError::State {
                kind: Kind::RolloutPlan,
                ..
            }
        ),
        "{frozen:?}"
    );
    let undeletable = s
        .delete_rollout_plan("default", "f", "production", &meta())
        .await
        .unwrap_err();
    assert!(matches!(undeletable, StoreError::State { .. }), "{undeletable:?}");

    s.save_rollout_monitors("default", "f", "production", &json!({"errors": {"looks": 2}}))
        .await
        .unwrap();
    let read = s.get_rollout_plan("default", "f", "production").await.unwrap();
    assert_eq!(read.monitors, json!({"errors": {"looks": 2}}));
    assert_eq!(read.version, 2, "saving monitors is not a versioned change");
    let listed = s
        .list_rollout_plans(Some("default"), Some(PlanStatus::Running))
        .await
        .unwrap();
    assert_eq!(listed, vec![read.clone()]);
    assert!(
        s.list_rollout_plans(None, Some(PlanStatus::Draft))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.list_rollout_plans(None, None).await.unwrap().len(), 1);

    let audit = s
        .list_audit(&AuditFilter {
            kind: Some(Kind::RolloutPlan.as_str().into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "rollout_start"]);
    assert!(s.verify_audit().await.unwrap().ok);
    let missing = s.get_rollout_plan("default", "f", "staging").await.unwrap_err();
    assert!(
        matches!(
            missing,
            StoreError::NotFound {
                kind: Kind::RolloutPlan,
                ..
            }
        ),
        "{missing:?}"
    );
    let no_env = s.get_rollout_plan("default", "f", "nowhere").await.unwrap_err();
    assert!(
        matches!(
            no_env,
            StoreError::NotFound {
                kind: Kind::Environment,
                ..
            }
        ),
        "{no_env:?}"
    );
}

async fn rollout_weights_are_idempotent_and_a_kill_ends_the_plan(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    let rec = s
        .put_rollout_plan("default", "f", "production", plan(), None, &meta())
        .await
        .unwrap()
        .value;
    let first = s
        .set_rollout_weight(
            "default",
            "f",
            "production",
            &rec.plan,
            1_000,
            true,
            "rollout_advance",
            &meta(),
        )
        .await
        .unwrap();
    assert!(
        first.is_some_and(|c| !c.snapshots.is_empty()),
        "a new weight publishes a snapshot"
    );
    assert_eq!(weight(s, "production").await, Some(1_000));
    let again = s
        .set_rollout_weight(
            "default",
            "f",
            "production",
            &rec.plan,
            1_000,
            true,
            "rollout_advance",
            &meta(),
        )
        .await
        .unwrap();
    assert!(again.is_none(), "writing the weight the flag has writes nothing");

    let mut progress = rec.progress();
    progress.status = PlanStatus::Running;
    s.set_rollout_progress(
        "default",
        "f",
        "production",
        rec.version,
        progress,
        "rollout_start",
        &meta(),
    )
    .await
    .unwrap();
    let killed = s.kill("default", "f", "production", &meta()).await.unwrap();
    assert!(!killed.value.flag.environments["production"].enabled);
    let plan = s.get_rollout_plan("default", "f", "production").await.unwrap();
    assert_eq!(plan.status, PlanStatus::Killed);
    assert!(plan.status_reason.unwrap().starts_with("killed by tester"));
    let restores = s.restore_events("default").await.unwrap();
    assert_eq!(restores.len(), 1);
    assert_eq!((restores[0].action.as_str(), restores[0].flag.as_str()), ("kill", "f"));
    assert!(restores[0].seconds_to_restore.is_some_and(|x| x >= 0.0), "{restores:?}");
    s.delete_rollout_plan("default", "f", "production", &meta())
        .await
        .unwrap();
    assert!(s.list_rollout_plans(None, None).await.unwrap().is_empty());
}

async fn a_scheduled_change_falls_due_once_and_stays_visible(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    let at = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
    let on = FlagChange::Toggle { enabled: true };
    let early = s
        .schedule_change("default", "f", "staging", at, &on, &meta())
        .await
        .unwrap()
        .value;
    let late = s
        .schedule_change("default", "f", "production", at + Duration::hours(1), &on, &meta())
        .await
        .unwrap()
        .value;
    assert_eq!(
        (early.status, early.change.clone()),
        (ScheduleStatus::Pending, on.clone())
    );
    assert!(
        s.due_scheduled_changes(at - Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    let due: Vec<i64> = s
        .due_scheduled_changes(at)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(due, [early.id]);
    let done = s
        .finish_scheduled_change(
            "default",
            early.id,
            ScheduleStatus::Applied,
            Some("ok".into()),
            "apply",
            &meta(),
        )
        .await
        .unwrap()
        .value;
    assert_eq!(
        (done.status, done.outcome.as_deref()),
        (ScheduleStatus::Applied, Some("ok"))
    );
    let twice = s
        .finish_scheduled_change("default", early.id, ScheduleStatus::Applied, None, "apply", &meta())
        .await
        .unwrap_err();
    assert!(matches!(twice, StoreError::State { .. }), "{twice:?}");
    s.cancel_scheduled_change("default", late.id, &meta()).await.unwrap();
    assert!(
        s.due_scheduled_changes(at + Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
    let all = s.list_scheduled_changes("default", None).await.unwrap();
    let statuses: Vec<_> = all.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [ScheduleStatus::Applied, ScheduleStatus::Cancelled]);
    let cancelled = s
        .list_scheduled_changes("default", Some(ScheduleStatus::Cancelled))
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(s.get_scheduled_change("default", late.id).await.unwrap().id, late.id);
    let elsewhere = s.get_scheduled_change("other", late.id).await.unwrap_err();
    assert!(matches!(elsewhere, StoreError::NotFound { .. }), "{elsewhere:?}");
    let no_ws = s.list_scheduled_changes("other", None).await.unwrap_err();
    assert!(
        matches!(
            no_ws,
            StoreError::NotFound {
                kind: Kind::Workspace,
                ..
            }
        ),
        "{no_ws:?}"
    );
}

fn experiment(key: &str) -> ExperimentDef {
    serde_json::from_value(json!({
        "key": key, "environment": "production", "flag": "f",
        "arms": [{"variation": "off", "weight": 1.0}, {"variation": "on", "weight": 1.0}],
        "primary_metric": "signups",
        "hypothesis": {"direction": "increase", "minimum_effect": 0.02},
        "success_criteria": "more signups",
        "planned_sample_size": 1000,
    }))
    .unwrap()
}

async fn an_experiment_is_frozen_once_started_and_decided_with_a_learning(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_flag("default", flag("f"), &meta()).await.unwrap();
    let ns = MetricDef {
        key: "signups".into(),
        name: "Signups".into(),
        aggregation: Aggregation::Count,
        event: Some("signup".into()),
        numerator: None,
        denominator: None,
        good_direction: Direction::Increase,
        unit: None,
        description: None,
        owner: None,
        parent: None,
        north_star: true,
    };
    s.create_metric("default", ns, &meta()).await.unwrap();
    let created = s
        .create_experiment("default", experiment("x"), &meta())
        .await
        .unwrap()
        .value;
    assert_eq!((created.status, created.version), (ExperimentStatus::Draft, 1));
    let dup = s
        .create_experiment("default", experiment("x"), &meta())
        .await
        .unwrap_err();
    assert!(
        matches!(
            dup,
            StoreError::Conflict {
                kind: Kind::Experiment,
                ..
            }
        ),
        "{dup:?}"
    );
    let mut bad = experiment("y");
    bad.primary_metric = "nothing".into();
    assert!(matches!(
        s.create_experiment("default", bad, &meta()).await.unwrap_err(),
        StoreError::Invalid(_)
    ));

    let mut edited = experiment("x");
    edited.planned_sample_size = 2000;
    let updated = s
        .update_experiment("default", "x", edited.clone(), Some(1), &meta())
        .await
        .unwrap()
        .value;
    assert_eq!((updated.definition.planned_sample_size, updated.version), (2000, 2));
    let stale = s.start_experiment("default", "x", Some(1), &meta()).await.unwrap_err();
    assert!(matches!(stale, StoreError::VersionMismatch { current: 2 }), "{stale:?}");
    let started = s
        .start_experiment("default", "x", Some(2), &meta())
        .await
        .unwrap()
        .value;
    assert_eq!(started.status, ExperimentStatus::Running);
    assert!(started.started_at.is_some());
    let frozen = s
        .update_experiment("default", "x", edited, None, &meta())
        .await
        .unwrap_err();
    assert!(matches!(frozen, StoreError::State { .. }), "{frozen:?}");

    let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let first = s.mark_experiment_significant("default", "x", at).await.unwrap();
    let later = s
        .mark_experiment_significant("default", "x", at + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(first.significant_at, later.significant_at, "the first date is kept");
    assert_eq!(later.decide_by.as_deref(), Some("2030-01-08T00:00:00.000Z"));

    let learning = |what: &str| NewLearning {
        source: "experiment".into(),
        source_ref: Some("x".into()),
        what: what.into(),
        evidence: None,
        owner: "tester".into(),
    };
    let no_learning = s
        .decide_experiment("default", "x", Decision::Ship, &learning("  "), &meta())
        .await
        .unwrap_err();
    assert!(matches!(no_learning, StoreError::Invalid(_)));
    let decided = s
        .decide_experiment("default", "x", Decision::Ship, &learning(" signups up "), &meta())
        .await
        .unwrap()
        .value;
    assert_eq!(decided.status, ExperimentStatus::Decided);
    assert_eq!(decided.decision, Some(Decision::Ship));
    assert_eq!(decided.learning.as_deref(), Some("signups up"));
    assert_eq!(decided.decided_by.as_deref(), Some("tester"));
    let again = s.start_experiment("default", "x", None, &meta()).await.unwrap_err();
    assert!(matches!(again, StoreError::State { .. }), "{again:?}");

    assert_eq!(s.get_experiment("default", "x").await.unwrap(), decided);
    assert_eq!(s.list_experiments("default", None).await.unwrap().len(), 1);
    assert!(
        s.list_experiments("default", Some(ExperimentStatus::Running))
            .await
            .unwrap()
            .is_empty()
    );
    let audit = s
        .list_audit(&AuditFilter {
            kind: Some(Kind::Experiment.as_str().into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "update", "start", "decide"]);
    let logged = s.list_learnings("default", &Default::default()).await.unwrap();
    assert_eq!(logged.len(), 1, "the decision's learning joins the log");
    assert_eq!(logged[0].what, "signups up");
    assert!(s.verify_audit().await.unwrap().ok);
}

crate::backend_tests!(
    a_plan_is_stored_versioned_and_frozen_while_it_runs,
    rollout_weights_are_idempotent_and_a_kill_ends_the_plan,
    a_scheduled_change_falls_due_once_and_stays_visible,
    an_experiment_is_frozen_once_started_and_decided_with_a_learning,
);
