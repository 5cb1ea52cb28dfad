//! The generic outbound webhook: a client's own endpoint receives our outbound messages as signed JSON.
//!
//! Each POST carries `X-Recado-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>` and
//! `Idempotency-Key: <outbox id>`, so the receiver can verify it and drop the rare repeat after a crash.

use serde::{Deserialize, Serialize};

use super::Secret;
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
}

/// The JSON body sent for one outbound message.
#[derive(Debug, Serialize)]
pub struct OutboundPayload<'a> {
    /// The outbox id (also the idempotency key).
    pub outbox_id: &'a str,
    /// The message id.
    pub message_id: &'a str,
    /// The conversation id.
    pub conversation_id: &'a str,
    /// The client slug.
    pub client: &'a str,
    /// `assistant`, `auto_ack` or `system`.
    pub kind: &'a str,
    /// The recipient's handle.
    pub to: &'a str,
    /// The text (an attachment's caption).
    pub text: &'a str,
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
