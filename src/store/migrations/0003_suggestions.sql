-- The language detected for each inbound message (NULL when too short to tell), and what assistants did
-- with suggestions: a log of feedback and per-article counters for the pick boost.

ALTER TABLE messages ADD COLUMN language TEXT;

CREATE TABLE suggestion_feedback (
    client_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    shown       TEXT    NOT NULL,               -- JSON array of article ids, in the order shown
    picked      TEXT,                           -- article id, or NULL if none was used
    edited      INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (client_id, id)
);

CREATE TABLE suggestion_stats (
    client_id   TEXT    NOT NULL,
    article_id  TEXT    NOT NULL,
    impressions INTEGER NOT NULL DEFAULT 0,
    picks       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, article_id)
);
