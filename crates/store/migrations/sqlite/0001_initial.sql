-- Sextant schema, version 1.

CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE environments (
    id               INTEGER PRIMARY KEY,
    workspace_id     INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key              TEXT NOT NULL,
    name             TEXT NOT NULL,
    production       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    -- Monotonic version of this environment's compiled snapshot.
    snapshot_version INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (workspace_id, key)
);

CREATE TABLE flags (
    id           INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    -- The sextant-core `Flag`, as JSON, including per-environment targeting.
    definition   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (workspace_id, key)
);

CREATE TABLE segments (
    id           INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    definition   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (workspace_id, key)
);

CREATE TABLE tokens (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    -- admin | server | client
    kind            TEXT NOT NULL,
    -- viewer | engineer | product | admin (admin tokens only)
    role            TEXT,
    -- JSON array of environment keys an admin token may act on; NULL = all.
    environments    TEXT,
    -- SDK tokens: the environment they read.
    environment_id  INTEGER REFERENCES environments(id) ON DELETE CASCADE,
    -- JSON array of allowed CORS origins (client tokens).
    allowed_origins TEXT NOT NULL DEFAULT '[]',
    -- Hex SHA-256 of the token; the token itself is never stored.
    hash            TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

-- Every mutation: who, why, what before and after.
CREATE TABLE changes (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    workspace   TEXT,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    environment TEXT,
    reason      TEXT,
    before      TEXT,
    after       TEXT
);

-- Append-only; each entry hashes its change and the previous entry's hash.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    change_id INTEGER NOT NULL UNIQUE REFERENCES changes(id),
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- The last entry of the chain, so a deleted tail is detected too.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX changes_target ON changes (workspace, kind, key);
