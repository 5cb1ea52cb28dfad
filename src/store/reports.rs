//! What reports are computed from: per conversation opened in a range, its first-response figures (written by
//! its first human reply) and acknowledgement, read from a covering index; messages counted by client, UTC
//! day, channel, direction, kind and author from `message_counts` (kept by triggers as messages are written:
//! see migration 0010; on PostgreSQL one count may be split over several rows, one per writing connection, and
//! the rows are added up), with the partial days at the ends of a range counted from the messages; escalations
//! and replies started from a suggestion. A year of a busy agency is read in well under a second (see
//! `BENCHMARKS.md`). The arithmetic (medians, shares, periods) is `crate::reports`'.

use std::collections::HashMap;

use super::sql::{FromSql, Row, Value, params};

use super::access::Scope;
use super::{Db, Error, Result};
use crate::domain::{ChannelName, ClientSlug, Direction, MessageKind, SlaState, Timestamp};

/// Milliseconds in a day: rows are counted by UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// What a report covers.
#[derive(Debug, Clone)]
pub struct ReportRange {
    /// From this time (inclusive).
    pub from: Timestamp,
    /// To this time (exclusive).
    pub to: Timestamp,
    /// Only this client.
    pub client: Option<ClientSlug>,
    /// Only what this person (or token) did: their first responses, replies and suggestion use.
    pub assistant: Option<String>,
}

/// A conversation opened in the range. Clients, channels and people are positions in [`ReportRows`]' lists:
/// a year holds hundreds of thousands of conversations but a few dozen names.
#[derive(Debug, Clone)]
pub struct ConversationFacts {
    /// Its client (a position in [`ReportRows::clients`]).
    pub client: u32,
    /// Its channel (in [`ReportRows::channels`]).
    pub channel: u32,
    /// When the first customer message arrived.
    pub opened_at: Timestamp,
    /// When the first automatic acknowledgement was queued.
    pub acknowledged_at: Option<Timestamp>,
    /// Who replied first (in [`ReportRows::actors`]).
    pub first_reply_by: Option<u32>,
    /// First customer message to first human reply, wall clock.
    pub first_response_ms: Option<i64>,
    /// The same, counted in the client's opening hours.
    pub first_response_open_ms: Option<i64>,
    /// Where its first-response clock ended (`met` is within the target).
    pub sla_state: Option<SlaState>,
}

/// Messages of one kind, client, channel, author and day.
#[derive(Debug, Clone)]
pub struct MessageCount {
    /// The client (in [`ReportRows::clients`]).
    pub client: u32,
    /// The channel (in [`ReportRows::channels`]).
    pub channel: u32,
    /// In or out.
    pub direction: Direction,
    /// What produced it.
    pub kind: MessageKind,
    /// Who sent it, for replies (in [`ReportRows::actors`]).
    pub author: Option<u32>,
    /// The UTC day (days since 1970-01-01).
    pub day: i64,
    /// How many.
    pub count: u64,
}

/// Escalations of one level, client and day.
#[derive(Debug, Clone)]
pub struct EscalationCount {
    /// The client (in [`ReportRows::clients`]).
    pub client: u32,
    /// The level.
    pub level: u8,
    /// The UTC day.
    pub day: i64,
    /// How many.
    pub count: u64,
}

/// Replies started from a suggestion, of one client, person, day and whether they were edited.
#[derive(Debug, Clone)]
pub struct FeedbackCount {
    /// The client (in [`ReportRows::clients`]).
    pub client: u32,
    /// Who gave it (in [`ReportRows::actors`]).
    pub actor: u32,
    /// It was edited before sending.
    pub edited: bool,
    /// The UTC day.
    pub day: i64,
    /// How many.
    pub count: u64,
}

/// Someone whose work is counted: a person's id, or `token:<id>`, and a person's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportActor {
    /// The person's id, or `token:<id>`.
    pub id: String,
    /// A person's name.
    pub name: Option<String>,
}

/// Everything a report is computed from.
#[derive(Debug, Clone, Default)]
pub struct ReportRows {
    /// The clients the rows name.
    pub clients: Vec<ClientSlug>,
    /// The channels the rows name.
    pub channels: Vec<ChannelName>,
    /// The people (or tokens) the rows name.
    pub actors: Vec<ReportActor>,
    /// Conversations opened in the range.
    pub conversations: Vec<ConversationFacts>,
    /// Message counts.
    pub messages: Vec<MessageCount>,
    /// Escalation counts.
    pub escalations: Vec<EscalationCount>,
    /// Counts of replies started from a suggestion.
    pub feedback: Vec<FeedbackCount>,
}

/// Gives each distinct text of a column a position, reading the text in place: only a new one is decoded.
struct Positions<T> {
    by_text: HashMap<String, u32>,
    values: Vec<T>,
}

impl<T: FromSql> Positions<T> {
    fn new() -> Self {
        Self { by_text: HashMap::new(), values: Vec::new() }
    }

    /// The position of column `index`'s value, `None` for NULL.
    fn of(&mut self, row: &Row<'_>, index: usize) -> Result<Option<u32>> {
        let text = match row.get_ref(index)? {
            Value::Null => return Ok(None),
            Value::Text(text) => text,
            other => return Err(Error::Decode { column: index, message: format!("expected text, found {other:?}") }),
        };
        if let Some(position) = self.by_text.get(text) {
            return Ok(Some(*position));
        }
        let position = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.by_text.insert(text.to_owned(), position);
        self.values.push(row.get(index)?);
        Ok(Some(position))
    }

    /// The same, for a column that is never NULL.
    fn of_required(&mut self, row: &Row<'_>, index: usize) -> Result<u32> {
        self.of(row, index)?.ok_or_else(|| Error::Decode { column: index, message: "expected text, found null".into() })
    }
}

impl Db {
    /// Fills in the first-response figures of up to `batch` replied conversations that lack them (replied
    /// before recado kept them, or whose history was corrected): from the first customer message to the first
    /// reply, on the wall clock and in the client's opening hours, and who sent that reply. Returns how many.
    pub async fn fill_first_responses(&self, batch: i64) -> Result<usize> {
        self.write(move |connection| {
            let rows: Vec<(ClientSlug, crate::domain::ConversationId, Timestamp)> = connection
                .prepare_cached(
                    "SELECT client_id, id, first_human_reply_at FROM conversations
                     WHERE first_human_reply_at IS NOT NULL AND first_response_open_ms IS NULL LIMIT ?1",
                )?
                .query_map([batch], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_>>()?;
            let mut profiles = std::collections::HashMap::new();
            for (client, id, replied) in &rows {
                let (first_in, author): (Option<Timestamp>, Option<String>) = connection
                    .prepare_cached(
                        "SELECT (SELECT MIN(created_at) FROM messages
                                 WHERE client_id = ?1 AND conversation_id = ?2 AND direction = 'in'),
                                (SELECT author_id FROM messages WHERE client_id = ?1 AND conversation_id = ?2
                                   AND kind = 'assistant' ORDER BY created_at, id LIMIT 1)",
                    )?
                    .query_row(params![client, id], |row| Ok((row.get(0)?, row.get(1)?)))?;
                let first_in = first_in.unwrap_or(*replied);
                if !profiles.contains_key(client) {
                    profiles.insert(client.clone(), super::clients::load_client(connection, client)?.profile);
                }
                let profile = &profiles[client];
                let open = profile.business_hours.open_time_between(first_in, *replied, &profile.timezone);
                connection.execute(
                    "UPDATE conversations SET first_response_ms = ?3, first_response_open_ms = ?4,
                            first_reply_by = COALESCE(first_reply_by, ?5)
                     WHERE client_id = ?1 AND id = ?2",
                    params![client, id, (replied.millis() - first_in.millis()).max(0), open, author],
                )?;
            }
            Ok(rows.len())
        })
        .await
    }

    /// The rows a report over `range` is computed from, limited to what `scope` may see.
    pub async fn report_rows(&self, scope: Scope, range: ReportRange) -> Result<ReportRows> {
        self.read_as(&scope.clone(), move |connection| {
            let (every, person) = scope.params();
            let client = range.client.as_ref().map(ClientSlug::as_str);
            let (from, to, who) = (range.from, range.to, range.assistant.as_deref());
            let mut clients = Positions::<ClientSlug>::new();
            let mut channels = Positions::<ChannelName>::new();
            let mut actors = Positions::<String>::new();
            let condition = Scope::condition("client_id", 3);

            let mut conversations = Vec::new();
            let mut statement = connection.prepare_cached(&format!(
                "SELECT client_id, channel, opened_at, acknowledged_at, first_reply_by, first_response_ms,
                        first_response_open_ms, sla_state
                 FROM conversations
                 WHERE opened_at >= ?1 AND opened_at < ?2 AND {condition} AND (CAST(?5 AS TEXT) IS NULL OR client_id = ?5)
                   AND (CAST(?6 AS TEXT) IS NULL OR first_reply_by = ?6)"
            ))?;
            let mut rows = statement.query(params![from, to, every, person, client, who])?;
            while let Some(row) = rows.next()? {
                conversations.push(ConversationFacts {
                    client: clients.of_required(&row, 0)?,
                    channel: channels.of_required(&row, 1)?,
                    opened_at: row.get(2)?,
                    acknowledged_at: row.get(3)?,
                    first_reply_by: actors.of(&row, 4)?,
                    first_response_ms: row.get(5)?,
                    first_response_open_ms: row.get(6)?,
                    sla_state: row.get(7)?,
                });
            }

            // Whole UTC days are read from the counts kept as messages are written; the ends of a range that
            // starts or stops inside a day are counted from the messages themselves (at most two days of them).
            let first_day = (from.millis() + DAY_MS - 1).div_euclid(DAY_MS);
            let end_day = to.millis().div_euclid(DAY_MS).max(first_day);
            let (whole_from, whole_to) = if first_day < end_day {
                (Timestamp(first_day * DAY_MS), Timestamp(end_day * DAY_MS))
            } else {
                (to, to)
            };
            let mut messages = Vec::new();
            let mut statement = connection.prepare_cached(&format!(
                "SELECT client_id, channel, direction, kind, NULLIF(author_id, ''), day, count
                 FROM message_counts
                 WHERE day >= ?7 AND day < ?8 AND count > 0 AND {condition} AND (CAST(?5 AS TEXT) IS NULL OR client_id = ?5)
                   AND (CAST(?6 AS TEXT) IS NULL OR author_id = ?6)
                 UNION ALL
                 SELECT client_id, channel, direction, kind, author_id, created_at / {DAY_MS}, 1
                 FROM messages
                 WHERE (created_at >= ?1 AND created_at < ?9 OR created_at >= ?10 AND created_at < ?2)
                   AND {condition} AND (CAST(?5 AS TEXT) IS NULL OR client_id = ?5) AND (CAST(?6 AS TEXT) IS NULL OR author_id = ?6)"
            ))?;
            let mut rows = statement
                .query(params![from, to, every, person, client, who, first_day, end_day, whole_from, whole_to])?;
            while let Some(row) = rows.next()? {
                messages.push(MessageCount {
                    client: clients.of_required(&row, 0)?,
                    channel: channels.of_required(&row, 1)?,
                    direction: row.get(2)?,
                    kind: row.get(3)?,
                    author: actors.of(&row, 4)?,
                    day: row.get(5)?,
                    count: row.get::<_, i64>(6)?.unsigned_abs(),
                });
            }

            // Escalations are the rules' and the clocks', nobody's in particular: not in one person's figures.
            // Rows are counted here rather than with GROUP BY, which sorts them in a temporary tree: for a year's
            // rows, ten times slower than reading them.
            let mut escalations: HashMap<(u32, u8, i64), u64> = HashMap::new();
            if who.is_none() {
                let mut statement = connection.prepare_cached(&format!(
                    "SELECT client_id, level, created_at / {DAY_MS} FROM escalations
                     WHERE created_at >= ?1 AND created_at < ?2 AND {condition} AND (CAST(?5 AS TEXT) IS NULL OR client_id = ?5)"
                ))?;
                let mut rows = statement.query(params![from, to, every, person, client])?;
                while let Some(row) = rows.next()? {
                    *escalations.entry((clients.of_required(&row, 0)?, row.get(1)?, row.get(2)?)).or_default() += 1;
                }
            }
            let mut feedback: HashMap<(u32, u32, bool, i64), u64> = HashMap::new();
            let mut statement = connection.prepare_cached(&format!(
                "SELECT client_id, actor, edited, at / {DAY_MS} FROM suggestion_feedback
                 WHERE picked IS NOT NULL AND at >= ?1 AND at < ?2 AND {condition} AND (CAST(?5 AS TEXT) IS NULL OR client_id = ?5)
                   AND (CAST(?6 AS TEXT) IS NULL OR actor = ?6)"
            ))?;
            let mut rows = statement.query(params![from, to, every, person, client, who])?;
            while let Some(row) = rows.next()? {
                let key = (clients.of_required(&row, 0)?, actors.of_required(&row, 1)?, row.get(2)?, row.get(3)?);
                *feedback.entry(key).or_default() += 1;
            }

            let mut names: HashMap<String, String> = connection
                .prepare_cached("SELECT id, name FROM people")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_>>()?;
            Ok(ReportRows {
                clients: clients.values,
                channels: channels.values,
                actors: actors.values.into_iter().map(|id| ReportActor { name: names.remove(&id), id }).collect(),
                conversations,
                messages,
                escalations: escalations
                    .into_iter()
                    .map(|((client, level, day), count)| EscalationCount { client, level, day, count })
                    .collect(),
                feedback: feedback
                    .into_iter()
                    .map(|((client, actor, edited, day), count)| FeedbackCount { client, actor, edited, day, count })
                    .collect(),
            })
        })
        .await
    }
}

/// A synthetic history for the report benchmark (`recado bench-reports`): conversations spread evenly over
/// `[from, to)` among `clients`, each with a customer message, an acknowledgement three seconds later, a first
/// reply by one of `assistants` after one to 120 minutes, and then alternating messages up to
/// `messages_per_conversation`; one in twenty escalated, three in ten replies from a suggestion.
#[derive(Debug, Clone)]
pub struct SyntheticHistory {
    /// The clients (they must exist).
    pub clients: Vec<ClientSlug>,
    /// Who replies (person ids).
    pub assistants: Vec<String>,
    /// Conversations to write.
    pub conversations: usize,
    /// Messages in each.
    pub messages_per_conversation: usize,
    /// From.
    pub from: Timestamp,
    /// To.
    pub to: Timestamp,
}

impl Db {
    /// The year a synthetic history written before covers: from its first conversation, 365 days.
    pub async fn synthetic_history_span(&self) -> Result<(Timestamp, Timestamp)> {
        self.read(|connection| {
            let from: Option<Timestamp> = connection
                .prepare_cached("SELECT MIN(opened_at) FROM conversations WHERE id LIKE 'cnv_bench%'")?
                .query_row([], |row| row.get(0))?;
            let from = from.ok_or(Error::NotFound("synthetic history"))?;
            Ok((from, Timestamp(from.millis() + 365 * DAY_MS)))
        })
        .await
    }

    /// Messages and conversations in the store.
    pub async fn synthetic_history_size(&self) -> Result<(u64, u64)> {
        self.read(|connection| {
            let count = |table: &str| -> Result<u64> {
                let count: i64 =
                    connection.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0))?;
                Ok(count.unsigned_abs())
            };
            Ok((count("messages")?, count("conversations")?))
        })
        .await
    }

    /// Writes conversations `start..end` of `history` in one transaction (the benchmark calls it in chunks).
    pub async fn write_synthetic_history(
        &self,
        history: std::sync::Arc<SyntheticHistory>,
        start: usize,
        end: usize,
    ) -> Result<()> {
        self.write(move |connection| {
            let span = (history.to.millis() - history.from.millis()).max(1);
            let total = history.conversations.max(1) as i64;
            for n in start..end {
                // A cheap, reproducible spread: every figure follows from the conversation's number.
                let mix = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
                let client = &history.clients[n % history.clients.len()];
                let assistant = &history.assistants[(mix as usize) % history.assistants.len()];
                let opened = history.from.millis() + span * n as i64 / total;
                let first_response = (1 + (mix % 120) as i64) * 60_000;
                let (conversation, contact) = (format!("cnv_bench{n:024x}"), format!("ctc_bench{n:024x}"));
                connection
                    .prepare_cached(
                        "INSERT INTO contacts (client_id, id, channel, handle, created_at, updated_at)
                         VALUES (?1, ?2, 'whatsapp', ?3, ?4, ?4)",
                    )?
                    .execute(params![client, contact, format!("+{n}"), opened])?;
                let state = if first_response <= 60 * 60_000 { "met" } else { "met_late" };
                connection
                    .prepare_cached(
                        "INSERT INTO conversations (client_id, id, contact_id, channel, status, opened_at, last_activity_at,
                                                    first_human_reply_at, first_reply_by, first_response_ms,
                                                    first_response_open_ms, acknowledged_at, sla_state)
                         VALUES (?1, ?2, ?3, 'whatsapp', 'closed', ?4, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        client,
                        conversation,
                        contact,
                        opened,
                        opened + first_response,
                        assistant,
                        first_response,
                        opened + 3_000,
                        state
                    ])?;
                for m in 0..history.messages_per_conversation {
                    let (direction, kind, at, author) = match m {
                        0 => ("in", "customer", opened, None),
                        1 => ("out", "auto_ack", opened + 3_000, None),
                        2 => ("out", "assistant", opened + first_response, Some(assistant)),
                        m if m % 2 == 1 => ("in", "customer", opened + first_response + m as i64 * 300_000, None),
                        m => ("out", "assistant", opened + first_response + m as i64 * 300_000, Some(assistant)),
                    };
                    connection
                        .prepare_cached(
                            "INSERT INTO messages (client_id, id, conversation_id, direction, kind, channel, external_id,
                                                   author_id, text, created_at, state)
                             VALUES (?1, ?2, ?3, ?4, ?5, 'whatsapp', ?6, ?7, 'benchmark', ?8, 'processed')",
                        )?
                        .execute(params![
                            client,
                            format!("msg_bench{n:020x}{m:04x}"),
                            conversation,
                            direction,
                            kind,
                            (direction == "in").then(|| format!("bench-{n}-{m}")),
                            author,
                            at
                        ])?;
                }
                if mix.is_multiple_of(20) {
                    connection
                        .prepare_cached(
                            "INSERT INTO escalations (client_id, id, conversation_id, trigger, level, reason, source, created_at)
                             VALUES (?1, ?2, ?3, 'overdue', ?4, 'benchmark', 'defaults', ?5)",
                        )?
                        .execute(params![client, format!("esc_bench{n:024x}"), conversation, 1 + (mix % 3) as i64, opened + 3_600_000])?;
                }
                if mix % 10 < 3 {
                    connection
                        .prepare_cached(
                            "INSERT INTO suggestion_feedback (client_id, id, message_id, shown, picked, edited, actor, at)
                             VALUES (?1, ?2, ?3, '[]', 'article', ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            client,
                            format!("fbk_bench{n:024x}"),
                            format!("msg_bench{n:020x}{:04x}", 2),
                            mix.is_multiple_of(2),
                            assistant,
                            opened + first_response
                        ])?;
                }
            }
            Ok(())
        })
        .await
    }
}
