//! What channels report besides new messages: changes to stored messages and contacts (edits, reactions,
//! deletions, identity changes, Telegram Business connections) and delivery statuses of our messages.
//! Parsed from provider payloads by `channels`, applied by the store.

use super::{DeliveryState, Part};

/// A provider's report on one of our outbound messages (WhatsApp `statuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// Our outbox id, when the provider echoes it back (WhatsApp `biz_opaque_callback_data`).
    pub outbox_id: Option<String>,
    /// The provider's id of the message.
    pub provider_message_id: String,
    /// The new state.
    pub state: DeliveryState,
    /// The provider's error text, for failures.
    pub error: Option<String>,
}

/// The stored message a change refers to, as the provider names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its id among inbound messages (`messages.external_id`).
    pub external_id: String,
    /// Its id among our outbound messages (`outbox.provider_message_id`).
    pub provider_id: String,
    /// The customer's handle, which our outbound messages were sent to.
    pub handle: String,
}

/// A change a channel reports to what is already stored. Each carries the provider's id of the event, so a
/// retried webhook applies it once.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The customer edited a message: its text and parts are replaced, the old ones kept as history.
    Edit {
        /// The provider's id of the event.
        event_id: String,
        /// The edited message.
        target: Target,
        /// The new readable text.
        text: String,
        /// The new parts.
        parts: Vec<Part>,
    },
    /// The customer reacted to a message (theirs or ours), or took the reaction back (`emoji: None`).
    Reaction {
        /// The provider's id of the event.
        event_id: String,
        /// The message reacted to.
        target: Target,
        /// The reaction, or `None` when removed.
        emoji: Option<String>,
    },
    /// The customer deleted a message: it is marked, not erased (the assistant may have read it already).
    Deletion {
        /// The provider's id of the event.
        event_id: String,
        /// The deleted message.
        target: Target,
    },
    /// The customer's phone number changed: their contact moves to the new handle.
    NumberChange {
        /// The provider's id of the event.
        event_id: String,
        /// The old handle.
        from: String,
        /// The new handle.
        to: String,
    },
    /// The customer's channel user id changed (WhatsApp BSUID).
    UserIdChange {
        /// The provider's id of the event.
        event_id: String,
        /// The old user id.
        from: String,
        /// The new user id.
        to: String,
    },
    /// A Telegram Business account connected to (or disconnected from) the client's bot.
    BusinessConnection {
        /// The connection's id.
        id: String,
        /// The business account's Telegram user id.
        owner_user_id: String,
        /// The business account's name.
        owner_name: Option<String>,
        /// Whether the connection is live.
        enabled: bool,
        /// Whether the bot may reply in the business account's chats.
        can_reply: bool,
    },
}

impl Change {
    /// The name of the change, as stored and counted.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Edit { .. } => "edit",
            Self::Reaction { .. } => "reaction",
            Self::Deletion { .. } => "deletion",
            Self::NumberChange { .. } => "number_change",
            Self::UserIdChange { .. } => "user_id_change",
            Self::BusinessConnection { .. } => "business_connection",
        }
    }
}
