//! The SDK for recado rule plugins written in Rust.
//!
//! A rule plugin is a WebAssembly component that recado runs for every incoming customer message (and when a
//! conversation waits too long) to decide: acknowledge at once, route, tag, prioritise, escalate. The
//! contract is the WIT package `recado:plugin@0.2.0` in this crate's `wit/` directory; this crate wraps it
//! in plain Rust.
//!
//! Implement [`Plugin`] (every method has a default that decides nothing), export it with
//! [`export_plugin!`], and build with `cargo build --release --target wasm32-wasip2`:
//!
//! ```
//! use recado_plugin_sdk::{Contact, Context, Decision, Message, Plugin, export_plugin, keywords};
//!
//! struct Urgent;
//!
//! impl Plugin for Urgent {
//!     fn on_message(message: Message, _contact: Contact, _context: Context) -> Result<Decision, String> {
//!         if keywords::contains_any(&message.text, &["urgent", "urgente", "urgència", "срочно"]) {
//!             return Ok(Decision::because("the customer says it is urgent").tag("urgent").escalate(2, "urgent", true));
//!         }
//!         Ok(Decision::because("nothing urgent"))
//!     }
//! }
//!
//! export_plugin!(Urgent);
//! ```
//!
//! Rules are deterministic: everything they need comes in the arguments, and `context.now` is the time
//! (there is no clock); `context.local` is that time on the business's clock (weekday, minute of the day,
//! UTC offset) with its business hours around it (open now, when it closes, when it next opens). State across calls goes through [`host::kv_get`] and [`host::kv_set`], written only
//! if the call succeeds. `docs/plugin-authoring.md` in the recado repository covers limits, testing and
//! versioning.
#![deny(missing_docs)]

/// The generated bindings. Use the re-exports of the crate root instead.
#[doc(hidden)]
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit/since_v0.2.0",
        world: "rules",
        pub_export_macro: true,
        default_bindings_module: "recado_plugin_sdk::wit",
    });
}

pub use wit::recado::plugin::types::{
    BusinessTime, Contact, Context, Decision, Escalation, KbHit, LocalTime, LogLevel, Message, Priority,
};

/// The version of the `recado:plugin` WIT package this SDK implements.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A rule plugin. Implement the hooks you need; the others decide nothing.
pub trait Plugin {
    /// Decides about an incoming customer message. An `Err` is recorded and the client's defaults apply.
    fn on_message(message: Message, contact: Contact, context: Context) -> Result<Decision, String> {
        let _ = (message, contact, context);
        Ok(Decision::because("no rule for messages"))
    }

    /// Decides about a conversation waiting `waited_seconds` (counted in business hours) for a first reply.
    fn on_overdue(context: Context, waited_seconds: u64) -> Result<Decision, String> {
        let _ = (context, waited_seconds);
        Ok(Decision::because("no rule for overdue conversations"))
    }
}

/// Exports a [`Plugin`] implementation as the component's `rules` world.
///
/// Only when building for WASI (`wasm32-wasip2`): elsewhere (native tests, benchmarks, other hosts' guests)
/// it exports nothing, so several plugins can be linked into one program and called directly.
///
/// ```
/// struct Quiet;
/// impl recado_plugin_sdk::Plugin for Quiet {}
/// recado_plugin_sdk::export_plugin!(Quiet);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
        const _: () = {
            #[doc(hidden)]
            struct RecadoPluginExport;

            impl $crate::wit::Guest for RecadoPluginExport {
                fn on_message(
                    message: $crate::Message,
                    contact: $crate::Contact,
                    context: $crate::Context,
                ) -> ::core::result::Result<$crate::Decision, ::std::string::String> {
                    <$plugin as $crate::Plugin>::on_message(message, contact, context)
                }

                fn on_overdue(
                    context: $crate::Context,
                    waited_seconds: u64,
                ) -> ::core::result::Result<$crate::Decision, ::std::string::String> {
                    <$plugin as $crate::Plugin>::on_overdue(context, waited_seconds)
                }
            }

    $crate::wit::export!(RecadoPluginExport with_types_in $crate::wit);
        };
    };
}

impl Decision {
    /// A decision with no opinion on anything yet, and its reason.
    ///
    /// ```
    /// let decision = recado_plugin_sdk::Decision::because("outside business hours");
    /// assert!(decision.acknowledge.is_none() && decision.tags.is_empty());
    /// ```
    pub fn because(reason: impl Into<String>) -> Self {
        Self {
            acknowledge: None,
            queue: None,
            assignee: None,
            tags: Vec::new(),
            priority: None,
            escalate: None,
            reason: reason.into(),
        }
    }

    /// Sends `text` to the customer at once.
    pub fn acknowledge(mut self, text: impl Into<String>) -> Self {
        self.acknowledge = Some(text.into());
        self
    }

    /// Routes the conversation to `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Assigns the conversation to `assistant`.
    pub fn assign(mut self, assistant: impl Into<String>) -> Self {
        self.assignee = Some(assistant.into());
        self
    }

    /// Adds a tag (once).
    ///
    /// ```
    /// let decision = recado_plugin_sdk::Decision::because("vip").tag("vip").tag("vip");
    /// assert_eq!(decision.tags, ["vip"]);
    /// ```
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Escalates at `level` (1 to 3) for `reason`, notifying the owner if `notify_owner`.
    pub fn escalate(mut self, level: u8, reason: impl Into<String>, notify_owner: bool) -> Self {
        self.escalate = Some(Escalation { level: level.clamp(1, 3), reason: reason.into(), notify_owner });
        self
    }
}

impl Context {
    /// This installation's configuration, read into `T`.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Config { queue: String }
    /// # let context = recado_plugin_sdk::testing::context("{\"queue\": \"urgent\"}");
    /// let config: Config = context.config().expect("valid config");
    /// assert_eq!(config.queue, "urgent");
    /// ```
    ///
    /// # Errors
    /// The configuration is not valid JSON for `T` (the message says where).
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.config).map_err(|error| format!("invalid plugin configuration: {error}"))
    }

    /// Milliseconds since `at`, or `None` if `at` is `None`.
    pub fn since(&self, at: Option<i64>) -> Option<i64> {
        at.map(|at| self.now.saturating_sub(at))
    }

    /// Returns true if and only if the conversation got an automatic acknowledgement within the last
    /// `minutes`.
    ///
    /// ```
    /// let mut context = recado_plugin_sdk::testing::context("{}");
    /// context.now = 10 * 60_000;
    /// context.last_acknowledged_at = Some(5 * 60_000);
    /// assert!(context.acknowledged_within(30));
    /// assert!(!context.acknowledged_within(2));
    /// ```
    pub fn acknowledged_within(&self, minutes: u32) -> bool {
        self.since(self.last_acknowledged_at).is_some_and(|elapsed| elapsed < i64::from(minutes) * 60_000)
    }
}

/// Calls to recado from inside a plugin. Each is counted against the call's budget.
pub mod host {
    pub use crate::wit::recado::plugin::host::{kb_search, kv_get, kv_set, log};
}

/// Matching words in customer messages, across languages and spellings.
pub mod keywords {
    /// Lower-cases `text` and removes accents of Latin letters, so `Urgència`, `URGENCIA` and `urgencia`
    /// compare equal. Other scripts (Cyrillic, Greek) are only lower-cased.
    ///
    /// ```
    /// assert_eq!(recado_plugin_sdk::keywords::fold("Urgència! ÑAndú"), "urgencia! nandu");
    /// ```
    pub fn fold(text: &str) -> String {
        text.chars()
            .flat_map(char::to_lowercase)
            .map(|c| match c {
                'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
                'è' | 'é' | 'ê' | 'ë' => 'e',
                'ì' | 'í' | 'î' | 'ï' => 'i',
                'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
                'ù' | 'ú' | 'û' | 'ü' => 'u',
                'ç' => 'c',
                'ñ' => 'n',
                'ё' => 'е',
                other => other,
            })
            .collect()
    }

    /// Returns true if and only if `text` contains one of `words` as a whole word (or phrase), ignoring case
    /// and accents.
    ///
    /// ```
    /// use recado_plugin_sdk::keywords::contains_any;
    /// assert!(contains_any("És URGENT, si us plau", &["urgent"]));
    /// assert!(contains_any("Это срочно!", &["срочно"]));
    /// assert!(!contains_any("no es urgentemente", &["urgente"]));
    /// assert!(contains_any("me duele mucho la muela", &["duele mucho"]));
    /// ```
    pub fn contains_any(text: &str, words: &[&str]) -> bool {
        let folded = fold(text);
        let tokens: Vec<&str> = folded.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).collect();
        words.iter().any(|word| {
            let wanted = fold(word);
            let wanted: Vec<&str> = wanted.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
            !wanted.is_empty() && tokens.windows(wanted.len()).any(|window| window == wanted.as_slice())
        })
    }
}

/// Values for testing plugins natively with `cargo test` (recado's `plugin test` runs the real component).
pub mod testing {
    use crate::{BusinessTime, Contact, Context, LocalTime, Message};

    /// Time 0 (Thursday 1970-01-01, midnight) on a clock at UTC.
    pub fn local_time() -> LocalTime {
        LocalTime { at: 0, year: 1970, month: 1, day: 1, weekday: 4, minute_of_day: 0, utc_offset_minutes: 0 }
    }

    /// A context at time 0, within business hours, with `config` as the configuration.
    pub fn context(config: &str) -> Context {
        Context {
            client: "test-client".into(),
            now: 0,
            timezone: "Europe/Madrid".into(),
            within_business_hours: true,
            languages: vec!["es".into()],
            conversation_id: "cnv_test".into(),
            messages_in_conversation: 1,
            unanswered_inbound: 1,
            last_acknowledged_at: None,
            last_human_reply_at: None,
            config: config.into(),
            local: BusinessTime { now: local_time(), open: true, closes_at: None, next_opening: None },
        }
    }

    /// A message with `text`, received at time 0.
    pub fn message(text: &str) -> Message {
        Message { id: "msg_test".into(), channel: "whatsapp".into(), text: text.into(), language: None, received_at: 0 }
    }

    /// A new contact without name or tags.
    pub fn contact() -> Contact {
        Contact { id: "ctc_test".into(), handle: "+34600000000".into(), name: None, tags: Vec::new(), is_new: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words_across_accents_and_scripts() {
        assert!(keywords::contains_any("Necesito una cita URGÉNTE", &["urgente"]));
        assert!(keywords::contains_any("срочно нужна помощь", &["срочно"]));
        assert!(!keywords::contains_any("urgently", &["urgent"]));
        assert!(!keywords::contains_any("", &["urgent"]));
        assert!(!keywords::contains_any("urgent", &[""]));
    }

    #[test]
    fn decisions_build_up_and_clamp_escalation_levels() {
        let decision =
            Decision::because("test").queue("billing").assign("Ana").priority(Priority::High).escalate(9, "why", true);
        assert_eq!(decision.queue.as_deref(), Some("billing"));
        assert_eq!(decision.assignee.as_deref(), Some("Ana"));
        assert_eq!(decision.escalate.map(|e| e.level), Some(3));
    }

    #[test]
    fn a_plugin_without_hooks_decides_nothing() {
        struct Nothing;
        impl Plugin for Nothing {}
        let decision =
            Nothing::on_message(testing::message("hola"), testing::contact(), testing::context("{}")).expect("decides");
        assert!(decision.acknowledge.is_none() && decision.escalate.is_none());
        assert!(Nothing::on_overdue(testing::context("{}"), 600).is_ok());
    }
}
