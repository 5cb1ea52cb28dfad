-- recado schema v1. Portable SQL: the client id leads every key of client data, timestamps are integer
-- milliseconds since the Unix epoch (UTC), JSON columns are TEXT.

CREATE TABLE clients (
    id          TEXT    NOT NULL PRIMARY KEY,   -- the slug; never changes
    name        TEXT    NOT NULL,
    profile     TEXT    NOT NULL,               -- JSON ClientProfile
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE channels (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    kind        TEXT    NOT NULL,               -- whatsapp | telegram | webhook
    config      TEXT    NOT NULL,               -- JSON, holds secrets: never returned by the API
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, kind)
);

CREATE TABLE tokens (
    id          TEXT    NOT NULL PRIMARY KEY,   -- public part of the token
    secret_hash BLOB    NOT NULL,               -- SHA-256 of the secret part
    role        TEXT    NOT NULL,
    client_id   TEXT    REFERENCES clients (id),
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE contacts (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    id          TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    handle      TEXT    NOT NULL,
    name        TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, id),
    UNIQUE (client_id, channel, handle)
);

CREATE TABLE conversations (
    client_id            TEXT    NOT NULL REFERENCES clients (id),
    id                   TEXT    NOT NULL,
    contact_id           TEXT    NOT NULL,
    channel              TEXT    NOT NULL,
    status               TEXT    NOT NULL,      -- open | closed
    queue                TEXT,
    assignee             TEXT,
    priority             TEXT    NOT NULL DEFAULT 'normal',
    tags                 TEXT    NOT NULL DEFAULT '[]',
    message_count        INTEGER NOT NULL DEFAULT 0,
    preview              TEXT    NOT NULL DEFAULT '',
    opened_at            INTEGER NOT NULL,
    last_activity_at     INTEGER NOT NULL,
    first_inbound_at     INTEGER,
    first_human_reply_at INTEGER,
    closed_at            INTEGER,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, contact_id) REFERENCES contacts (client_id, id)
);
CREATE UNIQUE INDEX conversations_by_id ON conversations (id);
CREATE INDEX conversations_by_activity ON conversations (last_activity_at DESC, id DESC);
CREATE INDEX conversations_by_client_activity ON conversations (client_id, last_activity_at DESC, id DESC);
CREATE INDEX conversations_by_contact ON conversations (client_id, contact_id, status);

CREATE TABLE messages (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    direction       TEXT    NOT NULL,           -- in | out
    kind            TEXT    NOT NULL,           -- customer | auto_ack | assistant | system
    channel         TEXT    NOT NULL,
    external_id     TEXT,                       -- provider id of inbound messages: the dedupe key
    author          TEXT,
    text            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL,           -- inbound: received | processed; outbound: queued
    PRIMARY KEY (client_id, id),
    UNIQUE (client_id, channel, external_id),
    FOREIGN KEY (client_id, conversation_id) REFERENCES conversations (client_id, id)
);
CREATE UNIQUE INDEX messages_by_id ON messages (id);
CREATE INDEX messages_by_conversation ON messages (client_id, conversation_id, created_at, id);
CREATE INDEX messages_unprocessed ON messages (state, created_at) WHERE state = 'received';

CREATE TABLE outbox (
    client_id           TEXT    NOT NULL,
    id                  TEXT    NOT NULL,
    message_id          TEXT    NOT NULL,
    adapter             TEXT    NOT NULL,       -- whatsapp | telegram | webhook
    recipient           TEXT    NOT NULL,
    state               TEXT    NOT NULL,       -- pending | sending | sent | delivered | read | failed | dead
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    lease_until         INTEGER,
    last_error          TEXT,
    provider_message_id TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE UNIQUE INDEX outbox_by_id ON outbox (id);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_message ON outbox (client_id, message_id);
CREATE INDEX outbox_by_provider_id ON outbox (client_id, provider_message_id);

CREATE TABLE decisions (
    client_id   TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    source      TEXT    NOT NULL,               -- 'defaults', or a plugin id and version
    applied     INTEGER NOT NULL,               -- 0 for shadow decisions
    decision    TEXT    NOT NULL,               -- JSON
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, message_id, source),
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);

CREATE TABLE audit_log (
    client_id   TEXT    NOT NULL,               -- '' for events about no client in particular
    id          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,               -- JSON
    at          INTEGER NOT NULL,
    PRIMARY KEY (client_id, id)
);
