//! Conversations as assistants see them: the inbox list, one thread, replies and state changes.

use super::sql::OwnedValue as Value;
use super::sql::{Connection, Lock, OptionalExtension, Row, params, params_from_iter};

use super::access::Scope;
use super::clients::audit;
use super::outbox::enqueue_with;
use super::paging::{Page, PageRequest};
use super::{Db, Error, Result};
use crate::domain::{
    ChannelName, ClientSlug, ContactId, ConversationId, ConversationStatus, DeliveryState, Direction, MessageId,
    MessageKind, MessageState, Outbound, OutboxId, Priority, SlaState, Timestamp,
};
use crate::domain::{Email, Invalid, Role};

/// Filters and paging of the inbox list.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// Only this client's conversations.
    pub client: Option<ClientSlug>,
    /// Only this status.
    pub status: Option<ConversationStatus>,
    /// Only conversations assigned to this person, or to nobody.
    pub assignee: Option<Assignee>,
    /// Only this queue.
    pub queue: Option<String>,
}

/// Whose conversations an inbox shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    /// Those assigned to this person (their email, as assignments store it).
    Person(String),
    /// Those assigned to nobody.
    Nobody,
}

/// Where a conversation stands in the inbox's order: `(last_activity_at, id)`, newest first.
pub type ConversationKey = (Timestamp, ConversationId);

/// The contact of a conversation.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ContactView {
    /// Contact id.
    pub id: ContactId,
    /// Handle on the channel.
    pub handle: String,
    /// Display name, if known.
    pub name: Option<String>,
    /// The channel's stable user id, when it differs from the handle (WhatsApp's business-scoped id).
    pub user_id: Option<String>,
    /// Public username on the channel.
    pub username: Option<String>,
    /// Tags people put on the contact (rule plugins see them).
    pub tags: Vec<String>,
}

/// A conversation as listed in the inbox.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: ConversationId,
    /// Its client.
    pub client: ClientSlug,
    /// Who wrote.
    pub contact: ContactView,
    /// The channel it runs on.
    pub channel: ChannelName,
    /// Open or closed.
    pub status: ConversationStatus,
    /// Queue, if routed.
    pub queue: Option<String>,
    /// Assistant, if assigned.
    pub assignee: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Tags.
    pub tags: Vec<String>,
    /// Messages in both directions.
    pub message_count: i64,
    /// Start of the last message.
    pub preview: String,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// Last message in either direction.
    pub last_activity_at: Timestamp,
    /// First customer message.
    pub first_inbound_at: Option<Timestamp>,
    /// First reply by a person (automatic acknowledgements do not count).
    pub first_human_reply_at: Option<Timestamp>,
    /// When it was closed, if it is.
    pub closed_at: Option<Timestamp>,
    /// Highest escalation level so far (0: never escalated).
    pub escalation_level: u8,
    /// The first-response clock, once it has started.
    pub sla: Option<SlaClock>,
}

/// The first-response clock of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SlaClock {
    /// Where the clock stands.
    pub state: SlaState,
    /// The customer message that started it.
    pub started_at: Timestamp,
    /// When the warning is (or was) raised.
    pub warn_at: Timestamp,
    /// The target.
    pub due_at: Timestamp,
}

/// The delivery state of an outbound message.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Outbox id.
    pub outbox_id: OutboxId,
    /// Current state.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: i64,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub updated_at: Timestamp,
}

/// When the conversation's customer last wrote, on any of their conversations: the start of the channel's
/// reply window.
fn last_customer_message_at(connection: &Connection, summary: &ConversationSummary) -> Result<Option<Timestamp>> {
    let at: Option<i64> = connection
        .prepare_cached(
            "SELECT MAX(m.created_at) FROM messages m
             JOIN conversations c ON c.client_id = m.client_id AND c.id = m.conversation_id
             WHERE c.client_id = ?1 AND c.contact_id = ?2 AND m.direction = 'in' AND m.kind = 'customer'",
        )?
        .query_row(params![summary.client, summary.contact.id], |row| row.get(0))?;
    Ok(at.map(Timestamp))
}

/// A JSON column as a value; a column that does not parse (never written by us) reads as null.
fn json_column(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// One message of a thread.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// Message id.
    pub id: MessageId,
    /// In or out.
    pub direction: Direction,
    /// Who produced it.
    pub kind: MessageKind,
    /// Its text.
    pub text: String,
    /// The assistant who wrote it (outbound replies).
    pub author: Option<String>,
    /// When it was stored.
    pub created_at: Timestamp,
    /// Processing state: inbound `received` then `processed`; outbound `queued`; notes `noted`.
    pub state: MessageState,
    /// Delivery of outbound messages.
    pub delivery: Option<Delivery>,
    /// What the message is made of (JSON array of parts; empty for plain text).
    pub parts: serde_json::Value,
    /// What it answers, whether it was forwarded, the ad it came from (JSON object).
    pub context: serde_json::Value,
    /// Reactions to it (JSON array of `{by, emoji, at}`).
    pub reactions: serde_json::Value,
    /// When the customer last edited it.
    pub edited_at: Option<Timestamp>,
    /// When the customer deleted it.
    pub deleted_at: Option<Timestamp>,
    /// Earlier versions, oldest first, when edited.
    pub edits: Vec<EarlierVersion>,
    /// Its media files and their download state (shown by the API with the address they are served at).
    #[serde(skip)]
    pub media: Vec<super::MediaView>,
}

/// A message's text before an edit.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EarlierVersion {
    /// The text it had.
    pub text: String,
    /// When the edit replaced it.
    pub replaced_at: Timestamp,
}

/// A conversation with its latest messages, oldest first.
#[derive(Debug, Clone)]
pub struct ConversationDetail {
    /// The conversation.
    pub summary: ConversationSummary,
    /// Up to the requested number of its latest messages, oldest first.
    pub messages: Vec<MessageView>,
    /// True if and only if older messages were left out.
    pub has_more: bool,
    /// When the customer last wrote (any of their conversations): the reply window runs from here.
    pub last_customer_message_at: Option<Timestamp>,
}

const SUMMARY_COLUMNS: &str =
    "c.id, c.client_id, c.contact_id, k.handle, k.name, c.channel, c.status, c.queue, c.assignee,
     c.priority, c.tags, c.message_count, c.preview, c.opened_at, c.last_activity_at, c.first_inbound_at,
     c.first_human_reply_at, c.closed_at, c.escalation_level, c.sla_state, c.sla_started_at, c.sla_warn_at,
     c.sla_due_at, k.user_id, k.username, k.tags";

fn summary_from_row(row: &Row<'_>) -> Result<ConversationSummary> {
    let tags: String = row.get(10)?;
    Ok(ConversationSummary {
        id: row.get(0)?,
        client: row.get(1)?,
        contact: ContactView {
            id: row.get(2)?,
            handle: row.get(3)?,
            name: row.get(4)?,
            user_id: row.get(23)?,
            username: row.get(24)?,
            tags: serde_json::from_str(&row.get::<_, String>(25)?).unwrap_or_default(),
        },
        channel: row.get(5)?,
        status: row.get(6)?,
        queue: row.get(7)?,
        assignee: row.get(8)?,
        priority: row.get(9)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        message_count: row.get(11)?,
        preview: row.get(12)?,
        opened_at: row.get(13)?,
        last_activity_at: row.get(14)?,
        first_inbound_at: row.get(15)?,
        first_human_reply_at: row.get(16)?,
        closed_at: row.get(17)?,
        escalation_level: row.get(18)?,
        sla: match row.get::<_, Option<SlaState>>(19)? {
            Some(state) => {
                Some(SlaClock { state, started_at: row.get(20)?, warn_at: row.get(21)?, due_at: row.get(22)? })
            }
            None => None,
        },
    })
}

/// Loads one conversation visible to `scope`, or [`Error::NotFound`].
pub(super) fn load_summary(connection: &Connection, scope: &Scope, id: &ConversationId) -> Result<ConversationSummary> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM conversations c
         JOIN contacts k ON k.client_id = c.client_id AND k.id = c.contact_id
         WHERE c.id = ?1 AND {}",
        Scope::condition("c.client_id", 2)
    );
    let (every, person) = scope.params();
    connection
        .prepare_cached(&sql)?
        .query_row(params![id, every, person], summary_from_row)
        .optional()?
        .ok_or(Error::NotFound("conversation"))
}

/// Refuses an assignee who is not a person allowed to see `client` (an admin, or an assistant serving it);
/// answers their address as their account has it.
fn ensure_serves(connection: &Connection, email: &str, client: &ClientSlug) -> Result<String> {
    let refused = |why: String| Err(Invalid::new("assignee", why).into());
    let Ok(email) = Email::parse(email) else {
        return refused("must be the email address of an admin or of an assistant who serves this client".into());
    };
    let row: Option<(Role, bool, bool, String)> = connection
        .prepare_cached(
            "SELECT p.role, p.disabled, p.email,
                    EXISTS (SELECT 1 FROM client_assistants a WHERE a.person_id = p.id AND a.client_id = ?2)
             FROM people p WHERE p.email_key = ?1",
        )?
        .query_row(params![email.key(), client], |row| Ok((row.get(0)?, row.get(1)?, row.get(3)?, row.get(2)?)))
        .optional()?;
    match row {
        None => refused(format!("{email} has no account")),
        Some((_, true, _, _)) => refused(format!("{email} is disabled")),
        Some((Role::Admin, _, _, stored)) | Some((Role::Assistant, _, true, stored)) => Ok(stored),
        Some(_) => refused(format!("{email} does not serve client {client}")),
    }
}

/// Who sent a reply: the name it carries and who they are (a person's id, or `token:<id>`).
#[derive(Debug, Clone)]
pub struct Author {
    /// The name the customer sees.
    pub name: String,
    /// The person's id, or `token:<id>` for an integration.
    pub id: String,
}

/// Records the first-response figures of a conversation at its first human reply: who, and how long after
/// the first customer message, on the wall clock and in the client's opening hours.
fn first_response(
    connection: &Connection,
    summary: &ConversationSummary,
    reply: &MessageId,
    author: &str,
) -> Result<()> {
    let (first_in, replied): (Option<Timestamp>, Timestamp) = connection
        .prepare_cached(
            "SELECT (SELECT MIN(created_at) FROM messages
                     WHERE client_id = ?1 AND conversation_id = ?2 AND direction = 'in'),
                    (SELECT created_at FROM messages WHERE client_id = ?1 AND id = ?3)",
        )?
        .query_row(params![summary.client, summary.id, reply], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let Some(first_in) = first_in else { return Ok(()) };
    let profile = super::clients::load_client(connection, &summary.client)?.profile;
    let wall = (replied.millis() - first_in.millis()).max(0);
    let open = profile.business_hours.open_time_between(first_in, replied, &profile.timezone);
    connection.execute(
        "UPDATE conversations SET first_reply_by = ?3, first_response_ms = ?4, first_response_open_ms = ?5
         WHERE client_id = ?1 AND id = ?2 AND first_reply_by IS NULL",
        params![summary.client, summary.id, author, wall, open],
    )?;
    Ok(())
}

/// Changes to the routing of a conversation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RoutingChange {
    /// New assignee (`Some(None)` unassigns).
    pub assignee: Option<Option<String>>,
    /// New queue (`Some(None)` removes it).
    pub queue: Option<Option<String>>,
    /// New priority.
    pub priority: Option<Priority>,
}

impl Db {
    /// A page of the inbox, most recent activity first.
    pub async fn conversations(
        &self,
        scope: Scope,
        filter: ConversationFilter,
        page: PageRequest<ConversationKey>,
    ) -> Result<Page<ConversationSummary, ConversationKey>> {
        self.read_as(&scope.clone(), move |connection| {
            let mut sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM conversations c
                 JOIN contacts k ON k.client_id = c.client_id AND k.id = c.contact_id WHERE {}",
                Scope::condition("c.client_id", 1)
            );
            let (every, person) = scope.params();
            let text = |value: Option<&str>| value.map_or(Value::Null, |value| Value::Text(value.to_owned()));
            let mut values: Vec<Value> = vec![text(every), text(person)];
            let mut condition = |sql: &mut String, clause: &str, value: Value| {
                values.push(value);
                sql.push_str(&format!(" AND {clause} ?{}", values.len()));
            };
            if let Some(client) = &filter.client {
                condition(&mut sql, "c.client_id =", Value::Text(client.as_str().to_owned()));
            }
            if let Some(status) = filter.status {
                condition(&mut sql, "c.status =", Value::Text(status.as_str().to_owned()));
            }
            match &filter.assignee {
                Some(Assignee::Person(assignee)) => condition(&mut sql, "c.assignee =", Value::Text(assignee.clone())),
                Some(Assignee::Nobody) => sql.push_str(" AND c.assignee IS NULL"),
                None => {}
            }
            if let Some(queue) = &filter.queue {
                condition(&mut sql, "c.queue =", Value::Text(queue.clone()));
            }
            if let Some((at, id)) = &page.after {
                values.push(Value::Integer(at.millis()));
                values.push(Value::Text(id.to_string()));
                let (a, b) = (values.len() - 1, values.len());
                sql.push_str(&format!(
                    " AND (c.last_activity_at < ?{a} OR (c.last_activity_at = ?{a} AND c.id < ?{b}))"
                ));
            }
            sql.push_str(&format!(" ORDER BY c.last_activity_at DESC, c.id DESC LIMIT {}", page.probe()));
            let conversations: Vec<ConversationSummary> = connection
                .prepare_cached(&sql)?
                .query_map(params_from_iter(values), summary_from_row)?
                .collect::<Result<_>>()?;
            Ok(page.page(conversations, |last| (last.last_activity_at, last.id.clone())))
        })
        .await
    }

    /// One conversation with its latest `limit` messages, oldest first.
    pub async fn conversation(&self, scope: Scope, id: ConversationId, limit: usize) -> Result<ConversationDetail> {
        self.read_as(&scope.clone(), move |connection| {
            // Several statements make up the answer, read in the one snapshot every read runs in (`Db::read`).
            let summary = load_summary(connection, &scope, &id)?;
            let mut messages: Vec<MessageView> = connection
                .prepare_cached(
                    "SELECT m.id, m.direction, m.kind, m.text, m.author, m.created_at, m.state,
                            o.id, o.state, o.attempts, o.last_error, o.updated_at,
                            m.parts, m.context, m.reactions, m.edited_at, m.deleted_at
                     FROM messages m
                     LEFT JOIN outbox o ON o.client_id = m.client_id AND o.message_id = m.id
                     WHERE m.client_id = ?1 AND m.conversation_id = ?2
                     ORDER BY m.created_at DESC, m.id DESC LIMIT ?3",
                )?
                .query_map(params![summary.client, summary.id, i64::try_from(limit + 1).unwrap_or(i64::MAX)], |row| {
                    let outbox_id: Option<OutboxId> = row.get(7)?;
                    let delivery = match outbox_id {
                        Some(outbox_id) => Some(Delivery {
                            outbox_id,
                            state: row.get::<_, DeliveryState>(8)?,
                            attempts: row.get(9)?,
                            last_error: row.get(10)?,
                            updated_at: row.get(11)?,
                        }),
                        None => None,
                    };
                    Ok(MessageView {
                        id: row.get(0)?,
                        direction: row.get::<_, Direction>(1)?,
                        kind: row.get::<_, MessageKind>(2)?,
                        text: row.get(3)?,
                        author: row.get(4)?,
                        created_at: row.get(5)?,
                        state: row.get(6)?,
                        delivery,
                        parts: json_column(row.get(12)?),
                        context: json_column(row.get(13)?),
                        reactions: json_column(row.get(14)?),
                        edited_at: row.get(15)?,
                        deleted_at: row.get(16)?,
                        edits: Vec::new(),
                        media: Vec::new(),
                    })
                })?
                .collect::<Result<_>>()?;
            let has_more = messages.len() > limit;
            messages.truncate(limit);
            messages.reverse();
            if let Some(oldest) = messages.first() {
                let since = oldest.created_at.millis();
                for media in super::media::media_of_page(connection, &summary.client, &summary.id, since)? {
                    if let Some(message) = messages.iter_mut().find(|message| message.id == media.message_id) {
                        message.media.push(media);
                    }
                }
            }
            for message in messages.iter_mut().filter(|message| message.edited_at.is_some()) {
                message.edits = connection
                    .prepare_cached(
                        "SELECT text, replaced_at FROM message_edits WHERE client_id = ?1 AND message_id = ?2
                         ORDER BY replaced_at, rowid",
                    )?
                    .query_map(params![summary.client, message.id], |row| {
                        Ok(EarlierVersion { text: row.get(0)?, replaced_at: row.get(1)? })
                    })?
                    .collect::<Result<_>>()?;
            }
            let last_customer_message_at = last_customer_message_at(connection, &summary)?;
            Ok(ConversationDetail { summary, messages, has_more, last_customer_message_at })
        })
        .await
    }

    /// Stores a reply by `author` and queues its delivery, in one transaction. Returns the message id.
    ///
    /// On a channel with a reply window (WhatsApp), a free-form reply after the window has closed is refused
    /// with [`Error::WindowClosed`], checked in the same transaction; a template is always allowed.
    pub async fn reply(
        &self,
        scope: Scope,
        conversation_id: ConversationId,
        author: Author,
        text: String,
        payload: Option<Outbound>,
    ) -> Result<MessageId> {
        self.write_as(&scope.clone(), move |connection| {
            // Whether this is the first human reply is read and then written.
            connection.lock(Lock::Conversation(&conversation_id))?;
            let summary = load_summary(connection, &scope, &conversation_id)?;
            let template = matches!(payload, Some(Outbound::Template { .. }));
            if let Some(window) = summary.channel.reply_window().filter(|_| !template) {
                let last = last_customer_message_at(connection, &summary)?;
                let closes_at = last.map(|at| at.plus(window));
                if closes_at.is_none_or(|closes_at| closes_at <= Timestamp::now()) {
                    return Err(Error::WindowClosed { closed_at: closes_at });
                }
            }
            let message_id = enqueue_with(
                connection,
                &summary,
                MessageKind::Assistant,
                Some(&author.name),
                &text,
                payload.as_ref(),
            )?;
            connection.execute(
                "UPDATE messages SET author_id = ?3 WHERE client_id = ?1 AND id = ?2",
                params![summary.client, message_id, author.id],
            )?;
            if summary.first_human_reply_at.is_none() {
                first_response(connection, &summary, &message_id, &author.id)?;
            }
            if let Some(payload) = &payload {
                super::media::record_outbound(connection, &summary.client, &summary.channel, &message_id, payload)?;
            }
            // The first human reply stops the first-response clock (an automatic acknowledgement does not).
            // The reply's own time, so the first-response figures and the thread agree to the millisecond.
            connection.execute(
                "UPDATE conversations SET first_human_reply_at = COALESCE(first_human_reply_at,
                            (SELECT created_at FROM messages WHERE client_id = ?1 AND id = ?3)),
                        sla_state = CASE sla_state WHEN 'running' THEN 'met' WHEN 'warned' THEN 'met'
                                                   WHEN 'overdue' THEN 'met_late' ELSE sla_state END,
                        sla_next_at = NULL
                 WHERE client_id = ?1 AND id = ?2",
                params![summary.client, summary.id, message_id],
            )?;
            Ok(message_id)
        })
        .await
    }

    /// Closes or reopens a conversation. Reopening fails with a conflict if the contact already has another
    /// open conversation (new messages go there).
    pub async fn set_status(
        &self,
        scope: Scope,
        conversation_id: ConversationId,
        status: ConversationStatus,
        actor: String,
    ) -> Result<ConversationSummary> {
        self.write_as(&scope.clone(), move |connection| {
            // Reopening checks the contact has no other open conversation: ingest, opening one, holds the
            // contact too.
            connection.lock(Lock::ContactOf(&conversation_id))?;
            connection.lock(Lock::Conversation(&conversation_id))?;
            let summary = load_summary(connection, &scope, &conversation_id)?;
            if summary.status == status {
                return Ok(summary);
            }
            let now = Timestamp::now().millis();
            if status == ConversationStatus::Open {
                let other_open: bool = connection
                    .query_row(
                        "SELECT 1 FROM conversations WHERE client_id = ?1 AND contact_id = ?2 AND status = 'open' AND id <> ?3",
                        params![summary.client, summary.contact.id, summary.id],
                        |_| Ok(true),
                    )
                    .optional()?
                    .unwrap_or(false);
                if other_open {
                    return Err(Error::Conflict("the contact has another open conversation".into()));
                }
            }
            let closed_at = (status == ConversationStatus::Closed).then_some(now);
            // Closing without a reply stops the clock: nobody is waiting any more.
            connection.execute(
                "UPDATE conversations SET status = ?3, closed_at = ?4,
                        sla_state = CASE WHEN ?3 = 'closed' AND sla_state IN ('running', 'warned') THEN 'stopped'
                                         ELSE sla_state END,
                        sla_next_at = CASE WHEN ?3 = 'closed' THEN NULL ELSE sla_next_at END
                 WHERE client_id = ?1 AND id = ?2",
                params![summary.client, summary.id, status, closed_at],
            )?;
            let action = if status == ConversationStatus::Closed { "conversation.close" } else { "conversation.reopen" };
            audit(connection, Some(&summary.client), &actor, action, &serde_json::json!({ "conversation_id": summary.id }))?;
            let changed = load_summary(connection, &scope, &conversation_id)?;
            super::events::conversation_updated(connection, &changed, "status")?;
            Ok(changed)
        })
        .await
    }

    /// Changes assignee, queue or priority of a conversation. An assignee is a person's email (stored as their
    /// account has it): an admin, or an assistant who serves the conversation's client.
    pub async fn route(
        &self,
        scope: Scope,
        conversation_id: ConversationId,
        change: RoutingChange,
        actor: String,
    ) -> Result<ConversationSummary> {
        self.write_as(&scope.clone(), move |connection| {
            // The fields the change leaves alone are written back as read.
            connection.lock(Lock::Conversation(&conversation_id))?;
            let summary = load_summary(connection, &scope, &conversation_id)?;
            let assignee = match &change.assignee {
                Some(Some(email)) => Some(ensure_serves(connection, email, &summary.client)?),
                Some(None) => None,
                None => summary.assignee.clone(),
            };
            let queue = change.queue.clone().unwrap_or(summary.queue.clone());
            let priority = change.priority.unwrap_or(summary.priority);
            connection.execute(
                "UPDATE conversations SET assignee = ?3, queue = ?4, priority = ?5 WHERE client_id = ?1 AND id = ?2",
                params![summary.client, summary.id, assignee, queue, priority],
            )?;
            audit(
                connection,
                Some(&summary.client),
                &actor,
                "conversation.route",
                &serde_json::json!({ "conversation_id": summary.id, "assignee": assignee, "queue": queue, "priority": priority.as_str() }),
            )?;
            let changed = load_summary(connection, &scope, &conversation_id)?;
            super::events::conversation_updated(connection, &changed, "routing")?;
            Ok(changed)
        })
        .await
    }

    /// Replaces the tags of contact `id`, if `scope` may see it; audited, and a `contact.changed` event.
    pub async fn set_contact_tags(
        &self,
        scope: Scope,
        id: ContactId,
        tags: Vec<String>,
        actor: String,
    ) -> Result<ContactView> {
        let view = self
            .write_as(&scope.clone(), move |connection| {
                let (every, person) = scope.params();
                let client: ClientSlug = connection
                    .query_row(
                        &format!(
                            "SELECT client_id FROM contacts WHERE id = ?1 AND {}",
                            Scope::condition("client_id", 2)
                        ),
                        params![id, every, person],
                        |row| row.get(0),
                    )
                    .optional()?
                    .ok_or(Error::NotFound("contact"))?;
                connection.execute(
                    "UPDATE contacts SET tags = ?3, updated_at = ?4 WHERE client_id = ?1 AND id = ?2",
                    params![client, id, serde_json::to_string(&tags)?, Timestamp::now()],
                )?;
                let detail = serde_json::json!({ "contact_id": id, "tags": tags });
                audit(connection, Some(&client), &actor, "contact.tag", &detail)?;
                super::events::record(connection, client.as_str(), "contact.changed", None, &detail)?;
                connection.query_row(
                    "SELECT id, handle, name, user_id, username, tags FROM contacts WHERE client_id = ?1 AND id = ?2",
                    params![client, id],
                    |row| {
                        Ok(ContactView {
                            id: row.get(0)?,
                            handle: row.get(1)?,
                            name: row.get(2)?,
                            user_id: row.get(3)?,
                            username: row.get(4)?,
                            tags: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
                        })
                    },
                )
            })
            .await?;
        Ok(view)
    }

    /// The message with `id`, if `scope` may see it: its client and conversation.
    pub async fn message_location(&self, scope: Scope, id: MessageId) -> Result<(ClientSlug, ConversationId)> {
        self.read_as(&scope.clone(), move |connection| {
            let (every, person) = scope.params();
            connection
                .query_row(
                    &format!(
                        "SELECT client_id, conversation_id FROM messages WHERE id = ?1 AND {}",
                        Scope::condition("client_id", 2)
                    ),
                    params![id, every, person],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
                .ok_or(Error::NotFound("message"))
        })
        .await
    }
}
