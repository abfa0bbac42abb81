//! Integration tests of the Sextant SDK against real HTTP peers: the real
//! `sextant-server` on an ephemeral port with a temp SQLite file, and small
//! axum servers that record what the SDK sends.

mod support;

/// Track and exposure events: batching, retry, drop, flush.
mod events;
/// Starting without the server: cache file, bootstrap file, defaults, timeout.
mod offline;
/// The OpenFeature provider.
mod openfeature;
/// Protocol details against a recording peer: `Last-Event-ID`, polling with `ETag`.
mod protocol;
/// Sync with the real server: initial snapshot, live changes, restarts.
mod sync;
