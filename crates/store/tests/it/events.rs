use sextant_store::{
    Aggregation, Appended, CupedSums, Direction, EventBatchBuilder, HOUR_MS, HourRange, MetricDef, UnitSums,
};

use crate::support::{Backend, TestStore, meta, tamper};

/// Hour 480_000 is 2024-10-04; any fixed hour will do.
const H: i64 = 480_000;

fn metric(key: &str, aggregation: Aggregation, event: &str, parent: Option<&str>) -> MetricDef {
    MetricDef {
        key: key.into(),
        name: key.into(),
        aggregation,
        event: Some(event.into()),
        numerator: None,
        denominator: None,
        good_direction: Direction::Increase,
        unit: None,
        description: None,
        owner: None,
        parent: parent.map(Into::into),
        north_star: parent.is_none(),
    }
}

async fn production_id(t: &TestStore) -> i64 {
    t.store.get_environment("default", "production").await.unwrap().id
}

async fn rollup_all(t: &TestStore) {
    loop {
        if t.store.rollup_events(2).await.unwrap().caught_up {
            break;
        }
    }
}

async fn a_retried_batch_id_is_stored_once(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    let mut b = EventBatchBuilder::default();
    b.track("buy", "u1", Some(3.0), H * HOUR_MS, None);
    let batch = b.finish(env, Some("batch-1".into()));
    let first = t
        .store
        .append_event_batches(&[batch.clone(), batch.clone()])
        .await
        .unwrap();
    assert_eq!(first, vec![Appended::Stored, Appended::Duplicate]);
    let again = t.store.append_event_batches(&[batch]).await.unwrap();
    assert_eq!(again, vec![Appended::Duplicate]);
    let totals = t.store.event_totals(Some(env)).await.unwrap();
    assert_eq!((totals.batches, totals.events), (1, 1));
}

async fn metric_sums_are_per_unit_sufficient_statistics(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    let s = &t.store;
    s.create_metric("default", metric("revenue", Aggregation::Sum, "buy", None), &meta())
        .await
        .unwrap();
    for (key, agg) in [
        ("buys", Aggregation::Count),
        ("avg", Aggregation::Mean),
        ("buyers", Aggregation::Conversion),
        ("visits", Aggregation::Count),
    ] {
        let event = if key == "visits" { "visit" } else { "buy" };
        s.create_metric("default", metric(key, agg, event, Some("revenue")), &meta())
            .await
            .unwrap();
    }
    let mut ratio = metric("per_visit", Aggregation::Ratio, "x", Some("revenue"));
    ratio.event = None;
    ratio.numerator = Some("revenue".into());
    ratio.denominator = Some("visits".into());
    s.create_metric("default", ratio, &meta()).await.unwrap();

    // u1 buys 2 + 3 (two hours), u2 buys 5, u3 only visits; u1 visits twice, u2 once.
    let at = |h: i64| h * HOUR_MS + 1;
    let mut b = EventBatchBuilder::default();
    b.track("buy", "u1", Some(2.0), at(H), None);
    b.track("visit", "u1", None, at(H), None);
    b.track("visit", "u1", None, at(H + 1), None);
    b.track("buy", "u2", Some(5.0), at(H), None);
    b.track("visit", "u2", None, at(H), None);
    b.track("visit", "u3", None, at(H + 1), None);
    s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
    let mut b = EventBatchBuilder::default();
    b.track("buy", "u1", Some(3.0), at(H + 1), None);
    s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
    rollup_all(&t).await;

    let range = HourRange { from: H, to: H + 2 };
    let sums = |m: &'static str| async move { s.metric_sums("default", "production", m, range).await.unwrap() };
    // x per unit: u1 = 5, u2 = 5, u3 = 0.
    let revenue = sums("revenue").await;
    assert_eq!((revenue.n, revenue.sum, revenue.sum_sq), (3, 10.0, 50.0));
    // counts: u1 = 2, u2 = 1, u3 = 0.
    let buys = sums("buys").await;
    assert_eq!((buys.n, buys.sum, buys.sum_sq), (3, 3.0, 5.0));
    let buyers = sums("buyers").await;
    assert_eq!((buyers.n, buyers.sum), (3, 2.0));
    // ratio: x = revenue (5, 5, 0), y = visits (2, 1, 1).
    let r = sums("per_visit").await;
    assert_eq!(
        r,
        UnitSums {
            n: 3,
            sum: 10.0,
            sum_sq: 50.0,
            sum_den: 4.0,
            sum_den_sq: 6.0,
            sum_cross: 15.0
        }
    );

    // Hourly series: hour H has u1 (2) and u2 (5); hour H+1 has u1 (3) and u3 (0).
    let series = s
        .metric_series("default", "production", "revenue", range, 1)
        .await
        .unwrap();
    let points: Vec<(i64, u64, f64)> = series.iter().map(|(h, s)| (*h, s.n, s.sum)).collect();
    assert_eq!(points, vec![(H, 2, 7.0), (H + 1, 2, 3.0)]);

    // Windows of one hour ending at H + 3: [H, H+1), [H+1, H+2), [H+2, H+3)
    // in one pass, the same sums as one query per window; the empty one is zero.
    let windows = s
        .metric_windows("default", "production", "revenue", H + 3, 1, 3)
        .await
        .unwrap();
    for (i, w) in windows.iter().take(2).enumerate() {
        let one = HourRange {
            from: H + i as i64,
            to: H + i as i64 + 1,
        };
        assert_eq!(
            *w,
            s.metric_sums("default", "production", "revenue", one).await.unwrap()
        );
    }
    assert_eq!((windows[0].n, windows[0].sum), (2, 7.0));
    assert_eq!(windows[2], UnitSums::default());
}

async fn breakdown_counts_each_unit_in_its_first_variation_from_its_exposure_on(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    let s = &t.store;
    s.create_metric("default", metric("buys", Aggregation::Count, "buy", None), &meta())
        .await
        .unwrap();
    let at = |h: i64| h * HOUR_MS + 10;
    let mut b = EventBatchBuilder::default();
    // u1 buys an hour before its exposure (not counted), then once after.
    b.track("buy", "u1", None, at(H), None);
    b.exposure("checkout", "on", "u1", at(H + 1));
    b.track("buy", "u1", None, at(H + 1) + 5, None);
    // u2 sees off, later on again: stays in `off`; buys twice.
    b.exposure("checkout", "off", "u2", at(H));
    b.exposure("checkout", "on", "u2", at(H + 1));
    b.track("buy", "u2", None, at(H), None);
    b.track("buy", "u2", None, at(H + 1), None);
    // u3 sees off and never buys.
    b.exposure("checkout", "off", "u3", at(H));
    s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
    rollup_all(&t).await;
    let rows = s
        .metric_breakdown(
            "default",
            "production",
            "buys",
            "checkout",
            HourRange { from: H, to: H + 3 },
        )
        .await
        .unwrap();
    let rows: Vec<(String, u64, f64, f64)> = rows.into_iter().map(|(v, s)| (v, s.n, s.sum, s.sum_sq)).collect();
    assert_eq!(rows, vec![("off".into(), 2, 2.0, 4.0), ("on".into(), 1, 1.0, 1.0)]);
}

async fn rollup_is_incremental_and_retention_keeps_rolled_up_values(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    let s = &t.store;
    s.create_metric("default", metric("buys", Aggregation::Count, "buy", None), &meta())
        .await
        .unwrap();
    let range = HourRange { from: H, to: H + 1 };
    for i in 0..3 {
        let mut b = EventBatchBuilder::default();
        b.track("buy", &format!("u{i}"), None, H * HOUR_MS, None);
        s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
        rollup_all(&t).await;
        let sums = s.metric_sums("default", "production", "buys", range).await.unwrap();
        assert_eq!(sums.sum, f64::from(i + 1), "each batch is added once");
    }
    // One batch not rolled up yet: retention must keep it.
    let mut b = EventBatchBuilder::default();
    b.track("buy", "late", None, H * HOUR_MS, None);
    s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
    let pruned = s.prune_events(i64::MAX).await.unwrap();
    assert_eq!(pruned, 3);
    assert_eq!(s.event_totals(None).await.unwrap().pending_batches, 1);
    rollup_all(&t).await;
    let sums = s.metric_sums("default", "production", "buys", range).await.unwrap();
    assert_eq!((sums.n, sums.sum), (4, 4.0));
}

async fn cuped_breakdown_pairs_each_units_pre_exposure_value_with_its_value_after(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    let s = &t.store;
    s.create_metric("default", metric("revenue", Aggregation::Sum, "buy", None), &meta())
        .await
        .unwrap();
    let at = |h: i64| h * HOUR_MS + 10;
    let mut b = EventBatchBuilder::default();
    // u1: 4 two days before (outside a 24 h pre-period), 3 the hour before,
    // exposed to `on` at H+2, then 5 and 1.
    b.track("buy", "u1", Some(4.0), at(H - 46), None);
    b.track("buy", "u1", Some(3.0), at(H + 1), None);
    b.exposure("checkout", "on", "u1", at(H + 2));
    b.track("buy", "u1", Some(5.0), at(H + 2) + 5, None);
    b.track("buy", "u1", Some(1.0), at(H + 3), None);
    // u2: 2 before, exposed to `on`, nothing after.
    b.track("buy", "u2", Some(2.0), at(H), None);
    b.exposure("checkout", "on", "u2", at(H + 2));
    // u3: nothing before, `off`, 7 after.
    b.exposure("checkout", "off", "u3", at(H + 2));
    b.track("buy", "u3", Some(7.0), at(H + 4), None);
    // u4: 6 before, `off`, 2 after.
    b.track("buy", "u4", Some(6.0), at(H + 1), None);
    b.exposure("checkout", "off", "u4", at(H + 2));
    b.track("buy", "u4", Some(2.0), at(H + 2), None);
    s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
    rollup_all(&t).await;
    let range = HourRange { from: H + 2, to: H + 5 };
    let rows = s
        .metric_breakdown_cuped("default", "production", "revenue", "checkout", range, 24)
        .await
        .unwrap();
    // off: (y, x) = (7, 0), (2, 6); on: (6, 3), (0, 2).
    let per_unit = |post: (f64, f64), pre: (f64, f64), cross: f64| CupedSums {
        post: UnitSums {
            n: 2,
            sum: post.0,
            sum_sq: post.1,
            ..UnitSums::default()
        },
        pre: UnitSums {
            n: 2,
            sum: pre.0,
            sum_sq: pre.1,
            ..UnitSums::default()
        },
        sum_num_pre_num: cross,
        ..CupedSums::default()
    };
    assert_eq!(
        rows,
        vec![
            ("off".into(), per_unit((9.0, 53.0), (6.0, 36.0), 12.0)),
            ("on".into(), per_unit((6.0, 36.0), (5.0, 13.0), 18.0)),
        ]
    );
    // A ratio (revenue per visit) carries both periods' numerator and
    // denominator. Visits: u1 one before, two after; u3 one after; u4 one
    // before, one after; u2 none.
    s.create_metric(
        "default",
        metric("visits", Aggregation::Count, "visit", Some("revenue")),
        &meta(),
    )
    .await
    .unwrap();
    let mut per_visit = metric("per_visit", Aggregation::Ratio, "visit", Some("revenue"));
    per_visit.event = None;
    per_visit.numerator = Some("revenue".into());
    per_visit.denominator = Some("visits".into());
    s.create_metric("default", per_visit, &meta()).await.unwrap();
    let mut b = EventBatchBuilder::default();
    for (unit, hour) in [
        ("u1", H + 1),
        ("u1", H + 2),
        ("u1", H + 3),
        ("u3", H + 4),
        ("u4", H + 1),
        ("u4", H + 2),
    ] {
        b.track("visit", unit, None, at(hour), None);
    }
    s.append_event_batches(&[b.finish(env, None)]).await.unwrap();
    rollup_all(&t).await;
    let rows = s
        .metric_breakdown_cuped("default", "production", "per_visit", "checkout", range, 24)
        .await
        .unwrap();
    // (num, den) after → before: off u3 (7, 1) → (0, 0), u4 (2, 1) → (6, 1);
    // on u1 (6, 2) → (3, 1), u2 (0, 0) → (2, 0).
    let ratio = |post: [f64; 5], pre: [f64; 5], cross: [f64; 4]| CupedSums {
        post: UnitSums {
            n: 2,
            sum: post[0],
            sum_sq: post[1],
            sum_den: post[2],
            sum_den_sq: post[3],
            sum_cross: post[4],
        },
        pre: UnitSums {
            n: 2,
            sum: pre[0],
            sum_sq: pre[1],
            sum_den: pre[2],
            sum_den_sq: pre[3],
            sum_cross: pre[4],
        },
        sum_num_pre_num: cross[0],
        sum_num_pre_den: cross[1],
        sum_den_pre_num: cross[2],
        sum_den_pre_den: cross[3],
    };
    assert_eq!(
        rows,
        vec![
            (
                "off".into(),
                ratio(
                    [9.0, 53.0, 2.0, 2.0, 9.0],
                    [6.0, 36.0, 1.0, 1.0, 6.0],
                    [12.0, 2.0, 6.0, 1.0]
                )
            ),
            (
                "on".into(),
                ratio(
                    [6.0, 36.0, 2.0, 4.0, 12.0],
                    [5.0, 13.0, 1.0, 1.0, 3.0],
                    [18.0, 6.0, 6.0, 2.0]
                )
            ),
        ]
    );
}

/// Track events (unit, event, value, hour) over three days from hour
/// `H + 5`, deterministic, with repeats in the same hour and day.
fn spread_events() -> Vec<(String, &'static str, f64, i64)> {
    let mut out = Vec::new();
    for i in 0..240_i64 {
        let unit = format!("u{}", (i * 7) % 23);
        let event = if i % 3 == 0 { "buy" } else { "visit" };
        out.push((unit, event, (i % 5) as f64, H + 5 + (i * 13) % 72));
    }
    out
}

/// The reference: per-unit sums over `[from, to)` by hand, then n (active
/// units), Σx, Σx² of `event` under `agg`.
fn reference(events: &[(String, &str, f64, i64)], event: &str, agg: Aggregation, from: i64, to: i64) -> UnitSums {
    let mut per_unit: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for (unit, e, v, h) in events {
        if *h < from || *h >= to {
            continue;
        }
        let u = per_unit.entry(unit.as_str()).or_default();
        if *e == event {
            u.0 += 1.0;
            u.1 += v;
        }
    }
    let mut s = UnitSums::default();
    for (c, v) in per_unit.values() {
        let x = match agg {
            Aggregation::Count => *c,
            Aggregation::Conversion => f64::from(u8::from(*c > 0.0)),
            _ => *v,
        };
        s.n += 1;
        s.sum += x;
        s.sum_sq += x * x;
    }
    s
}

async fn series_windows_and_sums_over_days_and_hours_match_per_unit_values_by_hand(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    let s = &t.store;
    s.create_metric("default", metric("revenue", Aggregation::Sum, "buy", None), &meta())
        .await
        .unwrap();
    s.create_metric(
        "default",
        metric("buys", Aggregation::Count, "buy", Some("revenue")),
        &meta(),
    )
    .await
    .unwrap();
    s.create_metric(
        "default",
        metric("buyers", Aggregation::Conversion, "buy", Some("revenue")),
        &meta(),
    )
    .await
    .unwrap();
    let events = spread_events();
    // Four appends with a rollup after each, so buckets and per-unit rows
    // are updated in place, not only inserted.
    for chunk in events.chunks(60) {
        let mut batch = EventBatchBuilder::default();
        for (unit, event, value, hour) in chunk {
            batch.track(event, unit, Some(*value), hour * HOUR_MS + 7, None);
        }
        s.append_event_batches(&[batch.finish(env, None)]).await.unwrap();
        rollup_all(&t).await;
    }
    check_spread_values(s, &events).await;

    // The data migration of version 5 from text units gives the same values.
    let url = t.url();
    t.store.close().await;
    tamper(
        &url,
        "CREATE TABLE uh (environment_id BIGINT NOT NULL, event TEXT NOT NULL, hour BIGINT NOT NULL,
             unit TEXT NOT NULL, events BIGINT NOT NULL, value_sum DOUBLE PRECISION NOT NULL,
             PRIMARY KEY (environment_id, event, hour, unit));
         INSERT INTO uh SELECT h.environment_id, h.event, h.hour, u.key, h.events, h.value_sum
             FROM unit_hours h JOIN units u ON u.id = h.unit;
         CREATE TABLE ex (environment_id BIGINT NOT NULL, flag TEXT NOT NULL, unit TEXT NOT NULL,
             variation TEXT NOT NULL, first_ms BIGINT NOT NULL, PRIMARY KEY (environment_id, flag, unit));
         DROP TABLE unit_hours; DROP TABLE exposures; DROP TABLE unit_days; DROP TABLE event_buckets;
         DROP TABLE units;
         ALTER TABLE uh RENAME TO unit_hours; ALTER TABLE ex RENAME TO exposures;
         DELETE FROM schema_migrations WHERE version = 5;",
    )
    .await;
    let again = sextant_store::Store::open(&url).await.unwrap();
    check_spread_values(&again, &events).await;
}

async fn check_spread_values(s: &sextant_store::Store, events: &[(String, &'static str, f64, i64)]) {
    // All three metrics in one pass, as the tree reads them.
    let all = s
        .metric_windows_of("default", "production", &["revenue", "buys", "buyers"], H + 71, 30, 2)
        .await
        .unwrap();
    for (windows, agg) in all
        .iter()
        .zip([Aggregation::Sum, Aggregation::Count, Aggregation::Conversion])
    {
        let expected = vec![
            reference(events, "buy", agg, H + 11, H + 41),
            reference(events, "buy", agg, H + 41, H + 71),
        ];
        assert_eq!(*windows, expected, "{agg:?} in one pass");
    }
    for (key, agg) in [
        ("revenue", Aggregation::Sum),
        ("buys", Aggregation::Count),
        ("buyers", Aggregation::Conversion),
    ] {
        // A range over parts of three days and all of one.
        let range = HourRange {
            from: H + 7,
            to: H + 70,
        };
        let sums = s.metric_sums("default", "production", key, range).await.unwrap();
        assert_eq!(sums, reference(events, "buy", agg, H + 7, H + 70), "{key} sums");
        for bucket in [1, 24] {
            let series = s
                .metric_series("default", "production", key, range, bucket)
                .await
                .unwrap();
            let mut expected = Vec::new();
            let mut start = range.from.div_euclid(bucket) * bucket;
            while start < range.to {
                let r = reference(
                    events,
                    "buy",
                    agg,
                    start.max(range.from),
                    (start + bucket).min(range.to),
                );
                if r.n > 0 {
                    expected.push((start, r));
                }
                start += bucket;
            }
            assert_eq!(series, expected, "{key} series of {bucket} h");
        }
        // Two windows of 30 h ending at H + 71: each over parts of days.
        let windows = s
            .metric_windows("default", "production", key, H + 71, 30, 2)
            .await
            .unwrap();
        assert_eq!(
            windows,
            vec![
                reference(events, "buy", agg, H + 11, H + 41),
                reference(events, "buy", agg, H + 41, H + 71)
            ],
            "{key} windows"
        );
    }
}

async fn a_batch_stored_as_json_before_the_binary_encoding_is_still_rolled_up(b: Backend) {
    let Some(t) = TestStore::on(b).await else { return };
    let env = production_id(&t).await;
    t.store
        .create_metric("default", metric("revenue", Aggregation::Sum, "buy", None), &meta())
        .await
        .unwrap();
    // What schema version 2 to 4 stored: a JSON array of compact arrays.
    let ms = H * HOUR_MS;
    let json = format!(r#"[[0,"buy","u1",null,2.5,{ms},{{"a":1}}],[1,"f","u1","on",null,{ms},null]]"#);
    let events = match b {
        Backend::Sqlite => format!("'{json}'"),
        Backend::Postgres => format!("convert_to('{json}', 'UTF8')"),
    };
    tamper(
        &t.url(),
        &format!(
            "INSERT INTO event_batches (environment_id, batch_id, received_ms, count, events) VALUES ({env}, 'old', 0, 2, {events})"
        ),
    )
    .await;
    // And one in today's encoding after it.
    let mut new = EventBatchBuilder::default();
    new.track("buy", "u2", Some(4.0), ms, None);
    t.store.append_event_batches(&[new.finish(env, None)]).await.unwrap();
    rollup_all(&t).await;
    let sums = t
        .store
        .metric_sums("default", "production", "revenue", HourRange { from: H, to: H + 1 })
        .await
        .unwrap();
    assert_eq!((sums.n, sums.sum), (2, 6.5));
}

crate::backend_tests!(
    series_windows_and_sums_over_days_and_hours_match_per_unit_values_by_hand,
    a_batch_stored_as_json_before_the_binary_encoding_is_still_rolled_up,
    cuped_breakdown_pairs_each_units_pre_exposure_value_with_its_value_after,
    a_retried_batch_id_is_stored_once,
    metric_sums_are_per_unit_sufficient_statistics,
    breakdown_counts_each_unit_in_its_first_variation_from_its_exposure_on,
    rollup_is_incremental_and_retention_keeps_rolled_up_values,
);
