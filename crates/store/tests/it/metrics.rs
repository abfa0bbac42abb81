use sextant_store::{Aggregation, AuditFilter, Direction, InitiativeDef, MetricDef, StoreError};

use crate::support::{Backend, TestStore, meta};

fn metric(key: &str, parent: Option<&str>) -> MetricDef {
    MetricDef {
        key: key.into(),
        name: format!("The {key}"),
        aggregation: Aggregation::Count,
        event: Some(format!("{key}_event")),
        numerator: None,
        denominator: None,
        good_direction: Direction::Increase,
        unit: None,
        description: None,
        owner: Some("ana".into()),
        parent: parent.map(Into::into),
        north_star: parent.is_none(),
    }
}

fn fields(e: StoreError) -> Vec<String> {
    match e {
        StoreError::Invalid(errors) => errors
            .into_iter()
            .map(|e| format!("{} {}", e.field, e.message))
            .collect(),
        other => panic!("expected Invalid, got {other}"),
    }
}

async fn the_first_metric_must_be_the_north_star_and_there_is_only_one(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    let err = s
        .create_metric("default", metric("orphan", Some("nothing")), &meta())
        .await
        .unwrap_err();
    assert!(fields(err).iter().any(|f| f.starts_with("/parent metric `nothing`")));
    s.create_metric("default", metric("ns", None), &meta()).await.unwrap();
    let err = s
        .create_metric("default", metric("ns2", None), &meta())
        .await
        .unwrap_err();
    assert!(
        fields(err)
            .iter()
            .any(|f| f.starts_with("/north_star the workspace's North Star is `ns`"))
    );
    let err = s
        .create_metric("default", metric("loose", None).with_parent(None, false), &meta())
        .await
        .unwrap_err();
    assert!(
        fields(err)
            .iter()
            .any(|f| f.starts_with("/parent every metric but the North Star"))
    );
}

trait WithParent {
    fn with_parent(self, parent: Option<&str>, north_star: bool) -> Self;
}

impl WithParent for MetricDef {
    fn with_parent(mut self, parent: Option<&str>, north_star: bool) -> Self {
        self.parent = parent.map(Into::into);
        self.north_star = north_star;
        self
    }
}

async fn a_parent_change_that_makes_a_cycle_is_rejected_and_nothing_changes(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_metric("default", metric("ns", None), &meta()).await.unwrap();
    s.create_metric("default", metric("a", Some("ns")), &meta())
        .await
        .unwrap();
    s.create_metric("default", metric("b", Some("a")), &meta())
        .await
        .unwrap();
    let err = s
        .update_metric("default", "a", None, metric("a", Some("b")), &meta())
        .await
        .unwrap_err();
    assert_eq!(fields(err), vec!["/parent would create a cycle: a → b → a".to_owned()]);
    assert_eq!(
        s.get_metric("default", "a").await.unwrap().metric.parent.as_deref(),
        Some("ns")
    );
    assert_eq!(s.get_metric("default", "a").await.unwrap().version, 1);
}

async fn changing_the_north_star_reroots_the_tree_with_one_audit_entry(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_metric("default", metric("ns", None), &meta()).await.unwrap();
    s.create_metric("default", metric("a", Some("ns")), &meta())
        .await
        .unwrap();
    s.set_north_star("default", "a", &meta()).await.unwrap();
    let all = s.list_metrics("default").await.unwrap();
    let get = |k: &str| all.iter().find(|m| m.metric.key == k).unwrap();
    assert!(get("a").metric.north_star && get("a").metric.parent.is_none());
    assert!(!get("ns").metric.north_star);
    assert_eq!(get("ns").metric.parent.as_deref(), Some("a"));
    let audit = s
        .list_audit(&AuditFilter {
            action: Some("change_north_star".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].after.as_ref().unwrap()["north_star"], "a");
    assert!(s.verify_audit().await.unwrap().ok);
}

async fn a_metric_something_depends_on_cannot_be_deleted(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_metric("default", metric("ns", None), &meta()).await.unwrap();
    s.create_metric("default", metric("a", Some("ns")), &meta())
        .await
        .unwrap();
    let initiative = InitiativeDef {
        key: "faster-checkout".into(),
        name: "Faster checkout".into(),
        team: "payments".into(),
        owner: "ana".into(),
        description: None,
        metric: "a".into(),
        direction: Direction::Increase,
        expected_change: 0.05,
        starts_on: "2026-01-01".into(),
        ends_on: "2026-03-31".into(),
    };
    s.put_initiative("default", initiative, true, None, &meta())
        .await
        .unwrap();
    let err = s.delete_metric("default", "a", None, &meta()).await.unwrap_err();
    assert!(fields(err)[0].contains("initiatives [\"faster-checkout\"] target it"));
    let err = s.delete_metric("default", "ns", None, &meta()).await.unwrap_err();
    assert!(fields(err).iter().any(|f| f.contains("North Star cannot be deleted")));
    s.delete_initiative("default", "faster-checkout", None, &meta())
        .await
        .unwrap();
    s.delete_metric("default", "a", None, &meta()).await.unwrap();
    s.delete_metric("default", "ns", None, &meta()).await.unwrap();
    assert!(s.list_metrics("default").await.unwrap().is_empty());
}

async fn a_ratio_needs_two_existing_non_ratio_metrics(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let s = &t.store;
    s.create_metric("default", metric("ns", None), &meta()).await.unwrap();
    let mut r = metric("r", Some("ns"));
    r.aggregation = Aggregation::Ratio;
    r.numerator = Some("ns".into());
    r.denominator = Some("missing".into());
    let errors = fields(s.create_metric("default", r, &meta()).await.unwrap_err());
    assert_eq!(
        errors,
        vec![
            "/event a ratio metric has no event: it divides two metrics".to_owned(),
            "/denominator metric `missing` does not exist".to_owned()
        ]
    );
}

crate::backend_tests!(
    the_first_metric_must_be_the_north_star_and_there_is_only_one,
    a_parent_change_that_makes_a_cycle_is_rejected_and_nothing_changes,
    changing_the_north_star_reroots_the_tree_with_one_audit_entry,
    a_metric_something_depends_on_cannot_be_deleted,
    a_ratio_needs_two_existing_non_ratio_metrics,
);
