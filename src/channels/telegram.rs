//! Telegram Bot API: the `Update` webhook, its secret-token header, and `sendMessage`.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::ParsedMessage;
use crate::domain::Invalid;

/// Default Bot API base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://api.telegram.org";

/// The header carrying the secret token set with `setWebhook`.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// A client's Telegram bot settings. Secrets are never returned by the API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from BotFather.
    pub bot_token: String,
    /// The `secret_token` given to `setWebhook`; Telegram sends it in every webhook call.
    pub secret_token: String,
    /// The Bot API base URL (a test provider in tests).
    #[serde(default = "default_base")]
    pub api_base_url: String,
}

fn default_base() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("bot_token", &super::REDACTED)
            .field("secret_token", &super::REDACTED)
            .field("api_base_url", &self.api_base_url)
            .finish()
    }
}

impl TelegramConfig {
    /// The values that must never appear in an error, a response or a log line.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.bot_token.clone(), self.secret_token.clone()]
    }

    /// Checks the fields.
    pub fn validate(&self, allow_private: bool) -> Result<(), Invalid> {
        if self.bot_token.trim().is_empty() || self.bot_token.len() > 256 || self.bot_token.contains('/') {
            return Err(Invalid::new("bot_token", "must be 1 to 256 characters without '/'"));
        }
        // Telegram allows 1-256 characters of A-Z, a-z, 0-9, '_' and '-' for secret_token; a short one could be
        // guessed, so we ask for at least MIN_SECRET_LEN.
        let valid_secret = (super::MIN_SECRET_LEN..=256).contains(&self.secret_token.len())
            && self.secret_token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_secret {
            return Err(Invalid::new(
                "secret_token",
                format!("must be {} to 256 of A-Z, a-z, 0-9, '_' and '-'", super::MIN_SECRET_LEN),
            ));
        }
        super::validate_target_url("api_base_url", &self.api_base_url, allow_private)
    }

    /// What the API shows of these settings: no secrets.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({ "api_base_url": self.api_base_url })
    }

    /// Returns true if and only if `header` equals the configured secret (constant-time).
    pub fn verify(&self, header: Option<&[u8]>) -> bool {
        header.is_some_and(|value| bool::from(value.ct_eq(self.secret_token.as_bytes())))
    }
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    chat: Chat,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

/// Content kinds we name when a message has no text.
const CONTENT_KINDS: &[&str] =
    &["photo", "voice", "audio", "video", "document", "sticker", "location", "contact", "video_note"];

/// Parses an `Update`. Returns `Ok(None)` for updates that carry no new message (edits, callbacks...),
/// which are acknowledged and ignored.
///
/// The external id is `<chat id>:<message id>`: message ids are only unique within a chat.
pub fn parse(body: &[u8]) -> Result<Option<ParsedMessage>, serde_json::Error> {
    let update: Update = serde_json::from_slice(body)?;
    let _ = update.update_id;
    let Some(message) = update.message else { return Ok(None) };
    let name = message.from.as_ref().and_then(|user| {
        let full: Vec<&str> = [user.first_name.as_deref(), user.last_name.as_deref()].into_iter().flatten().collect();
        if full.is_empty() { user.username.clone() } else { Some(full.join(" ")) }
    });
    let text = match (message.text, message.caption) {
        (Some(text), _) => text,
        (None, Some(caption)) => caption,
        (None, None) => {
            let kind = CONTENT_KINDS.iter().find(|kind| message.rest.contains_key(**kind)).unwrap_or(&"unsupported");
            format!("[{kind} message]")
        }
    };
    Ok(Some(ParsedMessage {
        external_id: format!("{}:{}", message.chat.id, message.message_id),
        handle: message.chat.id.to_string(),
        name,
        text,
    }))
}

/// The URL and JSON body of a `sendMessage` call.
pub fn send_request(config: &TelegramConfig, chat_id: &str, text: &str) -> (String, serde_json::Value) {
    let url = format!("{}/bot{}/sendMessage", config.api_base_url.trim_end_matches('/'), config.bot_token);
    // Chat ids are integers; send them as numbers when they are, as Telegram documents.
    let chat: serde_json::Value = chat_id.parse::<i64>().map(Into::into).unwrap_or_else(|_| chat_id.into());
    (url, serde_json::json!({ "chat_id": chat, "text": text }))
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
        let parsed = parse(body).expect("valid").expect("a message");
        assert_eq!(parsed.external_id, "-100:42");
        assert_eq!(parsed.handle, "-100");
        assert_eq!(parsed.name.as_deref(), Some("Giulia Rossi"));
        assert_eq!(parsed.text, "Buongiorno");
    }

    #[test]
    fn updates_without_a_message_are_ignored_and_media_is_described() {
        assert_eq!(parse(br#"{"update_id": 8, "edited_message": {}}"#).expect("valid"), None);
        let photo = br#"{"update_id": 9, "message": {"message_id": 1, "chat": {"id": 3}, "photo": []}}"#;
        assert_eq!(parse(photo).expect("valid").expect("a message").text, "[photo message]");
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
