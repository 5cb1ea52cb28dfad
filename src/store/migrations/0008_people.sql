-- People who sign in: admins and assistants of the agency, and people of a client. Not one client's data
-- (admins and assistants span clients), so keyed by their own id; a client person names its client.
CREATE TABLE people (
    id              TEXT    NOT NULL PRIMARY KEY,       -- prs_...
    email           TEXT    NOT NULL,                   -- as given
    email_key       TEXT    NOT NULL UNIQUE,            -- lower case: one person per address
    name            TEXT    NOT NULL,
    role            TEXT    NOT NULL,                   -- admin, assistant, client
    client_id       TEXT    REFERENCES clients (id),    -- client people only
    password_hash   TEXT    NOT NULL,                   -- Argon2id, PHC string
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER
);
