//! The template's rules: acknowledge in the customer's language, route by keywords, escalate urgent
//! messages and conversations left waiting. Edit freely; `config.json` holds the texts and words, so one
//! build serves many businesses.
//!
//! recado calls `on_message` for each customer message and `on_overdue` when a conversation waits past its
//! first-response target. Everything a rule needs arrives as arguments: time is `ctx.now`, never a clock,
//! so the same message always gets the same decision (that is what lets recado replay a new version over
//! past messages).

mod helpers;

use std::collections::BTreeMap;

use serde::Deserialize;

use helpers::{acknowledged_within, contains_any, decision, pick_text};

// Also brings the world's types into this module: `Contact`, `Context`, `Decision` and `Message`.
wit_bindgen::generate!({ path: "wit", world: "rules" });

use recado::plugin::host;
use recado::plugin::types::{Escalation, LogLevel, Priority};

/// What `config.json` holds; every field may be left out.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    acknowledge: Acknowledge,
    weekdays: BTreeMap<String, Vec<String>>,
    repeat_after_minutes: Option<u32>,
    routes: Vec<Route>,
    urgent_keywords: Vec<String>,
    urgent_level: Option<u8>,
    overdue_level: Option<u8>,
}

/// Acknowledgement texts by language.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Acknowledge {
    open: BTreeMap<String, String>,
    closed_until: BTreeMap<String, String>,
    closed: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Route {
    queue: String,
    keywords: Vec<String>,
}

fn config(ctx: &Context) -> Result<Config, String> {
    // An error result is recorded with the decision, and the business's defaults apply.
    serde_json::from_str(&ctx.config).map_err(|error| format!("invalid plugin configuration: {error}"))
}

/// The acknowledgement text and which one it is: `open`, `closed_until` with the next opening filled in (on
/// the client's clock: `ctx.local` is worked out by recado, no time-zone database needed), or `closed`.
fn acknowledgement(config: &Config, language: Option<&str>, ctx: &Context) -> (Option<String>, &'static str) {
    let texts = &config.acknowledge;
    let local = &ctx.local;
    if local.open {
        return (pick_text(&texts.open, language, &ctx.languages).cloned(), "open");
    }
    if let (Some(opening), Some(until)) =
        (&local.next_opening, pick_text(&texts.closed_until, language, &ctx.languages))
    {
        let days = pick_text(&config.weekdays, language, &ctx.languages);
        let day = match days {
            Some(days) if days.len() == 7 => days[usize::from(opening.weekday) - 1].clone(),
            _ => opening.weekday.to_string(),
        };
        let time = format!("{:02}:{:02}", opening.minute_of_day / 60, opening.minute_of_day % 60);
        return (Some(until.replace("{day}", &day).replace("{time}", &time)), "closed_until");
    }
    let closed = if texts.closed.is_empty() { &texts.open } else { &texts.closed };
    (pick_text(closed, language, &ctx.languages).cloned(), "closed")
}

struct Rules;

impl Guest for Rules {
    fn on_message(msg: Message, _contact: Contact, ctx: Context) -> Result<Decision, String> {
        let config = config(&ctx)?;
        let mut result = decision("");
        let mut reasons = Vec::new();

        let repeat = config.repeat_after_minutes.unwrap_or(120);
        if acknowledged_within(&ctx, repeat) {
            reasons.push(format!("acknowledged less than {repeat} minutes ago"));
        } else {
            let (text, which) = acknowledgement(&config, msg.language.as_deref(), &ctx);
            if let Some(text) = text {
                result.acknowledge = Some(text);
                reasons.push(format!("{which}: acknowledge"));
            }
        }

        if let Some(route) = config.routes.iter().find(|route| contains_any(&msg.text, &route.keywords)) {
            result.queue = Some(route.queue.clone());
            reasons.push(format!("keywords of {}", route.queue));
        }

        if contains_any(&msg.text, &config.urgent_keywords) {
            let level = config.urgent_level.unwrap_or(2);
            result.priority = Some(Priority::Urgent);
            result.tags.push("urgent".into());
            result.escalate =
                Some(Escalation { level, reason: "urgent words in the message".into(), notify_owner: level >= 2 });
            reasons.push("urgent words".into());
        }

        result.reason = if reasons.is_empty() { "nothing to do".into() } else { reasons.join("; ") };
        host::log(LogLevel::Debug, &result.reason);
        Ok(result)
    }

    fn on_overdue(ctx: Context, waited_seconds: u64) -> Result<Decision, String> {
        let config = config(&ctx)?;
        let minutes = waited_seconds / 60;
        let mut result = decision(&format!("waited {minutes} business minutes for a first reply"));
        result.tags.push("overdue".into());
        result.escalate = Some(Escalation {
            level: config.overdue_level.unwrap_or(1),
            reason: format!("no reply after {minutes} minutes"),
            notify_owner: false,
        });
        Ok(result)
    }
}

export!(Rules);
