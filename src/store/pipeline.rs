//! Processing state of inbound messages: which are still `received`, their context, and applying a
//! decision exactly once.

use std::collections::HashMap;

use super::sql::{Connection, Dialect, Lock, OptionalExtension, params};

use super::access::Scope;
use super::clients::load_client;
use super::conversations::{ConversationSummary, load_summary};
use super::outbox::{enqueue, enqueue_to};
use super::paging::PageRequest;
use super::plugins::{
    DecisionFilter, DecisionRecord, PluginRun, RunningPlugin, TripRule, load_kv, query_decisions, record_runs,
    running_plugins,
};
use super::{Db, Error, Result};
use crate::domain::{
    ChannelKind, ChannelName, ClientProfile, ClientSlug, ContactId, ConversationId, Decision, DecisionSource,
    Escalation, EscalationId, HookKind, MessageId, MessageKind, SlaState, Timestamp,
};

/// An inbound message waiting to be processed, with what the rules need to decide.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// Its client.
    pub client: ClientSlug,
    /// The client's profile.
    pub profile: ClientProfile,
    /// The message id.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its channel.
    pub channel: ChannelName,
    /// Its text.
    pub text: String,
    /// When it was received.
    pub received_at: Timestamp,
    /// Inbound messages in the conversation so far, this one included.
    pub inbound_in_conversation: u32,
    /// Messages in the conversation so far (both directions), this one included.
    pub messages_in_conversation: u32,
    /// Customer messages since the last human reply, this one included.
    pub unanswered_inbound: u32,
    /// When the conversation last got an automatic acknowledgement.
    pub last_acknowledged_at: Option<Timestamp>,
    /// When a person last replied in the conversation.
    pub last_human_reply_at: Option<Timestamp>,
    /// The language detected on the conversation's latest earlier message, if any.
    pub conversation_language: Option<String>,
    /// The sender.
    pub contact: ContactFacts,
}

/// What rules know about a message's sender.
#[derive(Debug, Clone)]
pub struct ContactFacts {
    /// Contact id.
    pub id: ContactId,
    /// Phone number or chat id.
    pub handle: String,
    /// Display name.
    pub name: Option<String>,
    /// Whether this is the contact's first message to the client.
    pub is_new: bool,
    /// Tags people put on the contact.
    pub tags: Vec<String>,
}

/// A batch of messages to decide, with the plugin chains of their clients and the key-value stores of
/// those chains' installations.
#[derive(Debug, Clone, Default)]
pub struct PendingBatch {
    /// The messages, oldest first.
    pub messages: Vec<PendingMessage>,
    /// Running plugins per client, in chain order (clients without any are absent).
    pub chains: HashMap<ClientSlug, Vec<RunningPlugin>>,
    /// Key-value store per client and installation name.
    pub kv: HashMap<ClientSlug, HashMap<String, HashMap<String, String>>>,
}

/// When a customer message was received and when its decision was applied.
#[derive(Debug, Clone, Copy)]
pub struct DecisionDelay {
    /// When it was received.
    pub received_at: Timestamp,
    /// When its decision was applied.
    pub decided_at: Timestamp,
    /// Whether the client's chain decided it (not its defaults).
    pub by_chain: bool,
}

/// A decision ready to be applied to a message.
#[derive(Debug, Clone)]
pub struct ProcessedDecision {
    /// The message's client.
    pub client: ClientSlug,
    /// The message.
    pub message_id: MessageId,
    /// Who decided.
    pub source: DecisionSource,
    /// What was decided.
    pub decision: Decision,
    /// The language detected in the message (`None` when it could not be told).
    pub language: Option<String>,
    /// The plugin runs behind the decision (shadow ones included), to record.
    pub runs: Vec<PluginRun>,
    /// The first-response clock `(started, warning, target)` to start if the conversation has none yet.
    pub sla: Option<(Timestamp, Timestamp, Timestamp)>,
    /// Set when the client's rules did not run because the message waited for them longer than allowed:
    /// how long it waited and the limit, both in milliseconds (recorded as a `rules.queue_timeout` event).
    pub queue_timeout: Option<(u64, u64)>,
}

/// A client's processing lease: while a node holds it, that node alone decides the client's waiting messages.
/// It ends in the transaction that applies the decisions ([`Db::apply_decisions`]), or when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingLease {
    /// The client.
    pub client: ClientSlug,
    /// This claim's token: a later claim (after expiry) has another, so a node can tell it lost the lease.
    holder: String,
}

/// The language detected on the latest inbound message of a conversation before message `(at, id)`.
pub(super) fn conversation_language(
    connection: &Connection,
    client: &ClientSlug,
    conversation_id: &ConversationId,
    at: i64,
    id: &MessageId,
) -> Result<Option<String>> {
    connection
        .prepare_cached(
            "SELECT language FROM messages
             WHERE client_id = ?1 AND conversation_id = ?2 AND direction = 'in' AND language IS NOT NULL
               AND (created_at < ?3 OR (created_at = ?3 AND id < ?4))
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )?
        .query_row(params![client.as_str(), conversation_id, at, id], |row| row.get(0))
        .optional()
}

/// Whether the contact wrote to the client before message `(?3, ?4)`. From the contact's conversations to
/// their messages (CROSS JOIN keeps SQLite to that order; the other way round scans every message of the
/// client, which made processing six times slower).
const EARLIER_FROM_CONTACT: &str = "SELECT EXISTS (SELECT 1 FROM conversations c
     CROSS JOIN messages m ON m.client_id = c.client_id AND m.conversation_id = c.id
     WHERE c.client_id = ?1 AND c.contact_id = ?2 AND m.direction = 'in'
       AND (m.created_at < ?3 OR (m.created_at = ?3 AND m.id < ?4)))";

/// The same for PostgreSQL, which takes no `ON` after `CROSS JOIN` and plans the join order itself.
const EARLIER_FROM_CONTACT_POSTGRES: &str = "SELECT EXISTS (SELECT 1 FROM conversations c
     JOIN messages m ON m.client_id = c.client_id AND m.conversation_id = c.id
     WHERE c.client_id = ?1 AND c.contact_id = ?2 AND m.direction = 'in'
       AND (m.created_at < ?3 OR (m.created_at = ?3 AND m.id < ?4)))";

/// The context of one inbound message as it was when it arrived (later messages, already stored, are not
/// counted). With `only_received`, a message already processed gives `None`.
fn message_context(
    connection: &Connection,
    client: ClientSlug,
    profile: ClientProfile,
    message_id: MessageId,
    only_received: bool,
) -> Result<Option<PendingMessage>> {
    let row: Option<(ConversationId, ChannelName, String, i64)> = connection
        .prepare_cached(
            "SELECT conversation_id, channel, text, created_at FROM messages
             WHERE client_id = ?1 AND id = ?2 AND direction = 'in' AND (?3 = 0 OR state = 'received')",
        )?
        .query_row(params![client.as_str(), message_id, only_received], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let Some((conversation_id, channel, text, received_at)) = row else { return Ok(None) };
    // Counts go up to this message, (created_at, id) <= (?3, ?4): later ones may already be stored. The
    // latest acknowledgement and human reply are taken as of now when deciding live (an acknowledgement of
    // an earlier message is stored after it, possibly after this message arrived), and as of the message's
    // arrival when replaying history.
    let (inbound, all, last_ack, last_human): (i64, i64, Option<i64>, Option<i64>) = connection
        .prepare_cached(
            "SELECT COALESCE(SUM(CASE WHEN upto AND direction = 'in' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN upto THEN 1 ELSE 0 END), 0),
                    MAX(CASE WHEN kind = 'auto_ack' AND (?5 OR upto) THEN created_at END),
                    MAX(CASE WHEN kind = 'assistant' AND (?5 OR upto) THEN created_at END)
             FROM (SELECT direction, kind, created_at, (created_at < ?3 OR (created_at = ?3 AND id <= ?4)) AS upto
                   FROM messages WHERE client_id = ?1 AND conversation_id = ?2) AS thread",
        )?
        .query_row(params![client.as_str(), conversation_id, received_at, message_id, only_received], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    let unanswered: i64 = connection
        .prepare_cached(
            "SELECT COUNT(*) FROM messages WHERE client_id = ?1 AND conversation_id = ?2 AND direction = 'in'
               AND created_at > ?5 AND (created_at < ?3 OR (created_at = ?3 AND id <= ?4))",
        )?
        .query_row(
            params![client.as_str(), conversation_id, received_at, message_id, last_human.unwrap_or(-1)],
            |row| row.get(0),
        )?;
    let (contact_id, handle, name, tags): (ContactId, String, Option<String>, String) = connection
        .prepare_cached(
            "SELECT k.id, k.handle, k.name, k.tags FROM conversations c
             JOIN contacts k ON k.client_id = c.client_id AND k.id = c.contact_id
             WHERE c.client_id = ?1 AND c.id = ?2",
        )?
        .query_row(params![client.as_str(), conversation_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    let earlier_from_contact: bool = connection
        .prepare_cached(match connection.dialect() {
            Dialect::Sqlite => EARLIER_FROM_CONTACT,
            Dialect::Postgres => EARLIER_FROM_CONTACT_POSTGRES,
        })?
        .query_row(params![client.as_str(), contact_id, received_at, message_id], |row| row.get(0))?;
    let conversation_language = conversation_language(connection, &client, &conversation_id, received_at, &message_id)?;
    Ok(Some(PendingMessage {
        client,
        profile,
        message_id,
        conversation_id,
        channel,
        text,
        received_at: Timestamp(received_at),
        inbound_in_conversation: u32::try_from(inbound).unwrap_or(u32::MAX),
        messages_in_conversation: u32::try_from(all).unwrap_or(u32::MAX),
        unanswered_inbound: u32::try_from(unanswered).unwrap_or(u32::MAX),
        last_acknowledged_at: last_ack.map(Timestamp),
        last_human_reply_at: last_human.map(Timestamp),
        conversation_language,
        contact: ContactFacts {
            id: contact_id,
            handle,
            name,
            is_new: !earlier_from_contact,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
        },
    }))
}

/// Applies a decision's routing (queue, assignee, priority, tags added) to a conversation, in the caller's
/// transaction. Fields the decision leaves empty keep their value.
pub(super) fn apply_routing(connection: &Connection, summary: &ConversationSummary, decision: &Decision) -> Result<()> {
    if decision.queue.is_none()
        && decision.assignee.is_none()
        && decision.priority.is_none()
        && decision.tags.is_empty()
    {
        return Ok(());
    }
    let mut tags = summary.tags.clone();
    for tag in &decision.tags {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    connection
        .prepare_cached(
            "UPDATE conversations SET queue = ?3, assignee = ?4, priority = ?5, tags = ?6
             WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![
            summary.client,
            summary.id,
            decision.queue.clone().or(summary.queue.clone()),
            decision.assignee.clone().or(summary.assignee.clone()),
            decision.priority.unwrap_or(summary.priority),
            serde_json::to_string(&tags)?
        ])?;
    let routed = load_summary(connection, &Scope::Client(summary.client.clone()), &summary.id)?;
    super::events::conversation_updated(connection, &routed, "rules")
}

/// Applies an escalation to a conversation in the caller's transaction: records it, raises the
/// conversation's escalation level, and, if asked and the client has an escalation contact, queues a notice
/// to that contact through the outbox. Returns the escalation id.
pub(super) fn escalate(
    connection: &Connection,
    summary: &ConversationSummary,
    message_id: Option<&MessageId>,
    trigger: &str,
    source: &DecisionSource,
    escalation: &Escalation,
) -> Result<EscalationId> {
    let client = &summary.client;
    let id = EscalationId::generate();
    let now = Timestamp::now().millis();
    let mut notification = None;
    if escalation.notify_owner {
        let profile = load_client(connection, client)?.profile;
        if let Some(contact) = &profile.escalation_contact {
            let who = summary.contact.name.as_deref().unwrap_or(&summary.contact.handle);
            let text = format!(
                "[{}] Escalation level {} in the conversation with {who} ({}): {}. Latest message: \"{}\"",
                profile.name, escalation.level, summary.id, escalation.reason, summary.preview
            );
            let adapter: ChannelKind = contact.channel.parse()?;
            notification =
                Some(enqueue_to(connection, summary, MessageKind::OwnerNotice, None, &text, adapter, &contact.handle)?);
        }
    }
    connection
        .prepare_cached(
            "INSERT INTO escalations (client_id, id, conversation_id, message_id, trigger, level, reason, source,
                                      notification_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            summary.client,
            id,
            summary.id,
            message_id,
            trigger,
            escalation.level,
            escalation.reason,
            source.to_string(),
            notification,
            now
        ])?;
    connection
        .prepare_cached(
            "UPDATE conversations SET escalation_level = CASE WHEN escalation_level > ?3 THEN escalation_level ELSE ?3 END WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![summary.client, summary.id, escalation.level])?;
    let data = serde_json::json!({
        "escalation_id": id,
        "trigger": trigger,
        "level": escalation.level,
        "reason": escalation.reason,
        "owner_notified": notification.is_some(),
    });
    super::events::record(connection, client.as_str(), "escalation.raised", Some(&summary.id), &data)?;
    Ok(id)
}

impl Db {
    /// Ids of up to `limit` messages still waiting to be processed, oldest first.
    pub async fn unprocessed_messages(&self, limit: usize) -> Result<Vec<(ClientSlug, MessageId)>> {
        self.read(move |connection| {
            connection
                .prepare_cached(
                    "SELECT client_id, id FROM messages WHERE state = 'received' ORDER BY created_at, id LIMIT ?1",
                )?
                .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_>>()
        })
        .await
    }

    /// For each customer message of `client` received at or after `since` and decided: when it was received,
    /// when its decision was applied, and whether the client's chain made it (rather than its defaults).
    /// What `recado loadgen` measures decision delays with.
    pub async fn decision_delays(&self, client: ClientSlug, since: Timestamp) -> Result<Vec<DecisionDelay>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            connection
                .prepare_cached(
                    "SELECT m.created_at, d.created_at, d.source = 'chain'
                     FROM messages m JOIN decisions d ON d.client_id = m.client_id AND d.message_id = m.id
                     WHERE m.client_id = ?1 AND m.direction = 'in' AND m.created_at >= ?2
                       AND d.source IN ('chain', 'defaults')
                     ORDER BY m.created_at",
                )?
                .query_map(params![client.as_str(), since.millis()], |row| {
                    Ok(DecisionDelay {
                        received_at: Timestamp(row.get(0)?),
                        decided_at: Timestamp(row.get(1)?),
                        by_chain: row.get(2)?,
                    })
                })?
                .collect::<Result<_>>()
        })
        .await
    }

    /// The clients with messages waiting to be processed, each with when its oldest one was received.
    pub async fn clients_waiting(&self) -> Result<Vec<(ClientSlug, Timestamp)>> {
        self.read(|connection| {
            // One index probe per client (`messages_waiting_by_client`), not a scan of the backlog.
            connection
                .prepare_cached(
                    "SELECT id, oldest FROM (
                         SELECT id, (SELECT MIN(created_at) FROM messages
                                     WHERE client_id = clients.id AND state = 'received') AS oldest
                         FROM clients) AS waiting
                     WHERE oldest IS NOT NULL",
                )?
                .query_map([], |row| Ok((row.get(0)?, Timestamp(row.get(1)?))))?
                .collect::<Result<_>>()
        })
        .await
    }

    /// Ids of up to `limit` messages of `client` waiting to be processed, oldest first.
    pub async fn client_waiting_messages(
        &self,
        client: ClientSlug,
        limit: usize,
    ) -> Result<Vec<(ClientSlug, MessageId)>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let ids = connection
                .prepare_cached(
                    "SELECT id FROM messages WHERE client_id = ?1 AND state = 'received'
                     ORDER BY created_at, id LIMIT ?2",
                )?
                .query_map(params![client.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)], |row| row.get(0))?
                .collect::<Result<Vec<MessageId>>>()?;
            Ok(ids.into_iter().map(|id| (client.clone(), id)).collect())
        })
        .await
    }

    /// The context of each given message that is still `received` (others are skipped), with the plugin
    /// chains of their clients.
    pub async fn pending_context(&self, messages: Vec<(ClientSlug, MessageId)>) -> Result<PendingBatch> {
        self.read(move |connection| {
            let mut profiles: HashMap<ClientSlug, ClientProfile> = HashMap::new();
            let mut batch = PendingBatch::default();
            for (client, message_id) in messages {
                let profile = match profiles.get(&client) {
                    Some(profile) => profile.clone(),
                    None => {
                        let profile = load_client(connection, &client)?.profile;
                        profiles.insert(client.clone(), profile.clone());
                        let chain = running_plugins(connection, &client)?;
                        if !chain.is_empty() {
                            let mut stores = HashMap::new();
                            for plugin in &chain {
                                if !stores.contains_key(&plugin.name) {
                                    stores.insert(plugin.name.clone(), load_kv(connection, &client, &plugin.name)?);
                                }
                            }
                            batch.kv.insert(client.clone(), stores);
                            batch.chains.insert(client.clone(), chain);
                        }
                        profile
                    }
                };
                if let Some(message) = message_context(connection, client, profile, message_id, true)? {
                    batch.messages.push(message);
                }
            }
            Ok(batch)
        })
        .await
    }

    /// The context of the latest `limit` inbound messages of `client`, oldest first, whatever their state
    /// (for replays). Each is seen as it was when it arrived.
    pub async fn recent_inbound(&self, client: ClientSlug, limit: usize) -> Result<Vec<PendingMessage>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let profile = load_client(connection, &client)?.profile;
            let ids: Vec<MessageId> = connection
                .prepare_cached(
                    "SELECT id FROM messages WHERE client_id = ?1 AND direction = 'in'
                     ORDER BY created_at DESC, id DESC LIMIT ?2",
                )?
                .query_map(params![client.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)], |row| row.get(0))?
                .collect::<Result<_>>()?;
            let mut messages = Vec::with_capacity(ids.len());
            for id in ids.into_iter().rev() {
                if let Some(message) = message_context(connection, client.clone(), profile.clone(), id, false)? {
                    messages.push(message);
                }
            }
            Ok(messages)
        })
        .await
    }

    /// Claims `client`'s waiting messages for `lease` (`None` if another node holds an unexpired claim).
    /// One statement on both backends: on PostgreSQL a concurrent claim waits for this one's row and then sees
    /// it held, so two nodes never both get it.
    pub async fn claim_processing(
        &self,
        client: ClientSlug,
        lease: std::time::Duration,
    ) -> Result<Option<ProcessingLease>> {
        let node = self.inner.node.clone();
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let now = Timestamp::now();
            // Prefixed with the node, which finds its own again when it restarts after a crash.
            let holder = format!("{node}.{}", crate::domain::new_id("lease"));
            let claimed = connection
                .prepare_cached(
                    "INSERT INTO processing_leases (client_id, holder, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (client_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE processing_leases.expires_at <= ?4",
                )?
                .execute(params![client.as_str(), holder, now.plus(lease).millis(), now.millis()])?;
            Ok((claimed > 0).then(|| ProcessingLease { client: client.clone(), holder: holder.clone() }))
        })
        .await
    }

    /// At the start of this node's processing: forgets claims left by an earlier run. With SQLite only this
    /// server processes the database, so every claim in it is a run's that ended (a crash, or the run a backup
    /// was taken from); with PostgreSQL, this node's own (its id is kept in its data directory), while other
    /// nodes' claims, perhaps live, are left to expire.
    pub async fn forget_stale_processing_claims(&self) -> Result<usize> {
        if !self.is_postgres() {
            return self.write(|connection| connection.execute("DELETE FROM processing_leases", [])).await;
        }
        let prefix = format!("{}.", self.inner.node);
        self.write(move |connection| {
            connection
                .prepare_cached("DELETE FROM processing_leases WHERE substr(holder, 1, length(?1)) = ?1")?
                .execute(params![prefix])
        })
        .await
    }

    /// Gives a lease back without applying anything (the turn failed), so another turn need not wait for it to
    /// expire. A lease already taken over is left to its new holder.
    pub async fn release_processing(&self, lease: ProcessingLease) -> Result<()> {
        self.write(move |connection| {
            connection
                .prepare_cached("DELETE FROM processing_leases WHERE client_id = ?1 AND holder = ?2")?
                .execute(params![lease.client.as_str(), lease.holder])?;
            Ok(())
        })
        .await
    }

    /// Applies each decision and marks its message `processed`, all in one transaction, which also ends
    /// `lease` (the decisions are `lease.client`'s). A message that is no longer `received` (processed by an
    /// earlier run) is left alone, so applying twice changes nothing. Returns how many messages were
    /// processed now.
    ///
    /// Plugin runs are recorded with their message, their key-value writes committed, and their failures
    /// counted: a plugin whose count trips `breaker` is disabled.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if another node took the lease over after it expired: nothing is applied (that
    /// node decides the messages again, against the key-value stores as they are now).
    pub async fn apply_decisions(
        &self,
        lease: ProcessingLease,
        decisions: Vec<ProcessedDecision>,
        breaker: impl TripRule,
    ) -> Result<usize> {
        self.write(move |connection| {
            // First, so a node claiming meanwhile waits for this commit and then finds the messages processed.
            let ended = connection
                .prepare_cached("DELETE FROM processing_leases WHERE client_id = ?1 AND holder = ?2")?
                .execute(params![lease.client.as_str(), lease.holder])?;
            if ended == 0 {
                return Err(Error::LeaseLost);
            }
            let mut applied = 0;
            for item in &decisions {
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
                        item.source.key(HookKind::OnMessage),
                        serde_json::to_string(&item.decision)?,
                        Timestamp::now().millis()
                    ])?;
                record_runs(connection, &item.client, &item.message_id, HookKind::OnMessage, &item.runs, &breaker)?;
                let data = serde_json::json!({ "source": item.source.to_string(), "decision": item.decision });
                super::events::record_for_message(connection, slug, "decision.recorded", &item.message_id, &data)?;
                if let Some((waited_ms, limit_ms)) = item.queue_timeout {
                    let data = serde_json::json!({ "waited_ms": waited_ms, "limit_ms": limit_ms });
                    super::events::record_for_message(
                        connection,
                        slug,
                        "rules.queue_timeout",
                        &item.message_id,
                        &data,
                    )?;
                }
                let conversation_id: ConversationId = connection
                    .prepare_cached("SELECT conversation_id FROM messages WHERE client_id = ?1 AND id = ?2")?
                    .query_row(params![slug, item.message_id], |row| row.get(0))?;
                // Its routing and tags are read and then written (a person may be changing them on another node).
                connection.lock(Lock::Conversation(&conversation_id))?;
                if let Some((started, warn, due)) = item.sla {
                    // Only the first customer message starts the clock; a replied conversation has none.
                    connection
                        .prepare_cached(
                            "UPDATE conversations SET sla_state = ?6, sla_started_at = ?3, sla_warn_at = ?4,
                                    sla_due_at = ?5, sla_next_at = ?4
                             WHERE client_id = ?1 AND id = ?2 AND sla_state IS NULL
                               AND first_human_reply_at IS NULL AND status = 'open'",
                        )?
                        .execute(params![slug, conversation_id, started, warn, due, SlaState::Running])?;
                }
                let scope = Scope::Client(item.client.clone());
                let summary = load_summary(connection, &scope, &conversation_id)?;
                if let Some(text) = &item.decision.acknowledge {
                    enqueue(connection, &summary, MessageKind::AutoAck, None, text)?;
                    connection
                        .prepare_cached(
                            "UPDATE conversations SET acknowledged_at = COALESCE(acknowledged_at, ?3)
                             WHERE client_id = ?1 AND id = ?2",
                        )?
                        .execute(params![summary.client, summary.id, Timestamp::now()])?;
                }
                let decision = &item.decision;
                apply_routing(connection, &summary, decision)?;
                if let Some(escalation) = &decision.escalate {
                    escalate(connection, &summary, Some(&item.message_id), "message", &item.source, escalation)?;
                }
            }
            Ok(applied)
        })
        .await
    }

    /// The decisions recorded for one message (plugin runs included), if `scope` may see it.
    pub async fn decisions_for(&self, scope: Scope, message_id: MessageId) -> Result<Vec<DecisionRecord>> {
        self.read_as(&scope.clone(), move |connection| {
            let (every, person) = scope.params();
            let client: ClientSlug = connection
                .query_row(
                    &format!("SELECT client_id FROM messages WHERE id = ?1 AND {}", Scope::condition("client_id", 2)),
                    params![message_id, every, person],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or(Error::NotFound("message"))?;
            let filter = DecisionFilter { message_id: Some(message_id), ..DecisionFilter::default() };
            // One message has a handful of decisions (the chain's, each plugin's, overdue runs): all of them.
            Ok(query_decisions(connection, &client, &filter, &PageRequest::first(1_000))?.items)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_contact_query_walks_the_contacts_conversations() {
        let mut sqlite = rusqlite::Connection::open_in_memory().expect("open");
        super::super::migrations::migrate(&mut sqlite).expect("migrate");
        let connection = Connection::sqlite(&sqlite);
        let plan: Vec<String> = connection
            .prepare_cached(&format!("EXPLAIN QUERY PLAN {EARLIER_FROM_CONTACT}"))
            .expect("prepare")
            .query_map(params!["c", "k", 0, "m"], |row| row.get(3))
            .expect("plan")
            .collect::<Result<_>>()
            .expect("rows");
        assert!(plan.iter().any(|step| step.contains("conversations_by_contact")), "{plan:?}");
        assert!(
            plan.iter().any(|step| step.contains("messages_by_conversation (client_id=? AND conversation_id=?")),
            "messages are reached through each conversation, not scanned per client: {plan:?}"
        );
    }
}
