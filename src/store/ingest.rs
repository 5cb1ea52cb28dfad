//! Storing inbound messages: dedupe, contact upsert, conversation found or opened, all in one transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::clients::load_client;
use super::{Db, Result};
use crate::domain::{ClientSlug, DeliveryState, InboundMessage, id_prefix, new_id};

/// What happened to one inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Our id of the message (the earlier one for a duplicate).
    pub message_id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// True if and only if the message had been stored before (a provider retry).
    pub duplicate: bool,
}

/// A provider's report on one of our outbound messages (WhatsApp `statuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// Our outbox id, when the provider echoes it back (WhatsApp `biz_opaque_callback_data`).
    pub outbox_id: Option<String>,
    /// The provider's id of the message.
    pub provider_message_id: String,
    /// The new state.
    pub state: DeliveryState,
    /// The provider's error text, for failures.
    pub error: Option<String>,
}

/// Characters of a message kept as the conversation's preview in the inbox list.
const PREVIEW_CHARS: usize = 160;

impl Db {
    /// Stores a batch of messages and status updates of one client, durably, in one transaction.
    ///
    /// Each message is deduplicated on `(client, channel, external_id)`; a repeat returns the ids of the
    /// first copy with `duplicate: true` and changes nothing.
    pub async fn ingest(
        &self,
        client: ClientSlug,
        messages: Vec<InboundMessage>,
        statuses: Vec<StatusUpdate>,
    ) -> Result<Vec<IngestOutcome>> {
        self.write(move |connection| {
            let default_queue = load_client(connection, &client)?.profile.defaults.queue;
            let mut outcomes = Vec::with_capacity(messages.len());
            for message in &messages {
                debug_assert_eq!(message.client, client);
                outcomes.push(ingest_one(connection, &client, default_queue.as_deref(), message)?);
            }
            for status in &statuses {
                apply_status(connection, &client, status)?;
            }
            Ok(outcomes)
        })
        .await
    }
}

fn ingest_one(
    connection: &Connection,
    client: &ClientSlug,
    default_queue: Option<&str>,
    message: &InboundMessage,
) -> Result<IngestOutcome> {
    let slug = client.as_str();
    let channel = message.channel.as_str();
    let existing: Option<(String, String)> = connection
        .prepare_cached(
            "SELECT id, conversation_id FROM messages WHERE client_id = ?1 AND channel = ?2 AND external_id = ?3",
        )?
        .query_row(params![slug, channel, message.external_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((message_id, conversation_id)) = existing {
        return Ok(IngestOutcome { message_id, conversation_id, duplicate: true });
    }

    let now = message.received_at.millis();
    let contact_id: String = connection
        .prepare_cached(
            "INSERT INTO contacts (client_id, id, channel, handle, name, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (client_id, channel, handle)
             DO UPDATE SET name = COALESCE(excluded.name, contacts.name), updated_at = excluded.updated_at
             RETURNING id",
        )?
        .query_row(params![slug, new_id(id_prefix::CONTACT), channel, message.handle, message.name, now], |row| {
            row.get(0)
        })?;

    let open: Option<String> = connection
        .prepare_cached(
            "SELECT id FROM conversations WHERE client_id = ?1 AND contact_id = ?2 AND status = 'open'
             ORDER BY opened_at DESC LIMIT 1",
        )?
        .query_row(params![slug, contact_id], |row| row.get(0))
        .optional()?;
    let conversation_id = match open {
        Some(id) => id,
        None => {
            let id = new_id(id_prefix::CONVERSATION);
            connection
                .prepare_cached(
                    "INSERT INTO conversations (client_id, id, contact_id, channel, status, queue, opened_at, last_activity_at)
                     VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?6)",
                )?
                .execute(params![slug, id, contact_id, channel, default_queue, now])?;
            id
        }
    };

    let message_id = new_id(id_prefix::MESSAGE);
    connection
        .prepare_cached(
            "INSERT INTO messages (client_id, id, conversation_id, direction, kind, channel, external_id, author, text, created_at, state)
             VALUES (?1, ?2, ?3, 'in', 'customer', ?4, ?5, NULL, ?6, ?7, 'received')",
        )?
        .execute(params![slug, message_id, conversation_id, channel, message.external_id, message.text, now])?;
    let preview: String = message.text.chars().take(PREVIEW_CHARS).collect();
    connection
        .prepare_cached(
            "UPDATE conversations
             SET message_count = message_count + 1, preview = ?3,
                 last_activity_at = MAX(last_activity_at, ?4), first_inbound_at = COALESCE(first_inbound_at, ?4)
             WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![slug, conversation_id, preview, now])?;
    Ok(IngestOutcome { message_id, conversation_id, duplicate: false })
}

/// Moves an outbound delivery forward; never backwards (a late "delivered" after "read" is ignored).
fn apply_status(connection: &Connection, client: &ClientSlug, status: &StatusUpdate) -> Result<()> {
    let row: Option<(String, String)> = match &status.outbox_id {
        Some(outbox_id) => connection
            .query_row(
                "SELECT id, state FROM outbox WHERE client_id = ?1 AND id = ?2",
                params![client.as_str(), outbox_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?,
        None => None,
    };
    let row = match row {
        Some(row) => Some(row),
        None => connection
            .query_row(
                "SELECT id, state FROM outbox WHERE client_id = ?1 AND provider_message_id = ?2",
                params![client.as_str(), status.provider_message_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?,
    };
    let Some((outbox_id, current)) = row else {
        // A status for a message we do not know (sent by another tool on the same number): nothing to update.
        tracing::debug!(provider_message_id = %status.provider_message_id, "status for an unknown message");
        return Ok(());
    };
    let current: DeliveryState = current.parse().unwrap_or(DeliveryState::Sent);
    if status.state.rank() <= current.rank() && current != DeliveryState::Sending {
        return Ok(());
    }
    connection.execute(
        "UPDATE outbox SET state = ?3, provider_message_id = COALESCE(provider_message_id, ?4),
                last_error = COALESCE(?5, last_error), lease_until = NULL, updated_at = ?6
         WHERE client_id = ?1 AND id = ?2",
        params![
            client.as_str(),
            outbox_id,
            status.state.as_str(),
            status.provider_message_id,
            status.error,
            crate::domain::Timestamp::now().millis()
        ],
    )?;
    Ok(())
}
