//! Processing state of inbound messages: which are still `received`, their context, and applying a
//! decision exactly once.

use rusqlite::{OptionalExtension, params};

use super::clients::load_client;
use super::conversations::{Scope, load_summary};
use super::outbox::enqueue;
use super::{Db, Error, Result};
use crate::domain::{ClientProfile, ClientSlug, Decision, MessageKind, Timestamp};

/// An inbound message waiting to be processed, with what the rules need to decide.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// Its client.
    pub client: ClientSlug,
    /// The client's profile.
    pub profile: ClientProfile,
    /// The message id.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Its channel.
    pub channel: String,
    /// Its text.
    pub text: String,
    /// When it was received.
    pub received_at: Timestamp,
    /// Inbound messages in the conversation so far, this one included.
    pub inbound_in_conversation: u32,
    /// When the conversation last got an automatic acknowledgement.
    pub last_acknowledged_at: Option<Timestamp>,
    /// The language detected on the conversation's latest earlier message, if any.
    pub conversation_language: Option<String>,
}

/// A decision ready to be applied to a message.
#[derive(Debug, Clone)]
pub struct ProcessedDecision {
    /// The message's client.
    pub client: ClientSlug,
    /// The message.
    pub message_id: String,
    /// Who decided: `defaults`, or a plugin and version.
    pub source: String,
    /// What was decided.
    pub decision: Decision,
    /// The language detected in the message (`None` when it could not be told).
    pub language: Option<String>,
}

/// The language detected on the latest inbound message of a conversation before message `(at, id)`.
pub(super) fn conversation_language(
    connection: &rusqlite::Connection,
    client: &ClientSlug,
    conversation_id: &str,
    at: i64,
    id: &str,
) -> Result<Option<String>> {
    Ok(connection
        .prepare_cached(
            "SELECT language FROM messages
             WHERE client_id = ?1 AND conversation_id = ?2 AND direction = 'in' AND language IS NOT NULL
               AND (created_at < ?3 OR (created_at = ?3 AND id < ?4))
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )?
        .query_row(params![client.as_str(), conversation_id, at, id], |row| row.get(0))
        .optional()?)
}

impl Db {
    /// Ids of up to `limit` messages still waiting to be processed, oldest first.
    pub async fn unprocessed_messages(&self, limit: usize) -> Result<Vec<(ClientSlug, String)>> {
        self.read(move |connection| {
            let rows: Vec<(String, String)> = connection
                .prepare_cached(
                    "SELECT client_id, id FROM messages WHERE state = 'received' ORDER BY created_at, id LIMIT ?1",
                )?
                .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(client, id)| Ok((ClientSlug::parse(&client).map_err(|e| Error::Conflict(e.to_string()))?, id)))
                .collect()
        })
        .await
    }

    /// The context of each given message that is still `received` (others are skipped).
    pub async fn pending_context(&self, messages: Vec<(ClientSlug, String)>) -> Result<Vec<PendingMessage>> {
        self.read(move |connection| {
            let mut profiles: std::collections::HashMap<ClientSlug, ClientProfile> = Default::default();
            let mut pending = Vec::with_capacity(messages.len());
            for (client, message_id) in messages {
                let row: Option<(String, String, String, i64)> = connection
                    .prepare_cached(
                        "SELECT conversation_id, channel, text, created_at FROM messages
                         WHERE client_id = ?1 AND id = ?2 AND state = 'received'",
                    )?
                    .query_row(params![client.as_str(), message_id], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()?;
                let Some((conversation_id, channel, text, received_at)) = row else { continue };
                // Counts up to this message only: later ones may already be stored, but a rule deciding about
                // this message must see the conversation as it was when it arrived.
                let (inbound, last_ack): (i64, Option<i64>) = connection
                    .prepare_cached(
                        "SELECT SUM(CASE WHEN direction = 'in' AND (created_at < ?3 OR (created_at = ?3 AND id <= ?4))
                                         THEN 1 ELSE 0 END),
                                MAX(CASE WHEN kind = 'auto_ack' THEN created_at END)
                         FROM messages WHERE client_id = ?1 AND conversation_id = ?2",
                    )?
                    .query_row(params![client.as_str(), conversation_id, received_at, message_id], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                let conversation_language =
                    conversation_language(connection, &client, &conversation_id, received_at, &message_id)?;
                let profile = match profiles.get(&client) {
                    Some(profile) => profile.clone(),
                    None => {
                        let profile = load_client(connection, &client)?.profile;
                        profiles.insert(client.clone(), profile.clone());
                        profile
                    }
                };
                pending.push(PendingMessage {
                    client,
                    profile,
                    message_id,
                    conversation_id,
                    channel,
                    text,
                    received_at: Timestamp(received_at),
                    inbound_in_conversation: u32::try_from(inbound).unwrap_or(u32::MAX),
                    last_acknowledged_at: last_ack.map(Timestamp),
                    conversation_language,
                });
            }
            Ok(pending)
        })
        .await
    }

    /// Applies each decision and marks its message `processed`, all in one transaction. A message that is no
    /// longer `received` (processed by an earlier run) is left alone, so applying twice changes nothing.
    /// Returns how many messages were processed now.
    pub async fn apply_decisions(&self, decisions: Vec<ProcessedDecision>) -> Result<usize> {
        self.write(move |connection| {
            let mut applied = 0;
            for item in decisions {
                let slug = item.client.as_str();
                let claimed = connection
                    .prepare_cached(
                        "UPDATE messages SET state = 'processed', language = ?3
                         WHERE client_id = ?1 AND id = ?2 AND state = 'received'",
                    )?
                    .execute(params![slug, item.message_id, item.language])?;
                if claimed == 0 {
                    continue;
                }
                applied += 1;
                connection
                    .prepare_cached(
                        "INSERT INTO decisions (client_id, message_id, source, applied, decision, created_at)
                         VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                    )?
                    .execute(params![
                        slug,
                        item.message_id,
                        item.source,
                        serde_json::to_string(&item.decision)?,
                        Timestamp::now().millis()
                    ])?;
                let conversation_id: String = connection
                    .prepare_cached("SELECT conversation_id FROM messages WHERE client_id = ?1 AND id = ?2")?
                    .query_row(params![slug, item.message_id], |row| row.get(0))?;
                let scope = Scope::Client(item.client.clone());
                let summary = load_summary(connection, &scope, &conversation_id)?;
                if let Some(text) = &item.decision.acknowledge {
                    enqueue(connection, &summary, MessageKind::AutoAck, None, text)?;
                }
                let decision = &item.decision;
                if decision.queue.is_some()
                    || decision.assignee.is_some()
                    || decision.priority.is_some()
                    || !decision.tags.is_empty()
                {
                    let mut tags = summary.tags.clone();
                    for tag in &decision.tags {
                        if !tags.contains(tag) {
                            tags.push(tag.clone());
                        }
                    }
                    connection.execute(
                        "UPDATE conversations SET queue = ?3, assignee = ?4, priority = ?5, tags = ?6
                         WHERE client_id = ?1 AND id = ?2",
                        params![
                            slug,
                            summary.id,
                            decision.queue.clone().or(summary.queue.clone()),
                            decision.assignee.clone().or(summary.assignee.clone()),
                            decision.priority.unwrap_or(summary.priority).as_str(),
                            serde_json::to_string(&tags)?
                        ],
                    )?;
                }
            }
            Ok(applied)
        })
        .await
    }

    /// The decisions recorded for one message, if `scope` may see it: `(source, applied, decision)`.
    pub async fn decisions_for(&self, scope: Scope, message_id: String) -> Result<Vec<(String, bool, Decision)>> {
        self.read(move |connection| {
            let client: String = connection
                .query_row(
                    "SELECT client_id FROM messages WHERE id = ?1 AND (?2 IS NULL OR client_id = ?2)",
                    params![message_id, match &scope { Scope::All => None, Scope::Client(slug) => Some(slug.as_str()) }],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or(Error::NotFound("message"))?;
            let rows: Vec<(String, bool, String)> = connection
                .prepare_cached(
                    "SELECT source, applied, decision FROM decisions WHERE client_id = ?1 AND message_id = ?2 ORDER BY source",
                )?
                .query_map(params![client, message_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(source, applied, decision)| Ok((source, applied, serde_json::from_str(&decision)?)))
                .collect()
        })
        .await
    }
}
