//! Routes a conversation to a queue by what the customer writes about, by the language they write in, and
//! gives VIP contacts their own assistant and a higher priority.
//!
//! Configuration (JSON), for example:
//!
//! ```json
//! {
//!   "routes": [
//!     { "queue": "billing", "keywords": ["factura", "invoice", "pagament", "счёт"], "tags": ["billing"] },
//!     { "queue": "appointments", "keywords": ["cita", "hora", "appointment"] }
//!   ],
//!   "languages": { "en": "english-desk" },
//!   "vip": { "handles": ["+34600111222"], "assignee": "marta", "priority": "high" },
//!   "fallback_queue": "general"
//! }
//! ```
//!
//! - Routes are tried in order; the first whose keywords appear in the message (whole words or phrases,
//!   ignoring case and accents) gives the queue and its tags.
//! - Otherwise the customer's language picks a queue from `languages`, else `fallback_queue` (if any).
//! - A VIP contact (by handle, or by a contact tag `vip`) also gets the `vip` tag, the VIP assignee and
//!   priority, whatever the queue.

use std::collections::BTreeMap;

use recado_plugin_sdk::keywords::contains_any;
use recado_plugin_sdk::{Contact, Context, Decision, Message, Plugin, Priority, export_plugin};
use serde::Deserialize;

/// The installation's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Keyword routes, tried in order.
    #[serde(default)]
    routes: Vec<Route>,
    /// Queue per customer language, when no route matched.
    #[serde(default)]
    languages: BTreeMap<String, String>,
    /// VIP contacts.
    #[serde(default)]
    vip: Option<Vip>,
    /// Queue when nothing else applies.
    #[serde(default)]
    fallback_queue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    queue: String,
    keywords: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vip {
    #[serde(default)]
    handles: Vec<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    priority: Option<String>,
}

fn priority(name: &str) -> Result<Priority, String> {
    match name {
        "low" => Ok(Priority::Low),
        "normal" => Ok(Priority::Normal),
        "high" => Ok(Priority::High),
        "urgent" => Ok(Priority::Urgent),
        other => Err(format!("unknown priority {other:?}; use low, normal, high or urgent")),
    }
}

/// The plugin (public so benchmarks can call the same rules natively).
pub struct KeywordRouter;

impl Plugin for KeywordRouter {
    fn on_message(message: Message, contact: Contact, context: Context) -> Result<Decision, String> {
        let config: Config = context.config()?;
        let route = config.routes.iter().find(|route| {
            let words: Vec<&str> = route.keywords.iter().map(String::as_str).collect();
            contains_any(&message.text, &words)
        });
        let mut decision =
            match route {
                Some(route) => route.tags.iter().fold(
                    Decision::because(format!("mentions {}", route.queue)).queue(route.queue.clone()),
                    |d, tag| d.tag(tag.clone()),
                ),
                None => match message.language.as_deref().and_then(|language| config.languages.get(language)) {
                    Some(queue) => {
                        Decision::because(format!("writes in {}", message.language.as_deref().unwrap_or_default()))
                            .queue(queue.clone())
                    }
                    None => match &config.fallback_queue {
                        Some(queue) => Decision::because("no route matched").queue(queue.clone()),
                        None => Decision::because("no route matched"),
                    },
                },
            };
        if let Some(vip) = &config.vip
            && (vip.handles.contains(&contact.handle) || contact.tags.iter().any(|tag| tag == "vip"))
        {
            decision = decision.tag("vip");
            decision.reason.push_str("; VIP contact");
            if let Some(assignee) = &vip.assignee {
                decision = decision.assign(assignee.clone());
            }
            if let Some(name) = &vip.priority {
                decision = decision.priority(priority(name)?);
            }
        }
        Ok(decision)
    }
}

export_plugin!(KeywordRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use recado_plugin_sdk::testing::{contact, context, message};

    const CONFIG: &str = r#"{
        "routes": [{ "queue": "billing", "keywords": ["factura", "invoice", "счёт"], "tags": ["billing"] }],
        "languages": { "en": "english-desk" },
        "vip": { "handles": ["+34600111222"], "assignee": "marta", "priority": "high" },
        "fallback_queue": "general"
    }"#;

    #[test]
    fn keywords_in_any_language_pick_the_route() {
        for text in ["Em podeu enviar la FACTURA?", "Where is my invoice", "Пришлите счёт"] {
            let decision = KeywordRouter::on_message(message(text), contact(), context(CONFIG)).expect("decides");
            assert_eq!(decision.queue.as_deref(), Some("billing"), "{text}");
            assert_eq!(decision.tags, ["billing"]);
        }
    }

    #[test]
    fn language_then_fallback_then_vip() {
        let mut english = message("Hello there");
        english.language = Some("en".into());
        let decision = KeywordRouter::on_message(english, contact(), context(CONFIG)).expect("decides");
        assert_eq!(decision.queue.as_deref(), Some("english-desk"));

        let mut vip = contact();
        vip.handle = "+34600111222".into();
        let decision = KeywordRouter::on_message(message("hola"), vip, context(CONFIG)).expect("decides");
        assert_eq!(decision.queue.as_deref(), Some("general"));
        assert_eq!(decision.assignee.as_deref(), Some("marta"));
        assert_eq!(decision.tags, ["vip"]);
        assert!(matches!(decision.priority, Some(Priority::High)));
    }

    #[test]
    fn a_bad_priority_is_an_error() {
        let config = r#"{ "vip": { "handles": ["+1"], "priority": "asap" } }"#;
        let mut vip = contact();
        vip.handle = "+1".into();
        assert!(KeywordRouter::on_message(message("hola"), vip, context(config)).is_err());
    }
}
