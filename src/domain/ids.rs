//! Identifiers of the objects recado creates, one type per kind, so a conversation id passed where a message
//! id belongs does not compile.
//!
//! Each is `<prefix>_<32 hex digits of a UUIDv7>` (`msg_0193...`): readable in logs, roughly time-ordered so
//! B-tree inserts land at the right edge. Values from outside are checked with `parse`, which also lets a
//! handler answer 404 for an id that cannot exist without touching the database. Values read back from the
//! store are trusted as they are (the store decodes them; see `store::sql`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Generates a fresh identifier with a readable prefix, e.g. `msg_0193...`.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Returns true if and only if `id` looks like an id we generated with `prefix`.
fn is_id_with_prefix(id: &str, prefix: &str) -> bool {
    id.len() == prefix.len() + 33
        && id.starts_with(prefix)
        && id.as_bytes()[prefix.len()] == b'_'
        && id[prefix.len() + 1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// What every identifier type offers, so code at the edge (paths, bodies) can parse any of them alike.
pub trait TypedId: Sized {
    /// What it identifies, in words (`conversation`): the `not_found` answer for an id that cannot exist.
    const KIND: &'static str;

    /// Returns the id if `value` has this kind's shape, `None` otherwise.
    fn parse_id(value: &str) -> Option<Self>;
}

/// Defines an identifier newtype with its prefix.
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident => $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix of every id of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            pub fn generate() -> Self {
                Self(new_id($prefix))
            }

            /// Returns the id if `value` has this kind's shape, `None` otherwise (such an id cannot exist).
            pub fn parse(value: &str) -> Option<Self> {
                is_id_with_prefix(value, $prefix).then(|| Self(value.to_owned()))
            }

            /// An id read back from the store, which only holds ids this type made.
            pub(crate) fn from_stored(value: String) -> Self {
                Self(value)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TypedId for $name {
            const KIND: &'static str = $kind;

            fn parse_id(value: &str) -> Option<Self> {
                Self::parse(value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(value: &str) -> Result<Self, Invalid> {
                Self::parse(value).ok_or_else(|| {
                    Invalid::new("id", concat!("is not a ", stringify!($name), " (", $prefix, "_ and 32 hex digits)"))
                })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A conversation: one customer of one client on one channel, open or closed.
    ConversationId => "cnv", "conversation"
);
typed_id!(
    /// A message, inbound or outbound.
    MessageId => "msg", "message"
);
typed_id!(
    /// A customer of one client on one channel.
    ContactId => "ctc", "contact"
);
typed_id!(
    /// One delivery of an outbound message.
    OutboxId => "obx", "delivery"
);
typed_id!(
    /// An uploaded plugin version.
    PluginId => "plg", "plugin"
);
typed_id!(
    /// An escalation raised on a conversation.
    EscalationId => "esc", "escalation"
);
typed_id!(
    /// A media file a customer sent or an assistant attached.
    MediaId => "med", "media"
);
typed_id!(
    /// A person who signs in: an admin, an assistant, or someone of a client.
    PersonId => "prs", "person"
);
typed_id!(
    /// A signed-in browser session (its public name; the cookie holds a separate secret).
    SessionId => "ses", "session"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_only_as_their_own_kind() {
        let id = MessageId::generate();
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(ConversationId::parse(id.as_str()), None);
        assert_eq!(MessageId::parse("msg_nothex"), None);
        assert_eq!(MessageId::parse(""), None);
    }

    #[test]
    fn ids_are_json_strings_and_refuse_the_wrong_shape() {
        let id = ConversationId::generate();
        let json = serde_json::to_string(&id).expect("serialises");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ConversationId>(&json).expect("round trip"), id);
        let error = serde_json::from_str::<ConversationId>("\"msg_0\"").expect_err("wrong shape");
        assert!(error.to_string().contains("ConversationId"), "{error}");
    }
}
