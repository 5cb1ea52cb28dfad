//! WhatsApp Cloud API: webhook payloads (entries x changes x messages and statuses), the
//! `X-Hub-Signature-256` check, and the send-message call.

use serde::{Deserialize, Serialize};

use super::ParsedMessage;
use crate::domain::{DeliveryState, Invalid};
use crate::store::StatusUpdate;

/// Default Graph API base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://graph.facebook.com/v21.0";

/// A client's WhatsApp Cloud API settings. Secrets are never returned by the API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The Meta app secret: key of the webhook signature.
    pub app_secret: String,
    /// The token Meta echoes in the subscription handshake.
    pub verify_token: String,
    /// The business phone number id messages are sent from.
    pub phone_number_id: String,
    /// The access token for the Graph API.
    pub access_token: String,
    /// The Graph API base URL (a test provider in tests).
    #[serde(default = "default_base")]
    pub api_base_url: String,
}

fn default_base() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

impl std::fmt::Debug for WhatsAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppConfig")
            .field("app_secret", &super::REDACTED)
            .field("verify_token", &super::REDACTED)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &super::REDACTED)
            .field("api_base_url", &self.api_base_url)
            .finish()
    }
}

impl WhatsAppConfig {
    /// The values that must never appear in an error, a response or a log line.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.app_secret.clone(), self.verify_token.clone(), self.access_token.clone()]
    }

    /// Checks the fields (not the credentials themselves, which only Meta can check).
    pub fn validate(&self, allow_private: bool) -> Result<(), Invalid> {
        for (field, value) in [
            ("app_secret", &self.app_secret),
            ("verify_token", &self.verify_token),
            ("phone_number_id", &self.phone_number_id),
            ("access_token", &self.access_token),
        ] {
            if value.trim().is_empty() || value.len() > 1024 {
                return Err(Invalid::new(field, "must be 1 to 1024 characters"));
            }
        }
        // Both are checked by comparison with what a caller sends: short ones could be guessed.
        for (field, value) in [("app_secret", &self.app_secret), ("verify_token", &self.verify_token)] {
            if value.len() < super::MIN_SECRET_LEN {
                return Err(Invalid::new(field, format!("must be at least {} characters", super::MIN_SECRET_LEN)));
            }
        }
        if !self.phone_number_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Invalid::new("phone_number_id", "must be letters and digits only"));
        }
        super::validate_target_url("api_base_url", &self.api_base_url, allow_private)
    }

    /// What the API shows of these settings: no secrets.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({ "phone_number_id": self.phone_number_id, "api_base_url": self.api_base_url })
    }
}

/// The name of the signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize, Default)]
struct Value {
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Contact {
    wa_id: String,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    id: String,
    from: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    button: Option<Button>,
    #[serde(default)]
    interactive: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Text {
    body: String,
}

#[derive(Deserialize)]
struct Button {
    text: String,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// What one webhook call carried.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Customer messages.
    pub messages: Vec<ParsedMessage>,
    /// Delivery reports on our messages.
    pub statuses: Vec<StatusUpdate>,
}

/// Parses a webhook body. Unknown fields and change kinds are ignored (Meta adds them over time); content we
/// cannot show as text is stored as a description, so the assistant still sees that something arrived.
pub fn parse(body: &[u8]) -> Result<Parsed, serde_json::Error> {
    let payload: Payload = serde_json::from_slice(body)?;
    let mut parsed = Parsed::default();
    for change in payload.entry.into_iter().flat_map(|entry| entry.changes) {
        if change.field != "messages" {
            continue;
        }
        let value = change.value;
        for message in value.messages {
            let name = value
                .contacts
                .iter()
                .find(|contact| contact.wa_id == message.from)
                .and_then(|contact| contact.profile.as_ref())
                .and_then(|profile| profile.name.clone());
            let text = match (&message.text, &message.button, &message.interactive) {
                (Some(text), _, _) => text.body.clone(),
                (None, Some(button), _) => button.text.clone(),
                (None, None, Some(interactive)) => interactive_title(interactive),
                _ => format!("[{} message]", if message.kind.is_empty() { "unsupported" } else { &message.kind }),
            };
            parsed.messages.push(ParsedMessage { external_id: message.id, handle: message.from, name, text });
        }
        for status in value.statuses {
            let state = match status.status.as_str() {
                "sent" => DeliveryState::Sent,
                "delivered" => DeliveryState::Delivered,
                "read" => DeliveryState::Read,
                "failed" => DeliveryState::Failed,
                _ => continue,
            };
            let error = (!status.errors.is_empty()).then(|| serde_json::Value::Array(status.errors).to_string());
            parsed.statuses.push(StatusUpdate {
                outbox_id: status.biz_opaque_callback_data,
                provider_message_id: status.id,
                state,
                error,
            });
        }
    }
    Ok(parsed)
}

/// The title of a button or list reply.
fn interactive_title(interactive: &serde_json::Value) -> String {
    ["button_reply", "list_reply"]
        .iter()
        .find_map(|key| interactive.get(key)?.get("title")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "[interactive message]".to_owned())
}

/// The URL and JSON body of a text send.
pub fn send_request(
    config: &WhatsAppConfig,
    recipient: &str,
    text: &str,
    outbox_id: &str,
) -> (String, serde_json::Value) {
    let url = format!("{}/{}/messages", config.api_base_url.trim_end_matches('/'), config.phone_number_id);
    let body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient,
        "type": "text",
        "text": { "preview_url": false, "body": text },
        "biz_opaque_callback_data": outbox_id,
    });
    (url, body)
}

/// The message id (`wamid...`) from a successful send response.
pub fn sent_message_id(response: &serde_json::Value) -> Option<String> {
    response.get("messages")?.get(0)?.get("id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_messages_and_statuses_are_all_extracted() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [
                { "id": "WABA", "changes": [
                    { "field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "contacts": [{ "wa_id": "34600111222", "profile": { "name": "Núria" } }],
                        "messages": [
                            { "id": "wamid.1", "from": "34600111222", "timestamp": "1", "type": "text", "text": { "body": "Hola!" } },
                            { "id": "wamid.2", "from": "34600111222", "timestamp": "2", "type": "image", "image": { "id": "x" } }
                        ]
                    }},
                    { "field": "account_update", "value": {} }
                ]},
                { "id": "WABA", "changes": [
                    { "field": "messages", "value": {
                        "statuses": [{ "id": "wamid.out", "status": "read", "biz_opaque_callback_data": "obx_1" }],
                        "messages": [{ "id": "wamid.3", "from": "34600999888", "type": "text", "text": { "body": "Bon dia" } }]
                    }}
                ]}
            ]
        });
        let parsed = parse(body.to_string().as_bytes()).expect("valid");
        let ids: Vec<_> = parsed.messages.iter().map(|m| m.external_id.as_str()).collect();
        assert_eq!(ids, ["wamid.1", "wamid.2", "wamid.3"]);
        assert_eq!(parsed.messages[0].name.as_deref(), Some("Núria"));
        assert_eq!(parsed.messages[1].text, "[image message]");
        assert_eq!(parsed.messages[2].name, None);
        assert_eq!(parsed.statuses.len(), 1);
        assert_eq!(parsed.statuses[0].state, DeliveryState::Read);
        assert_eq!(parsed.statuses[0].outbox_id.as_deref(), Some("obx_1"));
    }

    #[test]
    fn send_requests_carry_the_outbox_id_for_status_callbacks() {
        let config = WhatsAppConfig {
            app_secret: "a".into(),
            verify_token: "v".into(),
            phone_number_id: "1234".into(),
            access_token: "t".into(),
            api_base_url: "http://127.0.0.1:9/v21.0/".into(),
        };
        let (url, body) = send_request(&config, "34600111222", "Hola", "obx_9");
        assert_eq!(url, "http://127.0.0.1:9/v21.0/1234/messages");
        assert_eq!(body["biz_opaque_callback_data"], "obx_9");
        assert_eq!(body["text"]["body"], "Hola");
        let response = serde_json::json!({ "messages": [{ "id": "wamid.X" }] });
        assert_eq!(sent_message_id(&response).as_deref(), Some("wamid.X"));
    }
}
