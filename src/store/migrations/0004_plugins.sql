-- Rule plugins: uploaded versions with their state in the client's chain, each installation's key-value
-- store, what every plugin run decided, and escalations.

CREATE TABLE plugins (
    client_id    TEXT    NOT NULL REFERENCES clients (id),
    id           TEXT    NOT NULL,              -- plg_...; one uploaded version
    name         TEXT    NOT NULL,              -- the installation: versions of one name share a kv store
    version      TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,              -- of the component; with the engine, the compile cache key
    size         INTEGER NOT NULL,
    component    BLOB    NOT NULL,              -- the uploaded bytes, kept to recompile after an engine upgrade
    config       TEXT    NOT NULL,              -- JSON text handed to every call
    state        TEXT    NOT NULL,              -- inactive | shadow | active | disabled
    state_reason TEXT,                          -- why it was disabled, for the breaker's trips
    position     INTEGER NOT NULL,              -- order of its name in the client's chain
    failures     INTEGER NOT NULL DEFAULT 0,    -- consecutive failed runs (the circuit breaker counts these)
    activated_at INTEGER,                       -- last time it became active (rollback goes to the one before)
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (client_id, id),
    UNIQUE (client_id, name, version)
);
CREATE UNIQUE INDEX plugins_by_id ON plugins (id);
CREATE INDEX plugins_running ON plugins (client_id, state, position);

CREATE TABLE plugin_kv (
    client_id   TEXT    NOT NULL,
    plugin_name TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, plugin_name, key)
);

-- One row per plugin run and per decision: `source` is 'defaults', 'chain' (the merged decision applied), or
-- 'plugin:<id>' for one plugin's own run (applied = 1 when it is part of the active chain, 0 for shadow).
ALTER TABLE decisions ADD COLUMN plugin_id TEXT;
ALTER TABLE decisions ADD COLUMN plugin_name TEXT;
ALTER TABLE decisions ADD COLUMN plugin_version TEXT;
ALTER TABLE decisions ADD COLUMN hook TEXT NOT NULL DEFAULT 'on-message';
ALTER TABLE decisions ADD COLUMN failure TEXT;                  -- why a run gave no decision
ALTER TABLE decisions ADD COLUMN logs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE decisions ADD COLUMN fuel INTEGER;
ALTER TABLE decisions ADD COLUMN duration_us INTEGER;
CREATE INDEX decisions_by_time ON decisions (client_id, created_at DESC);

CREATE TABLE escalations (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,           -- esc_...
    conversation_id TEXT    NOT NULL,
    message_id      TEXT,                       -- the message that triggered it; NULL when overdue
    trigger         TEXT    NOT NULL,           -- message | overdue
    level           INTEGER NOT NULL,
    reason          TEXT    NOT NULL,
    source          TEXT    NOT NULL,           -- who decided: 'chain', 'defaults'
    notification_id TEXT,                       -- the outbound message telling the escalation contact
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, conversation_id) REFERENCES conversations (client_id, id)
);
CREATE INDEX escalations_by_conversation ON escalations (client_id, conversation_id, created_at);

ALTER TABLE conversations ADD COLUMN escalation_level INTEGER NOT NULL DEFAULT 0;
