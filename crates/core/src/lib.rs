//! Sextant's evaluation core: the flag model, targeting, bucketing and
//! compiled snapshots.
//!
//! Pure by design: no IO, no async, no clock (time is part of the
//! [`Context`]). The server and the SDK evaluate with this same code, so
//! remote and local evaluation cannot disagree.
//!
//! ```
//! use sextant_core::{Context, Document, Snapshot};
//! let doc: Document = serde_json::from_value(serde_json::json!({
//!     "flags": [{
//!         "key": "new-checkout", "kind": "boolean",
//!         "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
//!         "environments": {"production": {
//!             "enabled": true, "off_variation": "off",
//!             "rules": [{"conditions": [{"attribute": "plan", "op": "in", "values": ["pro"]}],
//!                        "serve": {"variation": "on"}}],
//!             "default_serve": {"variation": "off"}
//!         }}
//!     }]
//! })).unwrap();
//! let snapshot = Snapshot::compile(&doc, "production", 1).unwrap();
//! let r = snapshot.evaluate("new-checkout", &Context::with_key("u1").attr("plan", "pro"));
//! assert_eq!(r.value, Some(&serde_json::json!(true)));
//! ```

pub mod bucketing;
mod context;
mod error;
pub mod event;
pub mod logic;
pub mod model;
mod resolution;
mod snapshot;
mod targeting;

pub use context::{Context, ContextError, json_type_name};
pub use error::{CompileError, Issue, Location, Problem};
pub use model::{
    BucketHash, Condition, Direction, Document, Flag, FlagKind, Hypothesis, Operator, Prerequisite, Rollout, Rule,
    Segment, Serve, Split, Targeting, Variation, WEIGHT_SCALE, Weight,
};
pub use resolution::{ErrorCode, Reason, Resolution};
pub use snapshot::{CompileOptions, Snapshot};
