//! SQLite: event batches, the incremental rollup, retention and metric
//! sums. The rollup and every metric value are computed here, in SQL.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};

use super::{SqliteStore, not_found};
use crate::error::{Kind, Result};
use crate::events::{
    Appended, BucketDeltas, BucketRow, CupedSums, DAY_HOURS, Dialect, EventBatch, EventTotals, HOUR_MS, HourRange,
    MetricCols, RollupDelta, RollupProgress, UnitRow, UnitSums, appended, breakdown_sql, bucket_grain, event_index,
    parts, sums_from_buckets, sums_row, sums_sql, whole_buckets,
};
use crate::metrics::{Aggregation, MetricRecord};

/// What a metric's SQL needs: its event(s) and how each becomes a per-unit value.
struct Plan {
    environment_id: i64,
    /// (event, aggregation) of the value, or of a ratio's numerator.
    x: (String, Aggregation),
    /// A ratio's denominator.
    y: Option<(String, Aggregation)>,
}

/// The per-unit value of a metric from that unit's count `c` and Σvalue `s`.
fn per_unit(aggregation: Aggregation, c: &str, s: &str) -> String {
    match aggregation {
        Aggregation::Count => c.to_owned(),
        Aggregation::Conversion => format!("({c} > 0)"),
        Aggregation::Sum | Aggregation::Mean | Aggregation::Ratio => s.to_owned(),
    }
}

impl Plan {
    fn x_expr(&self) -> String {
        per_unit(self.x.1, "c1", "s1")
    }

    fn y_expr(&self) -> String {
        self.y
            .as_ref()
            .map_or_else(|| "0".to_owned(), |(_, a)| per_unit(*a, "c2", "s2"))
    }

    fn y_event(&self) -> &str {
        self.y.as_ref().map_or(&self.x.0, |(e, _)| e)
    }
}

fn sums_from(row: &sqlx::sqlite::SqliteRow) -> Result<UnitSums> {
    Ok(UnitSums {
        n: row.try_get::<i64, _>("n")?.max(0) as u64,
        sum: row.try_get("sx")?,
        sum_sq: row.try_get("sxx")?,
        sum_den: row.try_get("sy")?,
        sum_den_sq: row.try_get("syy")?,
        sum_cross: row.try_get("sxy")?,
    })
}

/// Rows per multi-row upsert (SQLite allows 32,766 bound parameters).
const ROWS_PER_INSERT: usize = 512;

/// Splits `n` rows into statements of 512, then 32, then 1 row: few
/// distinct statement texts, so each stays prepared in sqlx's cache.
fn chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let left = n - at;
        let size = [ROWS_PER_INSERT, 32, 1].into_iter().find(|s| *s <= left)?;
        at += size;
        Some(at - size..at)
    })
}

/// `head` + `rows` × `row` (comma separated) + `tail`.
fn upsert_sql(head: &str, row: &str, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 1) + tail.len());
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    sql
}

/// Per-unit sufficient statistics of `plan` over `range` in buckets (see
/// `metric_series`), from per-unit rows: whole days from `unit_days`, the
/// hours around them from `unit_hours`.
async fn per_unit_series(
    conn: &mut SqliteConnection,
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
    conn: &mut SqliteConnection,
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
    let sql = sums_sql(Dialect::Sqlite, &parts, events.len(), &cols);
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
    conn: &mut SqliteConnection,
    wanted: &[&'k str],
    keys: &[&'k str],
    ids: &mut HashMap<&'k str, i64>,
) -> Result<()> {
    for chunk in chunks(wanted.len()) {
        let part = &wanted[chunk];
        let sql = upsert_sql("SELECT id, key FROM units WHERE key IN (", "?", part.len(), ")");
        let mut q = sqlx::query(&sql);
        for key in part {
            q = q.bind(*key);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let key: &str = row.try_get(1)?;
            if let Ok(i) = keys.binary_search(&key) {
                ids.insert(keys[i], row.try_get(0)?);
            }
        }
    }
    Ok(())
}

/// Upserts per-unit rows into `table` (time column `column`) and records
/// each row's change of its bucket's totals from the sums it returns.
async fn upsert_unit_rows(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
    rows: &[UnitRow<'_>],
    grain: i64,
    buckets: &mut BucketDeltas,
) -> Result<()> {
    // sql-format: the table and column are fixed identifiers; values are bound.
    let head = format!("INSERT INTO {table} (environment_id, event, {column}, unit, events, value_sum) VALUES ");
    // sql-format: the column is a fixed identifier.
    let tail = format!(
        " ON CONFLICT (environment_id, event, {column}, unit) DO UPDATE
          SET events = events + excluded.events, value_sum = value_sum + excluded.value_sum
          RETURNING environment_id, event, {column}, unit, events, value_sum"
    );
    for chunk in chunks(rows.len()) {
        let part = &rows[chunk];
        let sql = upsert_sql(&head, "(?,?,?,?,?,?)", part.len(), &tail);
        let mut q = sqlx::query(&sql);
        for r in part {
            q = q
                .bind(r.environment_id)
                .bind(r.event)
                .bind(r.time)
                .bind(r.unit)
                .bind(r.events)
                .bind(r.value_sum);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let event: &str = row.try_get(1)?;
            let key = (row.try_get(0)?, event, row.try_get(2)?, row.try_get(3)?);
            buckets.add(grain, rows, key, (row.try_get(4)?, row.try_get(5)?))?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn append_event_batches(&self, batches: &[EventBatch]) -> Result<Vec<Appended>> {
        let received = chrono::Utc::now().timestamp_millis();
        let _guard = self.write.lock().await;
        let mut conn = self.pool.acquire().await?;
        // The pool runs `synchronous = NORMAL` (WAL synced at checkpoints);
        // an acknowledged event must survive power loss, so this commit
        // syncs the WAL. Group commit amortises the fsync.
        sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
        let result = async {
            let mut tx = conn.begin().await?;
            let mut out = Vec::with_capacity(batches.len());
            // Multi-row INSERTs; RETURNING names the rows actually stored
            // (a conflicting `batch_id` is skipped by DO NOTHING).
            for chunk in chunks(batches.len()) {
                let rows = &batches[chunk];
                let sql = upsert_sql(
                    "INSERT INTO event_batches (environment_id, batch_id, received_ms, count, events) VALUES ",
                    "(?,?,?,?,?)",
                    rows.len(),
                    " ON CONFLICT DO NOTHING RETURNING environment_id, batch_id",
                );
                let mut q = sqlx::query(&sql);
                for b in rows {
                    q = q
                        .bind(b.environment_id)
                        .bind(&b.batch_id)
                        .bind(received)
                        .bind(i64::from(b.count))
                        .bind(&b.events);
                }
                let stored = q
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<Option<String>, _>(1)?)))
                    .collect::<Result<Vec<_>>>()?;
                out.extend(appended(rows, stored));
            }
            tx.commit().await?;
            Ok(out)
        }
        .await;
        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
        result
    }

    pub(crate) async fn rollup_events(&self, max_batches: i64) -> Result<RollupProgress> {
        loop {
            // Read and aggregate without the write lock: stored batches never
            // change and, in WAL mode, reading does not block the writer, so
            // ingestion commits go on meanwhile. Ids are assigned under the
            // one writer, so a committed id is never followed by a smaller one.
            let last: i64 = sqlx::query("SELECT last_batch FROM event_rollup_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            let rows =
                sqlx::query("SELECT id, environment_id, events FROM event_batches WHERE id > ? ORDER BY id LIMIT ?")
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

            let _guard = self.write.lock().await;
            let mut tx = self.pool.begin().await?;
            let now: i64 = sqlx::query("SELECT last_batch FROM event_rollup_state WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if now != last {
                // Another rollup took these batches meanwhile: read again (the lock is
                // released first).
                continue;
            }
            let missing: Vec<&str> = keys.iter().copied().filter(|k| !ids.contains_key(k)).collect();
            for chunk in chunks(missing.len()) {
                let part = &missing[chunk];
                let sql = upsert_sql(
                    "INSERT INTO units (key) VALUES ",
                    "(?)",
                    part.len(),
                    " ON CONFLICT DO NOTHING",
                );
                let mut q = sqlx::query(&sql);
                for key in part {
                    q = q.bind(*key);
                }
                q.execute(&mut *tx).await?;
            }
            unit_ids(&mut tx, &missing, &keys, &mut ids).await?;
            let rows = delta.rows(&ids)?;
            let mut buckets = BucketDeltas::default();
            upsert_unit_rows(&mut tx, "unit_hours", "hour", &rows.hours, 1, &mut buckets).await?;
            upsert_unit_rows(&mut tx, "unit_days", "day", &rows.days, DAY_HOURS, &mut buckets).await?;
            let sorted = buckets.sorted();
            for chunk in chunks(sorted.len()) {
                let part = &sorted[chunk];
                let sql = upsert_sql(
                    "INSERT INTO event_buckets
                     (environment_id, event, grain, bucket, units, events, events_sq, value_sum, value_sq) VALUES ",
                    "(?,?,?,?,?,?,?,?,?)",
                    part.len(),
                    " ON CONFLICT (environment_id, event, grain, bucket) DO UPDATE
                      SET units = units + excluded.units, events = events + excluded.events,
                          events_sq = events_sq + excluded.events_sq, value_sum = value_sum + excluded.value_sum,
                          value_sq = value_sq + excluded.value_sq",
                );
                let mut q = sqlx::query(&sql);
                for ((env, event, grain, bucket), d) in part {
                    q = q
                        .bind(*env)
                        .bind(event.as_str())
                        .bind(*grain)
                        .bind(*bucket)
                        .bind(d.units)
                        .bind(d.events)
                        .bind(d.events_sq)
                        .bind(d.value_sum)
                        .bind(d.value_sq);
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in chunks(rows.exposures.len()) {
                let part = &rows.exposures[chunk];
                let sql = upsert_sql(
                    "INSERT INTO exposures (environment_id, flag, unit, variation, first_ms) VALUES ",
                    "(?,?,?,?,?)",
                    part.len(),
                    " ON CONFLICT (environment_id, flag, unit) DO UPDATE
                      SET variation = CASE WHEN excluded.first_ms < first_ms THEN excluded.variation ELSE variation END,
                          first_ms = MIN(first_ms, excluded.first_ms)",
                );
                let mut q = sqlx::query(&sql);
                for e in part {
                    q = q
                        .bind(e.environment_id)
                        .bind(e.flag)
                        .bind(e.unit)
                        .bind(e.variation)
                        .bind(e.first_ms);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE event_rollup_state SET last_batch = ? WHERE id = 1")
                .bind(upto)
                .execute(&mut *tx)
                .await?;
            let more = sqlx::query("SELECT 1 FROM event_batches WHERE id > ? LIMIT 1")
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
        let _guard = self.write.lock().await;
        let done = sqlx::query(
            "DELETE FROM event_batches WHERE received_ms < ?
               AND id <= (SELECT last_batch FROM event_rollup_state WHERE id = 1)",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn event_totals(&self, environment_id: Option<i64>) -> Result<EventTotals> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS batches, TOTAL(count) AS events,
                    COUNT(*) FILTER (WHERE id > (SELECT last_batch FROM event_rollup_state WHERE id = 1)) AS pending
             FROM event_batches WHERE ?1 IS NULL OR environment_id = ?1",
        )
        .bind(environment_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(EventTotals {
            batches: row.try_get("batches")?,
            events: row.try_get::<f64, _>("events")? as i64,
            pending_batches: row.try_get("pending")?,
        })
    }

    /// The environment id and the events of a metric (and a ratio's parts).
    async fn plan(conn: &mut SqliteConnection, ws: &str, env: &str, key: &str) -> Result<Plan> {
        let ws_row = Self::ws_row(conn, ws).await?;
        let environment_id: i64 = sqlx::query("SELECT id FROM environments WHERE workspace_id = ? AND key = ?")
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
                .ok_or_else(|| crate::StoreError::Corrupt(format!("metric `{}` has no event", m.metric.key)))?;
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

    /// `bucket_hours == 0`: one bucket for the whole range; otherwise
    /// buckets start at `origin` + a multiple of `bucket_hours`. Hourly
    /// and daily series of one-event metrics come from `event_buckets`
    /// (plus per-unit rows for a partial first and last day); the rest
    /// from per-unit rows, whole days from `unit_days`.
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
                 WHERE environment_id = ?1 AND event IN ('', ?2) AND grain = ?3 AND bucket >= ?4 AND bucket < ?5
                 ORDER BY bucket, event",
            )
            .bind(plan.environment_id)
            .bind(&plan.x.0)
            .bind(grain)
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
        let sql = breakdown_sql(Dialect::Sqlite, plan.x.1, plan.y.as_ref().map(|(_, a)| *a));
        let rows = sqlx::query(&sql)
            .bind(plan.environment_id)
            .bind(range.from)
            .bind(range.to)
            .bind(&plan.x.0)
            .bind(plan.y_event())
            .bind(flag)
            .fetch_all(&mut *conn)
            .await?;
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
        // Post: from the hour of first exposure (in the range); pre: the
        // `pre_hours` hours before it. Per unit and period the numerator
        // (c1, s1) and a ratio's denominator (c2, s2), as in `metric_breakdown`.
        let per_unit_sums = |period: &str| {
            // sql-format: `period` is one of the two fixed conditions below; values are bound.
            format!(
                "SELECT m.unit AS unit,
                        TOTAL(CASE WHEN m.event = ?4 THEN m.events END) AS c1,
                        TOTAL(CASE WHEN m.event = ?4 THEN m.value_sum END) AS s1,
                        TOTAL(CASE WHEN m.event = ?5 THEN m.events END) AS c2,
                        TOTAL(CASE WHEN m.event = ?5 THEN m.value_sum END) AS s2
                 FROM unit_hours m CROSS JOIN exposures e
                      ON e.environment_id = m.environment_id AND e.flag = ?6 AND e.unit = m.unit
                 WHERE m.environment_id = ?1 AND m.event IN (?4, ?5) AND {period}
                 GROUP BY m.unit"
            )
        };
        let coalesce = |t: &str, expr: String| {
            ["c1", "s1", "c2", "s2"]
                .iter()
                .fold(expr, |e, c| e.replace(c, &format!("COALESCE({t}.{c}, 0)")))
        };
        // sql-format: fixed fragments chosen by aggregation; event names and ranges are bound.
        let sql = format!(
            "WITH post AS ({post}), pre AS ({pre})
             SELECT variation AS b, COUNT(*) AS n,
                    TOTAL(yn) AS syn, TOTAL(yn * yn) AS synn, TOTAL(yd) AS syd, TOTAL(yd * yd) AS sydd,
                    TOTAL(yn * yd) AS synd, TOTAL(xn) AS sxn, TOTAL(xn * xn) AS sxnn, TOTAL(xd) AS sxd,
                    TOTAL(xd * xd) AS sxdd, TOTAL(xn * xd) AS sxnd, TOTAL(yn * xn) AS synxn,
                    TOTAL(yn * xd) AS synxd, TOTAL(yd * xn) AS sydxn, TOTAL(yd * xd) AS sydxd
             FROM (SELECT e.variation, {yn} AS yn, {yd} AS yd, {xn} AS xn, {xd} AS xd
                   FROM exposures e LEFT JOIN post p ON p.unit = e.unit LEFT JOIN pre q ON q.unit = e.unit
                   WHERE e.environment_id = ?1 AND e.flag = ?6 AND e.first_ms < ?3 * {HOUR_MS})
             GROUP BY variation ORDER BY variation",
            post = per_unit_sums(&format!(
                "m.hour >= ?2 AND m.hour < ?3 AND m.hour >= e.first_ms / {HOUR_MS}"
            )),
            pre = per_unit_sums(&format!(
                "m.hour < e.first_ms / {HOUR_MS} AND m.hour >= e.first_ms / {HOUR_MS} - ?7"
            )),
            yn = coalesce("p", plan.x_expr()),
            yd = coalesce("p", plan.y_expr()),
            xn = coalesce("q", plan.x_expr()),
            xd = coalesce("q", plan.y_expr()),
        );
        let rows = sqlx::query(&sql)
            .bind(plan.environment_id)
            .bind(range.from)
            .bind(range.to)
            .bind(&plan.x.0)
            .bind(plan.y_event())
            .bind(flag)
            .bind(pre_hours)
            .fetch_all(&mut *conn)
            .await?;
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
