-- Alignment workflows: change requests and policy, flag lifecycle and
-- 30-day reviews, principles and violations, learnings, post-mortems,
-- webhooks and their deliveries, deploy events (DORA).

-- An irreversible change waiting for (or decided by) a second person.
CREATE TABLE change_requests (
    id                INTEGER PRIMARY KEY,
    workspace         TEXT NOT NULL,
    -- flag.delete | flag.archive | flag.restore | change.revert | policy.update
    action            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    key               TEXT NOT NULL,
    environment       TEXT,
    -- What the change needs to apply (JSON), e.g. the policy to set.
    payload           TEXT,
    -- pending | applied | rejected
    status            TEXT NOT NULL,
    requested_by      TEXT NOT NULL,
    reason            TEXT,
    created_at        TEXT NOT NULL,
    decided_by        TEXT,
    decided_at        TEXT,
    decision_reason   TEXT,
    -- The change record that applied it.
    applied_change_id INTEGER REFERENCES changes(id),
    -- For change.revert: the change it undoes.
    reverts_change_id INTEGER REFERENCES changes(id)
);
CREATE INDEX change_requests_status ON change_requests (workspace, status);

-- The approval policy of a workspace (JSON); absent = the default policy.
CREATE TABLE policies (
    workspace  TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- Lifecycle facts about a flag that are not part of its definition.
CREATE TABLE flag_lifecycle (
    workspace         TEXT NOT NULL,
    flag              TEXT NOT NULL,
    archived_at       TEXT,
    first_exposed_at  TEXT,
    first_exposed_env TEXT,
    PRIMARY KEY (workspace, flag)
);

-- The 30-day review of a flag first exposed in production.
CREATE TABLE flag_reviews (
    id                  INTEGER PRIMARY KEY,
    workspace           TEXT NOT NULL,
    flag                TEXT NOT NULL,
    first_exposed_at    TEXT NOT NULL,
    due_at              TEXT NOT NULL,
    -- kill | iterate | keep (NULL while open)
    decision            TEXT,
    metric              TEXT,
    hypothesised_effect REAL,
    observed_effect     REAL,
    notes               TEXT,
    reviewer            TEXT,
    reviewed_at         TEXT,
    UNIQUE (workspace, flag)
);

CREATE TABLE principles (
    id          INTEGER PRIMARY KEY,
    workspace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (workspace, key)
);

-- A declared violation of a principle by a change.
CREATE TABLE violations (
    id            INTEGER PRIMARY KEY,
    workspace     TEXT NOT NULL,
    principle     TEXT NOT NULL,
    -- What violates it: free text such as `flag:checkout` or `change:42`.
    subject       TEXT NOT NULL,
    justification TEXT NOT NULL,
    owner         TEXT NOT NULL,
    review_date   TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    resolved_at   TEXT,
    resolution    TEXT
);

CREATE TABLE learnings (
    id         INTEGER PRIMARY KEY,
    workspace  TEXT NOT NULL,
    -- experiment | review | post_mortem | manual
    source     TEXT NOT NULL,
    source_ref TEXT,
    what       TEXT NOT NULL,
    evidence   TEXT,
    owner      TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX learnings_owner ON learnings (workspace, owner, at);

-- Due when an initiative's declared metric did not move by the end of its window.
CREATE TABLE post_mortems (
    id           INTEGER PRIMARY KEY,
    workspace    TEXT NOT NULL,
    initiative   TEXT NOT NULL,
    owner        TEXT NOT NULL,
    due_at       TEXT NOT NULL,
    expected     TEXT,
    happened     TEXT,
    learned      TEXT,
    created_at   TEXT NOT NULL,
    completed_at TEXT,
    UNIQUE (workspace, initiative)
);

CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY,
    workspace  TEXT NOT NULL,
    url        TEXT NOT NULL,
    -- HMAC-SHA256 key for the `X-Sextant-Signature` header.
    secret     TEXT NOT NULL,
    -- JSON array of event types.
    events     TEXT NOT NULL,
    active     INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    -- pending | delivered | failed
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    next_attempt_at TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE deploys (
    id          INTEGER PRIMARY KEY,
    workspace   TEXT NOT NULL,
    service     TEXT NOT NULL,
    version     TEXT NOT NULL,
    commit_at   TEXT NOT NULL,
    deployed_at TEXT NOT NULL,
    -- success | failed | rollback
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX deploys_service ON deploys (workspace, service, deployed_at);
