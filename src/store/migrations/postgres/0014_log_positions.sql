-- The event log and the article-change log are read by position (`seq`): a reader asks for the rows after
-- the last position it saw. An identity column numbers rows when they are inserted, not when they commit, so
-- a reader could pass a position whose transaction had not committed yet, and never see that row. From this
-- version rows are inserted without a position; the store's sequencer numbers committed rows, one numbering at
-- a time, continuing from `log_positions`, so every position it gives is above every one a reader could have
-- seen. Rows already stored keep theirs.
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ALTER COLUMN seq DROP IDENTITY;
ALTER TABLE events ALTER COLUMN seq DROP NOT NULL;
ALTER TABLE events ADD COLUMN id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE UNIQUE INDEX events_by_seq ON events (seq);
CREATE INDEX events_unnumbered ON events (id) WHERE seq IS NULL;

ALTER TABLE kb_changes DROP CONSTRAINT kb_changes_pkey;
ALTER TABLE kb_changes ALTER COLUMN seq DROP IDENTITY;
ALTER TABLE kb_changes ALTER COLUMN seq DROP NOT NULL;
ALTER TABLE kb_changes ADD COLUMN id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE UNIQUE INDEX kb_changes_by_seq ON kb_changes (seq);
CREATE INDEX kb_changes_unnumbered ON kb_changes (id) WHERE seq IS NULL;

-- The last position given in each log (for the events, never below the last one trimmed away).
CREATE TABLE log_positions (
    log  TEXT   NOT NULL PRIMARY KEY,
    last BIGINT NOT NULL
);
INSERT INTO log_positions (log, last) VALUES
    ('events', GREATEST((SELECT COALESCE(MAX(seq), 0) FROM events),
                        (SELECT COALESCE(MAX(through_seq), 0) FROM event_log_trim))),
    ('kb_changes', (SELECT COALESCE(MAX(seq), 0) FROM kb_changes));
