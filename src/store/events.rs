//! The event log: what changed (a customer message arrived, was edited, reacted to or deleted; a file was
//! downloaded; a delivery moved on), written in the transaction that made the change, so a reader that
//! resumes after the last id it saw misses nothing and sees nothing that was rolled back.

use rusqlite::{Connection, params};

use super::access::Scope;
use super::{Db, Result};
use crate::domain::{ClientSlug, ConversationId, MessageId, Timestamp};

/// One recorded event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRecord {
    /// Its id: increasing in commit order, never reused (the stream's event id).
    #[serde(skip)]
    pub seq: i64,
    /// The client it concerns.
    pub client: ClientSlug,
    /// What happened (`message.created`, `message.edited`, `message.reaction`, `message.deleted`,
    /// `contact.changed`, `media.updated`, `delivery.updated`): the stream's event name.
    #[serde(skip)]
    pub kind: String,
    /// The conversation, if any.
    pub conversation_id: Option<ConversationId>,
    /// The message, if any.
    pub message_id: Option<MessageId>,
    /// Details of the change (JSON object).
    pub data: serde_json::Value,
    /// When.
    pub at: Timestamp,
}

/// Records an event about `message_id` (its conversation looked up) in the current transaction.
pub(super) fn record_for_message(
    connection: &Connection,
    client: &str,
    kind: &str,
    message_id: &MessageId,
    data: &serde_json::Value,
) -> Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO events (client_id, kind, conversation_id, message_id, data, at)
             SELECT ?1, ?2, conversation_id, id, ?4, ?5 FROM messages WHERE client_id = ?1 AND id = ?3",
        )?
        .execute(params![client, kind, message_id, data.to_string(), Timestamp::now().millis()])?;
    Ok(())
}

/// Records an event about a conversation (or the client as a whole) in the current transaction.
pub(super) fn record(
    connection: &Connection,
    client: &str,
    kind: &str,
    conversation_id: Option<&ConversationId>,
    data: &serde_json::Value,
) -> Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO events (client_id, kind, conversation_id, message_id, data, at) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
        )?
        .execute(params![client, kind, conversation_id, data.to_string(), Timestamp::now().millis()])?;
    Ok(())
}

impl Db {
    /// Up to `limit` events after `after` that `scope` may see, oldest first.
    pub async fn events_after(&self, scope: Scope, after: i64, limit: usize) -> Result<Vec<EventRecord>> {
        self.read(move |connection| {
            let (every, person) = scope.params();
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT seq, client_id, kind, conversation_id, message_id, data, at FROM events
                     WHERE seq > ?1 AND {} ORDER BY seq LIMIT ?4",
                    Scope::condition("client_id", 2)
                ))?
                .query_map(params![after, every, person, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok(EventRecord {
                        seq: row.get(0)?,
                        client: row.get(1)?,
                        kind: row.get(2)?,
                        conversation_id: row.get(3)?,
                        message_id: row.get(4)?,
                        data: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
                        at: row.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// The id of the newest event (0 when there is none): where a new stream starts.
    pub async fn latest_event(&self) -> Result<i64> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))?)
        })
        .await
    }

    /// A receiver that changes after each commit that may have recorded events: streams wait on it rather
    /// than poll.
    pub fn event_ticks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.event_ticks.subscribe()
    }

    /// Tells the streams that events may have been committed.
    pub(super) fn events_committed(&self) {
        self.inner.event_ticks.send_modify(|tick| *tick = tick.wrapping_add(1));
    }
}
