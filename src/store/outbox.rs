//! The durable outbox: outbound messages are queued in the same transaction that stores them, claimed by
//! delivery workers under a lease, and their outcome recorded.
//!
//! A row is marked `sending` (with a lease) *before* the provider is called, and the provider's id stored
//! right after, so a normal run never sends twice. Only a process that dies between the call and the record
//! leaves a `sending` row whose lease runs out; it is sent again (at most once more per crash).

use super::sql::{Connection, Dialect, OptionalExtension, params};

use super::conversations::ConversationSummary;
use super::{Db, Error, Result, Scope};
use crate::domain::{
    ChannelKind, ChannelName, ClientSlug, ConversationId, DeliveryState, MessageId, MessageKind, Outbound, OutboxId,
    Timestamp,
};

/// Records a `delivery.updated` event with the delivery's state as it now is.
pub(super) fn delivery_event(connection: &Connection, client: &ClientSlug, outbox_id: &OutboxId) -> Result<()> {
    let row: Option<(MessageId, DeliveryState)> = connection
        .query_row(
            "SELECT message_id, state FROM outbox WHERE client_id = ?1 AND id = ?2",
            params![client, outbox_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((message_id, state)) = row {
        let data = serde_json::json!({ "outbox_id": outbox_id, "state": state });
        super::events::record_for_message(connection, client.as_str(), "delivery.updated", &message_id, &data)?;
    }
    Ok(())
}

/// A delivery claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The client whose credentials are used.
    pub client: ClientSlug,
    /// Outbox id (also sent to providers that echo it back).
    pub outbox_id: OutboxId,
    /// The message being delivered.
    pub message_id: MessageId,
    /// How it goes out.
    pub adapter: ChannelKind,
    /// To whom, on that adapter.
    pub recipient: String,
    /// The text.
    pub text: String,
    /// The conversation (for webhook payloads).
    pub conversation_id: ConversationId,
    /// What produced the message.
    pub kind: MessageKind,
    /// Attempts including this one.
    pub attempts: u32,
    /// How it is sent when it is more than text.
    pub payload: Option<Outbound>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The provider accepted the message.
    Sent {
        /// The provider's id for it, if it returned one.
        provider_message_id: Option<String>,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: Timestamp,
        /// Why the attempt failed.
        error: String,
    },
    /// Give up: the provider refused for good or the attempts are used up.
    Dead {
        /// Why.
        error: String,
    },
}

/// Outbox rows by state, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// Waiting for an attempt.
    pub pending: u64,
    /// Claimed by a worker.
    pub sending: u64,
    /// Given up.
    pub dead: u64,
}

/// The adapter that delivers messages of a conversation on `channel`.
pub(crate) fn adapter_for(channel: &ChannelName) -> ChannelKind {
    match channel.as_str() {
        ChannelName::WHATSAPP => ChannelKind::WhatsApp,
        ChannelName::TELEGRAM => ChannelKind::Telegram,
        _ => ChannelKind::Webhook,
    }
}

/// Stores an outbound message in `conversation` and queues its delivery to the conversation's contact, in
/// the caller's transaction.
pub(crate) fn enqueue(
    connection: &Connection,
    conversation: &ConversationSummary,
    kind: MessageKind,
    author: Option<&str>,
    text: &str,
) -> Result<MessageId> {
    enqueue_with(connection, conversation, kind, author, text, None)
}

/// Like [`enqueue`], sent as `payload` describes (a template, an attachment).
pub(crate) fn enqueue_with(
    connection: &Connection,
    conversation: &ConversationSummary,
    kind: MessageKind,
    author: Option<&str>,
    text: &str,
    payload: Option<&Outbound>,
) -> Result<MessageId> {
    let adapter = adapter_for(&conversation.channel);
    let message_id = enqueue_to(connection, conversation, kind, author, text, adapter, &conversation.contact.handle)?;
    if let Some(payload) = payload {
        connection.execute(
            "UPDATE outbox SET payload = ?3 WHERE client_id = ?1 AND message_id = ?2",
            params![conversation.client, message_id, serde_json::to_string(payload)?],
        )?;
    }
    Ok(message_id)
}

/// Like [`enqueue`], to another recipient (an owner notice goes to the client's escalation contact). Such a
/// message is part of the conversation's history but not its preview.
pub(crate) fn enqueue_to(
    connection: &Connection,
    conversation: &ConversationSummary,
    kind: MessageKind,
    author: Option<&str>,
    text: &str,
    adapter: ChannelKind,
    recipient: &str,
) -> Result<MessageId> {
    let now = Timestamp::now().millis();
    let message_id = MessageId::generate();
    connection
        .prepare_cached(
            "INSERT INTO messages (client_id, id, conversation_id, direction, kind, channel, external_id, author, text, created_at, state)
             VALUES (?1, ?2, ?3, 'out', ?4, ?5, NULL, ?6, ?7, ?8, 'queued')",
        )?
        .execute(params![
            conversation.client,
            message_id,
            conversation.id,
            kind,
            conversation.channel,
            author,
            text,
            now
        ])?;
    connection
        .prepare_cached(
            "INSERT INTO outbox (client_id, id, message_id, adapter, recipient, state, attempts, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?6)",
        )?
        .execute(params![
            conversation.client,
            OutboxId::generate(),
            message_id,
            adapter,
            recipient,
            now
        ])?;
    let data = serde_json::json!({ "direction": "out", "kind": kind, "author": author });
    super::events::record_for_message(connection, conversation.client.as_str(), "message.created", &message_id, &data)?;
    let preview: String =
        if kind == MessageKind::OwnerNotice { conversation.preview.clone() } else { text.chars().take(160).collect() };
    connection
        .prepare_cached(
            "UPDATE conversations SET message_count = message_count + 1, preview = ?3, last_activity_at = CASE WHEN last_activity_at > ?4 THEN last_activity_at ELSE ?4 END
             WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![conversation.client, conversation.id, preview, now])?;
    Ok(message_id)
}

/// Due deliveries, and ones whose lease ran out (the node sending them stopped).
const CLAIM_DELIVERIES: &str =
    "SELECT o.client_id, o.id, o.message_id, o.adapter, o.recipient, m.text, m.conversation_id,
            m.kind, o.attempts, o.payload
     FROM outbox o JOIN messages m ON m.client_id = o.client_id AND m.id = o.message_id
     WHERE (o.state = 'pending' AND o.next_attempt_at <= ?1)
        OR (o.state = 'sending' AND o.lease_until <= ?1)
     ORDER BY o.next_attempt_at LIMIT ?2";

/// The same for PostgreSQL, where several nodes claim at once: each skips the rows another is claiming, so no
/// delivery is claimed twice and no node waits for another.
const CLAIM_DELIVERIES_POSTGRES: &str = "SELECT o.client_id, o.id, o.message_id, o.adapter, o.recipient, m.text,
            m.conversation_id, m.kind, o.attempts, o.payload
     FROM outbox o JOIN messages m ON m.client_id = o.client_id AND m.id = o.message_id
     WHERE (o.state = 'pending' AND o.next_attempt_at <= ?1)
        OR (o.state = 'sending' AND o.lease_until <= ?1)
     ORDER BY o.next_attempt_at LIMIT ?2
     FOR UPDATE OF o SKIP LOCKED";

impl Db {
    /// Claims up to `limit` due deliveries (and ones whose lease ran out) for `lease`.
    pub async fn claim_deliveries(&self, limit: usize, lease: std::time::Duration) -> Result<Vec<Claimed>> {
        self.write(move |connection| {
            let now = Timestamp::now();
            let mut claimed: Vec<Claimed> = connection
                .prepare_cached(match connection.dialect() {
                    Dialect::Sqlite => CLAIM_DELIVERIES,
                    Dialect::Postgres => CLAIM_DELIVERIES_POSTGRES,
                })?
                .query_map(params![now.millis(), i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok(Claimed {
                        client: row.get(0)?,
                        outbox_id: row.get(1)?,
                        message_id: row.get(2)?,
                        adapter: row.get(3)?,
                        recipient: row.get(4)?,
                        text: row.get(5)?,
                        conversation_id: row.get(6)?,
                        kind: row.get(7)?,
                        attempts: row.get(8)?,
                        payload: row
                            .get::<_, Option<String>>(9)?
                            .and_then(|payload| serde_json::from_str(&payload).ok()),
                    })
                })?
                .collect::<Result<_>>()?;
            let lease_until = now.plus(lease).millis();
            for delivery in &mut claimed {
                delivery.attempts += 1;
                connection
                    .prepare_cached(
                        "UPDATE outbox SET state = 'sending', attempts = ?3, lease_until = ?4, updated_at = ?5
                         WHERE client_id = ?1 AND id = ?2",
                    )?
                    .execute(params![
                        delivery.client,
                        delivery.outbox_id,
                        delivery.attempts,
                        lease_until,
                        now.millis()
                    ])?;
            }
            Ok(claimed)
        })
        .await
    }

    /// Records the outcome of an attempt. A status webhook may have moved the row on already; then only the
    /// provider id is filled in.
    pub async fn record_delivery(
        &self,
        client: ClientSlug,
        outbox_id: OutboxId,
        outcome: DeliveryOutcome,
    ) -> Result<()> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let now = Timestamp::now().millis();
            match &outcome {
                DeliveryOutcome::Sent { provider_message_id } => {
                    connection.execute(
                        "UPDATE outbox SET state = CASE WHEN state = 'sending' THEN 'sent' ELSE state END,
                                provider_message_id = COALESCE(provider_message_id, ?3), lease_until = NULL,
                                last_error = NULL, updated_at = ?4
                         WHERE client_id = ?1 AND id = ?2",
                        params![client, outbox_id, provider_message_id, now],
                    )?;
                }
                DeliveryOutcome::Retry { at, error } => {
                    connection.execute(
                        "UPDATE outbox SET state = 'pending', next_attempt_at = ?3, lease_until = NULL, last_error = ?4, updated_at = ?5
                         WHERE client_id = ?1 AND id = ?2 AND state = 'sending'",
                        params![client, outbox_id, at.millis(), error, now],
                    )?;
                }
                DeliveryOutcome::Dead { error } => {
                    connection.execute(
                        "UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = ?3, updated_at = ?4
                         WHERE client_id = ?1 AND id = ?2 AND state = 'sending'",
                        params![client, outbox_id, error, now],
                    )?;
                }
            }
            delivery_event(connection, &client, &outbox_id)
        })
        .await?;
        Ok(())
    }

    /// When the next delivery falls due (a pending attempt or an expiring lease), if any.
    pub async fn next_delivery_due(&self) -> Result<Option<Timestamp>> {
        self.read(|connection| {
            let due: Option<Timestamp> = connection.query_row(
                "SELECT MIN(due) FROM (
                     SELECT MIN(next_attempt_at) AS due FROM outbox WHERE state = 'pending'
                     UNION ALL SELECT MIN(lease_until) FROM outbox WHERE state = 'sending') AS due",
                [],
                |row| row.get(0),
            )?;
            Ok(due)
        })
        .await
    }

    /// Queues the delivery of outbound message `id` again after it was dead-lettered (or the provider reported
    /// it failed): a person chose to try once more, with a fresh count of attempts. Audited.
    ///
    /// # Errors
    /// `NotFound` outside `scope`; `Conflict` for a message never sent, or unless its delivery is dead or failed.
    pub async fn retry_delivery(&self, scope: Scope, id: MessageId, actor: String) -> Result<DeliveryState> {
        self.write_as(&scope.clone(), move |connection| {
            let (every, person) = scope.params();
            // The message's client first (message ids are unique), so the outbox is read by its index.
            let client: ClientSlug = connection
                .query_row(
                    &format!("SELECT client_id FROM messages WHERE id = ?1 AND {}", Scope::condition("client_id", 2)),
                    params![id, every, person],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or(Error::NotFound("message"))?;
            let (outbox_id, state): (OutboxId, DeliveryState) = connection
                .query_row(
                    "SELECT id, state FROM outbox WHERE client_id = ?1 AND message_id = ?2",
                    params![client, id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| Error::Conflict("the message was never sent (it came from the customer)".into()))?;
            if !matches!(state, DeliveryState::Dead | DeliveryState::Failed) {
                return Err(Error::Conflict(format!("the delivery is {state}; only a dead or failed one is retried")));
            }
            let now = Timestamp::now().millis();
            connection.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3, lease_until = NULL,
                        updated_at = ?3
                 WHERE client_id = ?1 AND id = ?2",
                params![client, outbox_id, now],
            )?;
            delivery_event(connection, &client, &outbox_id)?;
            super::clients::audit(
                connection,
                Some(&client),
                &actor,
                "delivery.retry",
                &serde_json::json!({ "message_id": id, "was": state }),
            )?;
            Ok(DeliveryState::Pending)
        })
        .await
    }

    /// Counts of outbox rows that are waiting, in flight or dead.
    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog> {
        self.read(|connection| {
            let mut backlog = OutboxBacklog::default();
            let mut statement = connection.prepare_cached(
                "SELECT state, COUNT(*) FROM outbox WHERE state IN ('pending', 'sending', 'dead') GROUP BY state",
            )?;
            let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
            for row in rows {
                let (state, count) = row?;
                let count = u64::try_from(count).unwrap_or(0);
                match state.as_str() {
                    "pending" => backlog.pending = count,
                    "sending" => backlog.sending = count,
                    _ => backlog.dead = count,
                }
            }
            Ok(backlog)
        })
        .await
    }
}
