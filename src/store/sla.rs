//! The first-response clocks that fall due: warnings, and overdue conversations with what the rules decided
//! about them. A node claims the clocks it steps (their next look moves a lease ahead), and each step checks
//! the clock is still where the claim left it (`sla_next_at`), so a step applies once even if two nodes or a
//! restarted worker run it (or it races a human reply that stopped the clock).

use std::collections::HashMap;

use super::sql::{Connection, Dialect, params};

use super::access::Scope;
use super::clients::load_client;
use super::conversations::load_summary;
use super::pipeline::{apply_routing, escalate};
use super::plugins::{PluginRun, RunningPlugin, TripRule, load_kv, record_runs, running_plugins};
use super::{Db, Result};
use crate::domain::{
    ClientProfile, ClientSlug, ConversationId, Decision, DecisionSource, HookKind, MessageId, SlaState, Timestamp,
    new_id,
};

/// A conversation whose clock needs a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueClock {
    /// Its client.
    pub client: ClientSlug,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// `Running` (the warning is due, maybe the target too) or `Warned` (the target is due).
    pub state: SlaState,
    /// When the clock started.
    pub started_at: Timestamp,
    /// The warning time.
    pub warn_at: Timestamp,
    /// The target.
    pub due_at: Timestamp,
    /// The `sla_next_at` this was read with (the guard of the step).
    pub next_at: i64,
}

/// What the rules need to decide about an overdue conversation.
#[derive(Debug, Clone)]
pub struct OverdueContext {
    /// The client's profile.
    pub profile: ClientProfile,
    /// The latest customer message (decisions are recorded against it).
    pub last_inbound_id: MessageId,
    /// Messages in the conversation.
    pub messages: u32,
    /// Customer messages since the last human reply.
    pub unanswered_inbound: u32,
    /// The last automatic acknowledgement.
    pub last_acknowledged_at: Option<Timestamp>,
    /// The last human reply.
    pub last_human_reply_at: Option<Timestamp>,
    /// Running plugins of the client.
    pub chain: Vec<RunningPlugin>,
    /// Their key-value stores, by installation name.
    pub kv: HashMap<String, HashMap<String, String>>,
}

/// The decision about an overdue conversation, ready to apply.
#[derive(Debug, Clone)]
pub struct OverdueDecision {
    /// The chain, or the client's defaults.
    pub source: DecisionSource,
    /// The decision.
    pub decision: Decision,
    /// Plugin runs behind it.
    pub runs: Vec<PluginRun>,
}

/// Clocks that need a look at `?1`, earliest first.
const DUE_CLOCKS: &str = "SELECT client_id, id, sla_state, sla_started_at, sla_warn_at, sla_due_at, sla_next_at
     FROM conversations WHERE sla_next_at IS NOT NULL AND sla_next_at <= ?1
     ORDER BY sla_next_at LIMIT ?2";

/// The same for PostgreSQL, where several nodes claim at once: each skips the rows another is claiming.
const DUE_CLOCKS_POSTGRES: &str = "SELECT client_id, id, sla_state, sla_started_at, sla_warn_at, sla_due_at,
            sla_next_at
     FROM conversations WHERE sla_next_at IS NOT NULL AND sla_next_at <= ?1
     ORDER BY sla_next_at LIMIT ?2
     FOR UPDATE SKIP LOCKED";

fn event(
    connection: &Connection,
    client: &str,
    conversation_id: &ConversationId,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO conversation_events (client_id, id, conversation_id, kind, detail, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            client,
            new_id("evt"),
            conversation_id,
            kind,
            detail.to_string(),
            Timestamp::now().millis()
        ])?;
    // Shown live too: the inbox reorders on a warning, an overdue conversation is pushed to people.
    super::events::record(connection, client, kind, Some(conversation_id), detail)
}

impl Db {
    /// Claims up to `limit` clocks that need a look at `now`, earliest first, for `lease`: each one's next look
    /// moves to `now + lease`, the guard the step is then applied with. Nodes sharing a database thus take
    /// different clocks (on PostgreSQL each skips the rows another is claiming), and a clock whose node stopped
    /// mid-step comes due again when the lease runs out.
    pub async fn claim_due_clocks(
        &self,
        now: Timestamp,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<DueClock>> {
        self.write(move |connection| {
            let mut due: Vec<DueClock> = connection
                .prepare_cached(match connection.dialect() {
                    Dialect::Sqlite => DUE_CLOCKS,
                    Dialect::Postgres => DUE_CLOCKS_POSTGRES,
                })?
                .query_map(params![now.millis(), i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok(DueClock {
                        client: row.get(0)?,
                        conversation_id: row.get(1)?,
                        state: row.get(2)?,
                        started_at: row.get(3)?,
                        warn_at: row.get(4)?,
                        due_at: row.get(5)?,
                        next_at: row.get(6)?,
                    })
                })?
                .collect::<Result<_>>()?;
            let until = now.plus(lease).millis();
            for clock in &mut due {
                connection
                    .prepare_cached("UPDATE conversations SET sla_next_at = ?3 WHERE client_id = ?1 AND id = ?2")?
                    .execute(params![clock.client.as_str(), clock.conversation_id, until])?;
                clock.next_at = until;
            }
            Ok(due)
        })
        .await
    }

    /// When the next clock needs a look, if any runs.
    pub async fn next_clock_at(&self) -> Result<Option<Timestamp>> {
        self.read(|connection| {
            connection.query_row(
                "SELECT MIN(sla_next_at) FROM conversations WHERE sla_next_at IS NOT NULL",
                [],
                |row| row.get(0),
            )
        })
        .await
    }

    /// Raises the warning of a running clock (once) and moves it on to its target. Returns whether it did.
    pub async fn warn_clock(&self, clock: DueClock) -> Result<bool> {
        self.write(move |connection| {
            let moved = connection
                .prepare_cached(
                    "UPDATE conversations SET sla_state = 'warned', sla_next_at = sla_due_at
                     WHERE client_id = ?1 AND id = ?2 AND sla_state = 'running' AND sla_next_at = ?3",
                )?
                .execute(params![clock.client.as_str(), clock.conversation_id, clock.next_at])?;
            if moved > 0 {
                event(
                    connection,
                    clock.client.as_str(),
                    &clock.conversation_id,
                    "sla.warning",
                    &serde_json::json!({ "due_at": clock.due_at.to_rfc3339() }),
                )?;
            }
            Ok(moved > 0)
        })
        .await
    }

    /// What the rules need to decide about an overdue conversation of `client`.
    pub async fn overdue_context(&self, client: ClientSlug, conversation_id: ConversationId) -> Result<OverdueContext> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let profile = load_client(connection, &client)?.profile;
            let (messages, last_ack, last_human): (i64, Option<i64>, Option<i64>) = connection
                .prepare_cached(
                    "SELECT COUNT(*), MAX(CASE WHEN kind = 'auto_ack' THEN created_at END),
                            MAX(CASE WHEN kind = 'assistant' THEN created_at END)
                     FROM messages WHERE client_id = ?1 AND conversation_id = ?2",
                )?
                .query_row(params![client.as_str(), conversation_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            let (unanswered, last_inbound): (i64, Option<MessageId>) = connection
                .prepare_cached(
                    "SELECT COUNT(*), (SELECT id FROM messages WHERE client_id = ?1 AND conversation_id = ?2
                                         AND direction = 'in' ORDER BY created_at DESC, id DESC LIMIT 1)
                     FROM messages WHERE client_id = ?1 AND conversation_id = ?2 AND direction = 'in'
                       AND created_at > ?3",
                )?
                .query_row(params![client.as_str(), conversation_id, last_human.unwrap_or(-1)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let chain = running_plugins(connection, &client)?;
            let mut kv = HashMap::new();
            for plugin in &chain {
                if !kv.contains_key(&plugin.name) {
                    kv.insert(plugin.name.clone(), load_kv(connection, &client, &plugin.name)?);
                }
            }
            Ok(OverdueContext {
                profile,
                last_inbound_id: last_inbound.ok_or(super::Error::NotFound("message"))?,
                messages: u32::try_from(messages).unwrap_or(u32::MAX),
                unanswered_inbound: u32::try_from(unanswered).unwrap_or(u32::MAX),
                last_acknowledged_at: last_ack.map(Timestamp),
                last_human_reply_at: last_human.map(Timestamp),
                chain,
                kv,
            })
        })
        .await
    }

    /// Marks a clock overdue and applies the decision about it (routing, tags, escalation with its notice),
    /// recording the plugin runs against the conversation's latest customer message. Returns whether it did;
    /// a clock stopped or handled meanwhile is left alone.
    pub async fn apply_overdue(
        &self,
        clock: DueClock,
        last_inbound_id: MessageId,
        decided: OverdueDecision,
        breaker: impl TripRule,
    ) -> Result<bool> {
        self.write(move |connection| {
            let slug = clock.client.as_str();
            let moved = connection
                .prepare_cached(
                    "UPDATE conversations SET sla_state = 'overdue', sla_next_at = NULL
                     WHERE client_id = ?1 AND id = ?2 AND sla_state IN ('running', 'warned') AND sla_next_at = ?3",
                )?
                .execute(params![slug, clock.conversation_id, clock.next_at])?;
            if moved == 0 {
                return Ok(false);
            }
            // The update holds the conversation's row until commit, so its routing and tags, read below, are
            // not changed meanwhile.
            let source = decided.source.key(HookKind::OnOverdue);
            connection
                .prepare_cached(
                    "INSERT INTO decisions (client_id, message_id, source, applied, decision, created_at, hook)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, 'on-overdue')
                     ON CONFLICT (client_id, message_id, source) DO NOTHING",
                )?
                .execute(params![
                    slug,
                    last_inbound_id,
                    source,
                    serde_json::to_string(&decided.decision)?,
                    Timestamp::now().millis()
                ])?;
            record_runs(connection, &clock.client, &last_inbound_id, HookKind::OnOverdue, &decided.runs, &breaker)?;
            let summary = load_summary(connection, &Scope::Client(clock.client.clone()), &clock.conversation_id)?;
            apply_routing(connection, &summary, &decided.decision)?;
            let escalation = match &decided.decision.escalate {
                Some(escalation) => Some(escalate(connection, &summary, None, "overdue", &decided.source, escalation)?),
                None => None,
            };
            event(
                connection,
                slug,
                &clock.conversation_id,
                "sla.overdue",
                &serde_json::json!({ "due_at": clock.due_at.to_rfc3339(), "escalation_id": escalation }),
            )?;
            Ok(true)
        })
        .await
    }

    /// The SLA events of a conversation of `client`, oldest first: `(kind, detail, at)`.
    pub async fn conversation_events(
        &self,
        client: ClientSlug,
        conversation_id: ConversationId,
    ) -> Result<Vec<(String, serde_json::Value, Timestamp)>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let rows: Vec<(String, String, i64)> = connection
                .prepare_cached(
                    "SELECT kind, detail, at FROM conversation_events WHERE client_id = ?1 AND conversation_id = ?2
                     ORDER BY at, id",
                )?
                .query_map(params![client.as_str(), conversation_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<_>>()?;
            rows.into_iter()
                .map(|(kind, detail, at)| Ok((kind, serde_json::from_str(&detail)?, Timestamp(at))))
                .collect()
        })
        .await
    }

    /// The escalations of a conversation of `client`, oldest first: `(trigger, level, reason, notified)`.
    pub async fn escalations(
        &self,
        client: ClientSlug,
        conversation_id: ConversationId,
    ) -> Result<Vec<(String, u8, String, bool)>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            connection
                .prepare_cached(
                    "SELECT trigger, level, reason, notification_id IS NOT NULL FROM escalations
                     WHERE client_id = ?1 AND conversation_id = ?2 ORDER BY created_at, id",
                )?
                .query_map(params![client.as_str(), conversation_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<Result<_>>()
        })
        .await
    }
}
