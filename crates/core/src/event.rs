//! Track and exposure events as SDKs send them (`POST /events/v1/batch`):
//! the batch envelope and the validation of each event.
//!
//! Pure like the rest of the crate: the caller passes the current time and
//! the retention horizon, and gets borrowed, validated events back. Each
//! event is validated on its own, so a batch with a bad event can still
//! store the good ones; an error names the field and says what is wrong.
//! Fuzzed by `fuzz/fuzz_targets/event_batch.rs`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// How far in the future an event timestamp may be (clock skew), in ms.
pub const MAX_FUTURE_MS: i64 = 3_600_000;

/// Longest event name, flag key, variation or targeting key, in bytes.
pub const MAX_NAME: usize = 256;

/// Largest `properties` object, in bytes of JSON.
pub const MAX_PROPERTIES: usize = 8 * 1024;

/// Longest `batch_id`, in bytes.
pub const MAX_BATCH_ID: usize = 128;

/// A batch as sent: an optional idempotency id and the events, still raw
/// (each is validated by [`parse_event`], so one bad event does not
/// refuse the others).
#[derive(Debug, Deserialize)]
pub struct BatchEnvelope<'a> {
    /// The client's idempotency id (a UUID is typical).
    #[serde(default, borrow)]
    pub batch_id: Option<Cow<'a, str>>,
    /// The events, unparsed.
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

impl<'a> BatchEnvelope<'a> {
    /// Parses the envelope (not the events). Errors are serde_json's; the
    /// caller tells syntax errors from shape errors with
    /// [`serde_json::Error::is_syntax`].
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Checks the envelope itself: at most `max_events` events and a
    /// well-formed `batch_id`. Returns every problem as (JSON pointer, message).
    pub fn check(&self, max_events: usize) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.events.len() > max_events {
            problems.push((
                "/events",
                format!("{} events; a batch holds at most {max_events}", self.events.len()),
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
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A metric event: `unit` did `event`, with an optional value.
    Track {
        /// Event name: 1–[`MAX_NAME`] bytes, no control characters.
        event: Cow<'a, str>,
        /// The targeting key of the unit.
        unit: Cow<'a, str>,
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
        flag: Cow<'a, str>,
        /// Variation key.
        variation: Cow<'a, str>,
        /// The targeting key of the unit.
        unit: Cow<'a, str>,
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

/// One event on the wire: a track or an exposure, told apart by `kind`.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    flag: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    variation: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    targeting_key: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
}

fn name<'a>(field: &'static str, v: Option<Cow<'a, str>>) -> Result<Cow<'a, str>, EventError> {
    match v {
        None => Err(err(field, "is required")),
        Some(s) if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) => Err(err(
            field,
            format!("must be 1-{MAX_NAME} bytes without control characters"),
        )),
        Some(s) => Ok(s),
    }
}

/// Validates one event. `now_ms` is the current time and `oldest_ms` the
/// oldest timestamp still within the event retention.
pub fn parse_event<'a>(raw: &'a RawValue, now_ms: i64, oldest_ms: i64) -> Result<Event<'a>, EventError> {
    let e: WireEvent<'a> = serde_json::from_str(raw.get()).map_err(|e| err("", e.to_string()))?;
    let unit = name("targeting_key", e.targeting_key)?;
    let ts = e.timestamp.as_deref().ok_or_else(|| err("timestamp", "is required"))?;
    let timestamp_ms = chrono::DateTime::parse_from_rfc3339(ts)
        .map_err(|_| {
            err(
                "timestamp",
                format!("`{ts}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        })?
        .timestamp_millis();
    if timestamp_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(err("timestamp", "is more than an hour in the future"));
    }
    if timestamp_ms < oldest_ms {
        return Err(err("timestamp", "is older than the event retention"));
    }
    match e.kind.as_ref() {
        "track" => {
            let event = name("event", e.event)?;
            let properties = match e.properties {
                None => None,
                Some(p) if p.get() == "null" => None,
                Some(p) => Some(check_properties(p.get())?),
            };
            Ok(Event::Track {
                event,
                unit,
                value: e.value,
                timestamp_ms,
                properties,
            })
        }
        "exposure" => Ok(Event::Exposure {
            flag: name("flag", e.flag)?,
            variation: name("variation", e.variation)?,
            unit,
            timestamp_ms,
        }),
        other => Err(err("kind", format!("`{other}` is not an event kind (track, exposure)"))),
    }
}

/// Checks a `properties` value (raw JSON text, already syntactically
/// valid) and returns it. The server's own single-pass parser calls this too.
///
/// Beyond "an object of bounded size", it refuses what a JSON store would
/// refuse later, when it is too late to tell the client: PostgreSQL's
/// `jsonb` has no `\u0000` and no lone surrogate, and a number beyond a
/// double's range is not a number any consumer can read.
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
    // Only escapes can produce U+0000 or a lone surrogate; most objects have none.
    let escaped = p.contains("\\u");
    let value: serde_json::Value = serde_json::from_str(p).map_err(|e| err("properties", e.to_string()))?;
    if escaped && !storable(&value) {
        return Err(err(
            "properties",
            "must not contain the character U+0000 (\\u0000) in a key or string",
        ));
    }
    Ok(p)
}

/// Whether no key or string of `v` contains U+0000.
fn storable(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => !s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().all(storable),
        serde_json::Value::Object(o) => o.iter().all(|(k, v)| !k.contains('\0') && storable(v)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn parse(json: &str) -> Result<Event<'_>, EventError> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        parse_event(raw, NOW, NOW - 86_400_000)
    }

    fn track(props: &str) -> String {
        format!(
            r#"{{"kind":"track","event":"buy","targeting_key":"u1","timestamp":"2027-01-15T08:00:00Z","properties":{props}}}"#
        )
    }

    #[test]
    fn a_track_event_with_an_object_of_properties_is_accepted() {
        let json = track(r#"{"plan":"pro","n":[1,2]}"#);
        let Ok(Event::Track { properties, .. }) = parse(&json) else {
            panic!("refused: {json}");
        };
        assert_eq!(properties, Some(r#"{"plan":"pro","n":[1,2]}"#));
    }

    #[test]
    fn properties_with_a_nul_character_are_refused_naming_the_field() {
        for props in [r#"{"a":"x\u0000y"}"#, r#"{"a\u0000":1}"#, r#"{"a":[{"b":"\u0000"}]}"#] {
            let e = parse(&track(props)).unwrap_err();
            assert_eq!(e.field, "properties", "{props}");
            assert!(e.message.contains("U+0000"), "{e}");
        }
    }

    #[test]
    fn properties_with_a_lone_surrogate_or_an_infinite_number_are_refused() {
        for props in [r#"{"a":"\ud800"}"#, r#"{"a":1e400}"#] {
            let e = parse(&track(props)).unwrap_err();
            assert_eq!(e.field, "properties", "{props}");
        }
    }

    #[test]
    fn properties_that_are_not_an_object_are_refused() {
        assert_eq!(parse(&track("[1]")).unwrap_err().field, "properties");
    }

    #[test]
    fn a_timestamp_far_beyond_any_clock_is_refused_not_overflowed() {
        let e = parse(r#"{"kind":"exposure","flag":"f","variation":"on","targeting_key":"u","timestamp":"+262142-12-31T23:59:59Z"}"#)
            .unwrap_err();
        assert_eq!(e.field, "timestamp");
    }

    #[test]
    fn an_envelope_with_too_many_events_and_an_empty_batch_id_reports_both() {
        let env = BatchEnvelope::parse(br#"{"batch_id":"","events":[1,2,3]}"#).unwrap();
        let problems = env.check(2);
        assert_eq!(
            problems.iter().map(|p| p.0).collect::<Vec<_>>(),
            ["/events", "/batch_id"]
        );
    }
}
