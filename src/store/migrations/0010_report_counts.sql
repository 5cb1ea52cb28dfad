-- Reports count messages by client, UTC day, channel, direction, kind and author. Grouping two million index
-- entries for a year of a busy agency took seconds, so the counts are kept as messages are written: one row
-- per combination and day (about a hundred thousand for such a year), maintained by triggers in the
-- transaction that stores or changes the message, so they can never drift from the messages themselves.
-- Messages are never deleted (a deleted message keeps its row, marked), so no trigger for DELETE is needed.
CREATE TABLE message_counts (
    day        INTEGER NOT NULL,           -- days since 1970-01-01, UTC (created_at / 86400000)
    client_id  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    direction  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    author_id  TEXT NOT NULL DEFAULT '',   -- '' when the message has no author (customers, automatic messages)
    count      INTEGER NOT NULL,
    PRIMARY KEY (day, client_id, channel, direction, kind, author_id)
) WITHOUT ROWID;

INSERT INTO message_counts (day, client_id, channel, direction, kind, author_id, count)
SELECT created_at / 86400000, client_id, channel, direction, kind, COALESCE(author_id, ''), COUNT(*)
FROM messages GROUP BY 1, 2, 3, 4, 5, 6;

CREATE TRIGGER message_counts_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_counts (day, client_id, channel, direction, kind, author_id, count)
    VALUES (NEW.created_at / 86400000, NEW.client_id, NEW.channel, NEW.direction, NEW.kind,
            COALESCE(NEW.author_id, ''), 1)
    ON CONFLICT (day, client_id, channel, direction, kind, author_id) DO UPDATE SET count = count + 1;
END;

-- A reply's author is written just after the reply itself (same transaction); a correction of any counted
-- column moves the message from one row to the other.
CREATE TRIGGER message_counts_update AFTER UPDATE OF created_at, client_id, channel, direction, kind, author_id
ON messages
WHEN OLD.created_at / 86400000 IS NOT NEW.created_at / 86400000 OR OLD.client_id IS NOT NEW.client_id
  OR OLD.channel IS NOT NEW.channel OR OLD.direction IS NOT NEW.direction OR OLD.kind IS NOT NEW.kind
  OR COALESCE(OLD.author_id, '') IS NOT COALESCE(NEW.author_id, '')
BEGIN
    UPDATE message_counts SET count = count - 1
    WHERE day = OLD.created_at / 86400000 AND client_id = OLD.client_id AND channel = OLD.channel
      AND direction = OLD.direction AND kind = OLD.kind AND author_id = COALESCE(OLD.author_id, '');
    INSERT INTO message_counts (day, client_id, channel, direction, kind, author_id, count)
    VALUES (NEW.created_at / 86400000, NEW.client_id, NEW.channel, NEW.direction, NEW.kind,
            COALESCE(NEW.author_id, ''), 1)
    ON CONFLICT (day, client_id, channel, direction, kind, author_id) DO UPDATE SET count = count + 1;
END;

-- A report reads each conversation opened in its range and each reply started from a suggestion: from the
-- index alone, not from the table row by row.
DROP INDEX conversations_by_opening;
CREATE INDEX conversations_by_opening ON conversations
    (opened_at, client_id, channel, acknowledged_at, first_reply_by, first_response_ms, first_response_open_ms,
     sla_state);
DROP INDEX suggestion_feedback_by_time;
CREATE INDEX suggestion_feedback_by_time ON suggestion_feedback (at, client_id, actor, edited)
    WHERE picked IS NOT NULL;
