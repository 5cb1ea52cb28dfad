//! Storing what channels report: new messages (dedupe, contact upsert, conversation found or opened),
//! changes to stored messages (edits, reactions, deletions), identity changes and delivery statuses, all of
//! one webhook call in one transaction.

use super::sql::{Connection, Lock, OptionalExtension, params};

use serde_json::json;

use super::clients::load_client;
use super::{Db, Result, Scope, events};
use crate::domain::{
    Change, ChannelName, ClientSlug, ContactId, ConversationId, DeliveryState, InboundMessage, MessageId, MessageKind,
    OutboxId, Part, StatusUpdate, Target, Timestamp,
};

/// What happened to one inbound message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    /// Our id of the message (the earlier one for a duplicate).
    pub message_id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// True if and only if the message had been stored before (a provider retry).
    pub duplicate: bool,
}

/// Everything one provider call carried for one client and channel.
#[derive(Debug, Clone, Default)]
pub struct InboundBatch {
    /// New customer messages.
    pub messages: Vec<InboundMessage>,
    /// Changes to stored messages and contacts.
    pub changes: Vec<Change>,
    /// Delivery reports on our messages.
    pub statuses: Vec<StatusUpdate>,
}

/// What storing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// One outcome per message, in order.
    pub messages: Vec<IngestOutcome>,
    /// Changes applied now.
    pub changes_applied: usize,
    /// Changes applied before (a provider retry).
    pub changes_repeated: usize,
    /// Changes whose message or contact we do not have (sent before recado, or by another tool).
    pub changes_unmatched: usize,
}

/// Characters of a message kept as the conversation's preview in the inbox list.
const PREVIEW_CHARS: usize = 160;

impl Db {
    /// Stores a batch of one client and channel, durably, in one transaction.
    ///
    /// Each message is deduplicated on `(client, channel, external_id)`; a repeat returns the ids of the
    /// first copy with `duplicate: true` and changes nothing. Each change is applied at most once, keyed by
    /// its event id.
    pub async fn ingest(&self, client: ClientSlug, channel: ChannelName, batch: InboundBatch) -> Result<IngestReport> {
        let report = self
            .write_as(&Scope::Client(client.clone()), move |connection| {
                let default_queue = load_client(connection, &client)?.profile.defaults.queue;
                let mut report =
                    IngestReport { messages: Vec::with_capacity(batch.messages.len()), ..Default::default() };
                for message in &batch.messages {
                    debug_assert_eq!(message.client, client);
                    debug_assert_eq!(message.channel, channel);
                    report.messages.push(ingest_one(connection, &client, default_queue.as_deref(), message)?);
                }
                for change in &batch.changes {
                    match apply_change(connection, &client, &channel, change)? {
                        Applied::Now => report.changes_applied += 1,
                        Applied::Before => report.changes_repeated += 1,
                        Applied::NoTarget => report.changes_unmatched += 1,
                    }
                }
                for status in &batch.statuses {
                    apply_status(connection, &client, status)?;
                }
                Ok(report)
            })
            .await?;
        Ok(report)
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
    let existing: Option<(MessageId, ConversationId)> = connection
        .prepare_cached(
            "SELECT id, conversation_id FROM messages WHERE client_id = ?1 AND channel = ?2 AND external_id = ?3",
        )?
        .query_row(params![slug, channel, message.external_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((message_id, conversation_id)) = existing {
        return Ok(IngestOutcome { message_id, conversation_id, duplicate: true });
    }

    let now = message.received_at.millis();
    let contact_id = upsert_contact(connection, client, message)?;
    let open: Option<ConversationId> = connection
        .prepare_cached(
            "SELECT id FROM conversations WHERE client_id = ?1 AND contact_id = ?2 AND status = 'open'
             ORDER BY opened_at DESC LIMIT 1",
        )?
        .query_row(params![slug, contact_id], |row| row.get(0))
        .optional()?;
    let conversation_id = match open {
        Some(id) => id,
        None => {
            let id = ConversationId::generate();
            connection
                .prepare_cached(
                    "INSERT INTO conversations (client_id, id, contact_id, channel, status, queue, opened_at, last_activity_at)
                     VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?6)",
                )?
                .execute(params![slug, id, contact_id, channel, default_queue, now])?;
            let data = json!({ "channel": channel, "contact_id": contact_id, "queue": default_queue });
            events::record(connection, slug, "conversation.created", Some(&id), &data)?;
            id
        }
    };

    let message_id = MessageId::generate();
    connection
        .prepare_cached(
            "INSERT INTO messages (client_id, id, conversation_id, direction, kind, channel, external_id, author, text,
                                   created_at, state, parts, context)
             VALUES (?1, ?2, ?3, 'in', 'customer', ?4, ?5, NULL, ?6, ?7, 'received', ?8, ?9)",
        )?
        .execute(params![
            slug,
            message_id,
            conversation_id,
            channel,
            message.external_id,
            message.text,
            now,
            serde_json::to_string(&message.parts)?,
            serde_json::to_string(&message.context)?,
        ])?;
    let media: Vec<(usize, &crate::domain::Media)> = message
        .parts
        .iter()
        .enumerate()
        .filter_map(|(index, part)| match part {
            Part::Media(media) => Some((index, media)),
            _ => None,
        })
        .collect();
    super::media::queue_downloads(connection, client, &message.channel, &message_id, &media, now)?;
    events::record_for_message(
        connection,
        slug,
        "message.created",
        &message_id,
        &json!({ "direction": "in", "kind": "customer" }),
    )?;
    let preview: String = message.text.chars().take(PREVIEW_CHARS).collect();
    connection
        .prepare_cached(
            "UPDATE conversations
             SET message_count = message_count + 1, preview = ?3,
                 last_activity_at = CASE WHEN last_activity_at > ?4 THEN last_activity_at ELSE ?4 END, first_inbound_at = COALESCE(first_inbound_at, ?4)
             WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![slug, conversation_id, preview, now])?;
    Ok(IngestOutcome { message_id, conversation_id, duplicate: false })
}

/// Finds the sender's contact by handle or by channel user id, creating it if neither is known, and keeps
/// one contact per person: when a handle and a user id first arrive together and each already has its own
/// contact (a customer who wrote once without a phone number, once with), the two are merged.
fn upsert_contact(connection: &Connection, client: &ClientSlug, message: &InboundMessage) -> Result<ContactId> {
    let slug = client.as_str();
    let channel = message.channel.as_str();
    let now = message.received_at.millis();
    let by_handle: Option<ContactId> = connection
        .prepare_cached("SELECT id FROM contacts WHERE client_id = ?1 AND channel = ?2 AND handle = ?3")?
        .query_row(params![slug, channel, message.handle], |row| row.get(0))
        .optional()?;
    let by_user_id: Option<ContactId> = match &message.user_id {
        Some(user_id) => connection
            .prepare_cached("SELECT id FROM contacts WHERE client_id = ?1 AND channel = ?2 AND user_id = ?3")?
            .query_row(params![slug, channel, user_id], |row| row.get(0))
            .optional()?,
        None => None,
    };
    let id = match (by_handle, by_user_id) {
        (Some(keep), Some(other)) if keep != other => {
            merge_contacts(connection, slug, &keep, &other)?;
            keep
        }
        (Some(id), _) => id,
        (None, Some(id)) => {
            // Known by user id only: the handle (a phone number) has become known, and replies go to it.
            connection
                .prepare_cached("UPDATE contacts SET handle = ?3 WHERE client_id = ?1 AND id = ?2")?
                .execute(params![slug, id, message.handle])?;
            id
        }
        (None, None) => {
            let id = ContactId::generate();
            connection
                .prepare_cached(
                    "INSERT INTO contacts (client_id, id, channel, handle, name, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )?
                .execute(params![slug, id, channel, message.handle, message.name, now])?;
            id
        }
    };
    // Also what makes two nodes storing messages of one customer at once take turns (on PostgreSQL; SQLite's one
    // writer does already): the second waits for this row until the first commits, then finds the conversation
    // the first opened instead of opening another.
    connection
        .prepare_cached(
            "UPDATE contacts SET name = COALESCE(?3, name), user_id = COALESCE(?4, user_id),
                    username = COALESCE(?5, username), updated_at = ?6
             WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![slug, id, message.name, message.user_id, message.username, now])?;
    Ok(id)
}

/// Moves `other`'s conversations to `keep` and removes `other`.
fn merge_contacts(connection: &Connection, slug: &str, keep: &ContactId, other: &ContactId) -> Result<()> {
    connection.execute(
        "UPDATE conversations SET contact_id = ?2 WHERE client_id = ?1 AND contact_id = ?3",
        params![slug, keep, other],
    )?;
    connection.execute("DELETE FROM contacts WHERE client_id = ?1 AND id = ?2", params![slug, other])?;
    tracing::info!(client = slug, kept = %keep, merged = %other, "merged two contacts of one customer");
    Ok(())
}

/// Whether a change took effect.
enum Applied {
    Now,
    Before,
    NoTarget,
}

fn apply_change(
    connection: &Connection,
    client: &ClientSlug,
    channel: &ChannelName,
    change: &Change,
) -> Result<Applied> {
    let slug = client.as_str();
    let now = Timestamp::now().millis();
    if let Change::BusinessConnection { id, owner_user_id, owner_name, enabled, can_reply } = change {
        // A connection update is a state, not an event: the latest one wins, and a repeat is harmless.
        connection.execute(
            "INSERT INTO telegram_business_connections (client_id, id, owner_user_id, owner_name, enabled, can_reply, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (client_id, id) DO UPDATE SET owner_user_id = excluded.owner_user_id,
                 owner_name = excluded.owner_name, enabled = excluded.enabled, can_reply = excluded.can_reply,
                 updated_at = excluded.updated_at",
            params![slug, id, owner_user_id, owner_name, enabled, can_reply, now],
        )?;
        let data = json!({ "business_connection": id, "enabled": enabled, "can_reply": can_reply });
        events::record(connection, slug, "channel.changed", None, &data)?;
        return Ok(Applied::Now);
    }
    let event_id = match change {
        Change::Edit { event_id, .. }
        | Change::Reaction { event_id, .. }
        | Change::Deletion { event_id, .. }
        | Change::NumberChange { event_id, .. }
        | Change::UserIdChange { event_id, .. } => event_id,
        Change::BusinessConnection { .. } => unreachable!("handled above"),
    };
    let fresh = connection
        .prepare_cached(
            "INSERT INTO channel_events (client_id, channel, external_id, kind, received_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![slug, channel.as_str(), event_id, change.kind(), now])?;
    if fresh == 0 {
        return Ok(Applied::Before);
    }
    let applied = match change {
        Change::Edit { target, text, parts, .. } => {
            let Some((message_id, true)) = find_target(connection, slug, channel, target)? else {
                return Ok(Applied::NoTarget);
            };
            // The text replaced is kept as read: a second edit arriving at another node waits.
            connection.lock(Lock::Message(client, &message_id))?;
            connection.execute(
                "INSERT INTO message_edits (client_id, message_id, replaced_at, text, parts)
                 SELECT client_id, id, ?3, text, parts FROM messages WHERE client_id = ?1 AND id = ?2",
                params![slug, message_id, now],
            )?;
            connection.execute(
                "UPDATE messages SET text = ?3, parts = ?4, edited_at = ?5 WHERE client_id = ?1 AND id = ?2",
                params![slug, message_id, text, serde_json::to_string(parts)?, now],
            )?;
            events::record_for_message(connection, slug, "message.edited", &message_id, &json!({}))?;
            true
        }
        Change::Reaction { target, emoji, .. } => {
            let Some((message_id, _)) = find_target(connection, slug, channel, target)? else {
                return Ok(Applied::NoTarget);
            };
            connection.lock(Lock::Message(client, &message_id))?;
            let stored: String = connection.query_row(
                "SELECT reactions FROM messages WHERE client_id = ?1 AND id = ?2",
                params![slug, message_id],
                |row| row.get(0),
            )?;
            let mut reactions: Vec<serde_json::Value> = serde_json::from_str(&stored).unwrap_or_default();
            // A customer has one reaction per message on both channels: a new one replaces the old.
            reactions.retain(|reaction| reaction.get("by").and_then(|by| by.as_str()) != Some(CUSTOMER));
            if let Some(emoji) = emoji {
                reactions
                    .push(serde_json::json!({ "by": CUSTOMER, "emoji": emoji, "at": Timestamp(now).to_rfc3339() }));
            }
            connection.execute(
                "UPDATE messages SET reactions = ?3 WHERE client_id = ?1 AND id = ?2",
                params![slug, message_id, serde_json::to_string(&reactions)?],
            )?;
            events::record_for_message(connection, slug, "message.reaction", &message_id, &json!({ "emoji": emoji }))?;
            true
        }
        Change::Deletion { target, .. } => {
            let Some((message_id, true)) = find_target(connection, slug, channel, target)? else {
                return Ok(Applied::NoTarget);
            };
            connection.execute(
                "UPDATE messages SET deleted_at = COALESCE(deleted_at, ?3) WHERE client_id = ?1 AND id = ?2",
                params![slug, message_id, now],
            )?;
            events::record_for_message(connection, slug, "message.deleted", &message_id, &json!({}))?;
            true
        }
        Change::NumberChange { from, to, .. } => move_contact(connection, slug, channel, from, to, now)?,
        Change::UserIdChange { from, to, .. } => {
            let changed = connection.execute(
                "UPDATE contacts SET user_id = ?4, updated_at = ?5
                 WHERE client_id = ?1 AND channel = ?2 AND user_id = ?3
                   AND NOT EXISTS (SELECT 1 FROM contacts WHERE client_id = ?1 AND channel = ?2 AND user_id = ?4)",
                params![slug, channel.as_str(), from, to, now],
            )? > 0;
            if changed {
                let data = json!({ "user_id_from": from, "user_id_to": to });
                events::record(connection, slug, "contact.changed", None, &data)?;
            }
            changed
        }
        Change::BusinessConnection { .. } => unreachable!("handled above"),
    };
    Ok(if applied { Applied::Now } else { Applied::NoTarget })
}

/// Who a reaction is from, in the stored list.
const CUSTOMER: &str = "customer";

/// The message a change refers to: an inbound message by its external id, or one of our outbound messages
/// by the provider's id and recipient. The flag says whether it is the customer's own (inbound) message.
fn find_target(
    connection: &Connection,
    slug: &str,
    channel: &ChannelName,
    target: &Target,
) -> Result<Option<(MessageId, bool)>> {
    let inbound: Option<MessageId> = connection
        .prepare_cached(
            "SELECT id FROM messages WHERE client_id = ?1 AND channel = ?2 AND external_id = ?3 AND direction = 'in'",
        )?
        .query_row(params![slug, channel.as_str(), target.external_id], |row| row.get(0))
        .optional()?;
    if let Some(id) = inbound {
        return Ok(Some((id, true)));
    }
    let outbound: Option<MessageId> = connection
        .prepare_cached(
            "SELECT message_id FROM outbox WHERE client_id = ?1 AND provider_message_id = ?2 AND recipient = ?3
             LIMIT 1",
        )?
        .query_row(params![slug, target.provider_id, target.handle], |row| row.get(0))
        .optional()?;
    Ok(outbound.map(|id| (id, false)))
}

/// Moves a contact from one handle to another after a number change, merging with a contact already at the
/// new handle, and notes the change in the contact's open conversation.
fn move_contact(
    connection: &Connection,
    slug: &str,
    channel: &ChannelName,
    from: &str,
    to: &str,
    now: i64,
) -> Result<bool> {
    let find = |handle: &str| -> Result<Option<ContactId>> {
        connection
            .prepare_cached("SELECT id FROM contacts WHERE client_id = ?1 AND channel = ?2 AND handle = ?3")?
            .query_row(params![slug, channel.as_str(), handle], |row| row.get(0))
            .optional()
    };
    let Some(old) = find(from)? else { return Ok(false) };
    let id = match find(to)? {
        Some(existing) => {
            merge_contacts(connection, slug, &existing, &old)?;
            existing
        }
        None => {
            connection.execute(
                "UPDATE contacts SET handle = ?3, updated_at = ?4 WHERE client_id = ?1 AND id = ?2",
                params![slug, old, to, now],
            )?;
            old
        }
    };
    let open: Option<ConversationId> = connection
        .query_row(
            "SELECT id FROM conversations WHERE client_id = ?1 AND contact_id = ?2 AND status = 'open'
             ORDER BY opened_at DESC LIMIT 1",
            params![slug, id],
            |row| row.get(0),
        )
        .optional()?;
    let data = json!({ "contact_id": id, "handle_from": from, "handle_to": to });
    events::record(connection, slug, "contact.changed", open.as_ref(), &data)?;
    if let Some(conversation_id) = open {
        // A note for the people in the conversation: not inbound (it is not the customer's and must not start
        // clocks or reach the rules), never sent.
        connection.execute(
            "INSERT INTO messages (client_id, id, conversation_id, direction, kind, channel, external_id, author, text,
                                   created_at, state)
             VALUES (?1, ?2, ?3, 'out', ?4, ?5, NULL, NULL, ?6, ?7, 'noted')",
            params![
                slug,
                MessageId::generate(),
                conversation_id,
                MessageKind::System,
                channel.as_str(),
                format!("The customer changed their number from {from} to {to}; replies now go to {to}."),
                now
            ],
        )?;
    }
    Ok(true)
}

/// Moves an outbound delivery forward; never backwards (a late "delivered" after "read" is ignored).
fn apply_status(connection: &Connection, client: &ClientSlug, status: &StatusUpdate) -> Result<()> {
    let row: Option<(OutboxId, DeliveryState)> = match &status.outbox_id {
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
            status.state,
            status.provider_message_id,
            status.error,
            crate::domain::Timestamp::now().millis()
        ],
    )?;
    super::outbox::delivery_event(connection, client, &outbox_id)
}
