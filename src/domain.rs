//! Pure domain types and rules: identifiers, clients and their profiles, messages, roles.
//!
//! Nothing here does I/O or knows about HTTP, SQLite or tokio. Values coming from outside are parsed into
//! these types at the edge (`parse` constructors), so the rest of the code can rely on their invariants.

mod article;
mod chain;
mod client;
mod ids;
mod message;
mod parts;
mod update;

pub use article::{ArticleContent, ArticleId};
pub use chain::merge_chain;
pub use client::{
    BusinessHours, BusinessTime, ClientDefaults, ClientProfile, ClientSlug, EscalationContact, Interval, LocalTime,
    PluginLimits, Sla, SuggestionSettings, Weekday, WhatsAppTemplate,
};
pub(crate) use ids::new_id;
pub use ids::{
    ContactId, ConversationId, EscalationId, MediaId, MessageId, OutboxId, PersonId, PluginId, SessionId, TypedId,
};
pub use message::{
    ChannelKind, ChannelName, ConversationStatus, DeliveryState, Direction, HookKind, InboundMessage, LogLevel,
    LogLine, MediaState, MessageKind, MessageState, PluginState, Priority, Role, SlaState,
};
pub use parts::{
    Context, Location, Media, MediaKind, Order, OrderItem, Outbound, Part, Referral, SharedContact, readable_text,
};
pub use update::{Change, StatusUpdate, Target};

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the rules decided for one inbound message (or one overdue conversation). Each plugin of a client's
/// chain gives one, [`merge_chain`] combines them, and the client's defaults fill in what the chain leaves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// Text sent to the customer at once as an automatic acknowledgement.
    pub acknowledge: Option<String>,
    /// Queue to route the conversation to.
    pub queue: Option<String>,
    /// Assistant to assign.
    pub assignee: Option<String>,
    /// Tags added to the conversation.
    pub tags: Vec<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// Escalation, if any.
    #[serde(default)]
    pub escalate: Option<Escalation>,
    /// Why, in words shown to people.
    pub reason: String,
}

/// Who made a recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionSource {
    /// The client's defaults alone (no active plugin, every active plugin failed, or the message waited longer
    /// than allowed for the client's rules).
    Defaults,
    /// The client's chain of plugins, merged (with the defaults filling in what it left).
    Chain,
    /// One plugin version's own run (applied, or a shadow run beside the chain).
    Plugin(PluginId),
}

impl DecisionSource {
    /// The form stored and shown for a decision of `hook`: `defaults`, `chain` or `plugin:<id>`, followed by
    /// `:on-overdue` for a decision about an overdue conversation. Unique per message, so each source
    /// decides once about a message and hook.
    pub fn key(&self, hook: HookKind) -> String {
        match hook {
            HookKind::OnMessage => self.to_string(),
            HookKind::OnOverdue => format!("{self}:{hook}"),
        }
    }

    /// Reads back a [`key`](Self::key).
    pub fn parse_key(key: &str) -> Option<(Self, HookKind)> {
        let (source, hook) = match key.strip_suffix(":on-overdue") {
            Some(source) => (source, HookKind::OnOverdue),
            None => (key, HookKind::OnMessage),
        };
        let source = match source {
            "defaults" => Self::Defaults,
            "chain" => Self::Chain,
            other => Self::Plugin(PluginId::parse(other.strip_prefix("plugin:")?)?),
        };
        Some((source, hook))
    }
}

impl Serialize for DecisionSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// In the API document: the text it is written as.
impl utoipa::PartialSchema for DecisionSource {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("`defaults`, `chain` or `plugin:<id>`"))
            .examples(["chain"])
            .into()
    }
}

impl utoipa::ToSchema for DecisionSource {}

impl fmt::Display for DecisionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Defaults => f.write_str("defaults"),
            Self::Chain => f.write_str("chain"),
            Self::Plugin(id) => write!(f, "plugin:{id}"),
        }
    }
}

/// A request to raise a conversation to people beyond the assistants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Escalation {
    /// Severity from 1 (notice) to 3 (critical).
    pub level: u8,
    /// Why.
    pub reason: String,
    /// Whether the client's escalation contact is notified.
    pub notify_owner: bool,
}

/// A problem with a value received from outside, naming the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The dotted path of the offending field, e.g. `business_hours.mon`.
    pub field: String,
    /// What is wrong with it, in words a user can act on.
    pub message: String,
}

impl Invalid {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// Prefixes the field path with `parent`, for errors raised by nested values.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() { parent.to_owned() } else { format!("{parent}.{}", self.field) };
        self
    }
}

/// Milliseconds since the Unix epoch, UTC. Stored as an integer, shown as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-12-07T09:30:00.000Z")]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(jiff::Timestamp::now().as_millisecond())
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus `duration` (saturating).
    pub fn plus(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// This instant minus `duration` (saturating).
    pub fn minus(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// RFC 3339 text in UTC with millisecond precision, e.g. `2026-11-22T15:10:54.123Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => format!("{ts:.3}"),
            // Out of jiff's range (years beyond ±9999): cannot come from our clock; show the raw value.
            Err(_) => self.0.to_string(),
        }
    }
}

/// Shown as RFC 3339 text, as every time in the API is.
impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed: jiff::Timestamp = text.parse().map_err(serde::de::Error::custom)?;
        Ok(Self(parsed.as_millisecond()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where "now" comes from for the first-response clocks: the system clock, or one set ahead of it. A
/// server started with a clock ahead sees what happens once that much time has passed (a warning, an
/// overdue conversation) without anyone editing its rows; tests use it, production uses the system clock.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(std::sync::Arc::new(Timestamp::now))
    }

    /// The system clock, `ahead` in the future.
    pub fn ahead(ahead: std::time::Duration) -> Self {
        Self(std::sync::Arc::new(move || Timestamp::now().plus(ahead)))
    }

    /// The current time on this clock.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }

    /// How long until `due` on this clock (zero if it has passed).
    pub fn until(&self, due: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(due.millis() - self.now().millis()).unwrap_or(0))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// An email address, as a person signs in with it: kept as given, compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Longest address (RFC 5321's path limit).
    pub const MAX_LEN: usize = 254;

    /// Parses an address: one `@` with something on each side, no spaces or control characters.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let value = value.trim();
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
            });
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("email", "must be an address like ana@example.com"))
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form two addresses are compared in: lower case, so `Ana@Example.com` and `ana@example.com` are one
    /// person.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `value` is a short label made of `[a-z0-9_-]`, used for queues, channels and tags.
pub fn parse_label(field: &str, value: &str, max_len: usize) -> Result<String, Invalid> {
    if value.is_empty() || value.len() > max_len {
        return Err(Invalid::new(field, format!("must be 1 to {max_len} characters")));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(Invalid::new(field, "may only contain a-z, 0-9, '-' and '_'"));
    }
    Ok(value.to_owned())
}

/// Checks that a free text is non-empty (after trimming) and at most `max_chars` characters.
pub fn parse_text(field: &str, value: &str, max_chars: usize) -> Result<String, Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(Invalid::new(field, format!("must be at most {max_chars} characters")));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_with_milliseconds() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_700_000_000_123).to_rfc3339(), "2023-11-14T22:13:20.123Z");
        let json = serde_json::to_string(&Timestamp(1_700_000_000_123)).expect("serialises");
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).expect("parses"), Timestamp(1_700_000_000_123));
    }

    #[test]
    fn a_clock_ahead_reads_later_and_counts_down_from_its_own_now() {
        let hour = std::time::Duration::from_secs(3_600);
        let ahead = Clock::ahead(hour);
        let (system, later) = (Timestamp::now(), ahead.now());
        assert!(later.millis() - system.millis() >= 3_600_000, "{system} then {later}");
        assert_eq!(ahead.until(system), std::time::Duration::ZERO, "what the system calls now has passed on it");
        assert!(Clock::system().until(later) > hour - std::time::Duration::from_secs(1));
    }

    #[test]
    fn decision_sources_round_trip_through_their_stored_keys() {
        let plugin = PluginId::generate();
        for (source, hook, key) in [
            (DecisionSource::Defaults, HookKind::OnMessage, "defaults".to_owned()),
            (DecisionSource::Chain, HookKind::OnOverdue, "chain:on-overdue".to_owned()),
            (DecisionSource::Plugin(plugin.clone()), HookKind::OnMessage, format!("plugin:{plugin}")),
            (DecisionSource::Plugin(plugin.clone()), HookKind::OnOverdue, format!("plugin:{plugin}:on-overdue")),
        ] {
            assert_eq!(source.key(hook), key);
            assert_eq!(DecisionSource::parse_key(&key), Some((source, hook)));
        }
        assert_eq!(DecisionSource::parse_key("plugin:nonsense"), None);
    }

    #[test]
    fn labels_reject_uppercase_spaces_and_empty() {
        assert!(parse_label("queue", "billing-es", 32).is_ok());
        assert!(parse_label("queue", "Billing", 32).is_err());
        assert!(parse_label("queue", "a b", 32).is_err());
        assert!(parse_label("queue", "", 32).is_err());
    }
}
