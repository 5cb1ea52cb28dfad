//! The generic outbound webhook: a client's own endpoint receives our outbound messages as signed JSON.
//!
//! Each POST carries `X-Recado-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>` and
//! `Idempotency-Key: <outbox id>`, so the receiver can verify it and drop the rare repeat after a crash.

use serde::{Deserialize, Serialize};

use super::{Outgoing, Secret, Sending};
use crate::domain::{ChannelKind, Invalid};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-recado-signature-256";

/// A client's webhook settings. The secret is never returned by the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where outbound messages are POSTed.
    pub url: String,
    /// The HMAC key of the signature header.
    pub secret: Secret,
}

impl super::ChannelConfig for WebhookConfig {
    const KIND: ChannelKind = ChannelKind::Webhook;

    /// The values that must never appear in an error, a response or a log line.
    fn secrets(&self) -> Vec<String> {
        vec![self.secret.expose().to_owned()]
    }

    /// Checks the fields.
    fn validate(&self, allow_private: bool) -> Result<(), Invalid> {
        if self.secret.len() < super::MIN_SECRET_LEN || self.secret.len() > 1024 {
            return Err(Invalid::new("secret", format!("must be {} to 1024 characters", super::MIN_SECRET_LEN)));
        }
        super::validate_target_url("url", &self.url, allow_private)
    }

    /// What the API shows of these settings: no secret.
    fn public_view(&self) -> serde_json::Value {
        serde_json::json!({ "url": self.url })
    }

    /// The message as signed JSON, a file inline (base64), the outbox id as the idempotency key.
    fn sending(&self, http: &reqwest::Client, message: Outgoing<'_>) -> Result<Sending, String> {
        use base64::Engine as _;
        let payload = OutboundPayload {
            message: &message,
            attachment: message.file.as_ref().map(|file| Attachment {
                kind: file.kind,
                filename: Some(file.filename.as_str()),
                content_type: &file.content_type,
                size: file.bytes.len() as u64,
                sha256: &file.sha256,
                data_base64: base64::engine::general_purpose::STANDARD.encode(&file.bytes),
            }),
        };
        let body = serde_json::to_vec(&payload).map_err(|error| format!("cannot encode the payload: {error}"))?;
        let signature = format!("sha256={}", super::hmac_sha256_hex(self.secret.expose(), &body));
        Ok(Sending::Request(
            http.post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .header("idempotency-key", message.outbox_id)
                .body(body),
        ))
    }
}

/// The JSON body sent for one outbound message: the message's common fields (`outbox_id`, `message_id`,
/// `conversation_id`, `client`, `kind`, `to`, `text`) and the attached file, if any, inline.
#[derive(Debug, Serialize)]
pub struct OutboundPayload<'a> {
    /// The message.
    #[serde(flatten)]
    pub message: &'a Outgoing<'a>,
    /// The attached file, if any, inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment<'a>>,
}

/// A file sent with an outbound message, inline in the webhook's JSON.
#[derive(Debug, Serialize)]
pub struct Attachment<'a> {
    /// `image`, `audio`, `video` or `document`.
    pub kind: &'a str,
    /// The file's name.
    pub filename: Option<&'a str>,
    /// Its type.
    pub content_type: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: &'a str,
    /// The bytes, base64 (standard alphabet, padded).
    pub data_base64: String,
}
