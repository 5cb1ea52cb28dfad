-- The pipeline serves clients in turns (one client's backlog must not hold up the others), so it asks which
-- clients have messages waiting and then each chosen client's oldest ones. This index answers both with a
-- probe per client, however long the backlog; like `messages_unprocessed` it holds only waiting messages.
CREATE INDEX messages_waiting_by_client ON messages (client_id, created_at, id) WHERE state = 'received';
