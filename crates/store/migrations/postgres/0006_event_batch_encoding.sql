-- Sextant schema, version 6 (PostgreSQL): `event_batches.events` holds the
-- binary encoding of `crates/store/src/event_encoding.rs`, so it becomes
-- BYTEA. Batches stored as JSON text before keep their bytes (UTF-8) and
-- are still read by the decoder until the rollup has taken them in.
-- (Version 5 is the rollup's integer unit ids.)
ALTER TABLE event_batches ALTER COLUMN events TYPE BYTEA USING convert_to(events, 'UTF8');
