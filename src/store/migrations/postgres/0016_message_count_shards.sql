-- Each message written added 1 to one row per (day, client, channel, direction, kind, author): with several
-- writers at once, that row is where every ingest transaction of a client queued behind the one before it
-- until that one committed. A count is now split over up to 16 rows (`shard`), each connection adding to the
-- one its backend's process id picks, and readers add them up. Every row stays at 0 or above, so a message
-- counted in some row can always be taken out of one.
ALTER TABLE message_counts ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE message_counts DROP CONSTRAINT message_counts_pkey;
ALTER TABLE message_counts ADD PRIMARY KEY (day, client_id, channel, direction, kind, author_id, shard);

CREATE OR REPLACE FUNCTION message_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mine SMALLINT := pg_backend_pid() % 16;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.created_at / 86400000 IS NOT DISTINCT FROM NEW.created_at / 86400000
           AND OLD.client_id IS NOT DISTINCT FROM NEW.client_id AND OLD.channel IS NOT DISTINCT FROM NEW.channel
           AND OLD.direction IS NOT DISTINCT FROM NEW.direction AND OLD.kind IS NOT DISTINCT FROM NEW.kind
           AND COALESCE(OLD.author_id, '') IS NOT DISTINCT FROM COALESCE(NEW.author_id, '') THEN
            RETURN NULL;
        END IF;
        -- Out of a row that counted it: this connection's own if it did, else another.
        UPDATE message_counts SET count = count - 1
        WHERE (day, client_id, channel, direction, kind, author_id, shard) IN (
            SELECT day, client_id, channel, direction, kind, author_id, shard FROM message_counts
            WHERE day = OLD.created_at / 86400000 AND client_id = OLD.client_id AND channel = OLD.channel
              AND direction = OLD.direction AND kind = OLD.kind AND author_id = COALESCE(OLD.author_id, '')
              AND count > 0
            ORDER BY shard = mine DESC
            LIMIT 1
            FOR UPDATE);
    END IF;
    INSERT INTO message_counts (day, client_id, channel, direction, kind, author_id, shard, count)
    VALUES (NEW.created_at / 86400000, NEW.client_id, NEW.channel, NEW.direction, NEW.kind,
            COALESCE(NEW.author_id, ''), mine, 1)
    ON CONFLICT (day, client_id, channel, direction, kind, author_id, shard)
    DO UPDATE SET count = message_counts.count + 1;
    RETURN NULL;
END
$$;
