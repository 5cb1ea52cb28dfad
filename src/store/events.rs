//! The event log: what changed (a message arrived or was sent, edited, reacted to or deleted; a file was
//! downloaded; a delivery moved on; a conversation was routed, closed or escalated; a decision was recorded;
//! a first-response clock warned or ran out; an article changed), written in the transaction that made the
//! change, so a reader that resumes after the last id it saw misses nothing and sees nothing that was rolled
//! back. The writer wakes the streams after each commit that recorded one ([`take_recorded`]).
//!
//! Events older than the retention are trimmed; a reader asking for events from before the trim is told to
//! resync (see [`EventPage::resync`]).

use std::cell::Cell;

use super::sql::{Connection, OptionalExtension, params};

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

thread_local! {
    /// Whether the thread running a write transaction (SQLite: the writer; PostgreSQL: a blocking thread per
    /// transaction) wrote to a log since it last asked.
    static RECORDED: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the current transaction wrote to a log readers follow by position (an event, an article
/// change), so the commit is followed by what makes it readable.
pub(super) fn log_written() {
    RECORDED.with(|recorded| recorded.set(true));
}

/// Returns whether an event was recorded on this thread since the last call, and forgets it.
pub(super) fn take_recorded() -> bool {
    RECORDED.with(|recorded| recorded.replace(false))
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
    log_written();
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
    log_written();
    Ok(())
}

/// Records a `conversation.updated` event with the conversation's routing and state as they now are.
pub(super) fn conversation_updated(
    connection: &Connection,
    summary: &super::ConversationSummary,
    cause: &str,
) -> Result<()> {
    let data = serde_json::json!({
        "cause": cause,
        "status": summary.status,
        "assignee": summary.assignee,
        "queue": summary.queue,
        "priority": summary.priority,
        "escalation_level": summary.escalation_level,
    });
    record(connection, summary.client.as_str(), "conversation.updated", Some(&summary.id), &data)
}

/// The id of the last event trimmed (0 when none was).
fn trimmed_through(connection: &Connection) -> Result<i64> {
    Ok(connection
        .query_row("SELECT through_seq FROM event_log_trim WHERE id = 1", [], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// A page of the event log for one reader.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events, oldest first.
    pub records: Vec<EventRecord>,
    /// Set when the reader asked for events that were trimmed: it must reload what it shows and continue from
    /// this id, the newest event's.
    pub resync: Option<i64>,
}

impl Db {
    /// Up to `limit` events after `after` that `scope` may see, oldest first; or, when events after `after`
    /// were trimmed, no events and the id to resync at.
    pub async fn events_after(&self, scope: Scope, after: i64, limit: usize) -> Result<EventPage> {
        self.read_as(&scope.clone(), move |connection| {
            let trimmed = trimmed_through(connection)?;
            if after < trimmed {
                let latest: i64 =
                    connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))?;
                return Ok(EventPage { records: Vec::new(), resync: Some(latest.max(trimmed)) });
            }
            let (every, person) = scope.params();
            let records = connection
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
                .collect::<Result<_>>()?;
            Ok(EventPage { records, resync: None })
        })
        .await
    }

    /// Deletes events recorded before `before` (at most `batch` of them) and remembers how far the log now
    /// starts. Returns how many were deleted.
    pub async fn trim_events(&self, before: Timestamp, batch: i64) -> Result<usize> {
        self.write(move |connection| {
            let through: Option<i64> = connection.query_row(
                "SELECT MAX(seq) FROM (SELECT seq FROM events WHERE at < ?1 ORDER BY at LIMIT ?2) AS expired",
                params![before, batch],
                |row| row.get(0),
            )?;
            let Some(through) = through else { return Ok(0) };
            let deleted = connection.execute("DELETE FROM events WHERE seq <= ?1", [through])?;
            connection.execute(
                "INSERT INTO event_log_trim (id, through_seq) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET through_seq = CASE WHEN excluded.through_seq > event_log_trim.through_seq
                     THEN excluded.through_seq ELSE event_log_trim.through_seq END",
                [through],
            )?;
            Ok(deleted)
        })
        .await
    }

    /// The id of the newest event (or of the last one trimmed; 0 when there was none): where a new stream
    /// starts.
    pub async fn latest_event(&self) -> Result<i64> {
        self.read(|connection| {
            let latest: i64 = connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))?;
            Ok(latest.max(trimmed_through(connection)?))
        })
        .await
    }

    /// A receiver that changes after each commit that may have recorded events: streams wait on it rather
    /// than poll.
    pub fn event_ticks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.event_ticks.subscribe()
    }

    /// A receiver that changes when article changes (another node's included) became readable: the search
    /// index catches up at once rather than at its next poll. Only PostgreSQL's notifications move it.
    pub fn kb_ticks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.kb_ticks.subscribe()
    }
}
