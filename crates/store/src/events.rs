//! Events: durable batch appends, the incremental rollup into per-unit
//! hourly sums, retention, and per-unit sufficient statistics of metrics
//! computed in SQL.
//!
//! Raw events are stored one row per accepted batch in a compact JSON
//! encoding ([`EventBatchBuilder`] is the only writer of that encoding);
//! the rollup expands new batches in SQL into `unit_hours` (per
//! environment, event, hour and unit: count and Σvalue) and `exposures`
//! (each unit's first variation of a flag). Metric values are then
//! aggregated in SQL from the rollups: first per unit, then into n, Σx,
//! Σx², (Σy, Σy², Σxy for ratios), so no analysis loads raw events.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::{Backend, Store};

/// Milliseconds in an hour: the rollup's time bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// Encodes the events of one batch in the stored form. Events are pushed
/// already validated (the server checks names, units and timestamps).
#[derive(Debug, Default)]
pub struct EventBatchBuilder {
    json: String,
    count: u32,
}

impl EventBatchBuilder {
    /// An empty batch with room for about `events` events.
    pub fn with_capacity(events: usize) -> Self {
        let mut json = String::with_capacity(events * 96 + 2);
        json.push('[');
        EventBatchBuilder { json, count: 0 }
    }

    fn start(&mut self) {
        if self.json.is_empty() {
            self.json.push('[');
        }
        if self.count > 0 {
            self.json.push(',');
        }
        self.count += 1;
    }

    fn string(&mut self, s: &str) {
        // Most names and units need no escaping: copy them as they are.
        if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            self.json.push('"');
            self.json.push_str(s);
            self.json.push('"');
            return;
        }
        // Writing a JSON string into a String cannot fail.
        let _ = serde_json::to_writer(string_writer(&mut self.json), s);
    }

    /// Adds a track event. `properties` is the raw JSON text of an object.
    pub fn track(&mut self, event: &str, unit: &str, value: Option<f64>, timestamp_ms: i64, properties: Option<&str>) {
        self.start();
        self.json.push_str("[0,");
        self.string(event);
        self.json.push(',');
        self.string(unit);
        self.json.push_str(",null,");
        match value {
            Some(v) if v.is_finite() => {
                // Display of a finite f64 is the shortest round-trip decimal
                // without an exponent: valid JSON.
                let _ = write!(self.json, "{v}");
            }
            _ => self.json.push_str("null"),
        }
        let _ = write!(self.json, ",{timestamp_ms},");
        self.json.push_str(properties.unwrap_or("null"));
        self.json.push(']');
    }

    /// Adds an exposure: `unit` was served `variation` of `flag`.
    pub fn exposure(&mut self, flag: &str, variation: &str, unit: &str, timestamp_ms: i64) {
        self.start();
        self.json.push_str("[1,");
        self.string(flag);
        self.json.push(',');
        self.string(unit);
        self.json.push(',');
        self.string(variation);
        let _ = write!(self.json, ",null,{timestamp_ms},null]");
    }

    /// Events pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no event was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished batch for `environment_id`.
    pub fn finish(mut self, environment_id: i64, batch_id: Option<String>) -> EventBatch {
        if self.json.is_empty() {
            self.json.push('[');
        }
        self.json.push(']');
        EventBatch {
            environment_id,
            batch_id,
            count: self.count,
            events: self.json,
        }
    }
}

/// `serde_json::to_writer` wants `io::Write`; this adapts a `String`
/// (JSON output is always UTF-8).
fn string_writer(s: &mut String) -> impl std::io::Write + '_ {
    struct W<'a>(&'a mut String);
    impl std::io::Write for W<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let text = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
            self.0.push_str(text);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    W(s)
}

/// A batch of validated events ready to append.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// The environment the SDK token belongs to.
    pub environment_id: i64,
    /// The client's idempotency key.
    pub batch_id: Option<String>,
    /// Number of events.
    pub count: u32,
    /// The stored encoding (see [`EventBatchBuilder`]).
    pub events: String,
}

/// What became of an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored now.
    Stored,
    /// A batch with the same `batch_id` was stored before; not stored again.
    Duplicate,
}

/// Which of `rows` a multi-row insert stored, given the (environment,
/// `batch_id`) of the rows it returned: a batch without an id is always
/// stored; of several with the same id, only the first (rows are inserted
/// in order, the later ones conflict with it).
pub(crate) fn appended(rows: &[EventBatch], mut stored: Vec<(i64, Option<String>)>) -> Vec<Appended> {
    rows.iter()
        .map(|b| {
            if b.batch_id.is_none() {
                return Appended::Stored;
            }
            match stored
                .iter()
                .position(|(env, id)| *env == b.environment_id && *id == b.batch_id)
            {
                Some(i) => {
                    stored.swap_remove(i);
                    Appended::Stored
                }
                None => Appended::Duplicate,
            }
        })
        .collect()
}

/// One run of the incremental rollup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupProgress {
    /// Batches rolled up by this run.
    pub batches: u64,
    /// Events in them.
    pub events: u64,
    /// Whether every stored batch is now rolled up.
    pub caught_up: bool,
}

/// Counts of stored raw events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventTotals {
    /// Stored raw batches.
    pub batches: i64,
    /// Stored raw events.
    pub events: i64,
    /// Raw batches not yet rolled up.
    pub pending_batches: i64,
}

/// Per-unit sums of a metric over a time range, computed in SQL: one
/// value `x` per unit (and `y`, the denominator, for ratio metrics), then
/// n, Σx, Σx², Σy, Σy², Σxy over units. They map one to one onto
/// `sextant_stats::{SufficientStats, ProportionStats, RatioStats}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UnitSums {
    /// Units in the population.
    pub n: u64,
    /// Σx over units (for conversion metrics: converted units).
    pub sum: f64,
    /// Σx².
    pub sum_sq: f64,
    /// Σy (ratio metrics' denominator; 0 otherwise).
    pub sum_den: f64,
    /// Σy².
    pub sum_den_sq: f64,
    /// Σxy.
    pub sum_cross: f64,
}

/// A time range in whole hours since the epoch, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    /// First hour (inclusive).
    pub from: i64,
    /// End hour (exclusive).
    pub to: i64,
}

/// One stored event as [`EventBatchBuilder`] writes it: kind (0 track,
/// 1 exposure), name (event or flag), unit, variation, value, timestamp
/// (ms), properties (not needed by the rollup).
#[derive(serde::Deserialize)]
struct StoredEvent<'a>(
    u8,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    Option<f64>,
    i64,
    serde::de::IgnoredAny,
);

/// Key of a `unit_hours` row: (environment, event, hour, unit); event `""`
/// counts every event of the unit.
pub(crate) type HourKey<'a> = (i64, Cow<'a, str>, i64, Cow<'a, str>);

/// Key of an `exposures` row: (environment, flag, unit).
pub(crate) type ExposureKey<'a> = (i64, Cow<'a, str>, Cow<'a, str>);

/// What a run of the rollup adds, aggregated in memory from the batches it
/// read (each key once), so the database gets one upsert per row instead
/// of one per event. Strings borrow from the batches' stored text.
#[derive(Debug, Default)]
pub(crate) struct RollupDelta<'a> {
    /// `unit_hours` rows: (event count, Σvalue) to add.
    pub hours: HashMap<HourKey<'a>, (i64, f64)>,
    /// `exposures` rows: the earliest (variation, ms) seen.
    pub exposures: HashMap<ExposureKey<'a>, (Cow<'a, str>, i64)>,
    /// Events read.
    pub events: u64,
}

impl<'a> RollupDelta<'a> {
    /// Adds the events of one stored batch.
    pub(crate) fn add_batch(&mut self, environment_id: i64, stored: &'a str) -> Result<()> {
        let events: Vec<StoredEvent<'a>> =
            serde_json::from_str(stored).map_err(|e| crate::StoreError::Corrupt(format!("stored event batch: {e}")))?;
        self.events += events.len() as u64;
        for StoredEvent(kind, name, unit, variation, value, ts, _) in events {
            let hour = ts.div_euclid(HOUR_MS);
            let all = self
                .hours
                .entry((environment_id, Cow::Borrowed(""), hour, unit.clone()))
                .or_default();
            all.0 += 1;
            if kind == 0 {
                let row = self.hours.entry((environment_id, name, hour, unit)).or_default();
                row.0 += 1;
                row.1 += value.unwrap_or(0.0);
            } else {
                let variation = variation.unwrap_or_default();
                match self.exposures.entry((environment_id, name, unit)) {
                    Entry::Occupied(mut o) => {
                        // The earliest exposure wins; on a tie the first read.
                        if ts < o.get().1 {
                            o.insert((variation, ts));
                        }
                    }
                    Entry::Vacant(v) => {
                        v.insert((variation, ts));
                    }
                }
            }
        }
        Ok(())
    }

    /// The `unit_hours` rows in primary-key order (so the upserts walk
    /// the B-tree in order).
    pub(crate) fn sorted_hours(&self) -> Vec<(&HourKey<'a>, &(i64, f64))> {
        let mut rows: Vec<_> = self.hours.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows
    }

    /// The `exposures` rows in primary-key order.
    pub(crate) fn sorted_exposures(&self) -> Vec<(&ExposureKey<'a>, &(Cow<'a, str>, i64))> {
        let mut rows: Vec<_> = self.exposures.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows
    }
}

impl Store {
    /// Appends batches in one transaction, committed with the WAL synced
    /// to disk (`synchronous = FULL`) before returning: once this returns,
    /// the events survive a crash or power loss. A batch whose `batch_id`
    /// was stored before is reported [`Appended::Duplicate`] and skipped.
    pub async fn append_event_batches(&self, batches: &[EventBatch]) -> Result<Vec<Appended>> {
        match &self.backend {
            Backend::Sqlite(db) => db.append_event_batches(batches).await,
            Backend::Postgres(db) => db.append_event_batches(batches).await,
        }
    }

    /// Rolls up at most `max_batches` stored batches not yet rolled up
    /// into the per-unit hourly sums and first exposures, in SQL, in one
    /// transaction. Incremental: each batch is read once.
    pub async fn rollup_events(&self, max_batches: i64) -> Result<RollupProgress> {
        match &self.backend {
            Backend::Sqlite(db) => db.rollup_events(max_batches).await,
            Backend::Postgres(db) => db.rollup_events(max_batches).await,
        }
    }

    /// Deletes raw batches received before `before_ms` that are already
    /// rolled up; their events live on in the rollups. Returns the number
    /// of batches deleted.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64> {
        match &self.backend {
            Backend::Sqlite(db) => db.prune_events(before_ms).await,
            Backend::Postgres(db) => db.prune_events(before_ms).await,
        }
    }

    /// Counts of stored raw events, for one environment or all.
    pub async fn event_totals(&self, environment_id: Option<i64>) -> Result<EventTotals> {
        match &self.backend {
            Backend::Sqlite(db) => db.event_totals(environment_id).await,
            Backend::Postgres(db) => db.event_totals(environment_id).await,
        }
    }

    /// Per-unit sums of `metric` in `ws`/`env` over `range`. The
    /// population is every unit active in the environment in the range.
    pub async fn metric_sums(&self, ws: &str, env: &str, metric: &str, range: HourRange) -> Result<UnitSums> {
        match &self.backend {
            Backend::Sqlite(db) => db.metric_sums(ws, env, metric, range).await,
            Backend::Postgres(db) => db.metric_sums(ws, env, metric, range).await,
        }
    }

    /// [`Store::metric_sums`] per bucket of `bucket_hours` (1 = hourly,
    /// 24 = daily, aligned to UTC midnight), for buckets with activity.
    /// Returns (bucket start hour, sums).
    pub async fn metric_series(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        range: HourRange,
        bucket_hours: i64,
    ) -> Result<Vec<(i64, UnitSums)>> {
        match &self.backend {
            Backend::Sqlite(db) => db.metric_series(ws, env, metric, range, bucket_hours, 0).await,
            Backend::Postgres(db) => db.metric_series(ws, env, metric, range, bucket_hours, 0).await,
        }
    }

    /// [`Store::metric_sums`] over `count` consecutive windows of
    /// `window_hours` each, the last ending at hour `to` (exclusive),
    /// oldest first, computed in one pass over the rollups (the metric
    /// tree's current and previous windows). A window without activity
    /// has zero sums.
    pub async fn metric_windows(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        to: i64,
        window_hours: i64,
        count: usize,
    ) -> Result<Vec<UnitSums>> {
        let window_hours = window_hours.max(1);
        let from = to - window_hours * count as i64;
        let range = HourRange { from, to };
        let rows = match &self.backend {
            Backend::Sqlite(db) => db.metric_series(ws, env, metric, range, window_hours, from).await?,
            Backend::Postgres(db) => db.metric_series(ws, env, metric, range, window_hours, from).await?,
        };
        let mut out = vec![UnitSums::default(); count];
        for (start, sums) in rows {
            if let Some(slot) = usize::try_from((start - from) / window_hours)
                .ok()
                .and_then(|i| out.get_mut(i))
            {
                *slot = sums;
            }
        }
        Ok(out)
    }

    /// Per-unit sums of `metric` per variation of `flag`: the population is
    /// the units first exposed to the flag before the range ends, each in
    /// the variation of its first exposure, counting only its events from
    /// the hour of that exposure on. Returns (variation, sums).
    pub async fn metric_breakdown(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        flag: &str,
        range: HourRange,
    ) -> Result<Vec<(String, UnitSums)>> {
        match &self.backend {
            Backend::Sqlite(db) => db.metric_breakdown(ws, env, metric, flag, range).await,
            Backend::Postgres(db) => db.metric_breakdown(ws, env, metric, flag, range).await,
        }
    }

    /// Per-variation sums for CUPED: like [`Store::metric_breakdown`], each
    /// unit's metric value `y` counts its events from the hour of its first
    /// exposure on (within `range`), and its covariate `x` is the same
    /// metric over the `pre_hours` hours before that hour. Returned as
    /// `sum`/`sum_sq` = Σy/Σy², `sum_den`/`sum_den_sq` = Σx/Σx² and
    /// `sum_cross` = Σxy. A ratio metric has no per-unit value, so it is
    /// refused ([`StoreError::Invalid`]).
    pub async fn metric_breakdown_cuped(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        flag: &str,
        range: HourRange,
        pre_hours: i64,
    ) -> Result<Vec<(String, UnitSums)>> {
        match &self.backend {
            Backend::Sqlite(db) => db.metric_breakdown_cuped(ws, env, metric, flag, range, pre_hours).await,
            Backend::Postgres(db) => db.metric_breakdown_cuped(ws, env, metric, flag, range, pre_hours).await,
        }
    }
}

/// The error for CUPED on a ratio metric.
pub(crate) fn cuped_ratio_refused(metric: &str) -> StoreError {
    StoreError::Invalid(vec![crate::error::FieldError {
        field: "/metric".into(),
        message: format!("`{metric}` is a ratio metric; CUPED needs a per-unit value (count, sum, mean or conversion)"),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_writes_one_json_array_per_event() {
        let mut b = EventBatchBuilder::with_capacity(2);
        b.track("buy \"now\"", "u1", Some(2.5), 1000, Some(r#"{"plan":"pro"}"#));
        b.exposure("f", "on", "u2", 2000);
        b.track("visit", "u3", None, 3000, None);
        let batch = b.finish(7, Some("b".into()));
        assert_eq!(batch.count, 3);
        let v: serde_json::Value = serde_json::from_str(&batch.events).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                [0, "buy \"now\"", "u1", null, 2.5, 1000, {"plan": "pro"}],
                [1, "f", "u2", "on", null, 2000, null],
                [0, "visit", "u3", null, null, 3000, null]
            ])
        );
    }

    #[test]
    fn the_rollup_delta_sums_per_unit_event_and_hour_and_keeps_the_earliest_exposure() {
        let mut b = EventBatchBuilder::default();
        b.track("buy", "u1", Some(2.0), HOUR_MS + 5, None);
        b.track("buy", "u1", Some(3.0), HOUR_MS + 9, Some(r#"{"a":1}"#));
        b.track("buy", "u\"2", None, 2 * HOUR_MS, None);
        b.exposure("f", "on", "u1", 50);
        b.exposure("f", "off", "u1", 10);
        b.exposure("f", "late", "u1", 10);
        let batch = b.finish(7, None);
        let mut delta = RollupDelta::default();
        delta.add_batch(7, &batch.events).unwrap();
        assert_eq!(delta.events, 6);
        let key = |e: &'static str, h: i64, u: &'static str| (7, Cow::Borrowed(e), h, Cow::Borrowed(u));
        assert_eq!(delta.hours[&key("buy", 1, "u1")], (2, 5.0));
        assert_eq!(delta.hours[&key("buy", 2, "u\"2")], (1, 0.0));
        // `''` counts every event of a unit in the hour, exposures too.
        assert_eq!(delta.hours[&key("", 1, "u1")], (2, 0.0));
        assert_eq!(delta.hours[&key("", 0, "u1")], (3, 0.0));
        assert_eq!(delta.hours.len(), 5);
        // The earliest exposure wins; of two at the same time, the first read.
        let first = &delta.exposures[&(7, Cow::Borrowed("f"), Cow::Borrowed("u1"))];
        assert_eq!((first.0.as_ref(), first.1), ("off", 10));
        let sorted: Vec<_> = delta
            .sorted_hours()
            .iter()
            .map(|(k, _)| (k.1.to_string(), k.2))
            .collect();
        assert_eq!(sorted.first(), Some(&(String::new(), 0)));
    }

    #[test]
    fn a_stored_batch_that_is_not_the_builders_encoding_is_reported_corrupt() {
        let mut delta = RollupDelta::default();
        let err = delta.add_batch(1, r#"[{"kind": "track"}]"#).unwrap_err();
        assert!(matches!(err, crate::StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn a_multi_row_insert_stores_the_first_of_repeated_batch_ids_and_every_batch_without_one() {
        let batch = |env: i64, id: Option<&str>| EventBatchBuilder::default().finish(env, id.map(Into::into));
        let rows = [
            batch(1, Some("a")),
            batch(1, None),
            batch(1, Some("a")),
            batch(2, Some("a")),
            batch(1, Some("b")),
        ];
        // The database returned (1, a) and (2, a): b was stored before.
        let stored = vec![(2, Some("a".to_owned())), (1, Some("a".to_owned()))];
        assert_eq!(
            appended(&rows, stored),
            vec![
                Appended::Stored,
                Appended::Stored,
                Appended::Duplicate,
                Appended::Stored,
                Appended::Duplicate
            ]
        );
    }

    #[test]
    fn an_empty_builder_finishes_as_an_empty_array() {
        let batch = EventBatchBuilder::default().finish(1, None);
        assert_eq!((batch.events.as_str(), batch.count), ("[]", 0));
    }
}
