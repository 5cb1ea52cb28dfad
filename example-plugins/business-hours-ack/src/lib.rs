//! Acknowledges a customer at once, in their language, and tells them when the business is closed.
//!
//! Configuration (JSON), for example:
//!
//! ```json
//! {
//!   "open":   { "ca": "Hola! Et responem en uns minuts.", "es": "¡Hola! Te respondemos en unos minutos." },
//!   "closed": { "ca": "Ara som tancats; et responem en obrir.", "es": "Ahora estamos cerrados; te respondemos al abrir." },
//!   "repeat_after_minutes": 120
//! }
//! ```
//!
//! - The text is chosen by the message's language, then the client's first language, then any text.
//! - Outside business hours the `closed` text is used (or `open` if there is no `closed` text).
//! - A conversation acknowledged less than `repeat_after_minutes` ago is not acknowledged again, so a
//!   customer who sends five messages in a row gets one answer, not five.

use std::collections::BTreeMap;

use recado_plugin_sdk::{Contact, Context, Decision, Message, Plugin, export_plugin};
use serde::Deserialize;

/// The installation's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Acknowledgement per language during business hours.
    open: BTreeMap<String, String>,
    /// Acknowledgement per language outside business hours.
    #[serde(default)]
    closed: BTreeMap<String, String>,
    /// No second acknowledgement within this many minutes.
    #[serde(default = "default_repeat")]
    repeat_after_minutes: u32,
}

fn default_repeat() -> u32 {
    120
}

/// Picks the text for `language`, then the client's first language, then any.
fn text_for<'a>(texts: &'a BTreeMap<String, String>, language: Option<&str>, context: &Context) -> Option<&'a String> {
    language
        .and_then(|language| texts.get(language))
        .or_else(|| context.languages.first().and_then(|first| texts.get(first)))
        .or_else(|| texts.values().next())
}

/// The plugin (public so benchmarks can call the same rules natively).
pub struct BusinessHoursAck;

impl Plugin for BusinessHoursAck {
    fn on_message(message: Message, _contact: Contact, context: Context) -> Result<Decision, String> {
        let config: Config = context.config()?;
        if context.acknowledged_within(config.repeat_after_minutes) {
            return Ok(Decision::because(format!(
                "acknowledged less than {} minutes ago",
                config.repeat_after_minutes
            )));
        }
        let language = message.language.as_deref();
        let (text, reason) = if context.within_business_hours {
            (text_for(&config.open, language, &context), "open: acknowledge at once")
        } else {
            let closed = text_for(&config.closed, language, &context);
            (closed.or_else(|| text_for(&config.open, language, &context)), "closed: say when we reopen")
        };
        Ok(match text {
            Some(text) => Decision::because(reason).acknowledge(text.clone()),
            None => Decision::because("no acknowledgement text configured"),
        })
    }
}

export_plugin!(BusinessHoursAck);

#[cfg(test)]
mod tests {
    use super::*;
    use recado_plugin_sdk::testing::{contact, context, message};

    const CONFIG: &str =
        r#"{"open": {"ca": "Hola!", "es": "¡Hola!"}, "closed": {"es": "Cerrado"}, "repeat_after_minutes": 60}"#;

    #[test]
    fn answers_in_the_customers_language_and_says_when_closed() {
        let mut msg = message("Bon dia");
        msg.language = Some("ca".into());
        let decision = BusinessHoursAck::on_message(msg.clone(), contact(), context(CONFIG)).expect("decides");
        assert_eq!(decision.acknowledge.as_deref(), Some("Hola!"));

        let mut closed = context(CONFIG);
        closed.within_business_hours = false;
        // No Catalan closed text: the client's first language (es) closed text is used.
        let decision = BusinessHoursAck::on_message(msg, contact(), closed).expect("decides");
        assert_eq!(decision.acknowledge.as_deref(), Some("Cerrado"));
    }

    #[test]
    fn does_not_repeat_within_the_window() {
        let mut recent = context(CONFIG);
        recent.now = 30 * 60_000;
        recent.last_acknowledged_at = Some(0);
        let decision = BusinessHoursAck::on_message(message("hola?"), contact(), recent).expect("decides");
        assert_eq!(decision.acknowledge, None);
    }

    #[test]
    fn a_broken_configuration_is_an_error() {
        assert!(BusinessHoursAck::on_message(message("hola"), contact(), context("{}")).is_err());
    }
}
