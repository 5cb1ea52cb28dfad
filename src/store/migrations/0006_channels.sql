-- Channels as customers use them: the parts of a message beside its text, edits, reactions and deletions
-- of stored messages, WhatsApp's business-scoped user ids, and Telegram Business connections.

ALTER TABLE messages ADD COLUMN parts TEXT NOT NULL DEFAULT '[]';      -- JSON array of parts
ALTER TABLE messages ADD COLUMN context TEXT NOT NULL DEFAULT '{}';    -- JSON: reply_to, forwarded, referral
ALTER TABLE messages ADD COLUMN reactions TEXT NOT NULL DEFAULT '[]';  -- JSON array of {by, emoji, at}
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;

-- Earlier versions of an edited message, oldest first.
CREATE TABLE message_edits (
    client_id   TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    replaced_at INTEGER NOT NULL,
    text        TEXT    NOT NULL,               -- the text before this edit
    parts       TEXT    NOT NULL,
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE INDEX message_edits_by_message ON message_edits (client_id, message_id, replaced_at);

-- Provider events that change stored data (edits, reactions, deletions, identity changes), by the
-- provider's id: a retried webhook applies each at most once.
CREATE TABLE channel_events (
    client_id   TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, channel, external_id)
);

-- WhatsApp identifies a customer by a business-scoped user id (BSUID) beside, or instead of, the phone.
ALTER TABLE contacts ADD COLUMN user_id TEXT;
ALTER TABLE contacts ADD COLUMN username TEXT;
CREATE UNIQUE INDEX contacts_by_user_id ON contacts (client_id, channel, user_id) WHERE user_id IS NOT NULL;

-- A Telegram Business account connected to a client's bot: customers write to the business account, and
-- replies go out through the connection.
CREATE TABLE telegram_business_connections (
    client_id      TEXT    NOT NULL REFERENCES clients (id),
    id             TEXT    NOT NULL,
    owner_user_id  TEXT    NOT NULL,
    owner_name     TEXT,
    enabled        INTEGER NOT NULL,
    can_reply      INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (client_id, id)
);

-- Media customers sent, one row per media part: downloaded from the provider in the background into the
-- content-addressed blob store.
CREATE TABLE media (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    part            INTEGER NOT NULL,           -- index of the part in the message's parts
    channel         TEXT    NOT NULL,           -- whatsapp | telegram: whose API fetches it
    provider_id     TEXT    NOT NULL,           -- WhatsApp media id, Telegram file_id
    kind            TEXT    NOT NULL,           -- image | video | voice | document ...
    declared_type   TEXT,                       -- the MIME type the provider stated
    filename        TEXT,
    state           TEXT    NOT NULL,           -- pending | fetching | stored | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    sha256          TEXT,                       -- the blob, once stored
    size            INTEGER,
    content_type    TEXT,                       -- the type sniffed from the bytes
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, message_id) REFERENCES messages (client_id, id)
);
CREATE UNIQUE INDEX media_by_id ON media (id);
CREATE INDEX media_due ON media (state, next_attempt_at);
CREATE INDEX media_by_message ON media (client_id, message_id, part);

-- How an outbound message is sent when it is more than text: a WhatsApp template, an attachment (JSON).
ALTER TABLE outbox ADD COLUMN payload TEXT;

-- What changed, in commit order, for live event streams: a reader resumes after the last id it saw.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids only grow
    client_id       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,                   -- message.created, message.edited, ...
    conversation_id TEXT,
    message_id      TEXT,
    data            TEXT    NOT NULL,                   -- JSON
    at              INTEGER NOT NULL
);
CREATE INDEX events_by_client ON events (client_id, seq);
