-- The first-response clock of each conversation (counted in the client's business hours) and the events it
-- raises. `sla_next_at` is when the SLA worker must look at the conversation next (the warning, then the
-- target); NULL once the clock has stopped. Times persist, so a restart fires what fell due meanwhile.

ALTER TABLE conversations ADD COLUMN sla_state TEXT;            -- running | warned | overdue | met | met_late | stopped
ALTER TABLE conversations ADD COLUMN sla_started_at INTEGER;
ALTER TABLE conversations ADD COLUMN sla_warn_at INTEGER;
ALTER TABLE conversations ADD COLUMN sla_due_at INTEGER;
ALTER TABLE conversations ADD COLUMN sla_next_at INTEGER;
CREATE INDEX conversations_sla_next ON conversations (sla_next_at) WHERE sla_next_at IS NOT NULL;

CREATE TABLE conversation_events (
    client_id       TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    kind            TEXT    NOT NULL,           -- sla.warning | sla.overdue
    detail          TEXT    NOT NULL,           -- JSON
    at              INTEGER NOT NULL,
    PRIMARY KEY (client_id, id),
    FOREIGN KEY (client_id, conversation_id) REFERENCES conversations (client_id, id)
);
CREATE INDEX conversation_events_by_conversation ON conversation_events (client_id, conversation_id, at);
