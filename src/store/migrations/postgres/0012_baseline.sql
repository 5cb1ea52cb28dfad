-- recado schema v12 for PostgreSQL: the same tables, columns and keys as the SQLite schema at version 12, in
-- PostgreSQL's types. Integers are BIGINT (times are milliseconds since the Unix epoch, UTC), JSON columns are
-- TEXT, bytes are BYTEA. Later versions come as a pair of files, one per backend.

-- What every node sharing this database must agree on: the key channel secrets are sealed with (its id).
CREATE TABLE installation (
    id             BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    secrets_key_id TEXT   NOT NULL
);

CREATE TABLE clients (
    id          TEXT    NOT NULL PRIMARY KEY,   -- the slug; never changes
    name        TEXT    NOT NULL,
    profile     TEXT    NOT NULL,               -- JSON ClientProfile
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE channels (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    kind        TEXT    NOT NULL,               -- whatsapp | telegram | webhook
    config      TEXT    NOT NULL,               -- sealed JSON, holds secrets: never returned by the API
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (client_id, kind)
);

CREATE TABLE people (
    id              TEXT    NOT NULL PRIMARY KEY,       -- prs_...
    email           TEXT    NOT NULL,                   -- as given
    email_key       TEXT    NOT NULL UNIQUE,            -- lower case: one person per address
    name            TEXT    NOT NULL,
    role            TEXT    NOT NULL,                   -- admin, assistant, client
    client_id       TEXT    REFERENCES clients (id),    -- client people only
    password_hash   TEXT    NOT NULL,                   -- Argon2id, PHC string
    disabled        BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    last_sign_in_at BIGINT
);

CREATE TABLE tokens (
    id          TEXT    NOT NULL PRIMARY KEY,   -- public part of the token
    secret_hash BYTEA   NOT NULL,               -- SHA-256 of the secret part
    role        TEXT    NOT NULL,
    client_id   TEXT    REFERENCES clients (id),
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT,
    person_id   TEXT    REFERENCES people (id)
);
CREATE INDEX tokens_by_person ON tokens (person_id);

CREATE TABLE sessions (
    secret_hash  BYTEA   NOT NULL PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,           -- ses_...
    person_id    TEXT    NOT NULL REFERENCES people (id),
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,                  -- absolute end, whatever the activity
    last_seen_at BIGINT  NOT NULL,                  -- for the idle timeout, written at most once a minute
    revoked_at   BIGINT
);
CREATE INDEX sessions_by_person ON sessions (person_id);

CREATE TABLE client_assistants (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    person_id   TEXT    NOT NULL REFERENCES people (id),
    assigned_at BIGINT  NOT NULL,
    PRIMARY KEY (client_id, person_id)
);
CREATE INDEX client_assistants_by_person ON client_assistants (person_id, client_id);

CREATE TABLE contacts (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    id          TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    handle      TEXT    NOT NULL,
    name        TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    user_id     TEXT,
    username    TEXT,
    tags        TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (client_id, id),
    UNIQUE (client_id, channel, handle)
);
CREATE UNIQUE INDEX contacts_by_user_id ON contacts (client_id, channel, user_id) WHERE user_id IS NOT NULL;

CREATE TABLE conversations (
    client_id              TEXT    NOT NULL REFERENCES clients (id),
    id                     TEXT    NOT NULL,
    contact_id             TEXT    NOT NULL,
    channel                TEXT    NOT NULL,
    status                 TEXT    NOT NULL,      -- open | closed
    queue                  TEXT,
    assignee               TEXT,
    priority               TEXT    NOT NULL DEFAULT 'normal',
    tags                   TEXT    NOT NULL DEFAULT '[]',
    message_count          BIGINT  NOT NULL DEFAULT 0,
    preview                TEXT    NOT NULL DEFAULT '',
    opened_at              BIGINT  NOT NULL,
    last_activity_at       BIGINT  NOT NULL,
    first_inbound_at       BIGINT,
    first_human_reply_at   BIGINT,
    closed_at              BIGINT,
    escalation_level       BIGINT  NOT NULL DEFAULT 0,
    sla_state              TEXT,
    sla_started_at         BIGINT,
    sla_warn_at            BIGINT,
    sla_due_at             BIGINT,
    sla_next_at            BIGINT,
    first_reply_by         TEXT,
    first_response_ms      BIGINT,
    first_response_open_ms BIGINT,
    acknowledged_at        BIGINT,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, contact_id) REFERENCES contacts (client_id, id)
);
CREATE UNIQUE INDEX conversations_by_id ON conversations (id);
CREATE INDEX conversations_by_activity ON conversations (last_activity_at DESC, id DESC);
CREATE INDEX conversations_by_client_activity ON conversations (client_id, last_activity_at DESC, id DESC);
CREATE INDEX conversations_by_contact ON conversations (client_id, contact_id, status);
CREATE INDEX conversations_sla_next ON conversations (sla_next_at) WHERE sla_next_at IS NOT NULL;
CREATE INDEX conversations_by_opening ON conversations
    (opened_at, client_id, channel, acknowledged_at, first_reply_by, first_response_ms, first_response_open_ms,
     sla_state);

CREATE TABLE messages (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    direction       TEXT    NOT NULL,           -- in | out
    kind            TEXT    NOT NULL,           -- customer | auto_ack | assistant | system | note
    channel         TEXT    NOT NULL,
    external_id     TEXT,                       -- provider id of inbound messages: the dedupe key
    author          TEXT,
    text            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL,           -- inbound: received | processed; outbound: queued
    language        TEXT,
    parts           TEXT    NOT NULL DEFAULT '[]',
    context         TEXT    NOT NULL DEFAULT '{}',
    reactions       TEXT    NOT NULL DEFAULT '[]',
    edited_at       BIGINT,
    deleted_at      BIGINT,
    author_id       TEXT,
    PRIMARY KEY (client_id, id),
    UNIQUE (client_id, channel, external_id),
    FOREIGN KEY (client_id, conversation_id) REFERENCES conversations (client_id, id)
);
CREATE UNIQUE INDEX messages_by_id ON messages (id);
CREATE INDEX messages_by_conversation ON messages (client_id, conversation_id, created_at, id);
CREATE INDEX messages_unprocessed ON messages (state, created_at) WHERE state = 'received';
CREATE INDEX messages_by_time ON messages (created_at, client_id, channel, direction, kind, author_id);
CREATE INDEX messages_waiting_by_client ON messages (client_id, created_at, id) WHERE state = 'received';

CREATE TABLE outbox (
    client_id           TEXT    NOT NULL,
    id                  TEXT    NOT NULL,
    message_id          TEXT    NOT NULL,
    adapter             TEXT    NOT NULL,       -- whatsapp | telegram | webhook
    recipient           TEXT    NOT NULL,
    state               TEXT    NOT NULL,       -- pending | sending | sent | delivered | read | failed | dead
    attempts            BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT  NOT NULL,
    lease_until         BIGINT,
    last_error          TEXT,
    provider_message_id TEXT,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    payload             TEXT,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE UNIQUE INDEX outbox_by_id ON outbox (id);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_message ON outbox (client_id, message_id);
CREATE INDEX outbox_by_provider_id ON outbox (client_id, provider_message_id);

CREATE TABLE decisions (
    client_id      TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    source         TEXT    NOT NULL,            -- 'defaults', or a plugin id and version
    applied        BIGINT  NOT NULL,            -- 0 for shadow decisions
    decision       TEXT    NOT NULL,            -- JSON
    created_at     BIGINT  NOT NULL,
    plugin_id      TEXT,
    plugin_name    TEXT,
    plugin_version TEXT,
    hook           TEXT    NOT NULL DEFAULT 'on-message',
    failure        TEXT,
    logs           TEXT    NOT NULL DEFAULT '[]',
    fuel           BIGINT,
    duration_us    BIGINT,
    PRIMARY KEY (client_id, message_id, source),
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE INDEX decisions_by_time ON decisions (client_id, created_at DESC);

CREATE TABLE audit_log (
    client_id   TEXT    NOT NULL,               -- '' for events about no client in particular
    id          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,               -- JSON
    at          BIGINT  NOT NULL,
    PRIMARY KEY (client_id, id)
);
CREATE INDEX audit_log_by_time ON audit_log (at, id);
CREATE INDEX audit_log_by_client_time ON audit_log (client_id, at, id);

CREATE TABLE articles (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    id          TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    questions   TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    body        TEXT    NOT NULL,               -- minijinja template
    tags        TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    shortcut    TEXT,
    version     BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (client_id, id)
);
CREATE UNIQUE INDEX articles_by_shortcut ON articles (client_id, shortcut) WHERE shortcut IS NOT NULL;

CREATE TABLE kb_changes (
    seq         BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    client_id   TEXT    NOT NULL,
    article_id  TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);

CREATE TABLE suggestion_feedback (
    client_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    shown       TEXT    NOT NULL,               -- JSON array of article ids, in the order shown
    picked      TEXT,                           -- article id, or NULL if none was used
    edited      BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (client_id, id)
);
CREATE INDEX suggestion_feedback_by_time ON suggestion_feedback (at, client_id, actor, edited)
    WHERE picked IS NOT NULL;

CREATE TABLE suggestion_stats (
    client_id   TEXT    NOT NULL,
    article_id  TEXT    NOT NULL,
    impressions BIGINT  NOT NULL DEFAULT 0,
    picks       BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, article_id)
);

CREATE TABLE plugins (
    client_id    TEXT    NOT NULL REFERENCES clients (id),
    id           TEXT    NOT NULL,              -- plg_...; one uploaded version
    name         TEXT    NOT NULL,              -- the installation: versions of one name share a kv store
    version      TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,              -- of the component; with the engine, the compile cache key
    size         BIGINT  NOT NULL,
    component    BYTEA   NOT NULL,              -- the uploaded bytes, kept to recompile after an engine upgrade
    config       TEXT    NOT NULL,              -- JSON text handed to every call
    state        TEXT    NOT NULL,              -- inactive | shadow | active | disabled
    state_reason TEXT,                          -- why it was disabled, for the breaker's trips
    position     BIGINT  NOT NULL,              -- order of its name in the client's chain
    failures     BIGINT  NOT NULL DEFAULT 0,    -- consecutive failed runs (the circuit breaker counts these)
    activated_at BIGINT,                        -- last time it became active (rollback goes to the one before)
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    contract     TEXT,
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
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (client_id, plugin_name, key)
);

CREATE TABLE escalations (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,           -- esc_...
    conversation_id TEXT    NOT NULL,
    message_id      TEXT,                       -- the message that triggered it; NULL when overdue
    trigger         TEXT    NOT NULL,           -- message | overdue
    level           BIGINT  NOT NULL,
    reason          TEXT    NOT NULL,
    source          TEXT    NOT NULL,           -- who decided: 'chain', 'defaults'
    notification_id TEXT,                       -- the outbound message telling the escalation contact
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, conversation_id) REFERENCES conversations (client_id, id)
);
CREATE INDEX escalations_by_conversation ON escalations (client_id, conversation_id, created_at);
CREATE INDEX escalations_by_time ON escalations (created_at, client_id, level);

CREATE TABLE conversation_events (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    kind            TEXT    NOT NULL,           -- sla.warning | sla.overdue
    detail          TEXT    NOT NULL,           -- JSON
    at              BIGINT  NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, conversation_id) REFERENCES conversations (client_id, id)
);
CREATE INDEX conversation_events_by_conversation ON conversation_events (client_id, conversation_id, at);

CREATE TABLE message_edits (
    -- SQLite's implicit row id, by the name the queries use: earlier versions in the order they were kept.
    rowid       BIGINT  GENERATED ALWAYS AS IDENTITY,
    client_id   TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    replaced_at BIGINT  NOT NULL,
    text        TEXT    NOT NULL,               -- the text before this edit
    parts       TEXT    NOT NULL,
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE INDEX message_edits_by_message ON message_edits (client_id, message_id, replaced_at);

CREATE TABLE channel_events (
    client_id   TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (client_id, channel, external_id)
);

CREATE TABLE telegram_business_connections (
    client_id      TEXT    NOT NULL REFERENCES clients (id),
    id             TEXT    NOT NULL,
    owner_user_id  TEXT    NOT NULL,
    owner_name     TEXT,
    enabled        BIGINT  NOT NULL,
    can_reply      BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (client_id, id)
);

CREATE TABLE media (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    part            BIGINT  NOT NULL,           -- index of the part in the message's parts
    channel         TEXT    NOT NULL,           -- whatsapp | telegram: whose API fetches it
    provider_id     TEXT    NOT NULL,           -- WhatsApp media id, Telegram file_id
    kind            TEXT    NOT NULL,           -- image | video | voice | document ...
    declared_type   TEXT,                       -- the MIME type the provider stated
    filename        TEXT,
    state           TEXT    NOT NULL,           -- pending | fetching | stored | failed
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    sha256          TEXT,                       -- the blob, once stored
    size            BIGINT,
    content_type    TEXT,                       -- the type sniffed from the bytes
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE UNIQUE INDEX media_by_id ON media (id);
CREATE INDEX media_due ON media (state, next_attempt_at);
CREATE INDEX media_by_message ON media (client_id, message_id, part);

CREATE TABLE events (
    seq             BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,  -- never reused: ids only grow
    client_id       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,                   -- message.created, message.edited, ...
    conversation_id TEXT,
    message_id      TEXT,
    data            TEXT    NOT NULL,                   -- JSON
    at              BIGINT  NOT NULL
);
CREATE INDEX events_by_client ON events (client_id, seq);
CREATE INDEX events_by_time ON events (at);

CREATE TABLE event_log_trim (
    id          BIGINT  NOT NULL PRIMARY KEY CHECK (id = 1),
    through_seq BIGINT  NOT NULL
);

CREATE TABLE message_counts (
    day        BIGINT NOT NULL,            -- days since 1970-01-01, UTC (created_at / 86400000)
    client_id  TEXT   NOT NULL,
    channel    TEXT   NOT NULL,
    direction  TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    author_id  TEXT   NOT NULL DEFAULT '', -- '' when the message has no author (customers, automatic messages)
    count      BIGINT NOT NULL,
    PRIMARY KEY (day, client_id, channel, direction, kind, author_id)
);

-- The counts follow the messages, as SQLite's triggers keep them.
CREATE FUNCTION message_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.created_at / 86400000 IS NOT DISTINCT FROM NEW.created_at / 86400000
           AND OLD.client_id IS NOT DISTINCT FROM NEW.client_id AND OLD.channel IS NOT DISTINCT FROM NEW.channel
           AND OLD.direction IS NOT DISTINCT FROM NEW.direction AND OLD.kind IS NOT DISTINCT FROM NEW.kind
           AND COALESCE(OLD.author_id, '') IS NOT DISTINCT FROM COALESCE(NEW.author_id, '') THEN
            RETURN NULL;
        END IF;
        UPDATE message_counts SET count = count - 1
        WHERE day = OLD.created_at / 86400000 AND client_id = OLD.client_id AND channel = OLD.channel
          AND direction = OLD.direction AND kind = OLD.kind AND author_id = COALESCE(OLD.author_id, '');
    END IF;
    INSERT INTO message_counts (day, client_id, channel, direction, kind, author_id, count)
    VALUES (NEW.created_at / 86400000, NEW.client_id, NEW.channel, NEW.direction, NEW.kind,
            COALESCE(NEW.author_id, ''), 1)
    ON CONFLICT (day, client_id, channel, direction, kind, author_id)
    DO UPDATE SET count = message_counts.count + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER message_counts_follow AFTER INSERT OR UPDATE OF created_at, client_id, channel, direction, kind, author_id
ON messages FOR EACH ROW EXECUTE FUNCTION message_counts_follow();
