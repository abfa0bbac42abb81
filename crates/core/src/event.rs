//! Track and exposure events as SDKs send them (`POST /events/v1/batch`):
//! the one parser of a batch body and the validation of each event.
//!
//! The body is parsed once, envelope and events together, into borrowed
//! typed fields (strings are copied only when they hold escapes). A
//! wrongly typed field does not fail the parse: it is kept and reported
//! when its event is validated, so one bad event never refuses the
//! others. Validation is per event and names the wrong field.
//!
//! Pure like the rest of the crate: the caller passes the current time and
//! the retention horizon. The server calls exactly this code
//! (`crates/server/src/api/events.rs`), and `fuzz/fuzz_targets/event_batch.rs`
//! fuzzes it.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// How far in the future an event timestamp may be (clock skew), in ms.
pub const MAX_FUTURE_MS: i64 = 3_600_000;

/// Longest event name, flag key, variation or targeting key, in bytes.
pub const MAX_NAME: usize = 256;

/// Largest `properties` object, in bytes of JSON.
pub const MAX_PROPERTIES: usize = 8 * 1024;

/// Longest `batch_id`, in bytes.
pub const MAX_BATCH_ID: usize = 128;

/// A batch body, parsed in one pass: the idempotency id and every event's
/// fields, not yet validated ([`Batch::events`] validates each).
pub struct Batch<'a> {
    /// The client's idempotency id (a UUID is typical).
    pub batch_id: Option<Cow<'a, str>>,
    /// The first `max_events` events (see [`Batch::parse`]).
    events: Vec<Item<'a>>,
    /// Events sent, kept or not.
    sent: usize,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("batch_id", &self.batch_id)
            .field("events", &self.sent)
            .finish()
    }
}

impl<'a> Batch<'a> {
    /// Parses a body, keeping at most `max_events` events: the rest are
    /// only counted (and [`Batch::check`] refuses the batch), so a body of
    /// millions of tiny items costs no more memory than `max_events`
    /// events. Errors are serde_json's: the caller tells syntax errors
    /// ([`serde_json::Error::is_syntax`], `is_eof`) from a body of the
    /// wrong shape (no `events` array, a `batch_id` that is not a string).
    pub fn parse(body: &'a [u8], max_events: usize) -> Result<Self, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let batch = serde::de::DeserializeSeed::deserialize(BatchSeed { max_events }, &mut de)?;
        de.end()?;
        Ok(batch)
    }

    /// Number of events sent (valid or not).
    pub fn len(&self) -> usize {
        self.sent
    }

    /// Whether `events` is empty.
    pub fn is_empty(&self) -> bool {
        self.sent == 0
    }

    /// Checks the envelope itself: at most `max_events` events and a
    /// well-formed `batch_id`. Returns every problem as (JSON pointer, message).
    pub fn check(&self, max_events: usize) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.sent > max_events {
            problems.push((
                "/events",
                format!("{} events; a batch holds at most {max_events}", self.sent),
            ));
        }
        if let Some(id) = self.batch_id.as_deref()
            && (id.is_empty() || id.len() > MAX_BATCH_ID)
        {
            problems.push((
                "/batch_id",
                format!("must be 1-{MAX_BATCH_ID} bytes (a UUID is typical)"),
            ));
        }
        problems
    }

    /// Validates each kept event in order: `now_ms` is the current time and
    /// `oldest_ms` the oldest timestamp still within the event retention.
    pub fn events<'b>(&'b self, now_ms: i64, oldest_ms: i64) -> Events<'b, 'a> {
        Events {
            items: self.events.iter(),
            now_ms,
            oldest_ms,
            last_time: None,
        }
    }
}

/// The validated events of a [`Batch`], in order (see [`Batch::events`]).
pub struct Events<'b, 'a> {
    items: std::slice::Iter<'b, Item<'a>>,
    now_ms: i64,
    oldest_ms: i64,
    /// The last timestamp parsed: the events of a batch usually share a
    /// handful of timestamps, so most are one comparison.
    last_time: Option<(&'b str, i64)>,
}

impl<'b> Iterator for Events<'b, '_> {
    type Item = Result<Event<'b>, EventError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.items.next()?;
        Some(self.validate(item))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl ExactSizeIterator for Events<'_, '_> {}

/// A validated event; strings borrow from the [`Batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A metric event: `unit` did `event`, with an optional value.
    Track {
        /// Event name: 1–[`MAX_NAME`] bytes, no control characters.
        event: &'a str,
        /// The targeting key of the unit.
        unit: &'a str,
        /// A finite value, if sent.
        value: Option<f64>,
        /// Unix time in milliseconds.
        timestamp_ms: i64,
        /// The raw JSON text of an object of at most [`MAX_PROPERTIES`]
        /// bytes, which any JSON store accepts (no `\u0000`, no lone
        /// surrogate, numbers within a double's range).
        properties: Option<&'a str>,
    },
    /// `unit` was served `variation` of `flag`.
    Exposure {
        /// Flag key.
        flag: &'a str,
        /// Variation key.
        variation: &'a str,
        /// The targeting key of the unit.
        unit: &'a str,
        /// Unix time in milliseconds.
        timestamp_ms: i64,
    },
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    /// The wrong field (`timestamp`), or empty when the event as a whole is wrong.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> EventError {
    EventError {
        field,
        message: message.into(),
    }
}

/// One element of `events`: an object (maybe with wrong fields) or
/// something else, which is reported as such.
enum Item<'a> {
    Event(WireEvent<'a>),
    NotObject(&'static str),
}

/// One event on the wire: a track or an exposure, told apart by `kind`.
#[derive(Default)]
struct WireEvent<'a> {
    kind: Scalar<'a>,
    event: Scalar<'a>,
    flag: Scalar<'a>,
    variation: Scalar<'a>,
    targeting_key: Scalar<'a>,
    value: Scalar<'a>,
    timestamp: Scalar<'a>,
    properties: Option<&'a RawValue>,
}

/// A field's JSON value as far as validation cares.
#[derive(Default)]
enum Scalar<'a> {
    /// The field is absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    Str(Cow<'a, str>),
    Num(f64),
    /// Any other JSON type (named for the message).
    Other(&'static str),
}

impl<'b> Events<'b, '_> {
    fn validate(&mut self, item: &'b Item<'_>) -> Result<Event<'b>, EventError> {
        let e = match item {
            Item::Event(e) => e,
            Item::NotObject(what) => return Err(err("", format!("is {what}; an event is an object"))),
        };
        let kind = match &e.kind {
            Scalar::Str(k) => k.as_ref(),
            Scalar::Missing | Scalar::Null => return Err(err("kind", "is required (track or exposure)")),
            Scalar::Num(_) => return Err(err("kind", "must be a string (track or exposure), not a number")),
            Scalar::Other(what) => {
                return Err(err("kind", format!("must be a string (track or exposure), not {what}")));
            }
        };
        let track = match kind {
            "track" => true,
            "exposure" => false,
            _ => return Err(err("kind", format!("`{kind}` is not an event kind (track, exposure)"))),
        };
        let unit = name("targeting_key", &e.targeting_key)?;
        let timestamp_ms = match &e.timestamp {
            Scalar::Missing | Scalar::Null => return Err(err("timestamp", "is required")),
            Scalar::Str(s) => self.time(s).ok_or_else(|| {
                err(
                    "timestamp",
                    format!("`{s}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z"),
                )
            })?,
            _ => {
                return Err(err(
                    "timestamp",
                    "must be an RFC 3339 time string such as 2026-01-31T12:00:00Z",
                ));
            }
        };
        if timestamp_ms > self.now_ms.saturating_add(MAX_FUTURE_MS) {
            return Err(err("timestamp", "is more than an hour in the future"));
        }
        if timestamp_ms < self.oldest_ms {
            return Err(err("timestamp", "is older than the event retention"));
        }
        if track {
            let event = name("event", &e.event)?;
            let value = match &e.value {
                Scalar::Missing | Scalar::Null => None,
                Scalar::Num(v) => Some(*v),
                Scalar::Str(_) => return Err(err("value", "must be a number, not a string")),
                Scalar::Other(what) => return Err(err("value", format!("must be a number, not {what}"))),
            };
            let properties = match e.properties {
                None => None,
                Some(p) if p.get() == "null" => None,
                Some(p) => Some(check_properties(p.get())?),
            };
            Ok(Event::Track {
                event,
                unit,
                value,
                timestamp_ms,
                properties,
            })
        } else {
            Ok(Event::Exposure {
                flag: name("flag", &e.flag)?,
                variation: name("variation", &e.variation)?,
                unit,
                timestamp_ms,
            })
        }
    }

    /// Parses an RFC 3339 time to Unix milliseconds, reusing the last result.
    fn time(&mut self, s: &'b str) -> Option<i64> {
        if let Some((text, ms)) = self.last_time
            && text == s
        {
            return Some(ms);
        }
        let ms = chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis();
        self.last_time = Some((s, ms));
        Some(ms)
    }
}

/// A required name: a string of 1–[`MAX_NAME`] bytes without control characters.
fn name<'b>(field: &'static str, v: &'b Scalar<'_>) -> Result<&'b str, EventError> {
    match v {
        Scalar::Missing | Scalar::Null => Err(err(field, "is required")),
        Scalar::Num(_) => Err(err(field, "must be a string, not a number")),
        Scalar::Other(what) => Err(err(field, format!("must be a string, not {what}"))),
        Scalar::Str(s) if s.is_empty() || s.len() > MAX_NAME || has_control(s) => Err(err(
            field,
            format!("must be 1-{MAX_NAME} bytes without control characters"),
        )),
        Scalar::Str(s) => Ok(s.as_ref()),
    }
}

/// Whether `s` holds a control character (Unicode category Cc: U+0000–U+001F,
/// U+007F–U+009F). Bytewise: the C1 controls are the only characters
/// encoded as 0xC2 0x80–0x9F in UTF-8.
fn has_control(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c < 0x20 || c == 0x7f || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n))))
}

/// Checks a `properties` value (raw JSON text, already syntactically
/// valid) and returns it.
///
/// Beyond "an object of bounded size", it refuses what a JSON store would
/// refuse later, when it is too late to tell the client: PostgreSQL's
/// `jsonb` has no `\u0000` and no lone surrogate, and a number beyond a
/// double's range is not a number any consumer can read. The check walks
/// the value without building it.
pub fn check_properties(p: &str) -> Result<&str, EventError> {
    if !p.starts_with('{') {
        return Err(err("properties", "must be an object"));
    }
    if p.len() > MAX_PROPERTIES {
        return Err(err(
            "properties",
            format!("must be at most {MAX_PROPERTIES} bytes of JSON"),
        ));
    }
    let mut de = serde_json::Deserializer::from_str(p);
    match serde::Deserializer::deserialize_any(&mut de, Storable) {
        Ok(true) => Ok(p),
        Ok(false) => Err(err(
            "properties",
            "must not contain the character U+0000 (\\u0000) in a key or string",
        )),
        Err(e) => Err(err("properties", e.to_string())),
    }
}

/// Walks a JSON value; `true` when no key or string holds U+0000. Numbers
/// are parsed (so one beyond a double's range is an error) and strings
/// unescaped (so a lone surrogate is an error), nothing is kept.
struct Storable;

impl<'de> Visitor<'de> for Storable {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(!v.contains('\0'))
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut ok = true;
        while let Some(v) = seq.next_element_seed(StorableSeed)? {
            ok &= v;
        }
        Ok(ok)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut ok = true;
        while let Some(k) = map.next_key_seed(StorableSeed)? {
            ok &= k & map.next_value_seed(StorableSeed)?;
        }
        Ok(ok)
    }
}

struct StorableSeed;

impl<'de> serde::de::DeserializeSeed<'de> for StorableSeed {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Storable)
    }
}

/// Parses the envelope with a bound on the events kept.
struct BatchSeed {
    max_events: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for BatchSeed {
    type Value = Batch<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Batch<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed {
    type Value = Batch<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"an object {"batch_id": …, "events": [...]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch<'de>, A::Error> {
        use serde::de::Error;
        let mut batch_id = None;
        let mut events = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "batch_id" => {
                    batch_id = match map.next_value::<Scalar<'de>>()? {
                        Scalar::Str(s) => Some(s),
                        Scalar::Missing | Scalar::Null => None,
                        _ => return Err(A::Error::custom("`batch_id` must be a string")),
                    }
                }
                "events" => {
                    events = Some(map.next_value_seed(EventsSeed {
                        max_events: self.max_events,
                    })?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (events, sent) = events.ok_or_else(|| A::Error::missing_field("events"))?;
        Ok(Batch { batch_id, events, sent })
    }
}

/// Parses `events`: keeps the first `max_events` items, counts the rest.
struct EventsSeed {
    max_events: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for EventsSeed {
    type Value = (Vec<Item<'de>>, usize);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed {
    type Value = (Vec<Item<'de>>, usize);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_events).min(1024));
        let mut sent = 0usize;
        while sent < self.max_events {
            match seq.next_element::<Item<'de>>()? {
                Some(item) => items.push(item),
                None => return Ok((items, sent)),
            }
            sent += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            sent += 1;
        }
        Ok((items, sent))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor(std::marker::PhantomData))
    }
}

struct ItemVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ItemVisitor<'a> {
    type Value = Item<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut e = WireEvent::default();
        // Keys are matched borrowed; an escaped key (rare) is owned.
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "kind" => &mut e.kind,
                "event" => &mut e.event,
                "flag" => &mut e.flag,
                "variation" => &mut e.variation,
                "targeting_key" => &mut e.targeting_key,
                "value" => &mut e.value,
                "timestamp" => &mut e.timestamp,
                "properties" => {
                    e.properties = Some(map.next_value::<&'de RawValue>()?);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(Item::Event(e))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::NotObject("an array"))
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a string"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a string"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a number"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Item::NotObject("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Item::NotObject("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    /// Validates the only event of `{"events": [json]}`.
    fn check(json: &str) -> Result<Event<'static>, EventError> {
        let body: &'static str = Box::leak(format!(r#"{{"events":[{json}]}}"#).into_boxed_str());
        let batch: &'static Batch<'static> = Box::leak(Box::new(Batch::parse(body.as_bytes(), 10).unwrap()));
        batch.events(NOW, NOW - 86_400_000).next().unwrap()
    }

    fn track(props: &str) -> String {
        format!(
            r#"{{"kind":"track","event":"buy","targeting_key":"u1","timestamp":"2027-01-15T08:00:00Z","properties":{props}}}"#
        )
    }

    #[test]
    fn a_track_event_with_an_object_of_properties_is_accepted() {
        let json = track(r#"{"plan":"pro","n":[1,2],"x":{"y":null,"z":true}}"#);
        let Ok(Event::Track { properties, .. }) = check(&json) else {
            panic!("refused: {json}");
        };
        assert_eq!(properties, Some(r#"{"plan":"pro","n":[1,2],"x":{"y":null,"z":true}}"#));
    }

    #[test]
    fn properties_with_a_nul_character_are_refused_naming_the_field() {
        for props in [r#"{"a":"x\u0000y"}"#, r#"{"a\u0000":1}"#, r#"{"a":[{"b":"\u0000"}]}"#] {
            let e = check(&track(props)).unwrap_err();
            assert_eq!(e.field, "properties", "{props}");
            assert!(e.message.contains("U+0000"), "{e}");
        }
    }

    #[test]
    fn properties_with_a_lone_surrogate_or_an_infinite_number_are_refused() {
        for props in [r#"{"a":"\ud800"}"#, r#"{"a":1e400}"#, r#"{"a":[-1e999999]}"#] {
            let e = check(&track(props)).unwrap_err();
            assert_eq!(e.field, "properties", "{props}");
        }
    }

    #[test]
    fn properties_that_are_not_an_object_are_refused() {
        assert_eq!(check(&track("[1]")).unwrap_err().field, "properties");
    }

    #[test]
    fn a_timestamp_far_beyond_any_clock_is_refused_not_overflowed() {
        let e = check(r#"{"kind":"exposure","flag":"f","variation":"on","targeting_key":"u","timestamp":"+262142-12-31T23:59:59Z"}"#)
            .unwrap_err();
        assert_eq!(e.field, "timestamp");
    }

    #[test]
    fn wrongly_typed_fields_are_reported_by_field_and_do_not_fail_the_parse() {
        let cases = [
            (r#"42"#, ""),
            (r#"{"kind":1}"#, "kind"),
            (r#"{"kind":"click"}"#, "kind"),
            (r#"{"kind":"track","targeting_key":7}"#, "targeting_key"),
            (
                r#"{"kind":"track","targeting_key":"u","timestamp":"yesterday"}"#,
                "timestamp",
            ),
            (
                r#"{"kind":"track","targeting_key":"u","timestamp":"2027-01-15T08:00:00Z","event":"e","value":"12"}"#,
                "value",
            ),
            (
                r#"{"kind":"exposure","targeting_key":"u","timestamp":"2027-01-15T08:00:00Z","flag":"f","variation":[]}"#,
                "variation",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(check(json).unwrap_err().field, field, "{json}");
        }
    }

    #[test]
    fn names_with_control_characters_are_refused_and_other_unicode_is_not() {
        let event = |name: &str| {
            format!(r#"{{"kind":"track","event":"{name}","targeting_key":"u","timestamp":"2027-01-15T08:00:00Z"}}"#)
        };
        for bad in [r"a\u0007", r"a\u007f", r"a\u0085", r"\u009f", ""] {
            assert_eq!(check(&event(bad)).unwrap_err().field, "event", "{bad}");
        }
        for good in ["caf\u{e9}", "\u{a0}x", "\u{1F600}", r#"quote\"d"#] {
            assert!(check(&event(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn an_envelope_with_too_many_events_and_an_empty_batch_id_reports_both() {
        let batch = Batch::parse(br#"{"batch_id":"","events":[1,2,3]}"#, 10).unwrap();
        let problems = batch.check(2);
        assert_eq!(
            problems.iter().map(|p| p.0).collect::<Vec<_>>(),
            ["/events", "/batch_id"]
        );
    }

    #[test]
    fn a_body_without_an_events_array_is_a_shape_error_not_a_syntax_error() {
        for body in [&br#"{"batch_id":"b"}"#[..], br#"{"batch_id":7,"events":[]}"#, b"[]"] {
            let e = Batch::parse(body, 10).unwrap_err();
            assert!(!e.is_syntax() && !e.is_eof(), "{e}");
        }
        assert!(Batch::parse(br#"{"events":[}"#, 10).unwrap_err().is_syntax());
        assert!(Batch::parse(br#"{"events":[]} x"#, 10).unwrap_err().is_syntax());
    }

    #[test]
    fn events_beyond_the_limit_are_counted_not_kept() {
        let body = format!(r#"{{"events":[{}{{}}],"batch_id":"b"}}"#, "{},".repeat(99_999));
        let batch = Batch::parse(body.as_bytes(), 3).unwrap();
        assert_eq!((batch.len(), batch.events.len()), (100_000, 3));
        assert_eq!(batch.events(NOW, 0).count(), 3);
        assert_eq!(batch.check(3)[0].0, "/events");
        assert_eq!(batch.batch_id.as_deref(), Some("b"));
    }
}
