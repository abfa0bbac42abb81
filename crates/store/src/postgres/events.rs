//! PostgreSQL: event batches, the incremental rollup, retention and metric
//! sums — the same computations as the SQLite module, in this dialect.

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::PgStore;
use crate::doc::not_found;
use crate::error::{Kind, Result, StoreError};
use crate::events::{Appended, EventBatch, EventTotals, HOUR_MS, HourRange, RollupProgress, UnitSums};
use crate::metrics::{Aggregation, MetricRecord};

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

/// Float sums over per-unit values, shared by the value queries.
const SUMS: &str = "COUNT(*) AS n, COALESCE(SUM(x), 0)::float8 AS sx, COALESCE(SUM(x * x), 0)::float8 AS sxx,
    COALESCE(SUM(y), 0)::float8 AS sy, COALESCE(SUM(y * y), 0)::float8 AS syy, COALESCE(SUM(x * y), 0)::float8 AS sxy";

impl PgStore {
    pub(crate) async fn append_event_batches(&self, batches: &[EventBatch]) -> Result<Vec<Appended>> {
        let received = chrono::Utc::now().timestamp_millis();
        // The write lock orders ids with commits (see the migration).
        let (_guard, mut tx) = self.begin_write().await?;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let done = sqlx::query(
                "INSERT INTO event_batches (environment_id, batch_id, received_ms, count, events)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(b.environment_id)
            .bind(&b.batch_id)
            .bind(received)
            .bind(b.count as i32)
            .bind(&b.events)
            .execute(&mut *tx)
            .await?;
            out.push(if done.rows_affected() == 1 {
                Appended::Stored
            } else {
                Appended::Duplicate
            });
        }
        // synchronous_commit (on by default) makes the commit durable.
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn rollup_events(&self, max_batches: i64) -> Result<RollupProgress> {
        let (_guard, mut tx) = self.begin_write().await?;
        let last: i64 = sqlx::query("SELECT last_batch FROM event_rollup_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let row = sqlx::query(
            "SELECT MAX(id) AS upto, COUNT(*) AS batches, COALESCE(SUM(count), 0)::bigint AS events
             FROM (SELECT id, count FROM event_batches WHERE id > $1 ORDER BY id LIMIT $2) b",
        )
        .bind(last)
        .bind(max_batches.max(1))
        .fetch_one(&mut *tx)
        .await?;
        let Some(upto) = row.try_get::<Option<i64>, _>("upto")? else {
            return Ok(RollupProgress {
                caught_up: true,
                ..RollupProgress::default()
            });
        };
        let batches: i64 = row.try_get("batches")?;
        let events: i64 = row.try_get("events")?;
        Self::rollup_range(&mut tx, last, upto).await?;
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
        Ok(RollupProgress {
            batches: batches as u64,
            events: events as u64,
            caught_up: !more,
        })
    }

    /// Expands batches `(after, upto]` once (a CTE PostgreSQL materialises
    /// because it is read twice) into the exposures and the hourly sums.
    async fn rollup_range(conn: &mut PgConnection, after: i64, upto: i64) -> Result<()> {
        sqlx::query(
            "WITH staged AS MATERIALIZED (
                 SELECT b.environment_id, (e ->> 0)::int AS kind, e ->> 1 AS name, e ->> 2 AS unit,
                        e ->> 3 AS variation, (e ->> 4)::float8 AS value, (e ->> 5)::bigint AS ts
                 FROM event_batches b, jsonb_array_elements(b.events::jsonb) e
                 WHERE b.id > $1 AND b.id <= $2),
             exposed AS (
                 INSERT INTO exposures (environment_id, flag, unit, variation, first_ms)
                 SELECT DISTINCT ON (environment_id, name, unit) environment_id, name, unit, variation, ts
                 FROM staged WHERE kind = 1
                 ORDER BY environment_id, name, unit, ts
                 ON CONFLICT (environment_id, flag, unit) DO UPDATE
                 SET variation = CASE WHEN excluded.first_ms < exposures.first_ms
                                      THEN excluded.variation ELSE exposures.variation END,
                     first_ms = LEAST(exposures.first_ms, excluded.first_ms)
                 RETURNING 1)
             INSERT INTO unit_hours (environment_id, event, hour, unit, events, value_sum)
             SELECT environment_id, name, ts / $3, unit, COUNT(*), COALESCE(SUM(value), 0)
             FROM staged WHERE kind = 0
             GROUP BY environment_id, name, ts / $3, unit
             UNION ALL
             SELECT environment_id, '', ts / $3, unit, COUNT(*), 0
             FROM staged
             GROUP BY environment_id, ts / $3, unit
             ON CONFLICT (environment_id, event, hour, unit) DO UPDATE
             SET events = unit_hours.events + excluded.events,
                 value_sum = unit_hours.value_sum + excluded.value_sum",
        )
        .bind(after)
        .bind(upto)
        .bind(HOUR_MS)
        .execute(&mut *conn)
        .await?;
        Ok(())
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
        let mut series = self.metric_series(ws, env, metric, range, 0).await?;
        Ok(series.pop().map(|(_, s)| s).unwrap_or_default())
    }

    pub(crate) async fn metric_series(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        range: HourRange,
        bucket_hours: i64,
    ) -> Result<Vec<(i64, UnitSums)>> {
        let mut conn = self.pool.acquire().await?;
        let plan = Self::plan(&mut conn, ws, env, metric).await?;
        // sql-format: `SUMS` and the per-unit expressions are fixed fragments chosen by aggregation; event names and ranges are bound.
        let sql = format!(
            "SELECT b, {SUMS}
             FROM (SELECT b, {x}::float8 AS x, {y}::float8 AS y FROM (
                 SELECT CASE WHEN $6 > 0 THEN hour / $6 ELSE 0 END AS b, unit,
                        COALESCE(SUM(CASE WHEN event = $4 THEN events END), 0)::float8 AS c1,
                        COALESCE(SUM(CASE WHEN event = $4 THEN value_sum END), 0)::float8 AS s1,
                        COALESCE(SUM(CASE WHEN event = $5 THEN events END), 0)::float8 AS c2,
                        COALESCE(SUM(CASE WHEN event = $5 THEN value_sum END), 0)::float8 AS s2
                 FROM unit_hours
                 WHERE environment_id = $1 AND event IN ('', $4, $5) AND hour >= $2 AND hour < $3
                 GROUP BY 1, unit) per_unit) v
             GROUP BY b ORDER BY b",
            x = plan.x_expr("c1", "s1"),
            y = plan.y_expr("c2", "s2"),
        );
        let rows = sqlx::query(&sql)
            .bind(plan.environment_id)
            .bind(range.from)
            .bind(range.to)
            .bind(&plan.x.0)
            .bind(plan.y_event())
            .bind(bucket_hours.max(0))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>("b")? * bucket_hours, sums_from(row)?)))
            .collect()
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
        // sql-format: fixed fragments chosen by aggregation; event names and ranges are bound.
        let sql = format!(
            "WITH per_unit AS (
                 SELECT m.unit,
                        COALESCE(SUM(CASE WHEN m.event = $4 THEN m.events END), 0)::float8 AS c1,
                        COALESCE(SUM(CASE WHEN m.event = $4 THEN m.value_sum END), 0)::float8 AS s1,
                        COALESCE(SUM(CASE WHEN m.event = $5 THEN m.events END), 0)::float8 AS c2,
                        COALESCE(SUM(CASE WHEN m.event = $5 THEN m.value_sum END), 0)::float8 AS s2
                 FROM unit_hours m JOIN exposures e
                      ON e.environment_id = m.environment_id AND e.flag = $6 AND e.unit = m.unit
                 WHERE m.environment_id = $1 AND m.event IN ($4, $5) AND m.hour >= $2 AND m.hour < $3
                   AND m.hour >= e.first_ms / {HOUR_MS}
                 GROUP BY m.unit)
             SELECT variation AS b, {SUMS}
             FROM (SELECT e.variation, {x}::float8 AS x, {y}::float8 AS y
                   FROM exposures e LEFT JOIN per_unit p ON p.unit = e.unit
                   WHERE e.environment_id = $1 AND e.flag = $6 AND e.first_ms < $3 * {HOUR_MS}) v
             GROUP BY variation ORDER BY variation",
            x = plan.x_expr("COALESCE(p.c1, 0)", "COALESCE(p.s1, 0)"),
            y = plan.y_expr("COALESCE(p.c2, 0)", "COALESCE(p.s2, 0)"),
        );
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
    ) -> Result<Vec<(String, UnitSums)>> {
        let mut conn = self.pool.acquire().await?;
        let plan = Self::plan(&mut conn, ws, env, metric).await?;
        if plan.y.is_some() {
            return Err(crate::events::cuped_ratio_refused(metric));
        }
        // As on SQLite: post from the hour of first exposure, pre the
        // `pre_hours` hours before it; `SUMS`' x is the covariate here, so
        // the columns are read back swapped.
        // sql-format: fixed fragments chosen by aggregation; event names and ranges are bound.
        let sql = format!(
            "WITH post AS (
                 SELECT m.unit, SUM(m.events)::float8 AS c, SUM(m.value_sum)::float8 AS s
                 FROM unit_hours m JOIN exposures e
                      ON e.environment_id = m.environment_id AND e.flag = $5 AND e.unit = m.unit
                 WHERE m.environment_id = $1 AND m.event = $4 AND m.hour >= $2 AND m.hour < $3
                   AND m.hour >= e.first_ms / {HOUR_MS}
                 GROUP BY m.unit),
             pre AS (
                 SELECT m.unit, SUM(m.events)::float8 AS c, SUM(m.value_sum)::float8 AS s
                 FROM unit_hours m JOIN exposures e
                      ON e.environment_id = m.environment_id AND e.flag = $5 AND e.unit = m.unit
                 WHERE m.environment_id = $1 AND m.event = $4
                   AND m.hour < e.first_ms / {HOUR_MS} AND m.hour >= e.first_ms / {HOUR_MS} - $6
                 GROUP BY m.unit)
             SELECT variation AS b, {SUMS}
             FROM (SELECT e.variation, {x}::float8 AS x, {y}::float8 AS y
                   FROM exposures e LEFT JOIN post p ON p.unit = e.unit LEFT JOIN pre q ON q.unit = e.unit
                   WHERE e.environment_id = $1 AND e.flag = $5 AND e.first_ms < $3 * {HOUR_MS}) v
             GROUP BY variation ORDER BY variation",
            x = plan.x_expr("COALESCE(q.c, 0)", "COALESCE(q.s, 0)"),
            y = plan.x_expr("COALESCE(p.c, 0)", "COALESCE(p.s, 0)"),
        );
        let rows = sqlx::query(&sql)
            .bind(plan.environment_id)
            .bind(range.from)
            .bind(range.to)
            .bind(&plan.x.0)
            .bind(flag)
            .bind(pre_hours)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                let s = sums_from(row)?;
                // SUMS put the covariate in x: swap so `sum` is the metric.
                let swapped = UnitSums {
                    n: s.n,
                    sum: s.sum_den,
                    sum_sq: s.sum_den_sq,
                    sum_den: s.sum,
                    sum_den_sq: s.sum_sq,
                    sum_cross: s.sum_cross,
                };
                Ok((row.try_get::<String, _>("b")?, swapped))
            })
            .collect()
    }
}
