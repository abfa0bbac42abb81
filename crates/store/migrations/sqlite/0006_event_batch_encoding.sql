-- Sextant schema, version 6: `event_batches.events` holds the binary
-- encoding of `crates/store/src/event_encoding.rs` (a BLOB) instead of a
-- JSON array. SQLite keeps a BLOB's storage class in a column declared
-- TEXT, so rows need no rewrite; batches stored as JSON before are still
-- read by the decoder until the rollup has taken them in. Nothing to
-- change here; the PostgreSQL migration of the same version changes the
-- column's type. (Version 5 is the rollup's integer unit ids.)
SELECT 1;
