-- Row-level security on every table of client data: a transaction sees and writes only the rows of the
-- clients it is for, whatever its queries say. The store sets `recado.scope` per transaction: `clients` with
-- `recado.clients` (a comma-separated list of client slugs: the client a client's token or person acts for,
-- or the clients an assistant serves); the server's own connections default to `all` (work for every
-- client: the workers, admins). A connection that sets nothing (any other program logging in as the role that
-- owns the tables) sees nothing. `FORCE` applies it to that owner too; only a superuser bypasses it.
-- People and tokens are not client data in this sense: they are read to authenticate, before any scope.
CREATE FUNCTION recado_visible(client TEXT) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT CASE current_setting('recado.scope', true)
        WHEN 'all' THEN true
        WHEN 'clients' THEN client = ANY (string_to_array(current_setting('recado.clients', true), ','))
        ELSE false
    END
$$;

ALTER TABLE clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE clients FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON clients USING (recado_visible(id)) WITH CHECK (recado_visible(id));

ALTER TABLE articles ENABLE ROW LEVEL SECURITY;
ALTER TABLE articles FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON articles USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON audit_log USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE channel_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE channel_events FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON channel_events USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE channels ENABLE ROW LEVEL SECURITY;
ALTER TABLE channels FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON channels USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE client_assistants ENABLE ROW LEVEL SECURITY;
ALTER TABLE client_assistants FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON client_assistants USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON contacts USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE conversation_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversation_events FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON conversation_events USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON conversations USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE decisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE decisions FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON decisions USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE escalations ENABLE ROW LEVEL SECURITY;
ALTER TABLE escalations FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON escalations USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON events USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE kb_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE kb_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON kb_changes USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE media ENABLE ROW LEVEL SECURITY;
ALTER TABLE media FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON media USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE message_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON message_counts USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE message_edits ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_edits FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON message_edits USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON messages USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON outbox USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE plugin_kv ENABLE ROW LEVEL SECURITY;
ALTER TABLE plugin_kv FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON plugin_kv USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE plugins ENABLE ROW LEVEL SECURITY;
ALTER TABLE plugins FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON plugins USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE processing_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE processing_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON processing_leases USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE suggestion_feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE suggestion_feedback FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON suggestion_feedback USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE suggestion_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE suggestion_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON suggestion_stats USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));

ALTER TABLE telegram_business_connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE telegram_business_connections FORCE ROW LEVEL SECURITY;
CREATE POLICY scoped ON telegram_business_connections USING (recado_visible(client_id)) WITH CHECK (recado_visible(client_id));
