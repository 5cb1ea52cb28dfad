//! Messages, conversations' small enums and the roles of API callers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ClientSlug, Context, Invalid, Part, Timestamp};

/// The channel a contact writes on: `whatsapp`, `telegram`, `api` (the generic JSON API) or another label
/// a client's own integration chooses. Part of the dedupe key, so a WhatsApp id never collides with a
/// Telegram one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// How long after the customer's last message a free-form reply may be sent on `channel`, if the
    /// channel limits it: WhatsApp's customer service window is 24 hours; after it only approved templates
    /// are delivered (Meta error 131047).
    pub fn reply_window(&self) -> Option<std::time::Duration> {
        (self.0 == Self::WHATSAPP).then_some(std::time::Duration::from_secs(24 * 3600))
    }

    /// WhatsApp Cloud API.
    pub const WHATSAPP: &str = "whatsapp";
    /// Telegram Bot API.
    pub const TELEGRAM: &str = "telegram";
    /// The generic JSON API, when the caller names no channel.
    pub const API: &str = "api";

    /// Parses a channel label (`[a-z0-9_-]`, at most 32 characters).
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        super::parse_label("channel", value, 32).map(Self)
    }

    /// A built-in channel name.
    pub fn known(name: &'static str) -> Self {
        Self(name.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ChannelName {
    type Err = Invalid;
    fn from_str(value: &str) -> Result<Self, Invalid> {
        Self::parse(value)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer message as received from any channel, normalised, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The client it was sent to.
    pub client: ClientSlug,
    /// The channel it arrived on.
    pub channel: ChannelName,
    /// The provider's id of the message, unique per client and channel: the dedupe key.
    pub external_id: String,
    /// The sender's handle on the channel (phone number, chat id, e-mail...).
    pub handle: String,
    /// The sender's display name, when the channel gives one.
    pub name: Option<String>,
    /// The readable text (see [`super::readable_text`]).
    pub text: String,
    /// What the message is made of; empty for a plain text message.
    pub parts: Vec<Part>,
    /// What it answers, whether it was forwarded, the ad it came from.
    pub context: Context,
    /// The channel's stable id of the sender when the handle is something else (WhatsApp's business-scoped
    /// user id beside the phone number).
    pub user_id: Option<String>,
    /// The sender's public username on the channel.
    pub username: Option<String>,
    /// When we received it.
    pub received_at: Timestamp,
}

impl InboundMessage {
    /// Longest message text we store, in characters. WhatsApp allows 4,096 and Telegram 4,096; the generic API
    /// gets some headroom.
    pub const MAX_TEXT_CHARS: usize = 16_384;
    /// Longest external id or handle.
    pub const MAX_ID_LEN: usize = 256;
    /// Most parts in one message (a WhatsApp contacts message may carry many cards).
    pub const MAX_PARTS: usize = 64;

    /// Cuts what is longer than we store (text, name, parts) instead of refusing it: for provider webhooks,
    /// whose batches must not be refused for one message.
    pub fn fit(&mut self) {
        if let Some((cut, _)) = self.text.char_indices().nth(Self::MAX_TEXT_CHARS - 1) {
            self.text.truncate(cut);
            self.text.push('…');
        }
        if let Some(name) = &mut self.name
            && let Some((cut, _)) = name.char_indices().nth(200)
        {
            name.truncate(cut);
        }
        self.parts.truncate(Self::MAX_PARTS);
    }

    /// Validates the fields that come from outside.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.external_id.is_empty() || self.external_id.len() > Self::MAX_ID_LEN {
            return Err(Invalid::new("external_id", "must be 1 to 256 bytes"));
        }
        if self.handle.trim().is_empty() || self.handle.len() > Self::MAX_ID_LEN {
            return Err(Invalid::new("from.handle", "must be 1 to 256 bytes"));
        }
        if self.name.as_ref().is_some_and(|name| name.chars().count() > 200) {
            return Err(Invalid::new("from.name", "must be at most 200 characters"));
        }
        if self.text.chars().count() > Self::MAX_TEXT_CHARS {
            return Err(Invalid::new("text", format!("must be at most {} characters", Self::MAX_TEXT_CHARS)));
        }
        if self.parts.len() > Self::MAX_PARTS {
            return Err(Invalid::new("parts", format!("must be at most {}", Self::MAX_PARTS)));
        }
        for (field, value) in [("from.user_id", &self.user_id), ("from.username", &self.username)] {
            if value.as_ref().is_some_and(|value| value.is_empty() || value.len() > Self::MAX_ID_LEN) {
                return Err(Invalid::new(field, "must be 1 to 256 bytes"));
            }
        }
        Ok(())
    }
}

/// Defines a small string enum with `as_str`, `FromStr`, `Display` and serde as its lowercase names.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        /// In the API document: one of the names it is written as.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl $name {
            /// The stored and displayed name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(value: &str) -> Result<Self, Invalid> {
                match value {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(Invalid::new(
                        stringify!($name),
                        format!("{value:?} is not one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Whether a message came from the customer or went to them.
    Direction { In => "in", Out => "out" }
);

text_enum!(
    /// Who produced a message.
    MessageKind {
        /// The customer wrote it.
        Customer => "customer",
        /// An automatic acknowledgement (does not stop the first-response clock).
        AutoAck => "auto_ack",
        /// A person answered.
        Assistant => "assistant",
        /// A note produced by recado itself.
        System => "system",
        /// A notice to the client's escalation contact about this conversation (not sent to the customer).
        OwnerNotice => "owner_notice",
    }
);

text_enum!(
    /// Where an uploaded plugin version stands in its client's chain.
    PluginState {
        /// Uploaded, not running.
        Inactive => "inactive",
        /// Runs on live traffic; its decisions are stored, not applied.
        Shadow => "shadow",
        /// Runs on live traffic; its decisions are merged and applied.
        Active => "active",
        /// Stopped, by a person or by the circuit breaker.
        Disabled => "disabled",
    }
);

text_enum!(
    /// The delivery state of an outbound message, as far as we know it.
    DeliveryState {
        /// Waiting in the outbox (first attempt or a retry).
        Pending => "pending",
        /// Handed to the provider; the outcome is not recorded yet.
        Sending => "sending",
        /// The provider accepted it.
        Sent => "sent",
        /// The provider reports it reached the device.
        Delivered => "delivered",
        /// The provider reports the customer read it.
        Read => "read",
        /// The provider reports it could not be delivered.
        Failed => "failed",
        /// We gave up after the allowed attempts, or the provider refused it for good.
        Dead => "dead",
    }
);

impl DeliveryState {
    /// Rank used to keep provider status updates monotonic (a late "delivered" never undoes "read").
    pub fn rank(self) -> u8 {
        match self {
            Self::Pending | Self::Sending => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed | Self::Dead => 4,
        }
    }
}

text_enum!(
    /// A configured way of sending messages out for a client.
    ChannelKind {
        /// WhatsApp Cloud API.
        WhatsApp => "whatsapp",
        /// Telegram Bot API.
        Telegram => "telegram",
        /// A signed HTTP POST to the client's own endpoint.
        Webhook => "webhook",
    }
);

text_enum!(
    /// Where a conversation's first-response clock stands.
    SlaState {
        /// Started by a customer message; no person has answered.
        Running => "running",
        /// Past the warning point, not yet due.
        Warned => "warned",
        /// Past due; `on-overdue` ran.
        Overdue => "overdue",
        /// A person answered in time.
        Met => "met",
        /// A person answered after it was due.
        MetLate => "met_late",
        /// Closed before anyone answered: nobody is waiting any more.
        Stopped => "stopped",
    }
);

text_enum!(
    /// Where a stored message stands in processing.
    MessageState {
        /// An inbound message waiting for its client's rules.
        Received => "received",
        /// An inbound message the rules have decided on.
        Processed => "processed",
        /// An outbound message handed to the outbox (its delivery says the rest).
        Queued => "queued",
        /// A note in the thread that is never sent.
        Noted => "noted",
    }
);

text_enum!(
    /// Where a media file's download stands.
    MediaState {
        /// Waiting for a download attempt.
        Pending => "pending",
        /// Claimed by a worker.
        Fetching => "fetching",
        /// Kept in the blob store.
        Stored => "stored",
        /// Given up on (the reason is kept); a person may retry.
        Failed => "failed",
    }
);

text_enum!(
    /// The hook of a rule plugin a run called.
    HookKind {
        /// A customer message arrived.
        OnMessage => "on-message",
        /// A conversation's first-response clock ran out.
        OnOverdue => "on-overdue",
    }
);

text_enum!(
    /// The level of a plugin's log line.
    LogLevel { Trace => "trace", Debug => "debug", Info => "info", Warn => "warn", Error => "error" }
);

/// A line a plugin logged during a run (cut to the host's limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// How important the plugin said it was.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

text_enum!(
    /// Conversation priority.
    Priority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" }
);

text_enum!(
    /// Whether a conversation still needs attention.
    ConversationStatus { Open => "open", Closed => "closed" }
);

text_enum!(
    /// What an API token may do.
    Role {
        /// Everything, for every client.
        Admin => "admin",
        /// Conversations and replies for every client; read-only client cards.
        Assistant => "assistant",
        /// Only its own client's data.
        Client => "client",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip_and_list_choices_on_error() {
        assert_eq!("auto_ack".parse::<MessageKind>().expect("known"), MessageKind::AutoAck);
        assert_eq!(MessageKind::AutoAck.to_string(), "auto_ack");
        let error = "boss".parse::<Role>().expect_err("unknown");
        assert!(error.message.contains("admin, assistant, client"), "{error}");
    }

    #[test]
    fn delivery_ranks_never_go_back_from_read() {
        assert!(DeliveryState::Read.rank() > DeliveryState::Delivered.rank());
        assert!(DeliveryState::Delivered.rank() > DeliveryState::Sent.rank());
    }
}
