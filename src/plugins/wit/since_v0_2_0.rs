//! `recado:plugin@0.2.0`: 0.1.0 with `context.local`, the decision's time on the client's clock and its
//! business hours around it, so that plugins in languages without a time-zone database can tell local time.

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins-sdk/wit/since_v0.2.0",
        world: "rules",
        imports: { default: trappable },
    });
}

use bindings::recado::plugin::types as wit;

super::contract!();

/// The contract, as named in refusals.
pub(in crate::plugins) const CONTRACT: &str = "recado:plugin@0.2.0";

fn wit_context(context: &super::super::PluginContext) -> wit::Context {
    let local = &context.local;
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
        local: wit::BusinessTime {
            now: wit_local(&local.now),
            open: local.open,
            closes_at: local.closes_at.as_ref().map(wit_local),
            next_opening: local.next_opening.as_ref().map(wit_local),
        },
    }
}

fn wit_local(time: &crate::domain::LocalTime) -> wit::LocalTime {
    wit::LocalTime {
        at: time.at.millis(),
        year: time.year,
        month: time.month,
        day: time.day,
        weekday: time.weekday,
        minute_of_day: time.minute_of_day,
        utc_offset_minutes: time.utc_offset_minutes,
    }
}
