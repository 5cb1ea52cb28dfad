//! `/api/v1/conversations`: the inbox across clients, one thread, replies and state changes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppQuery, IdPath, Principal};
use super::media::MediaBody;
use super::paging::{next_cursor, page_request};
use super::plugins::DecisionBody;
use crate::domain::{
    ChannelName, ClientSlug, ContactId, ConversationId, ConversationStatus, Media, MediaKind, MessageId, Outbound,
    Part, Priority, Timestamp, parse_label, parse_text, readable_text,
};
use crate::store::{Assignee, ContactView, ConversationFilter, ConversationSummary, MessageView, RoutingChange};

/// Most messages returned with one conversation.
const MAX_MESSAGES: usize = 1_000;
/// Longest reply text, in characters (WhatsApp and Telegram both cap a text message at 4,096).
const MAX_REPLY_CHARS: usize = 4_096;

/// A message as the API shows it: the stored view, with each media file's address.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MessageBody {
    #[serde(flatten)]
    message: MessageView,
    media: Vec<MediaBody>,
}

impl From<MessageView> for MessageBody {
    fn from(mut message: MessageView) -> Self {
        let media = std::mem::take(&mut message.media).into_iter().map(MediaBody::from).collect();
        Self { message, media }
    }
}

/// `GET /api/v1/conversations`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ConversationList {
    conversations: Vec<ConversationSummary>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/conversations/{id}`: the conversation, its latest messages, and (on a channel that has
/// one) whether the reply window is open.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ConversationBody {
    #[serde(flatten)]
    summary: ConversationSummary,
    messages: Vec<MessageBody>,
    has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_window: Option<ReplyWindow>,
}

/// Whether a free-form reply can still be delivered, and until when.
#[derive(Serialize, utoipa::ToSchema)]
struct ReplyWindow {
    open: bool,
    closes_at: Option<Timestamp>,
}

/// A stored reply (or attachment, or template) and its conversation.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Replied {
    conversation_id: ConversationId,
    message: RepliedMessage,
}

/// The reply as stored, delivery state included; only its id if so many messages arrived at once that it is
/// no longer among the latest.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum RepliedMessage {
    Stored(Box<MessageBody>),
    Queued { id: MessageId },
}

/// `GET /api/v1/messages/{id}/decisions`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MessageDecisions {
    message_id: MessageId,
    decisions: Vec<DecisionBody>,
}

/// A delivery queued again.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RetriedDelivery {
    message_id: MessageId,
    /// `pending`: queued again.
    state: crate::domain::DeliveryState,
}

/// Query of the inbox list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    client: Option<String>,
    status: Option<String>,
    assignee: Option<String>,
    queue: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/conversations`: newest activity first, filtered, with a cursor to the next page.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", params(("client" = Option<String>, Query), ("status" = Option<String>, Query), ("assignee" = Option<String>, Query), ("queue" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)), responses((status = 200, description = "a page of the inbox", body = ConversationList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_list(
    State(state): State<AppState>,
    principal: Principal,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let client = match &query.client {
        // An invalid slug cannot match any conversation.
        Some(slug) => Some(ClientSlug::parse(slug)?),
        None => None,
    };
    let status = query.status.as_deref().map(str::parse::<ConversationStatus>).transpose()?;
    let page = page_request(query.cursor.as_deref(), query.limit)?;
    // `me` is the caller's own address (a person's; an integration is no one and matches nothing); `none`,
    // the conversations nobody is assigned.
    let assignee = match query.assignee {
        Some(me) if me == "me" => Some(Assignee::Person(
            principal.caller.person.as_ref().map_or_else(String::new, |person| person.email.clone()),
        )),
        Some(none) if none == "none" => Some(Assignee::Nobody),
        Some(other) => Some(Assignee::Person(other)),
        None => None,
    };
    let filter = ConversationFilter { client, status, assignee, queue: query.queue };
    let page = state.db.conversations(principal.scope(), filter, page).await?;
    Ok(Json(ConversationList { next_cursor: next_cursor(page.next.as_ref()), conversations: page.items }))
}

/// Query of one conversation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShowQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/conversations/{id}`: the conversation with its latest messages (up to `limit`, at most
/// 1,000, default 200), oldest first.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = "the object's id"), ("limit" = Option<usize>, Query)), responses((status = 200, description = "the conversation and its latest messages", body = ConversationBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_show(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
    AppQuery(query): AppQuery<ShowQuery>,
) -> Result<Json<ConversationBody>, ApiError> {
    let limit = query.limit.unwrap_or(200).clamp(1, MAX_MESSAGES);
    let detail = state.db.conversation(principal.scope(), id, limit).await?;
    let reply_window = detail.summary.channel.reply_window().map(|window| {
        let closes_at = detail.last_customer_message_at.map(|at| at.plus(window));
        ReplyWindow { open: closes_at.is_some_and(|closes_at| closes_at > Timestamp::now()), closes_at }
    });
    Ok(Json(ConversationBody {
        summary: detail.summary,
        messages: detail.messages.into_iter().map(MessageBody::from).collect(),
        has_more: detail.has_more,
        reply_window,
    }))
}

/// Body of a reply.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplyBody {
    text: String,
}

/// `POST /api/v1/conversations/{id}/replies`: stores the reply and queues its delivery in one transaction.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/replies", tag = "conversations", params(("id" = String, Path, description = "the object's id")), request_body(content = ReplyBody, content_type = "application/json"), responses((status = 201, description = "queued for delivery", body = Replied), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_reply(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
    AppJson(body): AppJson<ReplyBody>,
) -> Result<impl IntoResponse, ApiError> {
    let text = parse_text("text", &body.text, MAX_REPLY_CHARS)?;
    send_reply(&state, &principal, id, text, None).await
}

/// Stores a reply, queues it, and answers with the stored message (delivery state included).
async fn send_reply(
    state: &AppState,
    principal: &Principal,
    id: ConversationId,
    text: String,
    payload: Option<Outbound>,
) -> Result<(StatusCode, Json<Replied>), ApiError> {
    let scope = principal.scope();
    let message_id = state.db.reply(scope.clone(), id.clone(), principal.author(), text, payload).await?;
    state.outbox.wake();
    let detail = state.db.conversation(scope, id, 20).await?;
    let message = match detail.messages.into_iter().find(|message| message.id == message_id) {
        Some(message) => RepliedMessage::Stored(Box::new(MessageBody::from(message))),
        None => RepliedMessage::Queued { id: message_id },
    };
    Ok((StatusCode::CREATED, Json(Replied { conversation_id: detail.summary.id, message })))
}

/// `POST /api/v1/conversations/{id}/attachments` (multipart: `file`, optional `text` as its caption): sends a
/// file (image, audio, video or document) through the conversation's channel. The file's type is sniffed
/// from its bytes; it is kept in the media store, listed on the message and served like customers' files.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/attachments", tag = "conversations", params(("id" = String, Path, description = "the object's id")), request_body(content = serde_json::Value, content_type = "multipart/form-data"), responses((status = 201, description = "queued for delivery", body = Replied), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_attachment(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
    mut multipart: axum::extract::Multipart,
) -> Result<(StatusCode, Json<Replied>), ApiError> {
    let invalid_form = |error: axum::extract::multipart::MultipartError| {
        ApiError::bad_request("invalid_multipart", format!("the form cannot be read: {}", error.body_text()))
    };
    let mut caption = String::new();
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(invalid_form)? {
        match field.name() {
            Some("text") => caption = field.text().await.map_err(invalid_form)?,
            Some("file") => {
                let filename = field.file_name().map(clean_filename);
                let declared = field.content_type().map(str::to_owned);
                file = Some((field.bytes().await.map_err(invalid_form)?, filename, declared));
            }
            other => {
                return Err(ApiError::Invalid(format!("{}: unknown field (send file and text)", other.unwrap_or(""))));
            }
        }
    }
    let Some((bytes, filename, declared)) = file.filter(|(bytes, _, _)| !bytes.is_empty()) else {
        return Err(ApiError::Invalid("file: an attachment needs a non-empty file".into()));
    };
    if bytes.len() > state.settings.media.max_upload_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "the file is larger than {} bytes (media.max_upload_bytes)",
            state.settings.media.max_upload_bytes
        )));
    }
    let caption = if caption.trim().is_empty() { String::new() } else { parse_text("text", &caption, 1_024)? };
    let content_type = crate::media::content_type(&bytes[..bytes.len().min(8192)], declared.as_deref());
    let kind = match content_type.as_str() {
        "image/jpeg" | "image/png" | "image/webp" => MediaKind::Image,
        audio if audio.starts_with("audio/") => MediaKind::Audio,
        video if video.starts_with("video/") => MediaKind::Video,
        _ => MediaKind::Document,
    };
    let channel = state.db.conversation(principal.scope(), id.clone(), 1).await?.summary.channel;
    if kind == MediaKind::Audio && !caption.is_empty() && channel.as_str() == ChannelName::WHATSAPP {
        return Err(ApiError::Invalid(
            "text: WhatsApp delivers audio without a caption; send the text as a reply of its own".into(),
        ));
    }
    let mut writer = state.blobs.writer().await.map_err(|error| ApiError::Internal(error.into()))?;
    writer.write(bytes).await.map_err(|error| ApiError::Internal(error.into()))?;
    let stored = writer.finish().await.map_err(|error| ApiError::Internal(error.into()))?;
    let part = Part::Media(Media {
        kind,
        provider_id: stored.sha256.clone(),
        mime_type: Some(content_type.clone()),
        filename: filename.clone(),
        caption: (!caption.is_empty()).then(|| caption.clone()),
        size: Some(stored.size),
        emoji: None,
    });
    let payload =
        Outbound::Attachment { kind, sha256: stored.sha256, content_type, filename, size: stored.size, caption };
    send_reply(&state, &principal, id, readable_text(&[part]), Some(payload)).await
}

/// A file name as sent by a browser or a script, reduced to its last path segment without control
/// characters, at most 200 characters.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.trim().is_empty() { "attachment".to_owned() } else { cleaned }
}

/// Body of a template send.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TemplateBody {
    name: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    parameters: Vec<String>,
}

/// `POST /api/v1/conversations/{id}/templates`: sends one of the client's approved WhatsApp templates, the
/// way to write to a customer after the 24-hour window has closed.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/templates", tag = "conversations", params(("id" = String, Path, description = "the object's id")), request_body(content = TemplateBody, content_type = "application/json"), responses((status = 201, description = "queued for delivery", body = Replied), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_template(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
    AppJson(body): AppJson<TemplateBody>,
) -> Result<(StatusCode, Json<Replied>), ApiError> {
    let detail = state.db.conversation(principal.scope(), id.clone(), 1).await?;
    if detail.summary.channel.as_str() != ChannelName::WHATSAPP {
        return Err(ApiError::Invalid("templates are sent on WhatsApp conversations only".into()));
    }
    let profile = state.db.client(detail.summary.client).await?.profile;
    let template = profile
        .whatsapp_templates
        .iter()
        .find(|template| template.name == body.name && body.language.as_ref().is_none_or(|l| *l == template.language))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "name: the client's profile lists no approved template {:?}{}",
                body.name,
                body.language.as_ref().map(|language| format!(" in {language}")).unwrap_or_default()
            ))
        })?;
    if body.parameters.len() != usize::from(template.parameters) {
        return Err(ApiError::Invalid(format!(
            "parameters: the template {} takes {} parameters, {} given",
            template.name,
            template.parameters,
            body.parameters.len()
        )));
    }
    for (index, parameter) in body.parameters.iter().enumerate() {
        parse_text(&format!("parameters[{index}]"), parameter, 1_024)?;
    }
    let payload = Outbound::Template {
        name: template.name.clone(),
        language: template.language.clone(),
        parameters: body.parameters.clone(),
    };
    send_reply(&state, &principal, id, template.render(&body.parameters), Some(payload)).await
}

async fn set_status(
    state: AppState,
    principal: Principal,
    id: ConversationId,
    status: ConversationStatus,
) -> Result<Json<ConversationSummary>, ApiError> {
    Ok(Json(state.db.set_status(principal.scope(), id, status, principal.actor()).await?))
}

/// `POST /api/v1/conversations/{id}/close`.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/close", tag = "conversations", params(("id" = String, Path, description = "the object's id")), responses((status = 200, description = "the conversation", body = ConversationSummary), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_close(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
) -> Result<Json<ConversationSummary>, ApiError> {
    set_status(state, principal, id, ConversationStatus::Closed).await
}

/// `POST /api/v1/conversations/{id}/reopen`: 409 if the contact already has another open conversation.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/reopen", tag = "conversations", params(("id" = String, Path, description = "the object's id")), responses((status = 200, description = "the conversation", body = ConversationSummary), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_reopen(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
) -> Result<Json<ConversationSummary>, ApiError> {
    set_status(state, principal, id, ConversationStatus::Open).await
}

/// Body of an assignment: each field present is changed; `null` clears assignee or queue.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignBody {
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    queue: Option<Option<String>>,
    #[serde(default)]
    priority: Option<Priority>,
}

/// Distinguishes a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// `POST /api/v1/conversations/{id}/assign`: assignee, queue and priority.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/assign", tag = "conversations", params(("id" = String, Path, description = "the object's id")), request_body(content = AssignBody, content_type = "application/json"), responses((status = 200, description = "the conversation", body = ConversationSummary), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn conversations_assign(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ConversationId>,
    AppJson(body): AppJson<AssignBody>,
) -> Result<Json<ConversationSummary>, ApiError> {
    if let Some(Some(assignee)) = &body.assignee {
        parse_text("assignee", assignee, 200)?;
    }
    if let Some(Some(queue)) = &body.queue {
        parse_label("queue", queue, 64)?;
    }
    let change = RoutingChange { assignee: body.assignee, queue: body.queue, priority: body.priority };
    Ok(Json(state.db.route(principal.scope(), id, change, principal.actor()).await?))
}

/// Body of a contact's tags.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsBody {
    tags: Vec<String>,
}

/// Most tags on one contact.
const MAX_CONTACT_TAGS: usize = 16;

/// `PUT /api/v1/contacts/{id}/tags`: replaces the tags people put on a contact (`vip`, `wholesale`); rule
/// plugins see them with every later message of that contact.
#[utoipa::path(put, path = "/api/v1/contacts/{id}/tags", tag = "conversations", params(("id" = String, Path, description = "the object's id")), request_body(content = TagsBody, content_type = "application/json"), responses((status = 200, description = "the contact", body = ContactView), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn contacts_tags(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<ContactId>,
    AppJson(body): AppJson<TagsBody>,
) -> Result<Json<ContactView>, ApiError> {
    if body.tags.len() > MAX_CONTACT_TAGS {
        return Err(ApiError::Invalid(format!("tags: at most {MAX_CONTACT_TAGS}")));
    }
    let mut tags = Vec::with_capacity(body.tags.len());
    for (index, tag) in body.tags.iter().enumerate() {
        let tag = parse_label(&format!("tags[{index}]"), tag, 64)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(Json(state.db.set_contact_tags(principal.scope(), id, tags, principal.actor()).await?))
}

/// `GET /api/v1/messages/{id}/decisions`: what decided about a message, and why.
#[utoipa::path(get, path = "/api/v1/messages/{id}/decisions", tag = "conversations", params(("id" = String, Path, description = "the object's id")), responses((status = 200, description = "the decisions about the message", body = MessageDecisions), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn messages_decisions(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<MessageId>,
) -> Result<Json<MessageDecisions>, ApiError> {
    let decisions = state.db.decisions_for(principal.scope(), id.clone()).await?;
    Ok(Json(MessageDecisions { message_id: id, decisions: decisions.into_iter().map(DecisionBody::from).collect() }))
}

/// `POST /api/v1/messages/{id}/retry`: sends a dead-lettered (or failed) reply again, with a fresh count of
/// attempts. Anyone who may reply in the conversation may retry; it is audited.
#[utoipa::path(post, path = "/api/v1/messages/{id}/retry", tag = "conversations", params(("id" = String, Path, description = "the object's id")), responses((status = 202, description = "queued again", body = RetriedDelivery), (status = "4XX", description = "refused: the error body says why (409 unless the delivery is dead or failed)", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn messages_retry(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<MessageId>,
) -> Result<(StatusCode, Json<RetriedDelivery>), ApiError> {
    let delivery = state.db.retry_delivery(principal.scope(), id.clone(), principal.actor()).await?;
    state.outbox.wake();
    Ok((StatusCode::ACCEPTED, Json(RetriedDelivery { message_id: id, state: delivery })))
}
