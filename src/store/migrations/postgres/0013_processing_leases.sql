-- Per-client processing leases (see the SQLite migration of the same number for what they are for).
CREATE TABLE processing_leases (
    client_id  TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
