//! `recado:plugin@0.1.0`: the `rules` world (`on-message`, `on-overdue`) and the `host` interface (log,
//! key-value store, knowledge-base search). Still served: components built against it keep working.

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins-sdk/wit/since_v0.1.0",
        world: "rules",
        imports: { default: trappable },
    });
}

use bindings::recado::plugin::types as wit;

super::contract!();

/// The contract, as named in refusals.
pub(in crate::plugins) const CONTRACT: &str = "recado:plugin@0.1.0";

fn wit_context(context: &super::super::PluginContext) -> wit::Context {
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
