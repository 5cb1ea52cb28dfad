//! `recado:plugin@0.1.0`: the `rules` world (`on-message`, `on-overdue`) and the `host` interface (log,
//! key-value store, knowledge-base search).

use wasmtime::component::HasSelf;

use super::super::host::CallState;
use super::super::{Failure, MessageCall, PluginContext};
use crate::domain::{Decision, Escalation, LogLevel, Priority, parse_label};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins-sdk/wit/since_v0.1.0",
        world: "rules",
        imports: { default: trappable },
    });
}

use bindings::recado::plugin::types as wit;
pub(in crate::plugins) use bindings::{Rules, RulesPre};

/// The contract, as named in refusals.
pub(in crate::plugins) const CONTRACT: &str = "recado:plugin@0.1.0";

/// What a hook returns, before its decision is checked.
pub(in crate::plugins) type Returned = wasmtime::Result<Result<wit::Decision, String>>;

/// Adds this version's host functions to `linker`.
pub(in crate::plugins) fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Rules::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

impl wit::Host for CallState {}

impl bindings::recado::plugin::host::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            wit::LogLevel::Trace => LogLevel::Trace,
            wit::LogLevel::Debug => LogLevel::Debug,
            wit::LogLevel::Info => LogLevel::Info,
            wit::LogLevel::Warn => LogLevel::Warn,
            wit::LogLevel::Error => LogLevel::Error,
        };
        CallState::log(self, level, message)
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        CallState::kv_get(self, &key)
    }

    fn kv_set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        CallState::kv_set(self, key, value)
    }

    fn kb_search(&mut self, query: String, limit: u32) -> wasmtime::Result<Vec<wit::KbHit>> {
        Ok(CallState::kb_search(self, &query, limit)?
            .into_iter()
            .map(|hit| wit::KbHit { article_id: hit.article_id, title: hit.title, score: hit.score })
            .collect())
    }
}

/// Calls `on-message`.
pub(in crate::plugins) fn on_message(
    instance: &Rules,
    store: &mut wasmtime::Store<CallState>,
    call: &MessageCall,
) -> Returned {
    let (message, contact, context) = wit_inputs(call);
    instance.call_on_message(store, &message, &contact, &context)
}

/// Calls `on-overdue`.
pub(in crate::plugins) fn on_overdue(
    instance: &Rules,
    store: &mut wasmtime::Store<CallState>,
    context: &PluginContext,
    waited_seconds: u64,
) -> Returned {
    instance.call_on_overdue(store, &wit_context(context), waited_seconds)
}

/// The contract's records for an `on-message` call.
fn wit_inputs(call: &MessageCall) -> (wit::Message, wit::Contact, wit::Context) {
    let message = wit::Message {
        id: call.message.id.clone(),
        channel: call.message.channel.clone(),
        text: call.message.text.clone(),
        language: call.message.language.clone(),
        received_at: call.message.received_at,
    };
    let contact = wit::Contact {
        id: call.contact.id.clone(),
        handle: call.contact.handle.clone(),
        name: call.contact.name.clone(),
        tags: call.contact.tags.clone(),
        is_new: call.contact.is_new,
    };
    (message, contact, wit_context(&call.context))
}

fn wit_context(context: &PluginContext) -> wit::Context {
    wit::Context {
        client: context.client.clone(),
        now: context.now,
        timezone: context.timezone.clone(),
        within_business_hours: context.within_business_hours,
        languages: context.languages.clone(),
        conversation_id: context.conversation_id.clone(),
        messages_in_conversation: context.messages_in_conversation,
        unanswered_inbound: context.unanswered_inbound,
        last_acknowledged_at: context.last_acknowledged_at,
        last_human_reply_at: context.last_human_reply_at,
        config: context.config.clone(),
    }
}

/// Checks a plugin's decision against the contract's bounds and turns it into the domain's.
pub(in crate::plugins) fn validate(decision: wit::Decision) -> Result<Decision, Failure> {
    let invalid = |message: String| Err(Failure::InvalidOutput(message));
    if decision.acknowledge.as_ref().is_some_and(|text| text.trim().is_empty() || text.chars().count() > 1_000) {
        return invalid("acknowledge must be 1 to 1000 characters".into());
    }
    if decision.tags.len() > 16 {
        return invalid(format!("at most 16 tags, got {}", decision.tags.len()));
    }
    for tag in &decision.tags {
        if let Err(error) = parse_label("tags", tag, 64) {
            return invalid(error.to_string());
        }
    }
    if let Some(Err(error)) = decision.queue.as_ref().map(|queue| parse_label("queue", queue, 64)) {
        return invalid(error.to_string());
    }
    if decision.assignee.as_ref().is_some_and(|a| a.trim().is_empty() || a.chars().count() > 200) {
        return invalid("assignee must be 1 to 200 characters".into());
    }
    if decision.reason.chars().count() > 500 {
        return invalid("reason must be at most 500 characters".into());
    }
    let escalate = match decision.escalate {
        Some(escalation) if !(1..=3).contains(&escalation.level) => {
            return invalid("escalation level must be 1 to 3".into());
        }
        Some(escalation) if escalation.reason.chars().count() > 500 => {
            return invalid("escalation reason must be at most 500 characters".into());
        }
        Some(escalation) => Some(Escalation {
            level: escalation.level,
            reason: escalation.reason,
            notify_owner: escalation.notify_owner,
        }),
        None => None,
    };
    Ok(Decision {
        acknowledge: decision.acknowledge,
        queue: decision.queue,
        assignee: decision.assignee,
        tags: decision.tags,
        priority: decision.priority.map(|priority| match priority {
            wit::Priority::Low => Priority::Low,
            wit::Priority::Normal => Priority::Normal,
            wit::Priority::High => Priority::High,
            wit::Priority::Urgent => Priority::Urgent,
        }),
        escalate,
        reason: decision.reason,
    })
}
