//! Dates as the store writes them (RFC 3339 UTC, which sort as text).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `secs` as `YYYY-MM-DDTHH:MM:SS.000Z`, comparable as text with the
/// store's timestamps.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A store timestamp shortened for display (`2026-03-01 14:05:09 UTC`).
pub fn short(ts: &str) -> String {
    let t = ts.replace('T', " ");
    match t.find('.') {
        Some(i) => format!("{} UTC", &t[..i]),
        None => t.trim_end_matches('Z').to_owned() + " UTC",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_format_as_the_stores_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn timestamps_shorten_for_display() {
        assert_eq!(short("2026-03-01T14:05:09.123Z"), "2026-03-01 14:05:09 UTC");
    }
}
