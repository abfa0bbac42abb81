-- Sextant schema, version 5: the event rollups keyed by integer unit ids,
-- per-unit daily rows beside the hourly ones, and per-bucket totals, so
-- metric values over millions of events read small rows (and, for the
-- series of count, sum, mean and conversion metrics, no per-unit rows).

-- Every unit key the rollup has seen, once. Ids are never reused.
CREATE TABLE units (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);
INSERT INTO units (key) SELECT unit FROM unit_hours UNION SELECT unit FROM exposures;

-- Per unit, event and hour (as in version 2, `unit` now a `units` id).
CREATE TABLE unit_hours_v5 (
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    event          TEXT NOT NULL,
    hour           INTEGER NOT NULL,
    unit           INTEGER NOT NULL,
    events         INTEGER NOT NULL,
    value_sum      REAL NOT NULL,
    PRIMARY KEY (environment_id, event, hour, unit)
) WITHOUT ROWID;
INSERT INTO unit_hours_v5 (environment_id, event, hour, unit, events, value_sum)
    SELECT h.environment_id, h.event, h.hour, u.id, h.events, h.value_sum
    FROM unit_hours h JOIN units u ON u.key = h.unit;
DROP TABLE unit_hours;
ALTER TABLE unit_hours_v5 RENAME TO unit_hours;

-- Per unit, event and UTC day (day = floor(hour / 24)): the same sums, so
-- the whole days of a range read one row per unit and day.
CREATE TABLE unit_days (
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    event          TEXT NOT NULL,
    day            INTEGER NOT NULL,
    unit           INTEGER NOT NULL,
    events         INTEGER NOT NULL,
    value_sum      REAL NOT NULL,
    PRIMARY KEY (environment_id, event, day, unit)
) WITHOUT ROWID;
INSERT INTO unit_days (environment_id, event, day, unit, events, value_sum)
    SELECT environment_id, event, (hour - ((hour % 24) + 24) % 24) / 24, unit, SUM(events), TOTAL(value_sum)
    FROM unit_hours GROUP BY 1, 2, 3, 4;

-- Per event and bucket (grain 1 = hour, 24 = day): over the units with a
-- row in the bucket, their number, Σcount, Σcount², Σvalue and Σvalue²
-- (per-unit sums first). Event '' gives the active units. Kept exact by
-- the rollup from the per-unit rows it updates.
CREATE TABLE event_buckets (
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    event          TEXT NOT NULL,
    grain          INTEGER NOT NULL,
    bucket         INTEGER NOT NULL,
    units          INTEGER NOT NULL,
    events         INTEGER NOT NULL,
    events_sq      INTEGER NOT NULL,
    value_sum      REAL NOT NULL,
    value_sq       REAL NOT NULL,
    PRIMARY KEY (environment_id, event, grain, bucket)
) WITHOUT ROWID;
INSERT INTO event_buckets (environment_id, event, grain, bucket, units, events, events_sq, value_sum, value_sq)
    SELECT environment_id, event, 1, hour, COUNT(*), SUM(events), SUM(events * events), TOTAL(value_sum),
           TOTAL(value_sum * value_sum)
    FROM unit_hours GROUP BY environment_id, event, hour;
INSERT INTO event_buckets (environment_id, event, grain, bucket, units, events, events_sq, value_sum, value_sq)
    SELECT environment_id, event, 24, day, COUNT(*), SUM(events), SUM(events * events), TOTAL(value_sum),
           TOTAL(value_sum * value_sum)
    FROM unit_days GROUP BY environment_id, event, day;

-- Each unit's first exposure to a flag (as in version 2, `unit` an id).
CREATE TABLE exposures_v5 (
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag           TEXT NOT NULL,
    unit           INTEGER NOT NULL,
    variation      TEXT NOT NULL,
    first_ms       INTEGER NOT NULL,
    PRIMARY KEY (environment_id, flag, unit)
) WITHOUT ROWID;
INSERT INTO exposures_v5 (environment_id, flag, unit, variation, first_ms)
    SELECT e.environment_id, e.flag, u.id, e.variation, e.first_ms
    FROM exposures e JOIN units u ON u.key = e.unit;
DROP TABLE exposures;
ALTER TABLE exposures_v5 RENAME TO exposures;
