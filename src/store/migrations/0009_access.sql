-- Sign-in sessions, tokens owned by people, assistants assigned to clients, and paging the audit log.

-- A signed-in browser. Only a SHA-256 of the cookie's secret is kept; the public id names it in lists.
CREATE TABLE sessions (
    secret_hash  BLOB    NOT NULL PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,           -- ses_...
    person_id    TEXT    NOT NULL REFERENCES people (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,                  -- absolute end, whatever the activity
    last_seen_at INTEGER NOT NULL,                  -- for the idle timeout, written at most once a minute
    revoked_at   INTEGER
);
CREATE INDEX sessions_by_person ON sessions (person_id);

-- A token made by (or for) a person acts as that person; one without a person is an integration's.
ALTER TABLE tokens ADD COLUMN person_id TEXT REFERENCES people (id);
CREATE INDEX tokens_by_person ON tokens (person_id);

-- Which assistants serve which clients: an assistant sees only these clients' data.
CREATE TABLE client_assistants (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    person_id   TEXT    NOT NULL REFERENCES people (id),
    assigned_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, person_id)
);
CREATE INDEX client_assistants_by_person ON client_assistants (person_id, client_id);

-- The audit log is paged newest first, across clients (admins) or within one.
CREATE INDEX audit_log_by_time ON audit_log (at, id);
CREATE INDEX audit_log_by_client_time ON audit_log (client_id, at, id);

-- How far the event log has been trimmed: a stream resuming before `through_seq` has missed events and is told
-- to resync. Events are found by age when trimming.
CREATE TABLE event_log_trim (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    through_seq INTEGER NOT NULL
);
CREATE INDEX events_by_time ON events (at);

-- Reports. Each conversation keeps its first-response figures, written by the first human reply (who, how
-- long on the wall clock and in the client's business hours) and when it was first acknowledged; replies keep
-- who sent them. Indexes let a year of figures be counted from index entries alone.
ALTER TABLE conversations ADD COLUMN first_reply_by TEXT;          -- the person (or token) of the first reply
ALTER TABLE conversations ADD COLUMN first_response_ms INTEGER;    -- first customer message to first reply
ALTER TABLE conversations ADD COLUMN first_response_open_ms INTEGER; -- the same, in the client's opening hours
ALTER TABLE conversations ADD COLUMN acknowledged_at INTEGER;      -- first automatic acknowledgement queued
ALTER TABLE messages ADD COLUMN author_id TEXT;                    -- who sent a reply (a person's id, or token:<id>)
CREATE INDEX conversations_by_opening ON conversations (opened_at, client_id);
CREATE INDEX messages_by_time ON messages (created_at, client_id, channel, direction, kind, author_id);
CREATE INDEX escalations_by_time ON escalations (created_at, client_id, level);
CREATE INDEX suggestion_feedback_by_time ON suggestion_feedback (at, client_id);
