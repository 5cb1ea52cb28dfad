-- Knowledge-base articles (the source of truth; the search index is derived from them) and the change log
-- the indexer follows.

CREATE TABLE articles (
    client_id   TEXT    NOT NULL REFERENCES clients (id),
    id          TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    questions   TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    body        TEXT    NOT NULL,               -- minijinja template
    tags        TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    shortcut    TEXT,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (client_id, id)
);
CREATE UNIQUE INDEX articles_by_shortcut ON articles (client_id, shortcut) WHERE shortcut IS NOT NULL;

-- One row per change of an article (created, updated, deleted), in commit order. The indexer applies the
-- rows after the last sequence it indexed, so edits from any process (API, `recado kb import`) reach it.
CREATE TABLE kb_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   TEXT    NOT NULL,
    article_id  TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
