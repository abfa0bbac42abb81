-- Sextant schema, version 3: rollout plans, scheduled changes, experiments.

-- One rollout plan per flag and environment. The plan's definition is JSON
-- (stages, guardrails, action on breach, schedule); its progress is in
-- columns the scheduler updates.
CREATE TABLE rollout_plans (
    id               INTEGER PRIMARY KEY,
    workspace_id     INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    environment_id   INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag_key         TEXT NOT NULL,
    definition       TEXT NOT NULL,
    -- draft | running | paused | rolled_back | completed | killed
    status           TEXT NOT NULL,
    -- Index of the current stage; NULL before the first stage is applied.
    stage            INTEGER,
    stage_started_at TEXT,
    -- JSON: guardrail metric -> sequential monitor state (kept across restarts).
    monitors         TEXT NOT NULL DEFAULT '{}',
    status_reason    TEXT,
    version          INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (environment_id, flag_key)
);

CREATE INDEX rollout_plans_status ON rollout_plans (status);

-- A flag change to apply at a time. Rows are never deleted: cancelled,
-- applied and failed changes stay visible.
CREATE TABLE scheduled_changes (
    id             INTEGER PRIMARY KEY,
    workspace_id   INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag_key       TEXT NOT NULL,
    -- RFC 3339 UTC; compared as text, so always written with the same format.
    run_at         TEXT NOT NULL,
    -- JSON of the change (toggle or targeting).
    change         TEXT NOT NULL,
    -- pending | applied | cancelled | failed
    status         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    reason         TEXT,
    created_at     TEXT NOT NULL,
    finished_at    TEXT,
    outcome        TEXT
);

CREATE INDEX scheduled_changes_due ON scheduled_changes (status, run_at);

-- An experiment on a flag's variations in one environment. `definition`
-- (arms, metrics, hypothesis, success criteria, planned sample size) is
-- frozen when the experiment starts.
CREATE TABLE experiments (
    id             INTEGER PRIMARY KEY,
    workspace_id   INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key            TEXT NOT NULL,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag_key       TEXT NOT NULL,
    definition     TEXT NOT NULL,
    -- draft | running | decided
    status         TEXT NOT NULL,
    started_at     TEXT,
    -- When the primary metric first reached significance, and the deadline
    -- for a decision (a week later).
    significant_at TEXT,
    decide_by      TEXT,
    -- ship | kill | iterate
    decision       TEXT,
    learning       TEXT,
    decided_by     TEXT,
    decided_at     TEXT,
    version        INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (workspace_id, key)
);
