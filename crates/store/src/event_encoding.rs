//! The stored form of an event batch (`event_batches.events`): a compact
//! binary encoding written only by [`EventBatchBuilder`] and read only by
//! [`decode`].
//!
//! Why not JSON: the server parses the request once and already holds
//! validated, typed events; printing them back as JSON text cost a third
//! of the bytes written to the WAL again, and the rollup then parsed that
//! text a second time. The binary form interns every string once per
//! batch (event names, flag keys and variations repeat on almost every
//! event), so a batch of 1,000 events is about half the size of the
//! compact JSON arrays it replaces and decodes without a parser.
//!
//! Layout (integers are unsigned LEB128 varints unless said otherwise):
//!
//! ```text
//! 0x01                           format version (JSON text starts with `[`)
//! count                          events
//! strings, then each: len, UTF-8 bytes
//! base_ms                        zigzag varint: the first event's timestamp
//! per event:
//!   tag                          bit 0: exposure (else track); bit 1: value; bit 2: properties
//!   name, unit                   string indexes (event or flag; targeting key)
//!   [variation]                  string index, exposures only
//!   delta_ms                     zigzag varint: timestamp − base_ms
//!   [value]                      8 bytes, f64 little-endian
//!   [properties]                 len, the JSON text of an object
//! ```
//!
//! Batches stored before this encoding are compact JSON arrays
//! (`[[kind, name, unit, variation, value, ms, properties], …]`); [`decode`]
//! reads both, so a database upgraded with batches not yet rolled up
//! loses nothing.

use std::borrow::Cow;

use hashbrown::HashTable;

use crate::error::{Result, StoreError};

/// The first byte of a binary batch.
const FORMAT_V1: u8 = 1;

const TAG_EXPOSURE: u8 = 1;
const TAG_VALUE: u8 = 2;
const TAG_PROPERTIES: u8 = 4;

/// Encodes the events of one batch in the stored form. Events are pushed
/// already validated (the server checks names, units and timestamps).
#[derive(Debug, Default)]
pub struct EventBatchBuilder {
    /// The string table: (len, bytes) per interned string.
    strings: Vec<u8>,
    /// Where each interned string's bytes start and end in `strings`.
    spans: Vec<(u32, u32)>,
    /// Indexes into `spans`, hashed by string content. The hasher is
    /// seeded per process, so strings chosen by a client cannot be made to
    /// collide on purpose.
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// The encoded events.
    rows: Vec<u8>,
    base_ms: i64,
    count: u32,
}

impl EventBatchBuilder {
    /// An empty batch with room for about `events` events.
    pub fn with_capacity(events: usize) -> Self {
        EventBatchBuilder {
            strings: Vec::with_capacity(events * 12),
            spans: Vec::with_capacity(events),
            index: HashTable::with_capacity(events),
            rows: Vec::with_capacity(events * 16),
            ..EventBatchBuilder::default()
        }
    }

    /// The index of `s` in the string table, adding it on first use.
    fn intern(&mut self, s: &str) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(s);
        let (strings, spans) = (&self.strings, &self.spans);
        let text = |i: u32| {
            let (start, end) = spans[i as usize];
            &strings[start as usize..end as usize]
        };
        if let Some(&i) = self.index.find(hash, |&i| text(i) == s.as_bytes()) {
            return i;
        }
        let i = self.spans.len() as u32;
        put_varint(&mut self.strings, s.len() as u64);
        let start = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.spans.push((start, self.strings.len() as u32));
        let hasher = &self.hasher;
        let (strings, spans) = (&self.strings, &self.spans);
        self.index.insert_unique(hash, i, |&j| {
            let (start, end) = spans[j as usize];
            hasher.hash_one(std::str::from_utf8(&strings[start as usize..end as usize]).unwrap_or_default())
        });
        i
    }

    fn start(&mut self, tag: u8, timestamp_ms: i64) {
        if self.count == 0 {
            self.base_ms = timestamp_ms;
        }
        self.count += 1;
        self.rows.push(tag);
    }

    /// Adds a track event. `properties` is the raw JSON text of an object.
    pub fn track(&mut self, event: &str, unit: &str, value: Option<f64>, timestamp_ms: i64, properties: Option<&str>) {
        let value = value.filter(|v| v.is_finite());
        let tag = if value.is_some() { TAG_VALUE } else { 0 } | if properties.is_some() { TAG_PROPERTIES } else { 0 };
        self.start(tag, timestamp_ms);
        let (name, unit) = (self.intern(event), self.intern(unit));
        put_varint(&mut self.rows, u64::from(name));
        put_varint(&mut self.rows, u64::from(unit));
        put_varint(&mut self.rows, zigzag(timestamp_ms.wrapping_sub(self.base_ms)));
        if let Some(v) = value {
            self.rows.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(p) = properties {
            put_varint(&mut self.rows, p.len() as u64);
            self.rows.extend_from_slice(p.as_bytes());
        }
    }

    /// Adds an exposure: `unit` was served `variation` of `flag`.
    pub fn exposure(&mut self, flag: &str, variation: &str, unit: &str, timestamp_ms: i64) {
        self.start(TAG_EXPOSURE, timestamp_ms);
        let (name, unit, variation) = (self.intern(flag), self.intern(unit), self.intern(variation));
        put_varint(&mut self.rows, u64::from(name));
        put_varint(&mut self.rows, u64::from(unit));
        put_varint(&mut self.rows, u64::from(variation));
        put_varint(&mut self.rows, zigzag(timestamp_ms.wrapping_sub(self.base_ms)));
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
    pub fn finish(self, environment_id: i64, batch_id: Option<String>) -> crate::EventBatch {
        let mut out = Vec::with_capacity(self.strings.len() + self.rows.len() + 24);
        out.push(FORMAT_V1);
        put_varint(&mut out, u64::from(self.count));
        put_varint(&mut out, self.spans.len() as u64);
        out.extend_from_slice(&self.strings);
        put_varint(&mut out, zigzag(self.base_ms));
        out.extend_from_slice(&self.rows);
        crate::EventBatch {
            environment_id,
            batch_id,
            count: self.count,
            events: out,
        }
    }
}

/// One stored event, as the rollup reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEvent<'a> {
    /// An exposure (else a track event).
    pub exposure: bool,
    /// The event name, or the flag key of an exposure.
    pub name: Cow<'a, str>,
    /// The targeting key.
    pub unit: Cow<'a, str>,
    /// The variation of an exposure.
    pub variation: Option<Cow<'a, str>>,
    /// The value of a track event, if sent.
    pub value: Option<f64>,
    /// Unix time in milliseconds.
    pub timestamp_ms: i64,
    /// The raw JSON text of a track event's properties.
    pub properties: Option<Cow<'a, str>>,
}

/// Decodes a stored batch, binary or (stored before the binary form) JSON.
/// A batch that is neither is [`StoreError::Corrupt`], never a panic.
pub(crate) fn decode(stored: &[u8]) -> Result<Vec<StoredEvent<'_>>> {
    match stored.first() {
        Some(&FORMAT_V1) => decode_v1(stored).ok_or_else(|| corrupt("truncated or malformed binary batch")),
        Some(b'[') => decode_json(stored),
        _ => Err(corrupt("unknown encoding")),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored event batch: {what}"))
}

/// A cursor over the bytes of a binary batch; every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn text(&mut self) -> Option<&'a str> {
        let n = self.varint()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

fn decode_v1(stored: &[u8]) -> Option<Vec<StoredEvent<'_>>> {
    let mut r = Reader { bytes: stored, at: 1 };
    let count = r.varint()?;
    let n_strings = r.varint()?;
    // Every string takes at least one byte and every event at least four:
    // bound the allocations by the input before trusting the counts.
    let strings = (0..n_strings.min(stored.len() as u64))
        .map(|_| r.text())
        .collect::<Option<Vec<&str>>>()?;
    if strings.len() as u64 != n_strings {
        return None;
    }
    let string = |i: u64| strings.get(usize::try_from(i).ok()?).copied().map(Cow::Borrowed);
    let base_ms = unzigzag(r.varint()?);
    let mut events = Vec::with_capacity(count.min(stored.len() as u64 / 4) as usize);
    for _ in 0..count {
        let tag = r.byte()?;
        if tag & !(TAG_EXPOSURE | TAG_VALUE | TAG_PROPERTIES) != 0 {
            return None;
        }
        let name = string(r.varint()?)?;
        let unit = string(r.varint()?)?;
        let exposure = tag & TAG_EXPOSURE != 0;
        let variation = if exposure { Some(string(r.varint()?)?) } else { None };
        let timestamp_ms = base_ms.wrapping_add(unzigzag(r.varint()?));
        let value = if tag & TAG_VALUE != 0 {
            Some(f64::from_le_bytes(r.take(8)?.try_into().ok()?))
        } else {
            None
        };
        let properties = if tag & TAG_PROPERTIES != 0 {
            Some(Cow::Borrowed(r.text()?))
        } else {
            None
        };
        events.push(StoredEvent {
            exposure,
            name,
            unit,
            variation,
            value,
            timestamp_ms,
            properties,
        });
    }
    (r.at == stored.len()).then_some(events)
}

/// The JSON form stored before the binary one: kind (0 track, 1 exposure),
/// name, unit, variation, value, timestamp (ms), properties.
#[derive(serde::Deserialize)]
struct JsonEvent<'a>(
    u8,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    Option<f64>,
    i64,
    #[serde(borrow)] Option<&'a serde_json::value::RawValue>,
);

fn decode_json(stored: &[u8]) -> Result<Vec<StoredEvent<'_>>> {
    let events: Vec<JsonEvent<'_>> = serde_json::from_slice(stored).map_err(|e| corrupt(&format!("JSON: {e}")))?;
    Ok(events
        .into_iter()
        .map(
            |JsonEvent(kind, name, unit, variation, value, timestamp_ms, properties)| StoredEvent {
                exposure: kind == 1,
                name,
                unit,
                variation,
                value,
                timestamp_ms,
                properties: properties.filter(|p| p.get() != "null").map(|p| Cow::Borrowed(p.get())),
            },
        )
        .collect())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(b: EventBatchBuilder) -> Vec<StoredEvent<'static>> {
        let batch = b.finish(1, None);
        let bytes: &'static [u8] = Box::leak(batch.events.into_boxed_slice());
        decode(bytes).unwrap()
    }

    #[test]
    fn track_and_exposure_events_round_trip_with_their_timestamps_values_and_properties() {
        let mut b = EventBatchBuilder::with_capacity(4);
        b.track(
            "buy \"now\"",
            "u1",
            Some(2.5),
            1_800_000_000_123,
            Some(r#"{"plan":"pro"}"#),
        );
        b.exposure("f", "on", "u2", 1_799_999_000_000);
        b.track("visit", "u1", None, i64::MAX, None);
        b.track("visit", "ü\u{1F600}", Some(-0.0), i64::MIN, None);
        let events = decoded(b);
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0],
            StoredEvent {
                exposure: false,
                name: "buy \"now\"".into(),
                unit: "u1".into(),
                variation: None,
                value: Some(2.5),
                timestamp_ms: 1_800_000_000_123,
                properties: Some(r#"{"plan":"pro"}"#.into()),
            }
        );
        assert_eq!(
            (events[1].exposure, &*events[1].name, events[1].variation.as_deref()),
            (true, "f", Some("on"))
        );
        assert_eq!(events[1].timestamp_ms, 1_799_999_000_000);
        assert_eq!((events[2].timestamp_ms, events[2].value), (i64::MAX, None));
        assert_eq!((&*events[3].unit, events[3].timestamp_ms), ("ü\u{1F600}", i64::MIN));
        assert!(events[3].value.unwrap().is_sign_negative());
    }

    #[test]
    fn repeated_strings_are_stored_once() {
        let mut b = EventBatchBuilder::default();
        for i in 0..100 {
            b.track("checkout", "user-1", Some(f64::from(i)), 1_000 + i64::from(i), None);
        }
        let batch = b.finish(1, None);
        // 2 strings, then 100 events of tag, 2 indexes, ts delta (1-2 bytes) and 8-byte value.
        assert!(batch.events.len() < 1_300, "{} bytes", batch.events.len());
        let json_size = 100 * r#"[0,"checkout","user-1",null,12,1000,null],"#.len();
        assert!(batch.events.len() * 2 < json_size);
    }

    #[test]
    fn an_empty_batch_round_trips_as_no_events() {
        assert!(decoded(EventBatchBuilder::default()).is_empty());
    }

    #[test]
    fn batches_stored_as_json_before_the_binary_form_still_decode() {
        let json = br#"[[0,"buy \"x\"","u1",null,2.5,1000,{"a":1}],[1,"f","u2","on",null,2000,null]]"#;
        let events = decode(json).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!((&*events[0].name, events[0].value), ("buy \"x\"", Some(2.5)));
        assert_eq!(events[0].properties.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!((events[1].exposure, events[1].variation.as_deref()), (true, Some("on")));
        assert_eq!(events[1].properties, None);
    }

    #[test]
    fn every_truncation_or_corruption_of_a_batch_is_an_error_not_a_panic() {
        let mut b = EventBatchBuilder::default();
        b.track("buy", "u1", Some(1.0), 5, Some("{}"));
        b.exposure("f", "on", "u2", 7);
        let bytes = b.finish(1, None).events;
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "a batch cut at {n} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        // Flip every byte in turn: decoding either fails or yields events, never panics.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
        assert!(matches!(decode(b"{}"), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(&[1, 0xff, 0xff, 0xff]), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn random_batches_round_trip() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50 {
            let mut b = EventBatchBuilder::default();
            let mut expected = Vec::new();
            for _ in 0..(next() % 300) {
                let r = next();
                let unit = format!("user-{}", r % 50);
                let ts = 1_800_000_000_000 + (r % 7_200_000) as i64 - 3_600_000;
                if r.is_multiple_of(7) {
                    let variation = if r.is_multiple_of(2) { "on" } else { "off" };
                    b.exposure("flag", variation, &unit, ts);
                    expected.push((true, "flag".to_owned(), unit, Some(variation.to_owned()), None, ts));
                } else {
                    let value = (r % 3 > 0).then(|| (r % 10_000) as f64 / 7.0);
                    let name = format!("event-{}", r % 5);
                    b.track(&name, &unit, value, ts, None);
                    expected.push((false, name, unit, None, value, ts));
                }
            }
            let got: Vec<_> = decoded(b)
                .into_iter()
                .map(|e| {
                    (
                        e.exposure,
                        e.name.into_owned(),
                        e.unit.into_owned(),
                        e.variation.map(Cow::into_owned),
                        e.value,
                        e.timestamp_ms,
                    )
                })
                .collect();
            assert_eq!(got, expected);
        }
    }
}
