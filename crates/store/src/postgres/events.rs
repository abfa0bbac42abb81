//! PostgreSQL: event batches, the incremental rollup, retention and metric
//! sums — the same computations as the SQLite module, in this dialect.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::PgStore;
use crate::doc::not_found;
use crate::error::{Kind, Result, StoreError};
use crate::events::{
    Appended, BucketDeltas, BucketRow, CupedSums, DAY_HOURS, Dialect, EventBatch, EventTotals, HOUR_MS, HourRange,
    MetricCols, RollupDelta, RollupProgress, UnitRow, UnitSums, appended, breakdown_sql, bucket_grain, event_index,
    parts, sums_from_buckets, sums_row, sums_sql, whole_buckets,
};
use crate::metrics::{Aggregation, MetricRecord};

/// Transaction advisory lock of the event rollup ("SEXTROLL").
pub(crate) const ROLLUP_LOCK: i64 = 0x5345_5854_524F_4C4C;

/// A metric's events and how each becomes a per-unit value.
struct Plan {
    environment_id: i64,
    x: (String, Aggregation),
    y: Option<(String, Aggregation)>,
}

fn per_unit(aggregation: Aggregation, c: &str, s: &str) -> String {
    match aggregation {
        Aggregation::Count => c.to_owned(),
        Aggregation::Conversion => format!("(CASE WHEN {c} > 0 THEN 1.0 ELSE 0.0 END)"),
        Aggregation::Sum | Aggregation::Mean | Aggregation::Ratio => s.to_owned(),
    }
}

impl Plan {
    fn x_expr(&self, c: &str, s: &str) -> String {
        per_unit(self.x.1, c, s)
    }

    fn y_expr(&self, c: &str, s: &str) -> String {
        self.y
            .as_ref()
            .map_or_else(|| "0.0".to_owned(), |(_, a)| per_unit(*a, c, s))
    }

    fn y_event(&self) -> &str {
        self.y.as_ref().map_or(&self.x.0, |(e, _)| e)
    }
}

fn sums_from(row: &PgRow) -> Result<UnitSums> {
    Ok(UnitSums {
        n: row.try_get::<i64, _>("n")?.max(0) as u64,
        sum: row.try_get("sx")?,
        sum_sq: row.try_get("sxx")?,
        sum_den: row.try_get("sy")?,
        sum_den_sq: row.try_get("syy")?,
        sum_cross: row.try_get("sxy")?,
    })
}

/// Per-unit sufficient statistics of `plan` over `range` in buckets (see
/// `metric_series`), from per-unit rows: whole days from `unit_days`, the
/// hours around them from `unit_hours`.
async fn per_unit_series(
    conn: &mut PgConnection,
    plan: &Plan,
    range: HourRange,
    bucket_hours: i64,
    origin: i64,
) -> Result<Vec<(i64, UnitSums)>> {
    Ok(by_bucket(conn, std::slice::from_ref(plan), range, bucket_hours, origin)
        .await?
        .into_iter()
        .filter_map(|(b, mut sums)| sums.pop().map(|s| (b, s)))
        .collect())
}

/// [`per_unit_series`] of several metrics (of one environment) in one
/// pass over the per-unit rows: each bucket's start and each metric's sums.
async fn by_bucket(
    conn: &mut PgConnection,
    plans: &[Plan],
    range: HourRange,
    bucket_hours: i64,
    origin: i64,
) -> Result<Vec<(i64, Vec<UnitSums>)>> {
    let parts = parts(range, bucket_hours, origin);
    let Some(first) = plans.first().filter(|_| !parts.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    let cols: Vec<MetricCols> = plans
        .iter()
        .map(|p| MetricCols {
            x: (event_index(&mut events, &p.x.0), p.x.1),
            y: p.y.as_ref().map(|(e, a)| (event_index(&mut events, e), *a)),
        })
        .collect();
    let sql = sums_sql(Dialect::Postgres, &parts, events.len(), &cols);
    let mut q = sqlx::query(&sql).bind(first.environment_id);
    for e in &events {
        q = q.bind(e);
    }
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            let (b, sums) = sums_row(row, plans.len())?;
            Ok((origin + b * bucket_hours, sums))
        })
        .collect()
}

/// Adds the ids of `wanted` (borrowed from `keys`, sorted) found in
/// `units` to `ids`.
async fn unit_ids<'k>(
    conn: &mut PgConnection,
    wanted: &[&'k str],
    keys: &[&'k str],
    ids: &mut HashMap<&'k str, i64>,
) -> Result<()> {
    let rows = sqlx::query("SELECT id, key FROM units WHERE key = ANY($1)")
        .bind(wanted)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let key: &str = row.try_get(1)?;
        if let Ok(i) = keys.binary_search(&key) {
            ids.insert(keys[i], row.try_get(0)?);
        }
    }
    Ok(())
}

/// Upserts per-unit rows into `table` (time column `column`) in one
/// statement and records each row's change of its bucket's totals from
/// the sums it returns.
async fn upsert_unit_rows(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    rows: &[UnitRow<'_>],
    grain: i64,
    buckets: &mut BucketDeltas,
) -> Result<()> {
    let env: Vec<i64> = rows.iter().map(|r| r.environment_id).collect();
    let event: Vec<&str> = rows.iter().map(|r| r.event).collect();
    let time: Vec<i64> = rows.iter().map(|r| r.time).collect();
    let unit: Vec<i64> = rows.iter().map(|r| r.unit).collect();
    let count: Vec<i64> = rows.iter().map(|r| r.events).collect();
    let sum: Vec<f64> = rows.iter().map(|r| r.value_sum).collect();
    // sql-format: the table and column are fixed identifiers; values are bound.
    let sql = format!(
        "INSERT INTO {table} (environment_id, event, {column}, unit, events, value_sum)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::float8[])
         ON CONFLICT (environment_id, event, {column}, unit) DO UPDATE
         SET events = {table}.events + excluded.events, value_sum = {table}.value_sum + excluded.value_sum
         RETURNING environment_id, event, {column}, unit, events, value_sum"
    );
    let returned = sqlx::query(&sql)
        .bind(&env)
        .bind(&event)
        .bind(&time)
        .bind(&unit)
        .bind(&count)
        .bind(&sum)
        .fetch_all(&mut *conn)
        .await?;
    for row in returned {
        let event: &str = row.try_get(1)?;
        let key = (row.try_get(0)?, event, row.try_get(2)?, row.try_get(3)?);
        buckets.add(grain, rows, key, (row.try_get(4)?, row.try_get(5)?))?;
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn append_event_batches(&self, batches: &[EventBatch]) -> Result<Vec<Appended>> {
        let received = chrono::Utc::now().timestamp_millis();
        // The write lock orders ids with commits (see the migration).
        let (_guard, mut tx) = self.begin_write().await?;
        // One multi-row INSERT (column arrays through UNNEST) for the whole
        // group; RETURNING names the rows stored (a conflicting `batch_id`
        // is skipped by DO NOTHING).
        let envs: Vec<i64> = batches.iter().map(|b| b.environment_id).collect();
        let ids: Vec<Option<&str>> = batches.iter().map(|b| b.batch_id.as_deref()).collect();
        let counts: Vec<i32> = batches.iter().map(|b| b.count as i32).collect();
        let events: Vec<&[u8]> = batches.iter().map(|b| b.events.as_slice()).collect();
        let stored = sqlx::query(
            "INSERT INTO event_batches (environment_id, batch_id, received_ms, count, events)
             SELECT e, b, $3, c, v FROM UNNEST($1::bigint[], $2::text[], $4::int[], $5::bytea[]) AS t(e, b, c, v)
             ON CONFLICT DO NOTHING RETURNING environment_id, batch_id",
        )
        .bind(&envs)
        .bind(&ids)
        .bind(received)
        .bind(&counts)
        .bind(&events)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<Option<String>, _>(1)?)))
        .collect::<Result<Vec<_>>>()?;
        let out = appended(batches, stored);
        // synchronous_commit (on by default) makes the commit durable.
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn rollup_events(&self, max_batches: i64) -> Result<RollupProgress> {
        loop {
            // Read and aggregate before taking the write lock: stored batches
            // never change, and appends commit ids in order under the lock, so
            // a committed id is never followed by a smaller one. The cursor is
            // checked again under the lock (another replica may have rolled up).
            let last: i64 = sqlx::query("SELECT last_batch FROM event_rollup_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            let rows =
                sqlx::query("SELECT id, environment_id, events FROM event_batches WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(last)
                    .bind(max_batches.max(1))
                    .fetch_all(&self.pool)
                    .await?;
            let Some(upto) = rows.last().map(|r| r.try_get::<i64, _>("id")).transpose()? else {
                return Ok(RollupProgress {
                    caught_up: true,
                    ..RollupProgress::default()
                });
            };
            let batches: Vec<(i64, Vec<u8>)> = rows
                .iter()
                .map(|r| Ok((r.try_get("environment_id")?, r.try_get("events")?)))
                .collect::<Result<_>>()?;
            drop(rows);
            let mut delta = RollupDelta::default();
            for (env, events) in &batches {
                delta.add_batch(*env, events)?;
            }
            // A unit keeps its id forever: known ones are looked up without the lock.
            let keys = delta.unit_keys();
            let mut ids = HashMap::with_capacity(keys.len());
            {
                let mut conn = self.pool.acquire().await?;
                unit_ids(&mut conn, &keys, &keys, &mut ids).await?;
            }

            // Not the workspace write lock: the rollup writes only the rollup
            // tables and its cursor, which no other write reads, so appends
            // (and admin writes) go on while it upserts. Its own lock keeps
            // replicas' rollups one at a time.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ROLLUP_LOCK)
                .execute(&mut *tx)
                .await?;
            let now: i64 = sqlx::query("SELECT last_batch FROM event_rollup_state WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if now != last {
                // Another replica rolled these batches up meanwhile: read again (the lock is
                // released first).
                continue;
            }
            let missing: Vec<&str> = keys.iter().copied().filter(|k| !ids.contains_key(k)).collect();
            if !missing.is_empty() {
                sqlx::query("INSERT INTO units (key) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING")
                    .bind(&missing)
                    .execute(&mut *tx)
                    .await?;
                unit_ids(&mut tx, &missing, &keys, &mut ids).await?;
            }
            let rows = delta.rows(&ids)?;
            let mut buckets = BucketDeltas::default();
            upsert_unit_rows(&mut tx, "unit_hours", "hour", &rows.hours, 1, &mut buckets).await?;
            upsert_unit_rows(&mut tx, "unit_days", "day", &rows.days, DAY_HOURS, &mut buckets).await?;
            let sorted = buckets.sorted();
            let mut b_env = Vec::with_capacity(sorted.len());
            let mut b_event = Vec::with_capacity(sorted.len());
            let mut b_grain = Vec::with_capacity(sorted.len());
            let mut b_bucket = Vec::with_capacity(sorted.len());
            let mut b_units = Vec::with_capacity(sorted.len());
            let mut b_events = Vec::with_capacity(sorted.len());
            let mut b_events_sq = Vec::with_capacity(sorted.len());
            let mut b_sum = Vec::with_capacity(sorted.len());
            let mut b_sq = Vec::with_capacity(sorted.len());
            for ((env, event, grain, bucket), d) in &sorted {
                b_env.push(*env);
                b_event.push(event.as_str());
                b_grain.push(*grain as i32);
                b_bucket.push(*bucket);
                b_units.push(d.units);
                b_events.push(d.events);
                b_events_sq.push(d.events_sq);
                b_sum.push(d.value_sum);
                b_sq.push(d.value_sq);
            }
            sqlx::query(
                "INSERT INTO event_buckets
                     (environment_id, event, grain, bucket, units, events, events_sq, value_sum, value_sq)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[],
                                      $7::bigint[], $8::float8[], $9::float8[])
                 ON CONFLICT (environment_id, event, grain, bucket) DO UPDATE
                 SET units = event_buckets.units + excluded.units,
                     events = event_buckets.events + excluded.events,
                     events_sq = event_buckets.events_sq + excluded.events_sq,
                     value_sum = event_buckets.value_sum + excluded.value_sum,
                     value_sq = event_buckets.value_sq + excluded.value_sq",
            )
            .bind(&b_env)
            .bind(&b_event)
            .bind(&b_grain)
            .bind(&b_bucket)
            .bind(&b_units)
            .bind(&b_events)
            .bind(&b_events_sq)
            .bind(&b_sum)
            .bind(&b_sq)
            .execute(&mut *tx)
            .await?;
            let exposures = &rows.exposures;
            let x_env: Vec<i64> = exposures.iter().map(|e| e.environment_id).collect();
            let x_flag: Vec<&str> = exposures.iter().map(|e| e.flag).collect();
            let x_unit: Vec<i64> = exposures.iter().map(|e| e.unit).collect();
            let x_variation: Vec<&str> = exposures.iter().map(|e| e.variation).collect();
            let x_first: Vec<i64> = exposures.iter().map(|e| e.first_ms).collect();
            sqlx::query(
                "INSERT INTO exposures (environment_id, flag, unit, variation, first_ms)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])
                 ON CONFLICT (environment_id, flag, unit) DO UPDATE
                 SET variation = CASE WHEN excluded.first_ms < exposures.first_ms
                                      THEN excluded.variation ELSE exposures.variation END,
                     first_ms = LEAST(exposures.first_ms, excluded.first_ms)",
            )
            .bind(&x_env)
            .bind(&x_flag)
            .bind(&x_unit)
            .bind(&x_variation)
            .bind(&x_first)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE event_rollup_state SET last_batch = $1 WHERE id = 1")
                .bind(upto)
                .execute(&mut *tx)
                .await?;
            let more = sqlx::query("SELECT 1 FROM event_batches WHERE id > $1 LIMIT 1")
                .bind(upto)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            tx.commit().await?;
            return Ok(RollupProgress {
                batches: batches.len() as u64,
                events: delta.events,
                caught_up: !more,
            });
        }
    }

    pub(crate) async fn prune_events(&self, before_ms: i64) -> Result<u64> {
        let (_guard, mut tx) = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM event_batches WHERE received_ms < $1
               AND id <= (SELECT last_batch FROM event_rollup_state WHERE id = 1)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn event_totals(&self, environment_id: Option<i64>) -> Result<EventTotals> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS batches, COALESCE(SUM(count), 0)::bigint AS events,
                    COUNT(*) FILTER (WHERE id > (SELECT last_batch FROM event_rollup_state WHERE id = 1)) AS pending
             FROM event_batches WHERE $1::bigint IS NULL OR environment_id = $1",
        )
        .bind(environment_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(EventTotals {
            batches: row.try_get("batches")?,
            events: row.try_get("events")?,
            pending_batches: row.try_get("pending")?,
        })
    }

    async fn plan(conn: &mut PgConnection, ws: &str, env: &str, key: &str) -> Result<Plan> {
        let ws_row = Self::ws_row(conn, ws).await?;
        let environment_id: i64 = sqlx::query("SELECT id FROM environments WHERE workspace_id = $1 AND key = $2")
            .bind(ws_row.id)
            .bind(env)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| not_found(Kind::Environment, env))?
            .try_get(0)?;
        let metrics = Self::metric_rows(conn, ws_row.id).await?;
        let find = |k: &str| -> Result<&MetricRecord> {
            metrics
                .iter()
                .find(|m| m.metric.key == k)
                .ok_or_else(|| not_found(Kind::Metric, k))
        };
        let part = |m: &MetricRecord| -> Result<(String, Aggregation)> {
            let event = m
                .metric
                .event
                .clone()
                .ok_or_else(|| StoreError::Corrupt(format!("metric `{}` has no event", m.metric.key)))?;
            Ok((event, m.metric.aggregation))
        };
        let m = find(key)?;
        if m.metric.aggregation == Aggregation::Ratio {
            let num = find(m.metric.numerator.as_deref().unwrap_or_default())?;
            let den = find(m.metric.denominator.as_deref().unwrap_or_default())?;
            Ok(Plan {
                environment_id,
                x: part(num)?,
                y: Some(part(den)?),
            })
        } else {
            Ok(Plan {
                environment_id,
                x: part(m)?,
                y: None,
            })
        }
    }

    pub(crate) async fn metric_sums(&self, ws: &str, env: &str, metric: &str, range: HourRange) -> Result<UnitSums> {
        let mut series = self.metric_series(ws, env, metric, range, 0, 0).await?;
        Ok(series.pop().map(|(_, s)| s).unwrap_or_default())
    }

    /// As on SQLite: hourly and daily series of one-event metrics from
    /// `event_buckets` (per-unit rows for a partial first and last day),
    /// the rest from per-unit rows, whole days from `unit_days`.
    pub(crate) async fn metric_series(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        range: HourRange,
        bucket_hours: i64,
        origin: i64,
    ) -> Result<Vec<(i64, UnitSums)>> {
        let mut conn = self.pool.acquire().await?;
        let plan = Self::plan(&mut conn, ws, env, metric).await?;
        let Some(grain) = bucket_grain(bucket_hours, origin).filter(|_| plan.y.is_none()) else {
            return per_unit_series(&mut conn, &plan, range, bucket_hours, origin).await;
        };
        let (first, end, head, tail) = whole_buckets(range, grain);
        let mut out = Vec::new();
        if let Some(head) = head {
            out.extend(per_unit_series(&mut conn, &plan, head, grain, 0).await?);
        }
        if first < end {
            let rows = sqlx::query(
                "SELECT bucket, event, units, events, events_sq, value_sum, value_sq FROM event_buckets
                 WHERE environment_id = $1 AND event IN ('', $2) AND grain = $3 AND bucket >= $4 AND bucket < $5
                 ORDER BY bucket, event",
            )
            .bind(plan.environment_id)
            .bind(&plan.x.0)
            .bind(grain as i32)
            .bind(first)
            .bind(end)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(BucketRow {
                    bucket: r.try_get(0)?,
                    event: r.try_get(1)?,
                    units: r.try_get(2)?,
                    events: r.try_get(3)?,
                    events_sq: r.try_get(4)?,
                    value_sum: r.try_get(5)?,
                    value_sq: r.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            out.extend(sums_from_buckets(&rows, &plan.x.0, plan.x.1, grain));
        }
        if let Some(tail) = tail {
            out.extend(per_unit_series(&mut conn, &plan, tail, grain, 0).await?);
        }
        Ok(out)
    }

    /// Per-unit sums of several metrics of one environment, per bucket
    /// (see `metric_series`), in one pass over the per-unit rows.
    pub(crate) async fn metrics_by_bucket(
        &self,
        ws: &str,
        env: &str,
        metrics: &[&str],
        range: HourRange,
        bucket_hours: i64,
        origin: i64,
    ) -> Result<Vec<(i64, Vec<UnitSums>)>> {
        let mut conn = self.pool.acquire().await?;
        let mut plans = Vec::with_capacity(metrics.len());
        for metric in metrics {
            plans.push(Self::plan(&mut conn, ws, env, metric).await?);
        }
        by_bucket(&mut conn, &plans, range, bucket_hours, origin).await
    }

    pub(crate) async fn metric_breakdown(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        flag: &str,
        range: HourRange,
    ) -> Result<Vec<(String, UnitSums)>> {
        let mut conn = self.pool.acquire().await?;
        let plan = Self::plan(&mut conn, ws, env, metric).await?;
        let sql = breakdown_sql(Dialect::Postgres, plan.x.1, plan.y.as_ref().map(|(_, a)| *a));
        let query = sqlx::query(&sql)
            .bind(plan.environment_id)
            .bind(range.from)
            .bind(range.to)
            .bind(&plan.x.0)
            .bind(plan.y_event())
            .bind(flag);
        let rows = fetch_without_nested_loops(&mut conn, query).await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>("b")?, sums_from(row)?)))
            .collect()
    }

    pub(crate) async fn metric_breakdown_cuped(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        flag: &str,
        range: HourRange,
        pre_hours: i64,
    ) -> Result<Vec<(String, CupedSums)>> {
        let mut conn = self.pool.acquire().await?;
        let plan = Self::plan(&mut conn, ws, env, metric).await?;
        // As on SQLite: post from the hour of first exposure, pre the
        // `pre_hours` hours before it; per unit and period the numerator
        // (c1, s1) and a ratio's denominator (c2, s2).
        let per_unit_sums = |period: &str| {
            // sql-format: `period` is one of the two fixed conditions below; values are bound.
            format!(
                "SELECT m.unit,
                        COALESCE(SUM(CASE WHEN m.event = $4 THEN m.events END), 0)::float8 AS c1,
                        COALESCE(SUM(CASE WHEN m.event = $4 THEN m.value_sum END), 0)::float8 AS s1,
                        COALESCE(SUM(CASE WHEN m.event = $5 THEN m.events END), 0)::float8 AS c2,
                        COALESCE(SUM(CASE WHEN m.event = $5 THEN m.value_sum END), 0)::float8 AS s2
                 FROM unit_hours m JOIN exposures e
                      ON e.environment_id = m.environment_id AND e.flag = $6 AND e.unit = m.unit
                 WHERE m.environment_id = $1 AND m.event IN ($4, $5) AND {period}
                 GROUP BY m.unit"
            )
        };
        let sum = |expr: &str, name: &str| format!("COALESCE(SUM({expr}), 0)::float8 AS {name}");
        let sums = [
            ("yn", "syn"),
            ("yn * yn", "synn"),
            ("yd", "syd"),
            ("yd * yd", "sydd"),
            ("yn * yd", "synd"),
            ("xn", "sxn"),
            ("xn * xn", "sxnn"),
            ("xd", "sxd"),
            ("xd * xd", "sxdd"),
            ("xn * xd", "sxnd"),
            ("yn * xn", "synxn"),
            ("yn * xd", "synxd"),
            ("yd * xn", "sydxn"),
            ("yd * xd", "sydxd"),
        ]
        .map(|(e, n)| sum(e, n))
        .join(", ");
        // sql-format: fixed fragments chosen by aggregation; event names and ranges are bound.
        let sql = format!(
            "WITH post AS ({post}), pre AS ({pre})
             SELECT variation AS b, COUNT(*) AS n, {sums}
             FROM (SELECT e.variation, {yn}::float8 AS yn, {yd}::float8 AS yd, {xn}::float8 AS xn,
                          {xd}::float8 AS xd
                   FROM exposures e LEFT JOIN post p ON p.unit = e.unit LEFT JOIN pre q ON q.unit = e.unit
                   WHERE e.environment_id = $1 AND e.flag = $6 AND e.first_ms / {HOUR_MS} < $3) v
             GROUP BY variation ORDER BY variation",
            post = per_unit_sums(&format!(
                "m.hour >= $2 AND m.hour < $3 AND m.hour >= e.first_ms / {HOUR_MS}"
            )),
            pre = per_unit_sums(&format!(
                "m.hour < e.first_ms / {HOUR_MS} AND m.hour >= e.first_ms / {HOUR_MS} - $7"
            )),
            yn = plan.x_expr("COALESCE(p.c1, 0)", "COALESCE(p.s1, 0)"),
            yd = plan.y_expr("COALESCE(p.c2, 0)", "COALESCE(p.s2, 0)"),
            xn = plan.x_expr("COALESCE(q.c1, 0)", "COALESCE(q.s1, 0)"),
            xd = plan.y_expr("COALESCE(q.c2, 0)", "COALESCE(q.s2, 0)"),
        );
        let query = sqlx::query(&sql)
            .bind(plan.environment_id)
            .bind(range.from)
            .bind(range.to)
            .bind(&plan.x.0)
            .bind(plan.y_event())
            .bind(flag)
            .bind(pre_hours);
        let rows = fetch_without_nested_loops(&mut conn, query).await?;
        rows.iter()
            .map(|row| {
                let n = row.try_get::<i64, _>("n")?.max(0) as u64;
                let get = |c: &str| row.try_get::<f64, _>(c);
                let period = |p: &str| -> Result<UnitSums> {
                    Ok(UnitSums {
                        n,
                        sum: get(&format!("s{p}n"))?,
                        sum_sq: get(&format!("s{p}nn"))?,
                        sum_den: get(&format!("s{p}d"))?,
                        sum_den_sq: get(&format!("s{p}dd"))?,
                        sum_cross: get(&format!("s{p}nd"))?,
                    })
                };
                let sums = CupedSums {
                    post: period("y")?,
                    pre: period("x")?,
                    sum_num_pre_num: get("synxn")?,
                    sum_num_pre_den: get("synxd")?,
                    sum_den_pre_num: get("sydxn")?,
                    sum_den_pre_den: get("sydxd")?,
                };
                Ok((row.try_get::<String, _>("b")?, sums))
            })
            .collect()
    }
}

/// Runs a per-arm analysis read with nested loops forbidden. Without
/// statistics (tables not analysed yet) the planner guesses 200 units per
/// grouped side and joins it to every exposure with a nested loop:
/// quadratic in units (minutes at 20,000). Hash joins are linear whatever
/// the estimates; `SET LOCAL` ends with the read's transaction.
async fn fetch_without_nested_loops(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<PgRow>> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SET LOCAL enable_nestloop = off").execute(&mut *tx).await?;
    let rows = query.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}
