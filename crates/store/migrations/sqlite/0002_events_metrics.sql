-- Sextant schema, version 2: events, their rollups, metrics and initiatives.

-- Raw events, one row per accepted batch (group commit appends a few rows,
-- not thousands). `events` is a JSON array of compact arrays
-- [kind (0 track, 1 exposure), name (event or flag), unit, variation,
--  value, timestamp in ms since the epoch, properties] that the rollup
-- expands in SQL with json_each. AUTOINCREMENT: ids are never reused after
-- retention deletes the newest rows, so the rollup cursor stays valid.
CREATE TABLE event_batches (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    -- The client's idempotency key; a retried batch is stored once.
    batch_id       TEXT,
    received_ms    INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    events         TEXT NOT NULL
);

CREATE UNIQUE INDEX event_batches_batch_id ON event_batches (environment_id, batch_id)
    WHERE batch_id IS NOT NULL;
CREATE INDEX event_batches_received ON event_batches (received_ms);

-- How far the incremental rollup has read `event_batches`.
CREATE TABLE event_rollup_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_batch INTEGER NOT NULL
);
INSERT INTO event_rollup_state (id, last_batch) VALUES (1, 0);

-- Per unit, event and hour: the event count and the sum of values. The
-- empty event name '' counts every event of the unit (track and exposure),
-- so "active units" are the population of tree values. Kept forever: this
-- is what raw events are rolled up into before retention deletes them.
CREATE TABLE unit_hours (
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    event          TEXT NOT NULL,
    hour           INTEGER NOT NULL,
    unit           TEXT NOT NULL,
    events         INTEGER NOT NULL,
    value_sum      REAL NOT NULL,
    PRIMARY KEY (environment_id, event, hour, unit)
) WITHOUT ROWID;

-- Each unit's first exposure to a flag, and the variation it saw then.
CREATE TABLE exposures (
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag           TEXT NOT NULL,
    unit           TEXT NOT NULL,
    variation      TEXT NOT NULL,
    first_ms       INTEGER NOT NULL,
    PRIMARY KEY (environment_id, flag, unit)
) WITHOUT ROWID;

-- The metric tree of a workspace.
CREATE TABLE metrics (
    id             INTEGER PRIMARY KEY,
    workspace_id   INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key            TEXT NOT NULL,
    name           TEXT NOT NULL,
    -- count | sum | mean | conversion | ratio
    aggregation    TEXT NOT NULL,
    -- The event it counts (NULL for ratio).
    event          TEXT,
    -- Ratio metrics: numerator and denominator metric keys.
    numerator      TEXT,
    denominator    TEXT,
    -- increase | decrease
    good_direction TEXT NOT NULL,
    unit           TEXT,
    description    TEXT,
    owner          TEXT,
    parent         TEXT,
    north_star     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (workspace_id, key)
);

-- Exactly one North Star per workspace (once it has metrics).
CREATE UNIQUE INDEX metrics_one_north_star ON metrics (workspace_id) WHERE north_star = 1;

-- Teams' initiatives: the metric node they declare they will move.
CREATE TABLE initiatives (
    id              INTEGER PRIMARY KEY,
    workspace_id    INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    name            TEXT NOT NULL,
    team            TEXT NOT NULL,
    owner           TEXT NOT NULL,
    description     TEXT,
    metric          TEXT NOT NULL,
    direction       TEXT NOT NULL,
    expected_change REAL NOT NULL,
    starts_on       TEXT NOT NULL,
    ends_on         TEXT NOT NULL,
    version         INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (workspace_id, key)
);
