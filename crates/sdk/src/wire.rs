//! The SDK wire protocol, as `sextant-server` speaks it: the snapshot body,
//! `change` events, and the event-ingestion batch. Wire types live here and
//! nowhere else, so a protocol change is one visible diff.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sextant_core::{Document, Flag, Segment};

/// `GET /sdk/v1/snapshot` and the SSE `snapshot` event; also the shape of
/// the on-disk cache file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    /// Workspace key (absent in bootstrap-derived state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Environment key.
    pub environment: String,
    /// The environment's snapshot version.
    pub version: u64,
    /// Every flag and segment of the environment.
    pub document: Document,
}

/// The SSE `change` event: either a delta (`flags`, `deleted_flags`,
/// `segments`, `deleted_segments`) or a whole `document`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChangeBody {
    /// The version this change produces.
    pub version: u64,
    /// The version it applies on top of.
    pub previous: u64,
    /// Flags created or replaced.
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Keys of deleted flags.
    #[serde(default)]
    pub deleted_flags: Vec<String>,
    /// Segments created or replaced.
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// Keys of deleted segments.
    #[serde(default)]
    pub deleted_segments: Vec<String>,
    /// A whole replacement document (changes that touch everything).
    #[serde(default)]
    pub document: Option<Document>,
}

/// `POST /events/v1/batch` body.
#[derive(Debug, Serialize)]
pub(crate) struct Batch<'a> {
    /// Idempotency key: the same batch retried keeps its id.
    pub batch_id: &'a str,
    /// The events.
    pub events: &'a [Event],
}

/// One event in a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A business event (`client.track`).
    Track {
        /// Event name, e.g. `checkout_completed`.
        event: String,
        /// The unit that did it.
        #[serde(skip_serializing_if = "Option::is_none")]
        targeting_key: Option<String>,
        /// Optional numeric value (revenue, latency, …).
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// RFC 3339 UTC.
        timestamp: String,
        /// Free-form properties.
        #[serde(skip_serializing_if = "Map::is_empty")]
        properties: Map<String, Value>,
    },
    /// A unit in an experiment was served a variation.
    Exposure {
        /// Flag key.
        flag: String,
        /// Served variation key.
        variation: String,
        /// The exposed unit.
        targeting_key: String,
        /// RFC 3339 UTC.
        timestamp: String,
    },
}

/// The current time as RFC 3339 UTC with milliseconds.
pub(crate) fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialize_to_the_ingestion_wire_format() {
        let track = Event::Track {
            event: "checkout".into(),
            targeting_key: Some("u1".into()),
            value: Some(12.5),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            properties: json!({"plan": "pro"}).as_object().cloned().unwrap_or_default(),
        };
        let exposure = Event::Exposure {
            flag: "new-checkout".into(),
            variation: "on".into(),
            targeting_key: "u1".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
        };
        let body = serde_json::to_value(Batch {
            batch_id: "b1",
            events: &[track, exposure],
        })
        .unwrap();
        assert_eq!(
            body,
            json!({"batch_id": "b1", "events": [
                {"kind": "track", "event": "checkout", "targeting_key": "u1", "value": 12.5,
                 "timestamp": "2026-01-01T00:00:00.000Z", "properties": {"plan": "pro"}},
                {"kind": "exposure", "flag": "new-checkout", "variation": "on", "targeting_key": "u1",
                 "timestamp": "2026-01-01T00:00:00.000Z"}
            ]})
        );
    }

    #[test]
    fn change_events_parse_both_delta_and_document_shapes() {
        let delta: ChangeBody = serde_json::from_value(json!({
            "version": 4, "previous": 3, "flags": [], "deleted_flags": ["old"]
        }))
        .unwrap();
        assert_eq!(delta.deleted_flags, ["old"]);
        assert!(delta.document.is_none());
        let whole: ChangeBody =
            serde_json::from_value(json!({"version": 5, "previous": 4, "document": {"flags": []}})).unwrap();
        assert!(whole.document.is_some());
    }
}
