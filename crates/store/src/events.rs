//! Events: durable batch appends, the incremental rollup into per-unit
//! hourly and daily sums and per-bucket totals, retention, and per-unit
//! sufficient statistics of metrics computed in SQL.
//!
//! Raw events are stored one row per accepted batch in a compact binary
//! encoding (`event_encoding.rs`; [`EventBatchBuilder`] is its only
//! writer); the rollup decodes new batches and aggregates them in Rust
//! ([`RollupDelta`]), outside the write lock, and upserts `unit_hours` and `unit_days` (per
//! environment, event, hour or day and unit id: count and Σvalue),
//! `event_buckets` (per event and hour or day: units, Σcount, Σcount²,
//! Σvalue, Σvalue², kept exact from the per-unit rows' old and new sums)
//! and `exposures` (each unit's first variation of a flag); `units` maps
//! unit keys to integer ids. Metric values are then aggregated in SQL: an
//! hourly or daily series of a one-event metric reads `event_buckets`;
//! everything else goes per unit first (whole days from `unit_days`, the
//! hours around them from `unit_hours`), then into n, Σx, Σx², (Σy, Σy²,
//! Σxy for ratios), so no analysis loads raw events.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{Result, StoreError};
pub use crate::event_encoding::EventBatchBuilder;
use crate::event_encoding::StoredEvent;
use crate::{Backend, Store};

/// Milliseconds in an hour: the rollup's time bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// A batch of validated events ready to append.
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    /// The environment the SDK token belongs to.
    pub environment_id: i64,
    /// The client's idempotency key.
    pub batch_id: Option<String>,
    /// Number of events.
    pub count: u32,
    /// The stored encoding (see [`EventBatchBuilder`]).
    pub events: Vec<u8>,
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

/// Per-unit sums for CUPED over one population, computed in SQL: each
/// unit's metric after its first exposure (`post`) and over the pre-period
/// before it (`pre`), then the cross products between the two periods.
/// For a per-unit metric (count, sum, mean, conversion) the value is in
/// `sum` and the denominators are 0, so `sum_num_pre_num` is Σxy; for a
/// ratio metric `sum`/`sum_den` are the numerator and denominator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CupedSums {
    /// The metric from the first exposure on (n, Σnum, Σnum², Σden, Σden², Σnum·den).
    pub post: UnitSums,
    /// The metric over the pre-period, same units.
    pub pre: UnitSums,
    /// Σ post num · pre num.
    pub sum_num_pre_num: f64,
    /// Σ post num · pre den.
    pub sum_num_pre_den: f64,
    /// Σ post den · pre num.
    pub sum_den_pre_num: f64,
    /// Σ post den · pre den.
    pub sum_den_pre_den: f64,
}

/// A time range in whole hours since the epoch, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    /// First hour (inclusive).
    pub from: i64,
    /// End hour (exclusive).
    pub to: i64,
}

/// Key of a `unit_hours` row: (environment, event, hour, unit); event `""`
/// counts every event of the unit.
pub(crate) type HourKey<'a> = (i64, Cow<'a, str>, i64, Cow<'a, str>);

/// Key of an `exposures` row: (environment, flag, unit).
pub(crate) type ExposureKey<'a> = (i64, Cow<'a, str>, Cow<'a, str>);

/// What a run of the rollup adds, aggregated in memory from the batches it
/// read (each key once), so the database gets one upsert per row instead
/// of one per event. Strings borrow from the batches' stored bytes.
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
    pub(crate) fn add_batch(&mut self, environment_id: i64, stored: &'a [u8]) -> Result<()> {
        let events = crate::event_encoding::decode(stored)?;
        self.events += events.len() as u64;
        for StoredEvent {
            exposure,
            name,
            unit,
            variation,
            value,
            timestamp_ms: ts,
            ..
        } in events
        {
            let hour = ts.div_euclid(HOUR_MS);
            let all = self
                .hours
                .entry((environment_id, Cow::Borrowed(""), hour, unit.clone()))
                .or_default();
            all.0 += 1;
            if !exposure {
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

    /// Every unit key the run saw, sorted, each once (every event has an
    /// activity row, so the hourly keys hold them all).
    pub(crate) fn unit_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.hours.keys().map(|k| k.3.as_ref()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The run's rows with units resolved to their `units` ids: hourly and
    /// daily per-unit rows and first exposures, each in primary-key order
    /// (so the upserts walk the B-trees in order, and returned rows can be
    /// found by binary search).
    pub(crate) fn rows(&self, ids: &HashMap<&str, i64>) -> Result<RollupRows<'_>> {
        let id = |unit: &str| {
            ids.get(unit)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("unit `{unit}` has no id")))
        };
        let mut hours = Vec::with_capacity(self.hours.len());
        let mut days: HashMap<(i64, &str, i64, i64), (i64, f64)> = HashMap::with_capacity(self.hours.len());
        for ((env, event, hour, unit), (count, sum)) in &self.hours {
            let row = UnitRow {
                environment_id: *env,
                event: event.as_ref(),
                time: *hour,
                unit: id(unit)?,
                events: *count,
                value_sum: *sum,
            };
            let day = days
                .entry((row.environment_id, row.event, hour.div_euclid(DAY_HOURS), row.unit))
                .or_default();
            day.0 += count;
            day.1 += sum;
            hours.push(row);
        }
        let mut days: Vec<UnitRow<'_>> = days
            .into_iter()
            .map(|((environment_id, event, time, unit), (events, value_sum))| UnitRow {
                environment_id,
                event,
                time,
                unit,
                events,
                value_sum,
            })
            .collect();
        hours.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        days.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        let mut exposures = self
            .exposures
            .iter()
            .map(|((env, flag, unit), (variation, first_ms))| {
                Ok(ExposureRow {
                    environment_id: *env,
                    flag: flag.as_ref(),
                    unit: id(unit)?,
                    variation: variation.as_ref(),
                    first_ms: *first_ms,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        exposures.sort_unstable_by(|a, b| (a.environment_id, a.flag, a.unit).cmp(&(b.environment_id, b.flag, b.unit)));
        Ok(RollupRows { hours, days, exposures })
    }
}

/// Hours in a UTC day: the daily rollups' bucket (day = ⌊hour / 24⌋).
pub(crate) const DAY_HOURS: i64 = 24;

/// A per-unit rollup row to add: to `unit_hours` (`time` an hour) or
/// `unit_days` (`time` a day).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UnitRow<'a> {
    pub environment_id: i64,
    pub event: &'a str,
    pub time: i64,
    pub unit: i64,
    pub events: i64,
    pub value_sum: f64,
}

impl<'a> UnitRow<'a> {
    /// The primary key, in the table's order.
    pub(crate) fn key(&self) -> (i64, &'a str, i64, i64) {
        (self.environment_id, self.event, self.time, self.unit)
    }
}

/// A first exposure to record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ExposureRow<'a> {
    pub environment_id: i64,
    pub flag: &'a str,
    pub unit: i64,
    pub variation: &'a str,
    pub first_ms: i64,
}

/// What one rollup run writes, with unit ids (see [`RollupDelta::rows`]).
#[derive(Debug)]
pub(crate) struct RollupRows<'a> {
    pub hours: Vec<UnitRow<'a>>,
    pub days: Vec<UnitRow<'a>>,
    pub exposures: Vec<ExposureRow<'a>>,
}

/// The change to one `event_buckets` row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct BucketDelta {
    pub units: i64,
    pub events: i64,
    pub events_sq: i64,
    pub value_sum: f64,
    pub value_sq: f64,
}

/// Changes to `event_buckets`, keyed by (environment, event, grain,
/// bucket), derived from the per-unit rows a run upserted: a unit's
/// contribution to Σcount² and Σvalue² moves from its old sums to its new
/// ones, and a row that did not exist before adds a unit.
#[derive(Debug, Default)]
pub(crate) struct BucketDeltas {
    map: HashMap<BucketKey, BucketDelta>,
}

/// Key of an `event_buckets` row: (environment, event, grain, bucket).
pub(crate) type BucketKey = (i64, String, i64, i64);

impl BucketDeltas {
    /// Adds the upsert of the row of `rows` (sorted by key) with `key`,
    /// which now holds `now` = (count, Σvalue). `grain` is 1 for hourly
    /// rows, 24 for daily ones.
    pub(crate) fn add(
        &mut self,
        grain: i64,
        rows: &[UnitRow<'_>],
        key: (i64, &str, i64, i64),
        now: (i64, f64),
    ) -> Result<()> {
        let i = rows
            .binary_search_by(|r| r.key().cmp(&key))
            .map_err(|_| StoreError::Corrupt(format!("the rollup upserted an unknown row {key:?}")))?;
        let row = &rows[i];
        let (count, sum) = now;
        let old_count = count - row.events;
        // A new row's old sum is exactly 0, whatever the float rounding.
        let old_sum = if old_count == 0 { 0.0 } else { sum - row.value_sum };
        let d = self
            .map
            .entry((row.environment_id, row.event.to_owned(), grain, row.time))
            .or_default();
        d.units += i64::from(old_count == 0);
        d.events += row.events;
        d.events_sq += count * count - old_count * old_count;
        d.value_sum += row.value_sum;
        d.value_sq += sum * sum - old_sum * old_sum;
        Ok(())
    }

    /// The changes in primary-key order.
    pub(crate) fn sorted(&self) -> Vec<(&BucketKey, &BucketDelta)> {
        let mut rows: Vec<_> = self.map.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows
    }
}

/// A row of `event_buckets` read back for a series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketRow {
    pub bucket: i64,
    pub event: String,
    pub units: i64,
    pub events: i64,
    pub events_sq: i64,
    pub value_sum: f64,
    pub value_sq: f64,
}

/// The bucket grain that serves a series of `bucket_hours` from
/// `origin` directly from `event_buckets`, if any: hourly series, and
/// daily series aligned to UTC midnight.
pub(crate) fn bucket_grain(bucket_hours: i64, origin: i64) -> Option<i64> {
    match bucket_hours {
        1 => Some(1),
        DAY_HOURS if origin.rem_euclid(DAY_HOURS) == 0 => Some(DAY_HOURS),
        _ => None,
    }
}

/// The whole buckets of `grain` inside `range`, `[first, end)`, and the
/// parts of the range before and after them (empty when `from >= to`).
pub(crate) fn whole_buckets(range: HourRange, grain: i64) -> (i64, i64, Option<HourRange>, Option<HourRange>) {
    let (from, to) = (clamp_hour(range.from), clamp_hour(range.to));
    let first = from.div_euclid(grain) + i64::from(from.rem_euclid(grain) != 0);
    let end = to.div_euclid(grain);
    if first >= end {
        let all = (from < to).then_some(HourRange { from, to });
        return (first, first, all, None);
    }
    let head = (from < first * grain).then_some(HourRange {
        from,
        to: first * grain,
    });
    let tail = (end * grain < to).then_some(HourRange { from: end * grain, to });
    (first, end, head, tail)
}

/// Per-bucket sufficient statistics of a metric on one event (not a
/// ratio) from `event_buckets` rows ordered by bucket: n is the active
/// units (event `''`), x each unit's count, Σvalue or converted (0/1).
/// Buckets without activity are left out, as in the per-unit queries.
pub(crate) fn sums_from_buckets(
    rows: &[BucketRow],
    event: &str,
    aggregation: crate::metrics::Aggregation,
    grain: i64,
) -> Vec<(i64, UnitSums)> {
    use crate::metrics::Aggregation;
    let mut out: Vec<(i64, UnitSums)> = Vec::new();
    let mut at: Option<(i64, UnitSums)> = None;
    for row in rows {
        if at.as_ref().is_some_and(|(b, _)| *b != row.bucket) {
            out.extend(at.take().filter(|(_, s)| s.n > 0));
        }
        let (_, sums) = at.get_or_insert((row.bucket, UnitSums::default()));
        if row.event.is_empty() {
            sums.n = row.units.max(0) as u64;
        }
        if row.event == event {
            let (sum, sum_sq) = match aggregation {
                Aggregation::Count => (row.events as f64, row.events_sq as f64),
                Aggregation::Conversion => (row.units as f64, row.units as f64),
                Aggregation::Sum | Aggregation::Mean | Aggregation::Ratio => (row.value_sum, row.value_sq),
            };
            sums.sum = sum;
            sums.sum_sq = sum_sq;
        }
    }
    out.extend(at.filter(|(_, s)| s.n > 0));
    for (b, _) in &mut out {
        *b *= grain;
    }
    out
}

/// Hours far outside any timestamp, so open ranges stay plain literals.
const HOUR_LIMIT: i64 = 1 << 50;

fn clamp_hour(hour: i64) -> i64 {
    hour.clamp(-HOUR_LIMIT, HOUR_LIMIT)
}

/// Where a part of a range's per-unit rows is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// `unit_hours` rows with `from <= hour < to`.
    Hours(i64, i64),
    /// `unit_days` rows with `from <= day < to`.
    Days(i64, i64),
}

/// The bucket a part's rows count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// All in bucket `k`.
    Fixed(i64),
    /// `(hour - origin) / width` per row (a day's hour is its first).
    Computed { origin: i64, width: i64 },
}

/// One part of a per-unit read: rows of one table in one time span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub span: Span,
    pub bucket: Bucket,
}

/// Splits `range` into whole UTC days (read from `unit_days`) and the
/// hours around them (from `unit_hours`), all in bucket `bucket`.
fn split_days(range: HourRange, bucket: Bucket, out: &mut Vec<Part>) {
    if range.from >= range.to {
        return;
    }
    let (first, end, head, tail) = whole_buckets(range, DAY_HOURS);
    if let Some(h) = head {
        out.push(Part {
            span: Span::Hours(h.from, h.to),
            bucket,
        });
    }
    if first < end {
        out.push(Part {
            span: Span::Days(first, end),
            bucket,
        });
    }
    if let Some(t) = tail {
        out.push(Part {
            span: Span::Hours(t.from, t.to),
            bucket,
        });
    }
}

/// At most this many windows are read as separate parts; more (never
/// asked by the API) fall back to hourly rows.
const MAX_WINDOWS: i64 = 64;

/// How to read the per-unit rows of `range` in buckets of `bucket_hours`
/// from `origin` (0: one bucket for the whole range): whole days from
/// `unit_days` whenever a day lies inside one bucket, hours otherwise.
pub(crate) fn parts(range: HourRange, bucket_hours: i64, origin: i64) -> Vec<Part> {
    let range = HourRange {
        from: clamp_hour(range.from),
        to: clamp_hour(range.to),
    };
    let mut out = Vec::new();
    if range.from >= range.to {
        return out;
    }
    let computed = Bucket::Computed {
        origin,
        width: bucket_hours.max(1),
    };
    if bucket_hours <= 0 {
        split_days(range, Bucket::Fixed(0), &mut out);
    } else if bucket_hours % DAY_HOURS == 0 && origin.rem_euclid(DAY_HOURS) == 0 {
        split_days(range, computed, &mut out);
    } else if bucket_hours < DAY_HOURS {
        out.push(Part {
            span: Span::Hours(range.from, range.to),
            bucket: computed,
        });
    } else {
        let first = (range.from - origin).div_euclid(bucket_hours);
        let last = (range.to - 1 - origin).div_euclid(bucket_hours);
        if last - first >= MAX_WINDOWS {
            out.push(Part {
                span: Span::Hours(range.from, range.to),
                bucket: computed,
            });
            return out;
        }
        for k in first..=last {
            let start = origin + k * bucket_hours;
            let window = HourRange {
                from: start.max(range.from),
                to: (start + bucket_hours).min(range.to),
            };
            split_days(window, Bucket::Fixed(k), &mut out);
        }
    }
    out
}

/// The SQL dialect a query shared by both backends is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `i`-th bound parameter (1-based).
    fn param(self, i: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{i}"),
            Dialect::Postgres => format!("${i}"),
        }
    }

    /// A float sum that is 0 over no rows.
    fn total(self, e: &str) -> String {
        match self {
            Dialect::Sqlite => format!("TOTAL({e})"),
            Dialect::Postgres => format!("COALESCE(SUM({e}), 0)::float8"),
        }
    }

    /// The per-unit value of a metric from the unit's count `c` and Σvalue `s`.
    fn per_unit(self, aggregation: crate::metrics::Aggregation, c: &str, s: &str) -> String {
        use crate::metrics::Aggregation;
        match aggregation {
            Aggregation::Count => c.to_owned(),
            Aggregation::Conversion => format!("(CASE WHEN {c} > 0 THEN 1 ELSE 0 END)"),
            Aggregation::Sum | Aggregation::Mean | Aggregation::Ratio => s.to_owned(),
        }
    }
}

/// One metric of a one-pass read: the index (into the bound events) and
/// aggregation of its per-unit value x, and of a ratio's denominator y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetricCols {
    pub x: (usize, crate::metrics::Aggregation),
    pub y: Option<(usize, crate::metrics::Aggregation)>,
}

/// Adds `event` to `events` unless it is there; returns its index.
pub(crate) fn event_index(events: &mut Vec<String>, event: &str) -> usize {
    events.iter().position(|e| e == event).unwrap_or_else(|| {
        events.push(event.to_owned());
        events.len() - 1
    })
}

/// SQL of per-bucket sufficient statistics of several metrics in one
/// pass over the per-unit rows of `parts`: per unit, a count and Σvalue
/// per event; then per bucket `b`, `n` (active units) and for metric `m`
/// the columns at `2 + 5m ..`: Σx, Σx², Σy, Σy², Σxy. Parameter 1 is the
/// environment, 2… the `events` events. Only integers computed here and
/// fixed fragments are spliced in.
pub(crate) fn sums_sql(d: Dialect, parts: &[Part], events: usize, metrics: &[MetricCols]) -> String {
    let mut per_event = String::new();
    let mut list = String::from("(''");
    for i in 0..events {
        let p = d.param(i + 2);
        let _ = write!(
            per_event,
            ", {} AS c{i}, {} AS s{i}",
            d.total(&format!("CASE WHEN event = {p} THEN events END")),
            d.total(&format!("CASE WHEN event = {p} THEN value_sum END")),
        );
        let _ = write!(list, ", {p}");
    }
    list.push(')');
    let mut values = String::new();
    let mut sums = String::new();
    for (m, cols) in metrics.iter().enumerate() {
        let x = d.per_unit(cols.x.1, &format!("c{}", cols.x.0), &format!("s{}", cols.x.0));
        let y = cols.y.map_or_else(
            || "0".to_owned(),
            |(i, a)| d.per_unit(a, &format!("c{i}"), &format!("s{i}")),
        );
        let _ = write!(
            values,
            ", CAST({x} AS DOUBLE PRECISION) AS x{m}, CAST({y} AS DOUBLE PRECISION) AS y{m}"
        );
        let _ = write!(
            sums,
            ", {}, {}, {}, {}, {}",
            d.total(&format!("x{m}")),
            d.total(&format!("x{m} * x{m}")),
            d.total(&format!("y{m}")),
            d.total(&format!("y{m} * y{m}")),
            d.total(&format!("x{m} * y{m}")),
        );
    }
    let rows = parts_sql(parts, &d.param(1), &list);
    // sql-format: only fixed fragments, computed integers and parameter numbers; names are bound.
    format!(
        "SELECT b, COUNT(*) AS n{sums}
         FROM (SELECT b{values} FROM (
             SELECT b, unit{per_event} FROM ({rows}) r GROUP BY b, unit) per_unit) v
         GROUP BY b ORDER BY b"
    )
}

impl Dialect {
    /// The join from a metric's rollup rows to the units' exposures:
    /// SQLite's CROSS JOIN keeps that order (scan the rollup rows in the
    /// range, look each unit's exposure up by primary key); PostgreSQL
    /// plans the join itself (hash joins, see its breakdown read).
    fn exposure_join(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        }
    }

    /// n, Σx, Σx², Σy, Σy², Σxy over per-unit `x` and `y`, named as
    /// `sums_from` in each backend reads them.
    fn sums(self) -> String {
        format!(
            "COUNT(*) AS n, {} AS sx, {} AS sxx, {} AS sy, {} AS syy, {} AS sxy",
            self.total("x"),
            self.total("x * x"),
            self.total("y"),
            self.total("y * y"),
            self.total("x * y")
        )
    }
}

/// SQL of a metric broken down by the variation of each unit's first
/// exposure to a flag (see `Store::metric_breakdown`): parameters 1
/// environment, 2 and 3 the hour range, 4 and 5 the x and y events, 6 the
/// flag; columns `b` (variation) and [`Dialect::sums`].
pub(crate) fn breakdown_sql(
    d: Dialect,
    x: crate::metrics::Aggregation,
    y: Option<crate::metrics::Aggregation>,
) -> String {
    let p = |i| d.param(i);
    let (env, from, to, xe, ye, flag) = (p(1), p(2), p(3), p(4), p(5), p(6));
    let x = d.per_unit(x, "COALESCE(p.c1, 0)", "COALESCE(p.s1, 0)");
    let y = y.map_or_else(
        || "0".to_owned(),
        |a| d.per_unit(a, "COALESCE(p.c2, 0)", "COALESCE(p.s2, 0)"),
    );
    // `first_ms / HOUR_MS < to`, not `first_ms < to * HOUR_MS`: an open
    // range (`to` = i64::MAX) must not overflow.
    // sql-format: fixed fragments chosen by aggregation and dialect; names and ranges are bound.
    format!(
        "WITH per_unit AS (
             SELECT m.unit AS unit,
                    {c1} AS c1, {s1} AS s1, {c2} AS c2, {s2} AS s2
             FROM unit_hours m {join} exposures e
                  ON e.environment_id = m.environment_id AND e.flag = {flag} AND e.unit = m.unit
             WHERE m.environment_id = {env} AND m.event IN ({xe}, {ye}) AND m.hour >= {from} AND m.hour < {to}
               AND m.hour >= e.first_ms / {HOUR_MS}
             GROUP BY m.unit)
         SELECT variation AS b, {sums}
         FROM (SELECT e.variation, CAST({x} AS DOUBLE PRECISION) AS x, CAST({y} AS DOUBLE PRECISION) AS y
               FROM exposures e LEFT JOIN per_unit p ON p.unit = e.unit
               WHERE e.environment_id = {env} AND e.flag = {flag} AND e.first_ms / {HOUR_MS} < {to}) v
         GROUP BY variation ORDER BY variation",
        c1 = d.total(&format!("CASE WHEN m.event = {xe} THEN m.events END")),
        s1 = d.total(&format!("CASE WHEN m.event = {xe} THEN m.value_sum END")),
        c2 = d.total(&format!("CASE WHEN m.event = {ye} THEN m.events END")),
        s2 = d.total(&format!("CASE WHEN m.event = {ye} THEN m.value_sum END")),
        join = d.exposure_join(),
        sums = d.sums(),
    )
}

/// Reads a row of [`sums_sql`]: the bucket and each metric's sums.
pub(crate) fn sums_row<R: sqlx::Row>(row: &R, metrics: usize) -> Result<(i64, Vec<UnitSums>)>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let n: i64 = row.try_get(1)?;
    let sums = (0..metrics)
        .map(|m| {
            let at = 2 + 5 * m;
            Ok(UnitSums {
                n: n.max(0) as u64,
                sum: row.try_get(at)?,
                sum_sq: row.try_get(at + 1)?,
                sum_den: row.try_get(at + 2)?,
                sum_den_sq: row.try_get(at + 3)?,
                sum_cross: row.try_get(at + 4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((row.try_get(0)?, sums))
}

/// The SQL of `parts` as one `UNION ALL` of (b, unit, event, events,
/// value_sum) rows; `env` is the environment's placeholder and `events`
/// the parenthesised list of events to read. Only integers computed
/// here are spliced in; names are bound by the caller.
pub(crate) fn parts_sql(parts: &[Part], env: &str, events: &str) -> String {
    let mut sql = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        let (table, column, from, to, hours) = match part.span {
            Span::Hours(from, to) => ("unit_hours", "hour", from, to, "hour"),
            Span::Days(from, to) => ("unit_days", "day", from, to, "day * 24"),
        };
        let b = match part.bucket {
            Bucket::Fixed(k) => format!("CAST({k} AS BIGINT)"),
            Bucket::Computed { origin, width } => format!("({hours} - {origin}) / {width}"),
        };
        let _ = write!(
            sql,
            "SELECT {b} AS b, unit, event, events, value_sum FROM {table}
             WHERE environment_id = {env} AND event IN {events} AND {column} >= {from} AND {column} < {to}"
        );
    }
    sql
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
    /// into the per-unit hourly and daily sums, the per-bucket totals and
    /// first exposures, in one transaction. Incremental: each batch is
    /// read once.
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

    /// [`Store::metric_windows`] of several metrics at once, in one pass
    /// over the per-unit rows (the metric tree: every node's current and
    /// previous window). Returns, per metric in the order given, `count`
    /// windows oldest first.
    pub async fn metric_windows_of(
        &self,
        ws: &str,
        env: &str,
        metrics: &[&str],
        to: i64,
        window_hours: i64,
        count: usize,
    ) -> Result<Vec<Vec<UnitSums>>> {
        let window_hours = window_hours.max(1);
        let from = to - window_hours * count as i64;
        let range = HourRange { from, to };
        let rows = match &self.backend {
            Backend::Sqlite(db) => {
                db.metrics_by_bucket(ws, env, metrics, range, window_hours, from)
                    .await?
            }
            Backend::Postgres(db) => {
                db.metrics_by_bucket(ws, env, metrics, range, window_hours, from)
                    .await?
            }
        };
        let mut out = vec![vec![UnitSums::default(); count]; metrics.len()];
        for (start, sums) in rows {
            let Some(i) = usize::try_from((start - from) / window_hours)
                .ok()
                .filter(|i| *i < count)
            else {
                continue;
            };
            for (m, s) in sums.into_iter().enumerate() {
                if let Some(slot) = out.get_mut(m).and_then(|w| w.get_mut(i)) {
                    *slot = s;
                }
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
    /// unit's metric value counts its events from the hour of its first
    /// exposure on (within `range`), and its covariate is the same metric
    /// over the `pre_hours` hours before that hour. For a ratio metric both
    /// periods carry the numerator and the denominator, with the four
    /// cross products the delta method needs (see [`CupedSums`]).
    pub async fn metric_breakdown_cuped(
        &self,
        ws: &str,
        env: &str,
        metric: &str,
        flag: &str,
        range: HourRange,
        pre_hours: i64,
    ) -> Result<Vec<(String, CupedSums)>> {
        match &self.backend {
            Backend::Sqlite(db) => db.metric_breakdown_cuped(ws, env, metric, flag, range, pre_hours).await,
            Backend::Postgres(db) => db.metric_breakdown_cuped(ws, env, metric, flag, range, pre_hours).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(delta.unit_keys(), vec!["u\"2", "u1"]);
        let ids = HashMap::from([("u1", 10), ("u\"2", 20)]);
        let rows = delta.rows(&ids).unwrap();
        let keys: Vec<_> = rows.hours.iter().map(|r| (r.event, r.time, r.unit)).collect();
        assert_eq!(
            keys,
            vec![("", 0, 10), ("", 1, 10), ("", 2, 20), ("buy", 1, 10), ("buy", 2, 20)]
        );
        // Day 0 holds hours 0 to 23: the three hours of u1 fall into one row.
        let days: Vec<_> = rows.days.iter().map(|r| (r.event, r.time, r.unit, r.events)).collect();
        assert_eq!(
            days,
            vec![("", 0, 10, 5), ("", 0, 20, 1), ("buy", 0, 10, 2), ("buy", 0, 20, 1)]
        );
        assert_eq!((rows.exposures.len(), rows.exposures[0].unit), (1, 10));
        assert!(matches!(delta.rows(&HashMap::new()), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn bucket_deltas_move_a_units_square_from_its_old_sums_to_its_new_ones() {
        let row = |unit, events, value_sum| UnitRow {
            environment_id: 1,
            event: "buy",
            time: 5,
            unit,
            events,
            value_sum,
        };
        // Unit 1 is new (1 event, 2.0); unit 2 had 2 events summing 3.0 and gets 1 more of 4.0.
        let rows = [row(1, 1, 2.0), row(2, 1, 4.0)];
        let mut d = BucketDeltas::default();
        d.add(1, &rows, (1, "buy", 5, 1), (1, 2.0)).unwrap();
        d.add(1, &rows, (1, "buy", 5, 2), (3, 7.0)).unwrap();
        let sorted = d.sorted();
        assert_eq!(sorted.len(), 1);
        assert_eq!(
            *sorted[0].1,
            BucketDelta {
                units: 1,
                events: 2,
                events_sq: 1 + (9 - 4),
                value_sum: 6.0,
                value_sq: 4.0 + (49.0 - 9.0),
            }
        );
        assert!(matches!(
            d.add(1, &rows, (1, "buy", 6, 1), (1, 1.0)),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn bucket_rows_become_per_bucket_sums_over_the_active_units() {
        let row = |bucket, event: &str, units, events, events_sq, value_sum, value_sq| BucketRow {
            bucket,
            event: event.into(),
            units,
            events,
            events_sq,
            value_sum,
            value_sq,
        };
        let rows = [
            row(2, "", 3, 9, 30, 0.0, 0.0),
            row(2, "buy", 2, 3, 5, 10.0, 50.0),
            row(3, "buy", 1, 1, 1, 1.0, 1.0),
            row(4, "", 1, 1, 1, 0.0, 0.0),
        ];
        use crate::metrics::Aggregation as A;
        let sums = |a| {
            sums_from_buckets(&rows, "buy", a, 24)
                .into_iter()
                .map(|(b, s)| (b, s.n, s.sum, s.sum_sq))
                .collect::<Vec<_>>()
        };
        // Bucket 3 has no activity row, so it is left out; bucket 4 has no buy: zero.
        assert_eq!(sums(A::Sum), vec![(48, 3, 10.0, 50.0), (96, 1, 0.0, 0.0)]);
        assert_eq!(sums(A::Count), vec![(48, 3, 3.0, 5.0), (96, 1, 0.0, 0.0)]);
        assert_eq!(sums(A::Conversion), vec![(48, 3, 2.0, 2.0), (96, 1, 0.0, 0.0)]);
    }

    #[test]
    fn a_range_is_read_as_whole_days_and_the_hours_around_them() {
        let r = |from, to| HourRange { from, to };
        // One bucket from hour 30 to hour 100: hours 30–47, days 2–3, hours 96–99.
        assert_eq!(
            parts(r(30, 100), 0, 0),
            vec![
                Part {
                    span: Span::Hours(30, 48),
                    bucket: Bucket::Fixed(0)
                },
                Part {
                    span: Span::Days(2, 4),
                    bucket: Bucket::Fixed(0)
                },
                Part {
                    span: Span::Hours(96, 100),
                    bucket: Bucket::Fixed(0)
                },
            ]
        );
        // Within one day: hours only.
        assert_eq!(
            parts(r(50, 60), 0, 0),
            vec![Part {
                span: Span::Hours(50, 60),
                bucket: Bucket::Fixed(0)
            }]
        );
        // Daily buckets from midnight: days computed per row.
        let daily = Bucket::Computed { origin: 0, width: 24 };
        assert_eq!(
            parts(r(48, 96), 24, 0),
            vec![Part {
                span: Span::Days(2, 4),
                bucket: daily
            }]
        );
        // Two windows of 48 hours from hour 12: each split on its own.
        assert_eq!(
            parts(r(12, 108), 48, 12),
            vec![
                Part {
                    span: Span::Hours(12, 24),
                    bucket: Bucket::Fixed(0)
                },
                Part {
                    span: Span::Days(1, 2),
                    bucket: Bucket::Fixed(0)
                },
                Part {
                    span: Span::Hours(48, 60),
                    bucket: Bucket::Fixed(0)
                },
                Part {
                    span: Span::Hours(60, 72),
                    bucket: Bucket::Fixed(1)
                },
                Part {
                    span: Span::Days(3, 4),
                    bucket: Bucket::Fixed(1)
                },
                Part {
                    span: Span::Hours(96, 108),
                    bucket: Bucket::Fixed(1)
                },
            ]
        );
        // Hourly buckets: hours only; an empty or open range stays finite.
        assert_eq!(parts(r(5, 5), 1, 0), vec![]);
        let open = parts(r(i64::MIN, i64::MAX), 0, 0);
        assert!(open.iter().any(|p| matches!(p.span, Span::Days(..))));
        assert!(!parts_sql(&open, "?1", "('')").contains(&i64::MAX.to_string()));
    }

    #[test]
    fn a_stored_batch_that_is_not_the_builders_encoding_is_reported_corrupt() {
        let mut delta = RollupDelta::default();
        let err = delta.add_batch(1, br#"[{"kind": "track"}]"#).unwrap_err();
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
}
