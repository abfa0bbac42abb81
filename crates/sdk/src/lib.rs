//! Sextant's Rust SDK: how a Rust service uses Sextant feature flags.
//!
//! A [`Client`] fetches its environment's snapshot from the Sextant
//! server, follows the server's change stream (SSE) and evaluates flags
//! **in process** with `sextant-core` — the same code the server runs, so
//! local and remote evaluation cannot disagree. Evaluation reads an `Arc`
//! of an immutable snapshot that the background sync task swaps
//! atomically: it never blocks, never waits for the network and never
//! does IO.
//!
//! ```no_run
//! use std::time::Duration;
//! use sextant_sdk::{Client, Context};
//!
//! # async fn demo() -> Result<(), sextant_sdk::BuildError> {
//! let client = Client::builder("https://flags.example.com", "sxs_…")
//!     .environment("production")
//!     .timeout(Duration::from_secs(2))
//!     .cache_file("/var/cache/my-service/sextant.json")
//!     .build()
//!     .await?;
//!
//! let ctx = Context::with_key("user-42").attr("plan", "pro");
//! if client.bool("new-checkout", &ctx, false) {
//!     // …
//! }
//! client.track("checkout_completed", &ctx, Some(49.90), None);
//! client.on_change(|keys| tracing::info!(?keys, "flags changed"));
//! client.shutdown().await; // flushes events
//! # Ok(()) }
//! ```
//!
//! **Start-up.** [`ClientBuilder::build`] waits at most its timeout for the
//! server. If the server cannot be reached it starts from the snapshot
//! cached on disk by an earlier run (rewritten atomically on every
//! update), else from a bootstrap file (Sextant, Unleash or flagd format),
//! else with nothing: every flag then serves the caller's default with
//! reason `ERROR` / `GENERAL`. Either way it keeps trying in the
//! background. `build` fails only on bad configuration; it never panics.
//!
//! **Sync.** The stream is reopened after a loss with exponential backoff
//! and jitter, sending `Last-Event-ID` so the server replays only what was
//! missed. A server that refuses streaming (404, 405, 501, or no
//! `text/event-stream`) is polled instead, with `If-None-Match`.
//!
//! **Events.** [`Client::track`] and automatic exposure events (only for
//! units placed by a split, i.e. in an experiment, and de-duplicated per
//! unit/flag/variation within a window) are batched in a bounded buffer,
//! sent by size or interval to `POST /events/v1/batch`, retried with
//! backoff (honouring `Retry-After`), and dropped with a counter when the
//! buffer is full ([`Client::event_stats`]). [`Client::flush`] sends now;
//! [`Client::shutdown`] and dropping the last handle flush too.
//!
//! **OpenFeature.** With the default `openfeature` feature,
//! [`openfeature::SextantProvider`] implements the `open-feature` crate's
//! `FeatureProvider` on top of a client.

#![forbid(unsafe_code)]

mod backoff;
mod client;
mod events;
mod offline;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod sse;
mod state;
mod sync;
mod wire;

pub use client::{BuildError, Client, ClientBuilder, ClientEvent, Details, ListenerId, Status};
pub use events::{EventStats, FlushError};
pub use sextant_core::{Context, ErrorCode, FlagKind, Reason, Resolution};
pub use sextant_formats::SourceFormat;
pub use state::Source;
