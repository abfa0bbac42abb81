//! Deleting events: an irreversible change (`events.delete`), applied only
//! through an approved change request.
//!
//! A deletion names one track event of one environment and, optionally, a
//! range of whole hours. In one write transaction it takes that event out
//! of the rollup — its per-unit hourly rows (`unit_hours`) go, its per-unit
//! daily rows (`unit_days`) lose the deleted hours, the per-unit activity
//! rows (event `""`) lose its counts, and the per-bucket totals
//! (`event_buckets`) of the touched hours and days are computed again from
//! those rows — and rewrites every raw batch that held such an event
//! without it; then it writes the change record and its audit entry.
//! Exposures are not named events and are not touched.
//!
//! Raw batches and rollups stay consistent: the deletion first lets the
//! rollup catch up, then, holding the lock the rollup commits under, works
//! only on batches at or below the rollup cursor. The rollup never reads
//! those again (a rollup that read them before compares the cursor under
//! the lock and starts over), and batches above the cursor — events that
//! arrived while the deletion ran — are kept whole, raw and rolled up
//! alike, and counted in [`EventsDeleted::batches_not_rolled_up`].
//!
//! There is no revert: deleted events are not kept anywhere.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::doc::{NewChange, committed, json};
use crate::error::{FieldError, Kind, Result, StoreError};
use crate::events::{EventBatchBuilder, HOUR_MS, HourRange};
use crate::model::{ChangeMeta, Committed};
use crate::rollouts::parse_time;
use crate::{Backend, Store};

/// What the revert of a deletion is: nothing can bring the events back.
pub const EVENT_DELETION_REVERT: &str = "impossible: deleted events are not kept anywhere, so this change cannot be \
     reverted; metrics over the deleted hours stay without them";

/// Longest accepted event name (the ingestion limit is lower).
const MAX_EVENT_NAME: usize = 256;

/// Raw batches read per page while rewriting (bounds memory).
const PAGE: i64 = 256;

/// Rollup runs the deletion makes to catch up before it starts.
const CATCH_UP_RUNS: usize = 64;

/// Which events to delete: one track event of one environment, all of
/// its hours or those in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDeletion {
    /// Environment key.
    pub environment: String,
    /// The track event's name.
    pub event: String,
    /// First hour deleted (RFC 3339, on the hour); none = from the first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End of the deleted hours (RFC 3339, on the hour, exclusive); none = up to now and beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl EventDeletion {
    /// The hours deleted, or every problem as field errors.
    pub fn hours(&self) -> std::result::Result<HourRange, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        if self.environment.trim().is_empty() {
            err(
                "/environment",
                "required: the environment whose events are deleted".into(),
            );
        }
        if self.event.is_empty() {
            err("/event", "required: the name of the track event to delete".into());
        } else if self.event.len() > MAX_EVENT_NAME {
            err("/event", format!("must be at most {MAX_EVENT_NAME} bytes"));
        }
        let mut hour = |field: &str, value: &Option<String>, open: i64| -> Option<i64> {
            let Some(text) = value else {
                return Some(open);
            };
            let Some(t) = parse_time(text) else {
                err(
                    field,
                    format!("`{text}` is not an RFC 3339 time such as 2026-11-01T10:00:00Z"),
                );
                return None;
            };
            let ms = t.timestamp_millis();
            if ms.rem_euclid(HOUR_MS) != 0 {
                err(
                    field,
                    format!(
                        "`{text}` is not on the hour; events are rolled up per hour, so a deletion covers whole hours"
                    ),
                );
                return None;
            }
            Some(ms.div_euclid(HOUR_MS))
        };
        let from = hour("/from", &self.from, i64::MIN);
        let to = hour("/to", &self.to, i64::MAX);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            err("/to", "must be after `from`".into());
        }
        match (from, to) {
            (Some(from), Some(to)) if errors.is_empty() => Ok(HourRange { from, to }),
            _ => Err(errors),
        }
    }
}

/// What a deletion removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventsDeleted {
    /// What was asked.
    #[serde(flatten)]
    pub deletion: EventDeletion,
    /// Raw events removed from stored batches.
    pub raw_events: u64,
    /// Stored batches rewritten without them.
    pub batches_rewritten: u64,
    /// Events removed from the hourly rollup.
    pub rolled_up_events: i64,
    /// Rollup rows (unit × hour) removed.
    pub rollup_rows: u64,
    /// Batches of the environment not yet rolled up when the deletion ran:
    /// they arrived meanwhile and are kept whole.
    pub batches_not_rolled_up: i64,
    /// [`EVENT_DELETION_REVERT`].
    pub revert: &'static str,
}

/// The UTC days (hour / 24, rounded down) that `hours` touches, whole or in part.
fn days_of(hours: HourRange) -> HourRange {
    HourRange {
        from: hours.from.div_euclid(24),
        to: if hours.to == i64::MAX {
            i64::MAX
        } else {
            (hours.to - 1).div_euclid(24) + 1
        },
    }
}

/// `stored` without the track events named `event` in `hours`, and how
/// many were removed: (the batch re-encoded by [`EventBatchBuilder`], events
/// kept, events removed). A batch stored as JSON before schema version 6
/// comes back in the binary encoding, which the decoder reads too.
fn without(stored: &[u8], event: &str, hours: HourRange) -> Result<(Vec<u8>, u32, u64)> {
    let events = crate::event_encoding::decode(stored)?;
    let deleted = |e: &crate::event_encoding::StoredEvent<'_>| {
        let hour = e.timestamp_ms.div_euclid(HOUR_MS);
        !e.exposure && e.name == event && hour >= hours.from && hour < hours.to
    };
    let removed = events.iter().filter(|e| deleted(e)).count() as u64;
    let mut out = EventBatchBuilder::with_capacity(events.len());
    if removed > 0 {
        for e in events.iter().filter(|e| !deleted(e)) {
            if e.exposure {
                out.exposure(
                    &e.name,
                    e.variation.as_deref().unwrap_or_default(),
                    &e.unit,
                    e.timestamp_ms,
                );
            } else {
                out.track(&e.name, &e.unit, e.value, e.timestamp_ms, e.properties.as_deref());
            }
        }
    }
    let kept = out.len();
    Ok((out.finish(0, None).events, kept, removed))
}

impl Store {
    /// Events of a deletion currently in the hourly rollup (what the
    /// change request shows its approver).
    pub async fn count_rolled_up_events(&self, ws: &str, d: &EventDeletion) -> Result<i64> {
        let hours = d.hours().map_err(StoreError::Invalid)?;
        match &self.backend {
            Backend::Sqlite(db) => db.count_rolled_up_events(ws, d, hours).await,
            Backend::Postgres(db) => db.count_rolled_up_events(ws, d, hours).await,
        }
    }

    /// Deletes events (see the module doc). Only called when applying an
    /// approved `events.delete` change request (`meta.approves`); the
    /// request is marked applied in the same transaction.
    pub async fn delete_events(
        &self,
        ws: &str,
        d: &EventDeletion,
        meta: &ChangeMeta,
    ) -> Result<Committed<EventsDeleted>> {
        let hours = d.hours().map_err(StoreError::Invalid)?;
        for _ in 0..CATCH_UP_RUNS {
            if self.rollup_events(1000).await?.caught_up {
                break;
            }
        }
        match &self.backend {
            Backend::Sqlite(db) => db.delete_events(ws, d, hours, meta).await,
            Backend::Postgres(db) => db.delete_events(ws, d, hours, meta).await,
        }
    }
}

impl crate::sqlite::SqliteStore {
    /// The SQLite rollup commits under the same in-process write lock the
    /// deletion holds: nothing more to take.
    async fn hold_rollup(_conn: &mut sqlx::SqliteConnection) -> Result<()> {
        Ok(())
    }
}

impl crate::postgres::PgStore {
    /// The PostgreSQL rollup commits under its own advisory lock, not the
    /// write lock: take it too (always after the write lock; the rollup
    /// never takes the write lock, so the order cannot deadlock).
    async fn hold_rollup(conn: &mut sqlx::PgConnection) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::postgres::ROLLUP_LOCK)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// The SQL of event deletion, written once in the syntax both dialects
/// accept (see `rollout_sql!`).
macro_rules! event_deletion_sql {
    ($store:ty, $conn:ty) => {
        impl $store {
            async fn count_rolled_up_events(&self, ws: &str, d: &EventDeletion, hours: HourRange) -> Result<i64> {
                let mut conn = self.pool.acquire().await?;
                let (_, env_id) = Self::ids(&mut conn, ws, &d.environment).await?;
                Self::rolled_up(&mut conn, env_id, &d.event, hours).await
            }

            async fn rolled_up(conn: &mut $conn, env_id: i64, event: &str, hours: HourRange) -> Result<i64> {
                Ok(sqlx::query(
                    "SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) AS n FROM unit_hours
                     WHERE environment_id = $1 AND event = $2 AND hour >= $3 AND hour < $4",
                )
                .bind(env_id)
                .bind(event)
                .bind(hours.from)
                .bind(hours.to)
                .fetch_one(&mut *conn)
                .await?
                .try_get("n")?)
            }

            async fn delete_events(
                &self,
                ws: &str,
                d: &EventDeletion,
                hours: HourRange,
                meta: &ChangeMeta,
            ) -> Result<Committed<EventsDeleted>> {
                let (_guard, mut tx) = self.begin_write().await?;
                let (_, env_id) = Self::ids(&mut tx, ws, &d.environment).await?;
                Self::hold_rollup(&mut tx).await?;
                let cursor: i64 = sqlx::query("SELECT last_batch FROM event_rollup_state WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                let rolled_up_events = Self::rolled_up(&mut tx, env_id, &d.event, hours).await?;
                let days = days_of(hours);
                // Daily rows first, while the hourly rows they are taken from
                // still exist: the event's own rows lose its hours in range,
                // the activity rows (event '') lose their counts.
                sqlx::query(
                    "UPDATE unit_days SET
                         events = events - CAST(COALESCE((SELECT SUM(h.events) FROM unit_hours h
                             WHERE h.environment_id = unit_days.environment_id AND h.event = $2
                               AND h.unit = unit_days.unit AND h.hour >= $3 AND h.hour < $4
                               AND h.hour >= unit_days.day * 24 AND h.hour < unit_days.day * 24 + 24), 0) AS BIGINT),
                         value_sum = CASE WHEN event = '' THEN value_sum ELSE value_sum - COALESCE((
                             SELECT SUM(h.value_sum) FROM unit_hours h
                             WHERE h.environment_id = unit_days.environment_id AND h.event = $2
                               AND h.unit = unit_days.unit AND h.hour >= $3 AND h.hour < $4
                               AND h.hour >= unit_days.day * 24 AND h.hour < unit_days.day * 24 + 24), 0) END
                     WHERE environment_id = $1 AND (event = $2 OR event = '') AND day >= $5 AND day < $6",
                )
                .bind(env_id)
                .bind(&d.event)
                .bind(hours.from)
                .bind(hours.to)
                .bind(days.from)
                .bind(days.to)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM unit_days
                     WHERE environment_id = $1 AND (event = $2 OR event = '') AND day >= $3 AND day < $4
                       AND events <= 0",
                )
                .bind(env_id)
                .bind(&d.event)
                .bind(days.from)
                .bind(days.to)
                .execute(&mut *tx)
                .await?;
                // The activity rows count every event of a unit and hour:
                // take this event's counts off them, then drop emptied rows.
                sqlx::query(
                    "UPDATE unit_hours SET events = events - (
                         SELECT d.events FROM unit_hours d
                         WHERE d.environment_id = unit_hours.environment_id AND d.event = $2
                           AND d.hour = unit_hours.hour AND d.unit = unit_hours.unit)
                     WHERE environment_id = $1 AND event = '' AND hour >= $3 AND hour < $4
                       AND EXISTS (SELECT 1 FROM unit_hours d
                         WHERE d.environment_id = unit_hours.environment_id AND d.event = $2
                           AND d.hour = unit_hours.hour AND d.unit = unit_hours.unit)",
                )
                .bind(env_id)
                .bind(&d.event)
                .bind(hours.from)
                .bind(hours.to)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM unit_hours
                     WHERE environment_id = $1 AND event = '' AND hour >= $2 AND hour < $3 AND events <= 0",
                )
                .bind(env_id)
                .bind(hours.from)
                .bind(hours.to)
                .execute(&mut *tx)
                .await?;
                let rollup_rows = sqlx::query(
                    "DELETE FROM unit_hours WHERE environment_id = $1 AND event = $2 AND hour >= $3 AND hour < $4",
                )
                .bind(env_id)
                .bind(&d.event)
                .bind(hours.from)
                .bind(hours.to)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // The per-bucket totals of the touched hours and days, computed
                // again from the per-unit rows (exact, as the rollup keeps them).
                for (grain, table, column, range) in [(1, "unit_hours", "hour", hours), (24, "unit_days", "day", days)] {
                    sqlx::query(
                        "DELETE FROM event_buckets WHERE environment_id = $1 AND (event = $2 OR event = '')
                           AND grain = $3 AND bucket >= $4 AND bucket < $5",
                    )
                    .bind(env_id)
                    .bind(&d.event)
                    .bind(grain)
                    .bind(range.from)
                    .bind(range.to)
                    .execute(&mut *tx)
                    .await?;
                    // sql-format: `table` and `column` are fixed identifiers from the list above; values are bound.
                    let sql = format!(
                        "INSERT INTO event_buckets
                             (environment_id, event, grain, bucket, units, events, events_sq, value_sum, value_sq)
                         SELECT environment_id, event, $3, {column}, COUNT(*), CAST(SUM(events) AS BIGINT),
                                CAST(SUM(events * events) AS BIGINT), SUM(value_sum), SUM(value_sum * value_sum)
                         FROM {table}
                         WHERE environment_id = $1 AND (event = $2 OR event = '') AND {column} >= $4 AND {column} < $5
                         GROUP BY environment_id, event, {column}"
                    );
                    sqlx::query(&sql)
                        .bind(env_id)
                        .bind(&d.event)
                        .bind(grain)
                        .bind(range.from)
                        .bind(range.to)
                        .execute(&mut *tx)
                        .await?;
                }

                // Every batch of the environment up to the cursor is read (in
                // pages) and decoded: the binary encoding has no text to match
                // in SQL, and a deletion is a rare, approved change.
                let (mut after, mut raw_events, mut batches_rewritten) = (0i64, 0u64, 0u64);
                loop {
                    let rows = sqlx::query(
                        "SELECT id, events FROM event_batches
                         WHERE environment_id = $1 AND id > $2 AND id <= $3
                         ORDER BY id LIMIT $4",
                    )
                    .bind(env_id)
                    .bind(after)
                    .bind(cursor)
                    .bind(PAGE)
                    .fetch_all(&mut *tx)
                    .await?;
                    let Some(last) = rows.last() else { break };
                    after = last.try_get("id")?;
                    for row in &rows {
                        let id: i64 = row.try_get("id")?;
                        let stored: Vec<u8> = row.try_get("events")?;
                        let (kept, count, removed) = without(&stored, &d.event, hours)?;
                        if removed == 0 {
                            continue;
                        }
                        sqlx::query("UPDATE event_batches SET events = $1, count = $2 WHERE id = $3")
                            .bind(kept)
                            .bind(count as i32)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        raw_events += removed;
                        batches_rewritten += 1;
                    }
                }
                let batches_not_rolled_up: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM event_batches WHERE environment_id = $1 AND id > $2")
                        .bind(env_id)
                        .bind(cursor)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("n")?;
                let out = EventsDeleted {
                    deletion: d.clone(),
                    raw_events,
                    batches_rewritten,
                    rolled_up_events,
                    rollup_rows,
                    batches_not_rolled_up,
                    revert: EVENT_DELETION_REVERT,
                };
                let change_id = Self::record(
                    &mut tx,
                    NewChange {
                        meta,
                        action: "delete",
                        workspace: Some(ws),
                        kind: Kind::Events,
                        key: &d.event,
                        environment: Some(&d.environment),
                        before: Some(json(&out)),
                        after: None,
                    },
                )
                .await?;
                Self::finish(tx, committed(out, change_id)).await
            }
        }
    };
}

event_deletion_sql!(crate::sqlite::SqliteStore, sqlx::SqliteConnection);
event_deletion_sql!(crate::postgres::PgStore, sqlx::PgConnection);

#[cfg(test)]
mod tests {
    use super::*;

    fn deletion(from: Option<&str>, to: Option<&str>) -> EventDeletion {
        EventDeletion {
            environment: "production".into(),
            event: "checkout".into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
        }
    }

    #[test]
    fn a_deletion_covers_whole_hours_and_names_each_bad_field() {
        let all = deletion(None, None).hours().unwrap();
        assert_eq!((all.from, all.to), (i64::MIN, i64::MAX));
        let some = deletion(Some("1970-01-01T02:00:00Z"), Some("1970-01-01T05:00:00Z"))
            .hours()
            .unwrap();
        assert_eq!((some.from, some.to), (2, 5));
        let errors = deletion(Some("1970-01-01T02:30:00Z"), Some("yesterday"))
            .hours()
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["/from", "/to"]);
        assert!(errors[0].message.contains("not on the hour"), "{errors:?}");
        let backwards = deletion(Some("1970-01-01T05:00:00Z"), Some("1970-01-01T02:00:00Z"))
            .hours()
            .unwrap_err();
        assert_eq!(backwards[0].field, "/to");
        let mut unnamed = deletion(None, None);
        unnamed.event.clear();
        assert_eq!(unnamed.hours().unwrap_err()[0].field, "/event");
    }

    #[test]
    fn rewriting_a_batch_drops_only_the_named_track_events_in_range_and_keeps_the_encoding() {
        let mut b = EventBatchBuilder::with_capacity(4);
        b.track("checkout", "u1", Some(2.5), HOUR_MS, Some(r#"{"k":"v"}"#));
        b.track("checkout", "u1", None, 3 * HOUR_MS, None);
        b.track("signup", "u2", None, HOUR_MS, None);
        b.exposure("checkout", "on", "u1", HOUR_MS);
        let stored = b.finish(1, None).events;
        let (kept, count, removed) = without(&stored, "checkout", HourRange { from: 0, to: 2 }).unwrap();
        assert_eq!((count, removed), (3, 1));
        let mut expected = EventBatchBuilder::with_capacity(3);
        expected.track("checkout", "u1", None, 3 * HOUR_MS, None);
        expected.track("signup", "u2", None, HOUR_MS, None);
        expected.exposure("checkout", "on", "u1", HOUR_MS);
        assert_eq!(kept, expected.finish(1, None).events);
    }
}
