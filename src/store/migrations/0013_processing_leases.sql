-- Nodes sharing a database divide the processing between them by client: a node decides a client's waiting
-- messages only while it holds that client's lease, so each client's messages are decided by one node at a
-- time, in order, against one copy of its plugins' key-value stores. The lease ends in the transaction that
-- applies the decisions it was taken for, or when it expires (a node that stopped mid-turn holds the client's
-- messages up for no longer than that). `holder` is a random token per turn.
CREATE TABLE processing_leases (
    client_id  TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
