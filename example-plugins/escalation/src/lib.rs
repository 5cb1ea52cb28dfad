//! Escalates what should not wait: urgent words (in Catalan, Spanish, English, Italian, Russian and more),
//! a customer who writes again and again without an answer, and a conversation past its first-response
//! target (`on-overdue`).
//!
//! Configuration (JSON); every field is optional:
//!
//! ```json
//! {
//!   "urgent_words": ["sagnat", "hinchazón"],
//!   "urgent_level": 2,
//!   "unanswered_pings": 3,
//!   "overdue_level": 2,
//!   "critical_after_minutes": 120,
//!   "notify_owner_from_level": 2
//! }
//! ```
//!
//! - A message with an urgent word (the built-in list plus `urgent_words`) is escalated at `urgent_level`,
//!   tagged `urgent` and given priority `urgent`.
//! - `unanswered_pings` customer messages in a row without a human reply escalate at level 1, tagged
//!   `waiting`, with priority `high`.
//! - An overdue conversation is escalated at `overdue_level`, or at level 3 once it has waited
//!   `critical_after_minutes`, tagged `overdue`.
//! - The client's escalation contact is notified from level `notify_owner_from_level` up.

use recado_plugin_sdk::keywords::contains_any;
use recado_plugin_sdk::{Contact, Context, Decision, Message, Plugin, Priority, export_plugin};
use serde::Deserialize;

/// Words that mean "now" in the languages of recado's demo clients and a few more.
const URGENT: &[&str] = &[
    // Catalan, Spanish, Portuguese
    "urgent",
    "urgencia",
    "urgència",
    "urgente",
    "emergencia",
    "emergència",
    "ja mateix",
    "ahora mismo",
    "fa molt de mal",
    "duele mucho",
    "sangra",
    "sagna",
    // English
    "urgent",
    "emergency",
    "asap",
    "right now",
    "immediately",
    // Italian
    "urgente",
    "subito",
    "emergenza",
    // Russian, Ukrainian
    "срочно",
    "немедленно",
    "терміново",
    // French, German
    "urgence",
    "dringend",
    "notfall",
];

/// The installation's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    urgent_words: Vec<String>,
    urgent_level: u8,
    unanswered_pings: u32,
    overdue_level: u8,
    critical_after_minutes: u64,
    notify_owner_from_level: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            urgent_words: Vec::new(),
            urgent_level: 2,
            unanswered_pings: 3,
            overdue_level: 2,
            critical_after_minutes: 120,
            notify_owner_from_level: 2,
        }
    }
}

impl Config {
    fn checked(self) -> Result<Self, String> {
        for level in [self.urgent_level, self.overdue_level, self.notify_owner_from_level] {
            if !(1..=3).contains(&level) {
                return Err(format!("levels must be 1 to 3, got {level}"));
            }
        }
        if self.unanswered_pings < 2 {
            return Err("unanswered_pings must be at least 2".into());
        }
        Ok(self)
    }

    fn escalate(&self, decision: Decision, level: u8, reason: String) -> Decision {
        decision.escalate(level, reason, level >= self.notify_owner_from_level)
    }
}

/// The plugin (public so benchmarks can call the same rules natively).
pub struct Escalation;

impl Plugin for Escalation {
    fn on_message(message: Message, _contact: Contact, context: Context) -> Result<Decision, String> {
        let config = context.config::<Config>()?.checked()?;
        let mut words: Vec<&str> = URGENT.to_vec();
        words.extend(config.urgent_words.iter().map(String::as_str));
        if contains_any(&message.text, &words) {
            let decision = Decision::because("urgent words").tag("urgent").priority(Priority::Urgent);
            return Ok(config.escalate(decision, config.urgent_level, "the customer says it is urgent".into()));
        }
        if context.unanswered_inbound >= config.unanswered_pings {
            let reason = format!("{} messages without an answer", context.unanswered_inbound);
            let decision = Decision::because(reason.clone()).tag("waiting").priority(Priority::High);
            return Ok(config.escalate(decision, 1, reason));
        }
        Ok(Decision::because("nothing urgent"))
    }

    fn on_overdue(context: Context, waited_seconds: u64) -> Result<Decision, String> {
        let config = context.config::<Config>()?.checked()?;
        let minutes = waited_seconds / 60;
        let level = if minutes >= config.critical_after_minutes { 3 } else { config.overdue_level };
        let reason = format!("no first reply after {minutes} business minutes");
        let decision = Decision::because(reason.clone()).tag("overdue").priority(Priority::Urgent);
        Ok(config.escalate(decision, level, reason))
    }
}

export_plugin!(Escalation);

#[cfg(test)]
mod tests {
    use super::*;
    use recado_plugin_sdk::testing::{contact, context, message};

    #[test]
    fn urgent_words_in_several_languages_escalate_and_notify() {
        for text in ["És URGENT, em sagna la geniva", "Это срочно", "Necesito una cita ahora mismo", "Serve subito"]
        {
            let decision = Escalation::on_message(message(text), contact(), context("{}")).expect("decides");
            let escalation = decision.escalate.expect(text);
            assert_eq!((escalation.level, escalation.notify_owner), (2, true), "{text}");
            assert_eq!(decision.tags, ["urgent"]);
        }
        let calm = Escalation::on_message(message("Quin horari feu?"), contact(), context("{}")).expect("decides");
        assert!(calm.escalate.is_none());
    }

    #[test]
    fn repeated_pings_escalate_at_level_one_without_notifying() {
        let mut waiting = context("{}");
        waiting.unanswered_inbound = 3;
        let decision = Escalation::on_message(message("Hola?"), contact(), waiting).expect("decides");
        let escalation = decision.escalate.expect("escalates");
        assert_eq!((escalation.level, escalation.notify_owner), (1, false));
        assert_eq!(decision.tags, ["waiting"]);
    }

    #[test]
    fn overdue_conversations_escalate_and_become_critical() {
        let decision = Escalation::on_overdue(context("{}"), 30 * 60).expect("decides");
        assert_eq!(decision.escalate.map(|e| e.level), Some(2));
        let decision = Escalation::on_overdue(context("{}"), 3 * 60 * 60).expect("decides");
        assert_eq!(decision.escalate.map(|e| e.level), Some(3));
        assert!(Escalation::on_overdue(context(r#"{"overdue_level": 7}"#), 60).is_err());
    }
}
