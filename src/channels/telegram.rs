//! Telegram Bot API: the `Update` webhook, its secret-token header, and `sendMessage`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{Outgoing, Parsed, ParsedMessage, Secret, Sending, id_at, number_at, owned_at, readable_text, text_at};
use crate::domain::{Change, ChannelKind, Context, Invalid, Location, Media, MediaKind, Part, SharedContact, Target};

/// Default Bot API base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://api.telegram.org";

/// The header carrying the secret token set with `setWebhook`.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// A client's Telegram bot settings. Secrets are never returned by the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from BotFather.
    pub bot_token: Secret,
    /// The `secret_token` given to `setWebhook`; Telegram sends it in every webhook call.
    pub secret_token: Secret,
    /// The Bot API base URL (a test provider in tests).
    #[serde(default = "default_base")]
    pub api_base_url: String,
}

fn default_base() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

impl super::ChannelConfig for TelegramConfig {
    const KIND: ChannelKind = ChannelKind::Telegram;

    /// The values that must never appear in an error, a response or a log line.
    fn secrets(&self) -> Vec<String> {
        vec![self.bot_token.expose().to_owned(), self.secret_token.expose().to_owned()]
    }

    /// Checks the fields.
    fn validate(&self, allow_private: bool) -> Result<(), Invalid> {
        let bot_token = self.bot_token.expose();
        if bot_token.trim().is_empty() || bot_token.len() > 256 || bot_token.contains('/') {
            return Err(Invalid::new("bot_token", "must be 1 to 256 characters without '/'"));
        }
        // Telegram allows 1-256 characters of A-Z, a-z, 0-9, '_' and '-' for secret_token; a short one could be
        // guessed, so we ask for at least MIN_SECRET_LEN.
        let valid_secret = (super::MIN_SECRET_LEN..=256).contains(&self.secret_token.len())
            && self.secret_token.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_secret {
            return Err(Invalid::new(
                "secret_token",
                format!("must be {} to 256 of A-Z, a-z, 0-9, '_' and '-'", super::MIN_SECRET_LEN),
            ));
        }
        super::validate_target_url("api_base_url", &self.api_base_url, allow_private)
    }

    /// What the API shows of these settings: no secrets.
    fn public_view(&self) -> serde_json::Value {
        serde_json::json!({ "api_base_url": self.api_base_url })
    }

    fn sent_message_id(answer: &serde_json::Value) -> Option<String> {
        sent_message_id(answer)
    }

    /// `sendMessage`, or a file with its own method (`sendPhoto`, `sendDocument`, ...) as a form.
    fn sending(&self, http: &reqwest::Client, message: Outgoing<'_>) -> Result<Sending, String> {
        let request = match message.file {
            Some(file) => {
                let (url, form) = file_send_request(
                    self,
                    message.to,
                    file.kind,
                    message.text,
                    file.bytes,
                    &file.filename,
                    &file.content_type,
                )
                .map_err(|error| format!("the file cannot be sent: {}", error.without_url()))?;
                http.post(url).multipart(form)
            }
            None => {
                let (url, body) = send_request(self, message.to, message.text);
                http.post(url).json(&body)
            }
        };
        Ok(Sending::Request(request))
    }
}

impl TelegramConfig {
    /// Returns true if and only if `header` equals the configured secret (constant-time).
    pub fn verify(&self, header: Option<&[u8]>) -> bool {
        header.is_some_and(|value| bool::from(value.ct_eq(self.secret_token.expose().as_bytes())))
    }
}

/// Update kinds recado does not use, named in the ignored-updates metric.
const OTHER_UPDATES: &[&str] = &[
    "channel_post",
    "edited_channel_post",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
    "service",
    "business_outgoing",
    "malformed",
];

/// Message fields that make it a service message (someone joined, a title changed, a message was
/// pinned...): an event in the chat, never something the customer wrote.
const SERVICE_FIELDS: &[&str] = &[
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "channel_chat_created",
    "message_auto_delete_timer_changed",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "pinned_message",
    "users_shared",
    "chat_shared",
    "connected_website",
    "write_access_allowed",
    "proximity_alert_triggered",
    "boost_added",
    "chat_background_set",
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "general_forum_topic_hidden",
    "general_forum_topic_unhidden",
    "giveaway_created",
    "giveaway_completed",
    "video_chat_scheduled",
    "video_chat_started",
    "video_chat_ended",
    "video_chat_participants_invited",
    "chat_owner_left",
    "chat_owner_changed",
    "paid_message_price_changed",
    "direct_message_price_changed",
    "checklist_tasks_done",
    "checklist_tasks_added",
];

/// Message fields that are not content: who, where, when, how it was sent.
const ENVELOPE_FIELDS: &[&str] = &[
    "message_id",
    "message_thread_id",
    "from",
    "sender_chat",
    "sender_boost_count",
    "sender_business_bot",
    "date",
    "business_connection_id",
    "chat",
    "forward_origin",
    "forward_from",
    "forward_from_chat",
    "forward_from_message_id",
    "forward_signature",
    "forward_sender_name",
    "forward_date",
    "is_topic_message",
    "is_automatic_forward",
    "reply_to_message",
    "external_reply",
    "quote",
    "reply_to_story",
    "via_bot",
    "edit_date",
    "has_protected_content",
    "is_from_offline",
    "media_group_id",
    "author_signature",
    "entities",
    "caption_entities",
    "show_caption_above_media",
    "has_media_spoiler",
    "link_preview_options",
    "effect_id",
    "reply_markup",
    "caption",
    "text",
];

/// Parses an `Update`. Only invalid JSON is an error; every update is acknowledged, and those recado does
/// not use are counted as ignored.
///
/// A customer writing to the bot is keyed by chat: the handle is the chat id and the external id
/// `<chat id>:<message id>` (message ids are only unique within a chat). A customer writing to a connected
/// Telegram Business account is keyed by the connection too (`business:<connection>:<chat id>`), because
/// replies must go out through that connection.
pub fn parse(body: &[u8]) -> Result<Parsed, serde_json::Error> {
    let update: Value = serde_json::from_slice(body)?;
    let mut parsed = Parsed::default();
    let event_id = id_at(&update, "update_id").map(|id| format!("update:{id}"));
    if let Some(message) = update.get("message") {
        parse_message(message, None, &mut parsed);
    } else if let Some(message) = update.get("business_message") {
        match owned_at(message, "business_connection_id") {
            Some(connection) => parse_message(message, Some(&connection), &mut parsed),
            None => parsed.ignored.push("malformed"),
        }
    } else if let Some(message) = update.get("edited_message").or_else(|| update.get("edited_business_message")) {
        parse_edit(message, event_id, &mut parsed);
    } else if let Some(deleted) = update.get("deleted_business_messages") {
        parse_deletion(deleted, event_id, &mut parsed);
    } else if let Some(reaction) = update.get("message_reaction") {
        parse_reaction(reaction, event_id, &mut parsed);
    } else if let Some(connection) = update.get("business_connection") {
        parse_connection(connection, &mut parsed);
    } else {
        let kind = update
            .as_object()
            .and_then(|fields| fields.keys().find(|key| *key != "update_id"))
            .map_or("malformed", |key| super::ignored_kind(key, OTHER_UPDATES));
        parsed.ignored.push(kind);
    }
    Ok(parsed)
}

/// The chat a message is in and, for business chats, the connection: our handle and external-id prefix.
struct Chat {
    id: String,
    handle: String,
}

impl Chat {
    fn of(message: &Value, business: Option<&str>) -> Option<Self> {
        let id = id_at(&message["chat"], "id")?;
        let handle = match business {
            Some(connection) => format!("business:{connection}:{id}"),
            None => id.clone(),
        };
        Some(Self { id, handle })
    }

    fn external_id(&self, message_id: &str) -> String {
        format!("{}:{message_id}", self.handle)
    }

    fn target(&self, message_id: String) -> Target {
        Target { external_id: self.external_id(&message_id), provider_id: message_id, handle: self.handle.clone() }
    }
}

fn parse_message(message: &Value, business: Option<&str>, parsed: &mut Parsed) {
    let (Some(chat), Some(message_id)) = (Chat::of(message, business), id_at(message, "message_id")) else {
        parsed.ignored.push("malformed");
        return;
    };
    if SERVICE_FIELDS.iter().any(|field| message.get(*field).is_some()) {
        parsed.ignored.push("service");
        return;
    }
    let from = message.get("from");
    // In a business chat the business account's own messages (sent from its phone, or by its bot) arrive
    // too; only the customer's (sender = the private chat's user) are customer messages.
    let from_customer = from.and_then(|from| id_at(from, "id")).is_some_and(|from| from == chat.id);
    if business.is_some() && (!from_customer || message.get("sender_business_bot").is_some()) {
        parsed.ignored.push("business_outgoing");
        return;
    }
    let mut parsed_message = ParsedMessage::new(chat.external_id(&message_id), chat.handle.clone(), content(message));
    if let Some(from) = from {
        let full: Vec<&str> = [text_at(from, "first_name"), text_at(from, "last_name")].into_iter().flatten().collect();
        parsed_message.username = owned_at(from, "username");
        parsed_message.name = if full.is_empty() { parsed_message.username.clone() } else { Some(full.join(" ")) };
    }
    parsed_message.context = Context {
        reply_to: message
            .get("reply_to_message")
            .and_then(|reply| id_at(reply, "message_id"))
            .map(|id| chat.external_id(&id)),
        forwarded: ["forward_origin", "forward_from", "forward_from_chat", "forward_date"]
            .iter()
            .any(|field| message.get(*field).is_some()),
        ..Context::default()
    };
    parsed.messages.push(parsed_message);
}

fn parse_edit(message: &Value, event_id: Option<String>, parsed: &mut Parsed) {
    let business = owned_at(message, "business_connection_id");
    let (Some(event_id), Some(chat), Some(message_id)) =
        (event_id, Chat::of(message, business.as_deref()), id_at(message, "message_id"))
    else {
        parsed.ignored.push("malformed");
        return;
    };
    let parts = content(message);
    parsed.changes.push(Change::Edit { event_id, target: chat.target(message_id), text: readable_text(&parts), parts });
}

fn parse_deletion(deleted: &Value, event_id: Option<String>, parsed: &mut Parsed) {
    let business = owned_at(deleted, "business_connection_id");
    let (Some(event_id), Some(chat)) = (event_id, Chat::of(deleted, business.as_deref())) else {
        parsed.ignored.push("malformed");
        return;
    };
    for message_id in deleted["message_ids"].as_array().into_iter().flatten() {
        let message_id = match message_id {
            Value::Number(number) => number.to_string(),
            Value::String(text) => text.clone(),
            _ => continue,
        };
        parsed
            .changes
            .push(Change::Deletion { event_id: format!("{event_id}:{message_id}"), target: chat.target(message_id) });
    }
}

fn parse_reaction(reaction: &Value, event_id: Option<String>, parsed: &mut Parsed) {
    let (Some(event_id), Some(chat), Some(message_id)) =
        (event_id, Chat::of(reaction, None), id_at(reaction, "message_id"))
    else {
        parsed.ignored.push("malformed");
        return;
    };
    // Only a person's reaction in their own chat with the bot is a customer's (anonymous admins react as
    // the chat).
    if reaction.get("user").and_then(|user| id_at(user, "id")) != Some(chat.id.clone()) {
        parsed.ignored.push("message_reaction");
        return;
    }
    let emoji = reaction["new_reaction"].as_array().and_then(|reactions| reactions.first()).map(|kind| {
        match text_at(kind, "type") {
            Some("emoji") => text_at(kind, "emoji").unwrap_or("?").to_owned(),
            Some("paid") => "⭐".to_owned(),
            _ => "custom emoji".to_owned(),
        }
    });
    parsed.changes.push(Change::Reaction { event_id, target: chat.target(message_id), emoji });
}

fn parse_connection(connection: &Value, parsed: &mut Parsed) {
    let user = &connection["user"];
    let (Some(id), Some(owner_user_id)) = (owned_at(connection, "id"), id_at(user, "id")) else {
        parsed.ignored.push("malformed");
        return;
    };
    // Rights arrived in Bot API 9.0; before that a `can_reply` flag on the connection itself.
    let can_reply = connection
        .get("rights")
        .and_then(|rights| rights.get("can_reply"))
        .or_else(|| connection.get("can_reply"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let owner_name =
        [text_at(user, "first_name"), text_at(user, "last_name")].into_iter().flatten().collect::<Vec<_>>();
    parsed.changes.push(Change::BusinessConnection {
        id,
        owner_user_id,
        owner_name: (!owner_name.is_empty()).then(|| owner_name.join(" ")),
        enabled: connection.get("is_enabled").and_then(Value::as_bool).unwrap_or(false),
        can_reply,
    });
}

/// The parts of a message: its media with the caption, its text, its place or card; content kinds we do
/// not show become an unsupported part naming the kind.
fn content(message: &Value) -> Vec<Part> {
    let caption = owned_at(message, "caption");
    let mut parts = Vec::new();
    let media = media(message, caption.clone());
    let has_media = media.is_some();
    parts.extend(media);
    parts.extend(owned_at(message, "text").map(|text| Part::Text { text }));
    parts.extend(place(message));
    if let Some(contact) = message.get("contact") {
        let name = [text_at(contact, "first_name"), text_at(contact, "last_name")].into_iter().flatten();
        parts.push(Part::Contacts {
            contacts: vec![SharedContact {
                name: name.collect::<Vec<_>>().join(" "),
                phones: owned_at(contact, "phone_number").into_iter().collect(),
            }],
        });
    }
    if !has_media && let Some(caption) = caption {
        parts.push(Part::Text { text: caption });
    }
    if parts.is_empty() {
        let kind = message
            .as_object()
            .and_then(|fields| fields.keys().find(|key| !ENVELOPE_FIELDS.contains(&key.as_str())).cloned())
            .unwrap_or_else(|| "empty".to_owned());
        let detail = match kind.as_str() {
            "poll" => owned_at(&message["poll"], "question"),
            "dice" => owned_at(&message["dice"], "emoji"),
            _ => None,
        };
        parts.push(Part::Unsupported { kind, detail });
    }
    parts
}

fn media(message: &Value, caption: Option<String>) -> Option<Part> {
    // A photo comes in several sizes, smallest first; an animation also sets `document` (kept for old
    // clients), so it is looked at first.
    let (kind, file) = if let Some(sizes) = message.get("photo").and_then(Value::as_array) {
        (MediaKind::Image, sizes.last()?)
    } else {
        [
            ("animation", MediaKind::Animation),
            ("video", MediaKind::Video),
            ("video_note", MediaKind::VideoNote),
            ("voice", MediaKind::Voice),
            ("audio", MediaKind::Audio),
            ("sticker", MediaKind::Sticker),
            ("document", MediaKind::Document),
        ]
        .into_iter()
        .find_map(|(field, kind)| message.get(field).map(|file| (kind, file)))?
    };
    Some(Part::Media(Media {
        kind,
        provider_id: super::file_id_at(file, "file_id")?,
        mime_type: owned_at(file, "mime_type"),
        filename: owned_at(file, "file_name"),
        caption,
        size: file.get("file_size").and_then(Value::as_u64),
        emoji: owned_at(file, "emoji"),
    }))
}

fn place(message: &Value) -> Option<Part> {
    let venue = message.get("venue");
    let location = venue.map_or_else(|| message.get("location"), |venue| venue.get("location"))?;
    Some(Part::Location(Location {
        latitude: number_at(location, "latitude")?,
        longitude: number_at(location, "longitude")?,
        name: venue.and_then(|venue| owned_at(venue, "title")),
        address: venue.and_then(|venue| owned_at(venue, "address")),
        url: None,
    }))
}

/// The URL and JSON body of a `sendMessage` call. A handle of a Telegram Business chat
/// (`business:<connection>:<chat id>`) is answered through its connection.
pub fn send_request(config: &TelegramConfig, handle: &str, text: &str) -> (String, serde_json::Value) {
    let url = format!("{}/bot{}/sendMessage", config.api_base_url.trim_end_matches('/'), config.bot_token.expose());
    let (connection, chat_id) = match handle.strip_prefix("business:").and_then(|rest| rest.rsplit_once(':')) {
        Some((connection, chat_id)) => (Some(connection), chat_id),
        None => (None, handle),
    };
    // Chat ids are integers; send them as numbers when they are, as Telegram documents.
    let chat: serde_json::Value = chat_id.parse::<i64>().map(Into::into).unwrap_or_else(|_| chat_id.into());
    let mut body = serde_json::json!({ "chat_id": chat, "text": text });
    if let Some(connection) = connection {
        body["business_connection_id"] = connection.into();
    }
    (url, body)
}

/// The URL and form of a file send (`sendPhoto`, `sendAudio`, `sendVideo`, `sendDocument`), through the
/// business connection for Telegram Business chats.
pub fn file_send_request(
    config: &TelegramConfig,
    handle: &str,
    kind: &str,
    caption: &str,
    bytes: Vec<u8>,
    filename: &str,
    content_type: &str,
) -> Result<(String, reqwest::multipart::Form), reqwest::Error> {
    let (method, field) = match kind {
        "image" => ("sendPhoto", "photo"),
        "audio" => ("sendAudio", "audio"),
        "video" => ("sendVideo", "video"),
        _ => ("sendDocument", "document"),
    };
    let url = format!("{}/bot{}/{method}", config.api_base_url.trim_end_matches('/'), config.bot_token.expose());
    let (connection, chat_id) = match handle.strip_prefix("business:").and_then(|rest| rest.rsplit_once(':')) {
        Some((connection, chat_id)) => (Some(connection), chat_id),
        None => (None, handle),
    };
    let file = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()).mime_str(content_type)?;
    let mut form = reqwest::multipart::Form::new().text("chat_id", chat_id.to_owned()).part(field, file);
    if !caption.is_empty() {
        form = form.text("caption", caption.to_owned());
    }
    if let Some(connection) = connection {
        form = form.text("business_connection_id", connection.to_owned());
    }
    Ok((url, form))
}

/// The message id from a successful `sendMessage` response.
pub fn sent_message_id(response: &serde_json::Value) -> Option<String> {
    response.get("result")?.get("message_id")?.as_i64().map(|id| id.to_string())
}

/// The `retry_after` seconds Telegram puts in the body of a 429.
pub fn retry_after(response: &serde_json::Value) -> Option<u64> {
    response.get("parameters")?.get("retry_after")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_keyed_by_chat_and_message_id() {
        let body =
            br#"{"update_id": 7, "message": {"message_id": 42, "date": 1, "chat": {"id": -100, "type": "private"},
            "from": {"id": 5, "is_bot": false, "first_name": "Giulia", "last_name": "Rossi"}, "text": "Buongiorno"}}"#;
        let parsed = parse(body).expect("valid").messages.pop().expect("a message");
        assert_eq!(parsed.external_id, "-100:42");
        assert_eq!(parsed.handle, "-100");
        assert_eq!(parsed.name.as_deref(), Some("Giulia Rossi"));
        assert_eq!(parsed.text, "Buongiorno");
    }

    #[test]
    fn business_chats_are_keyed_by_connection_and_answered_through_it() {
        let body = br#"{"update_id": 9, "business_message": {"business_connection_id": "AbC:1", "message_id": 3,
            "date": 1, "chat": {"id": 77, "type": "private"}, "from": {"id": 77, "first_name": "Ana"}, "text": "Hola"}}"#;
        let message = parse(body).expect("valid").messages.pop().expect("a message");
        assert_eq!(message.handle, "business:AbC:1:77");
        assert_eq!(message.external_id, "business:AbC:1:77:3");
        let config =
            TelegramConfig { bot_token: "1:AA".into(), secret_token: "s".into(), api_base_url: default_base() };
        let (_, request) = send_request(&config, &message.handle, "Hola!");
        assert_eq!(request, serde_json::json!({ "chat_id": 77, "text": "Hola!", "business_connection_id": "AbC:1" }));
        let (_, request) = send_request(&config, "-100", "x");
        assert_eq!(request, serde_json::json!({ "chat_id": -100, "text": "x" }));

        // The business account's own message in that chat is not the customer's.
        let own = br#"{"update_id": 10, "business_message": {"business_connection_id": "AbC:1", "message_id": 4,
            "date": 1, "chat": {"id": 77, "type": "private"}, "from": {"id": 12, "first_name": "Shop"}, "text": "Hi"}}"#;
        let parsed = parse(own).expect("valid");
        assert!(parsed.messages.is_empty());
        assert_eq!(parsed.ignored, ["business_outgoing"]);
    }

    #[test]
    fn edits_change_the_message_and_service_messages_are_not_customer_messages() {
        let edit = br#"{"update_id": 8, "edited_message": {"message_id": 1, "date": 1, "edit_date": 2,
            "chat": {"id": 3, "type": "private"}, "text": "fixed"}}"#;
        let parsed = parse(edit).expect("valid");
        assert!(parsed.messages.is_empty());
        assert!(
            matches!(&parsed.changes[..], [Change::Edit { target, text, .. }] if target.external_id == "3:1" && text == "fixed")
        );
        let joined = br#"{"update_id": 11, "message": {"message_id": 2, "date": 1, "chat": {"id": -5, "type": "group"},
            "new_chat_members": [{"id": 9, "is_bot": false, "first_name": "X"}]}}"#;
        assert_eq!(parse(joined).expect("valid").ignored, ["service"]);
        let photo =
            br#"{"update_id": 9, "message": {"message_id": 1, "chat": {"id": 3}, "photo": [{"file_id": "a"}]}}"#;
        assert_eq!(parse(photo).expect("valid").messages[0].text, "[photo]");
        assert!(parse(b"{").is_err());
    }

    #[test]
    fn the_secret_header_must_match_exactly() {
        let config =
            TelegramConfig { bot_token: "1:AA".into(), secret_token: "abc".into(), api_base_url: default_base() };
        assert!(config.verify(Some(b"abc")));
        assert!(!config.verify(Some(b"abcd")));
        assert!(!config.verify(None));
    }
}
