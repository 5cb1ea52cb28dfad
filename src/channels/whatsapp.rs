//! WhatsApp Cloud API: webhook payloads (entries x changes x messages and statuses), the
//! `X-Hub-Signature-256` check, and the send-message call.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    AfterUpload, Outgoing, Parsed, ParsedMessage, Secret, Sending, id_at, number_at, owned_at, readable_text, text_at,
};
use crate::domain::{
    Change, ChannelKind, Context, DeliveryState, Invalid, Location, Media, MediaKind, Order, OrderItem, Part, Referral,
    SharedContact, StatusUpdate, Target,
};

/// Default Graph API base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://graph.facebook.com/v21.0";

/// A client's WhatsApp Cloud API settings. Secrets are never returned by the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The Meta app secret: key of the webhook signature.
    pub app_secret: Secret,
    /// The token Meta echoes in the subscription handshake.
    pub verify_token: Secret,
    /// The business phone number id messages are sent from.
    pub phone_number_id: String,
    /// The access token for the Graph API.
    pub access_token: Secret,
    /// The Graph API base URL (a test provider in tests).
    #[serde(default = "default_base")]
    pub api_base_url: String,
}

fn default_base() -> String {
    DEFAULT_API_BASE_URL.to_owned()
}

impl super::ChannelConfig for WhatsAppConfig {
    const KIND: ChannelKind = ChannelKind::WhatsApp;

    /// The values that must never appear in an error, a response or a log line.
    fn secrets(&self) -> Vec<String> {
        [&self.app_secret, &self.verify_token, &self.access_token].map(|secret| secret.expose().to_owned()).to_vec()
    }

    /// Checks the fields (not the credentials themselves, which only Meta can check).
    fn validate(&self, allow_private: bool) -> Result<(), Invalid> {
        for (field, value) in [
            ("app_secret", self.app_secret.expose()),
            ("verify_token", self.verify_token.expose()),
            ("phone_number_id", self.phone_number_id.as_str()),
            ("access_token", self.access_token.expose()),
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
    fn public_view(&self) -> serde_json::Value {
        serde_json::json!({ "phone_number_id": self.phone_number_id, "api_base_url": self.api_base_url })
    }

    fn sent_message_id(answer: &serde_json::Value) -> Option<String> {
        sent_message_id(answer)
    }

    /// Text and templates at once; a file is uploaded first (our files are not on a public URL Meta could
    /// fetch) and sent by the media id the upload answers with.
    fn sending(&self, http: &reqwest::Client, message: Outgoing<'_>) -> Result<Sending, String> {
        let Some(file) = message.file else {
            let (url, body) = send_request(self, message.to, message.text, message.outbox_id, message.template);
            return Ok(Sending::Request(http.post(url).bearer_auth(self.access_token.expose()).json(&body)));
        };
        let (url, form) = upload_request(self, file.bytes, &file.filename, &file.content_type)
            .map_err(|error| format!("the file cannot be sent: {}", error.without_url()))?;
        let upload = http.post(url).bearer_auth(self.access_token.expose()).multipart(form);
        // The continuation keeps the settings themselves, so the token stays in a `Secret` (zeroed on drop).
        let (config, http) = (self.clone(), http.clone());
        let (to, outbox_id, caption) = (message.to.to_owned(), message.outbox_id.to_owned(), message.text.to_owned());
        let then: AfterUpload = Box::new(move |answer| {
            let media_id = uploaded_media_id(answer).ok_or("whatsapp media upload answered without an id")?;
            let (url, body) =
                media_send_request(&config, &to, &outbox_id, file.kind, &media_id, &caption, Some(&file.filename));
            Ok(http.post(url).bearer_auth(config.access_token.expose()).json(&body))
        });
        Ok(Sending::Upload { upload, then })
    }
}

/// The name of the signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Webhook fields (`changes[].field`) other than `messages`, named in the ignored-updates metric.
const OTHER_FIELDS: &[&str] = &[
    "account_alerts",
    "account_review_update",
    "account_update",
    "business_capability_update",
    "business_status_update",
    "calls",
    "flows",
    "history",
    "message_echoes",
    "message_template_components_update",
    "message_template_quality_update",
    "message_template_status_update",
    "phone_number_name_update",
    "phone_number_quality_update",
    "security",
    "smb_app_state_sync",
    "smb_message_echoes",
    "template_category_update",
    "user_id_update",
    "user_preferences",
];

/// Kinds of `messages[]` entries that are not customer messages and carry nothing recado uses.
const IGNORED_MESSAGE_KINDS: &[&str] = &["request_welcome", "system", "malformed"];

/// Parses a webhook body. Only invalid JSON is an error: Meta adds fields and kinds over time, and a batch
/// must never be refused for one entry we do not understand (Meta would retry it, then drop the whole
/// batch). Unknown content is kept as an unsupported part; unknown fields are counted as ignored.
pub fn parse(body: &[u8]) -> Result<Parsed, serde_json::Error> {
    let payload: Value = serde_json::from_slice(body)?;
    let mut parsed = Parsed::default();
    let changes = payload
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|entry| entry.get("changes").and_then(Value::as_array).into_iter().flatten());
    for change in changes {
        let field = text_at(change, "field").unwrap_or_default();
        if field != "messages" {
            parsed.ignored.push(super::ignored_kind(field, OTHER_FIELDS));
            continue;
        }
        let Some(value) = change.get("value") else { continue };
        let contacts: &[Value] = value.get("contacts").and_then(Value::as_array).map_or(&[], Vec::as_slice);
        for message in value.get("messages").and_then(Value::as_array).into_iter().flatten() {
            parse_message(message, contacts, &mut parsed);
        }
        for status in value.get("statuses").and_then(Value::as_array).into_iter().flatten() {
            if let Some(status) = parse_status(status) {
                parsed.statuses.push(status);
            }
        }
    }
    Ok(parsed)
}

/// The sender of a message: the phone number (`from`, `wa_id`) when WhatsApp shares it, else the
/// business-scoped user id (customers with a username may hide their number).
struct Sender {
    handle: String,
    user_id: Option<String>,
    name: Option<String>,
    username: Option<String>,
}

fn sender(message: &Value, contacts: &[Value]) -> Option<Sender> {
    let phone = owned_at(message, "from");
    let user_id = owned_at(message, "from_user_id");
    let contact = contacts
        .iter()
        .find(|contact| {
            (phone.is_some() && text_at(contact, "wa_id") == phone.as_deref())
                || (user_id.is_some() && text_at(contact, "user_id") == user_id.as_deref())
        })
        .or(if contacts.len() == 1 { contacts.first() } else { None });
    let user_id = user_id.or_else(|| contact.and_then(|contact| owned_at(contact, "user_id")));
    let handle =
        phone.or_else(|| contact.and_then(|contact| owned_at(contact, "wa_id"))).or_else(|| user_id.clone())?;
    let profile = contact.and_then(|contact| contact.get("profile"));
    Some(Sender {
        handle,
        user_id,
        name: profile.and_then(|profile| owned_at(profile, "name")),
        username: profile.and_then(|profile| owned_at(profile, "username")),
    })
}

fn parse_message(message: &Value, contacts: &[Value], parsed: &mut Parsed) {
    let (Some(id), Some(sender)) = (owned_at(message, "id"), sender(message, contacts)) else {
        // A system message has no contacts array and, for a user id change, no `from`.
        if text_at(message, "type") == Some("system") {
            parse_system(message, parsed);
        } else {
            parsed.ignored.push("malformed");
        }
        return;
    };
    let kind = text_at(message, "type").unwrap_or("unsupported");
    let target =
        |external_id: String| Target { provider_id: external_id.clone(), external_id, handle: sender.handle.clone() };
    match kind {
        "reaction" => {
            let reaction = &message["reaction"];
            let Some(original) = owned_at(reaction, "message_id") else {
                parsed.ignored.push("malformed");
                return;
            };
            // An empty or missing emoji takes the reaction back.
            let emoji = owned_at(reaction, "emoji");
            parsed.changes.push(Change::Reaction { event_id: id, target: target(original), emoji });
        }
        "edit" => {
            let edit = &message["edit"];
            let Some(original) = owned_at(edit, "original_message_id") else {
                parsed.ignored.push("malformed");
                return;
            };
            let inner = &edit["message"];
            let parts = content(text_at(inner, "type").unwrap_or("unsupported"), inner);
            parsed.changes.push(Change::Edit {
                event_id: id,
                target: target(original),
                text: readable_text(&parts),
                parts,
            });
        }
        "revoke" => match owned_at(&message["revoke"], "original_message_id") {
            Some(original) => parsed.changes.push(Change::Deletion { event_id: id, target: target(original) }),
            None => parsed.ignored.push("malformed"),
        },
        "system" => parse_system(message, parsed),
        "request_welcome" => parsed.ignored.push("request_welcome"),
        _ => {
            let mut parsed_message = ParsedMessage::new(id, sender.handle, content(kind, message));
            parsed_message.name = sender.name;
            parsed_message.user_id = sender.user_id;
            parsed_message.username = sender.username;
            parsed_message.context = context(message);
            parsed.messages.push(parsed_message);
        }
    }
}

/// A customer changed their number or their user id; anything else WhatsApp says about an account is
/// acknowledged and counted.
fn parse_system(message: &Value, parsed: &mut Parsed) {
    let system = &message["system"];
    let id = owned_at(message, "id");
    let change = match (text_at(system, "type"), id) {
        (Some("user_changed_number"), Some(event_id)) => owned_at(message, "from")
            .zip(owned_at(system, "wa_id").or_else(|| owned_at(system, "new_wa_id")))
            .map(|(from, to)| Change::NumberChange { event_id, from, to }),
        (Some("user_changed_user_id"), Some(event_id)) => owned_at(system, "previous_user_id")
            .zip(owned_at(system, "user_id"))
            .map(|(from, to)| Change::UserIdChange { event_id, from, to }),
        _ => None,
    };
    match change {
        Some(change) => parsed.changes.push(change),
        None => parsed.ignored.push(super::ignored_kind("system", IGNORED_MESSAGE_KINDS)),
    }
}

/// The parts of a message of `kind`, whose content is under `message[kind]`.
fn content(kind: &str, message: &Value) -> Vec<Part> {
    let body = &message[kind];
    let part = match kind {
        "text" => text_at(body, "body").map(|text| Part::Text { text: text.to_owned() }),
        "image" | "video" | "audio" | "document" | "sticker" => media(kind, body),
        "location" => location(body),
        "contacts" => Some(Part::Contacts {
            contacts: message["contacts"].as_array().into_iter().flatten().map(shared_contact).collect(),
        }),
        "interactive" => interactive(body),
        "button" => text_at(body, "text").map(|title| Part::Choice {
            title: title.to_owned(),
            id: owned_at(body, "payload"),
            description: None,
        }),
        "order" => Some(order(body)),
        _ => None,
    };
    let part = part.unwrap_or_else(|| Part::Unsupported { kind: kind.to_owned(), detail: error_detail(message) });
    vec![part]
}

fn media(kind: &str, body: &Value) -> Option<Part> {
    let media_kind = match kind {
        "image" => MediaKind::Image,
        "video" => MediaKind::Video,
        "audio" if body.get("voice").and_then(Value::as_bool) == Some(true) => MediaKind::Voice,
        "audio" => MediaKind::Audio,
        "document" => MediaKind::Document,
        _ => MediaKind::Sticker,
    };
    Some(Part::Media(Media {
        kind: media_kind,
        provider_id: super::file_id_at(body, "id")?,
        mime_type: owned_at(body, "mime_type"),
        filename: owned_at(body, "filename"),
        caption: owned_at(body, "caption"),
        size: None,
        emoji: None,
    }))
}

fn location(body: &Value) -> Option<Part> {
    Some(Part::Location(Location {
        latitude: number_at(body, "latitude")?,
        longitude: number_at(body, "longitude")?,
        name: owned_at(body, "name"),
        address: owned_at(body, "address"),
        url: owned_at(body, "url"),
    }))
}

fn shared_contact(card: &Value) -> SharedContact {
    let name = &card["name"];
    let formatted = owned_at(name, "formatted_name").unwrap_or_else(|| {
        [text_at(name, "first_name"), text_at(name, "last_name")].into_iter().flatten().collect::<Vec<_>>().join(" ")
    });
    let phones = card["phones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|phone| owned_at(phone, "phone").or_else(|| owned_at(phone, "wa_id")))
        .collect();
    SharedContact { name: formatted, phones }
}

fn interactive(body: &Value) -> Option<Part> {
    if let Some(reply) = ["button_reply", "list_reply"].iter().find_map(|key| body.get(*key)) {
        return Some(Part::Choice {
            title: owned_at(reply, "title")?,
            id: owned_at(reply, "id"),
            description: owned_at(reply, "description"),
        });
    }
    // A WhatsApp Flow's answers: the form's fields arrive as JSON text.
    let flow = body.get("nfm_reply")?;
    Some(Part::Choice {
        title: owned_at(flow, "body").unwrap_or_else(|| "Form sent".to_owned()),
        id: owned_at(flow, "name"),
        description: owned_at(flow, "response_json"),
    })
}

fn order(body: &Value) -> Part {
    let items = body["product_items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            Some(OrderItem {
                product_id: owned_at(item, "product_retailer_id")?,
                quantity: number_at(item, "quantity").unwrap_or(1.0),
                price: number_at(item, "item_price"),
                currency: owned_at(item, "currency"),
            })
        })
        .collect();
    Part::Order(Order { catalog_id: owned_at(body, "catalog_id"), items, note: owned_at(body, "text") })
}

/// The title (and details) of the first error Meta attached to a message it could not deliver whole.
fn error_detail(message: &Value) -> Option<String> {
    let error = message.get("errors").and_then(Value::as_array).and_then(|errors| errors.first())?;
    let title = owned_at(error, "title").or_else(|| owned_at(error, "message"))?;
    Some(match error.get("error_data").and_then(|data| owned_at(data, "details")) {
        Some(details) if details != title => format!("{title} ({details})"),
        _ => title,
    })
}

fn context(message: &Value) -> Context {
    let context = &message["context"];
    let referral = message.get("referral").map(|referral| Referral {
        source_type: owned_at(referral, "source_type"),
        source_id: owned_at(referral, "source_id"),
        source_url: owned_at(referral, "source_url"),
        headline: owned_at(referral, "headline"),
        body: owned_at(referral, "body"),
    });
    Context {
        // `context.id` is the quoted message; a forwarded message has no id.
        reply_to: owned_at(context, "id"),
        forwarded: context.get("forwarded").and_then(Value::as_bool).unwrap_or(false),
        frequently_forwarded: context.get("frequently_forwarded").and_then(Value::as_bool).unwrap_or(false),
        referral,
    }
}

fn parse_status(status: &Value) -> Option<StatusUpdate> {
    let state = match text_at(status, "status")? {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" => DeliveryState::Failed,
        _ => return None,
    };
    let errors: Vec<String> = status
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|error| {
            let code = id_at(error, "code").unwrap_or_else(|| "?".to_owned());
            let title = owned_at(error, "title").or_else(|| owned_at(error, "message")).unwrap_or_default();
            match error.get("error_data").and_then(|data| owned_at(data, "details")) {
                Some(details) if details != title => format!("{code} {title}: {details}"),
                _ => format!("{code} {title}"),
            }
        })
        .collect();
    Some(StatusUpdate {
        outbox_id: owned_at(status, "biz_opaque_callback_data"),
        provider_message_id: owned_at(status, "id")?,
        state,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    })
}

/// Returns true if and only if `handle` is a business-scoped user id (`US.13491208655302741918`), not a
/// phone number: a customer whose number WhatsApp does not share.
pub fn is_user_id(handle: &str) -> bool {
    handle.contains('.')
}

/// The URL and JSON body of a send: text, or an approved template. A customer known only by a
/// business-scoped user id is addressed by `recipient`; a phone number by `to`.
pub fn send_request(
    config: &WhatsAppConfig,
    recipient: &str,
    text: &str,
    outbox_id: &str,
    template: Option<(&str, &str, &[String])>,
) -> (String, serde_json::Value) {
    let url = format!("{}/{}/messages", config.api_base_url.trim_end_matches('/'), config.phone_number_id);
    let mut body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "biz_opaque_callback_data": outbox_id,
    });
    match template {
        Some((name, language, parameters)) => {
            let mut template = serde_json::json!({ "name": name, "language": { "code": language } });
            if !parameters.is_empty() {
                let parameters: Vec<serde_json::Value> = parameters
                    .iter()
                    .map(|parameter| serde_json::json!({ "type": "text", "text": parameter }))
                    .collect();
                template["components"] = serde_json::json!([{ "type": "body", "parameters": parameters }]);
            }
            body["type"] = "template".into();
            body["template"] = template;
        }
        None => {
            body["type"] = "text".into();
            body["text"] = serde_json::json!({ "preview_url": false, "body": text });
        }
    }
    let address = if is_user_id(recipient) { "recipient" } else { "to" };
    body[address] = recipient.into();
    (url, body)
}

/// The URL and form of a media upload (`POST /{phone-number-id}/media`), whose answer's `id` a send then
/// names: our files are not on a public URL Meta could fetch.
pub fn upload_request(
    config: &WhatsAppConfig,
    bytes: Vec<u8>,
    filename: &str,
    content_type: &str,
) -> Result<(String, reqwest::multipart::Form), reqwest::Error> {
    let url = format!("{}/{}/media", config.api_base_url.trim_end_matches('/'), config.phone_number_id);
    let file = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()).mime_str(content_type)?;
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", content_type.to_owned())
        .part("file", file);
    Ok((url, form))
}

/// The body of a media send, once uploaded: `kind` is `image`, `audio`, `video` or `document`; audio takes
/// no caption, documents keep their file name.
pub fn media_send_request(
    config: &WhatsAppConfig,
    recipient: &str,
    outbox_id: &str,
    kind: &str,
    media_id: &str,
    caption: &str,
    filename: Option<&str>,
) -> (String, serde_json::Value) {
    let url = format!("{}/{}/messages", config.api_base_url.trim_end_matches('/'), config.phone_number_id);
    let mut media = serde_json::json!({ "id": media_id });
    if kind != "audio" && !caption.is_empty() {
        media["caption"] = caption.into();
    }
    if let (Some(filename), "document") = (filename, kind) {
        media["filename"] = filename.into();
    }
    let mut body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": kind,
        "biz_opaque_callback_data": outbox_id,
    });
    body[kind] = media;
    let address = if is_user_id(recipient) { "recipient" } else { "to" };
    body[address] = recipient.into();
    (url, body)
}

/// The media id from a successful upload response.
pub fn uploaded_media_id(response: &serde_json::Value) -> Option<String> {
    response.get("id")?.as_str().map(str::to_owned)
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
        assert_eq!(parsed.messages[1].text, "[photo]");
        assert_eq!(parsed.messages[2].name, None);
        assert_eq!(parsed.statuses.len(), 1);
        assert_eq!(parsed.statuses[0].state, DeliveryState::Read);
        assert_eq!(parsed.statuses[0].outbox_id.as_deref(), Some("obx_1"));
    }

    #[test]
    fn a_media_id_that_is_not_a_providers_id_never_becomes_a_file() {
        for id in
            ["sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9", "http://10.0.0.1/x", "a/b"]
        {
            let body = serde_json::json!({ "entry": [{ "changes": [{ "field": "messages", "value": { "messages": [
                { "id": "wamid.1", "from": "34600111222", "type": "image", "image": { "id": id, "caption": "hola" } }] } }] }] });
            let parsed = parse(body.to_string().as_bytes()).expect("valid");
            let parts = &parsed.messages[0].parts;
            assert!(matches!(&parts[..], [Part::Unsupported { kind, .. }] if kind == "image"), "{id}: {parts:?}");
        }
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
        let (url, body) = send_request(&config, "34600111222", "Hola", "obx_9", None);
        assert_eq!(url, "http://127.0.0.1:9/v21.0/1234/messages");
        assert_eq!(body["biz_opaque_callback_data"], "obx_9");
        assert_eq!(body["text"]["body"], "Hola");
        assert_eq!(body["to"], "34600111222");
        // A customer known only by a business-scoped user id is addressed by it.
        let (_, body) = send_request(&config, "US.13491208655302741918", "Hola", "obx_9", None);
        assert_eq!(body["recipient"], "US.13491208655302741918");
        assert!(body.get("to").is_none());
        let parameters = ["Núria".to_owned(), "10:30".to_owned()];
        let (_, body) = send_request(&config, "34600111222", "x", "obx_9", Some(("reminder", "es", &parameters)));
        assert_eq!(body["type"], "template");
        assert_eq!(
            body["template"],
            serde_json::json!({ "name": "reminder", "language": { "code": "es" }, "components": [{ "type": "body",
                "parameters": [{ "type": "text", "text": "Núria" }, { "type": "text", "text": "10:30" }] }] })
        );
        assert!(body.get("text").is_none());
        let response = serde_json::json!({ "messages": [{ "id": "wamid.X" }] });
        assert_eq!(sent_message_id(&response).as_deref(), Some("wamid.X"));
    }
}
