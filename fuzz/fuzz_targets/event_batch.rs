//! Event batches as `POST /events/v1/batch` receives them: the envelope
//! and every event go through the same functions the server calls
//! (`sextant_core::event`), which never panic; and whatever they accept
//! holds the promises stored events rely on (bounded names without
//! control characters, timestamps in the window, finite values,
//! properties a JSON object that any JSON store can hold).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant_core::event::{BatchEnvelope, Event, MAX_FUTURE_MS, MAX_NAME, MAX_PROPERTIES, parse_event};

const NOW: i64 = 1_800_000_000_000;
const OLDEST: i64 = NOW - 90 * 86_400_000;

fn check_name(field: &str, s: &str) {
    assert!(
        !s.is_empty() && s.len() <= MAX_NAME,
        "{field} accepted with {} bytes",
        s.len()
    );
    assert!(
        !s.chars().any(char::is_control),
        "{field} accepted with a control character: {s:?}"
    );
}

fn check_time(ts: i64) {
    assert!(
        (OLDEST..=NOW + MAX_FUTURE_MS).contains(&ts),
        "timestamp {ts} accepted outside the window"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = BatchEnvelope::parse(data) else {
        return;
    };
    let problems = envelope.check(1_000);
    if envelope.events.len() > 1_000 {
        assert!(problems.iter().any(|p| p.0 == "/events"));
    }
    for raw in &envelope.events {
        match parse_event(raw, NOW, OLDEST) {
            Err(e) => assert!(!e.message.is_empty()),
            Ok(Event::Track {
                event,
                unit,
                value,
                timestamp_ms,
                properties,
            }) => {
                check_name("event", &event);
                check_name("targeting_key", &unit);
                check_time(timestamp_ms);
                if let Some(v) = value {
                    assert!(v.is_finite(), "non-finite value {v}");
                }
                if let Some(p) = properties {
                    assert!(p.len() <= MAX_PROPERTIES);
                    let v: serde_json::Value = serde_json::from_str(p).expect("accepted properties are JSON");
                    assert!(v.is_object(), "accepted properties are not an object: {p}");
                    assert!(
                        !serde_json::to_string(&v).unwrap().contains("\\u0000"),
                        "NUL in accepted properties: {p}"
                    );
                }
            }
            Ok(Event::Exposure {
                flag,
                variation,
                unit,
                timestamp_ms,
            }) => {
                check_name("flag", &flag);
                check_name("variation", &variation);
                check_name("targeting_key", &unit);
                check_time(timestamp_ms);
            }
        }
    }
});
