//! Event batches as `POST /events/v1/batch` receives them: the body goes
//! through the server's own single-pass parser and validation
//! (`sextant_core::event::Batch`, which the server's handler calls), which
//! never panic; and whatever they accept holds the promises stored events
//! rely on (bounded names without control characters, timestamps in the
//! window, finite values, properties a JSON object that any JSON store can
//! hold), and every event is either accepted or refused naming a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant_core::event::{Batch, Event, MAX_BATCH_ID, MAX_FUTURE_MS, MAX_NAME, MAX_PROPERTIES};

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
    let Ok(batch) = Batch::parse(data, 1_000) else {
        return;
    };
    let problems = batch.check(1_000);
    if batch.len() > 1_000 {
        assert!(problems.iter().any(|p| p.0 == "/events"));
    }
    if let Some(id) = batch.batch_id.as_deref()
        && (id.is_empty() || id.len() > MAX_BATCH_ID)
    {
        assert!(problems.iter().any(|p| p.0 == "/batch_id"));
    }
    let mut seen = 0;
    for event in batch.events(NOW, OLDEST) {
        seen += 1;
        match event {
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
                    // A NUL character, not the text `\u0000` (an escaped
                    // backslash followed by "u0000" is fine).
                    assert!(!has_nul(&v), "NUL in accepted properties: {p}");
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
    // Every kept event (the first 1,000) is accepted or refused.
    assert_eq!(seen, batch.len().min(1_000), "every kept event is accepted or refused");
});

/// Whether a string or key anywhere in `v` holds a NUL character.
fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}
