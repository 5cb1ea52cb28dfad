//! The example rules behind Extism's ABI: JSON in, JSON out, the same code as the components.

use extism_pdk::{FnResult, Json, WithReturnCode, plugin_fn};
use recado_plugin_sdk::{Contact, Context, Decision, Message, Plugin};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    message: MessageIn,
    contact: ContactIn,
    context: ContextIn,
}

#[derive(Deserialize)]
struct MessageIn {
    id: String,
    channel: String,
    text: String,
    language: Option<String>,
    received_at: i64,
}

#[derive(Deserialize)]
struct ContactIn {
    id: String,
    handle: String,
    name: Option<String>,
    tags: Vec<String>,
    is_new: bool,
}

#[derive(Deserialize)]
struct ContextIn {
    client: String,
    now: i64,
    timezone: String,
    within_business_hours: bool,
    languages: Vec<String>,
    conversation_id: String,
    messages_in_conversation: u32,
    unanswered_inbound: u32,
    last_acknowledged_at: Option<i64>,
    last_human_reply_at: Option<i64>,
    config: String,
}

#[derive(Serialize)]
struct Output {
    acknowledge: Option<String>,
    queue: Option<String>,
    assignee: Option<String>,
    tags: Vec<String>,
    priority: Option<&'static str>,
    escalate: Option<(u8, String, bool)>,
    reason: String,
}

fn run(input: Input, rule: fn(Message, Contact, Context) -> Result<Decision, String>) -> FnResult<Json<Output>> {
    let Input { message: m, contact: c, context: x } = input;
    let decision = rule(
        Message { id: m.id, channel: m.channel, text: m.text, language: m.language, received_at: m.received_at },
        Contact { id: c.id, handle: c.handle, name: c.name, tags: c.tags, is_new: c.is_new },
        Context {
            client: x.client,
            now: x.now,
            timezone: x.timezone,
            within_business_hours: x.within_business_hours,
            languages: x.languages,
            conversation_id: x.conversation_id,
            messages_in_conversation: x.messages_in_conversation,
            unanswered_inbound: x.unanswered_inbound,
            last_acknowledged_at: x.last_acknowledged_at,
            last_human_reply_at: x.last_human_reply_at,
            config: x.config,
        },
    )
    .map_err(|error| WithReturnCode::new(extism_pdk::Error::msg(error), 1))?;
    Ok(Json(Output {
        acknowledge: decision.acknowledge,
        queue: decision.queue,
        assignee: decision.assignee,
        tags: decision.tags,
        priority: decision.priority.map(|p| match p {
            recado_plugin_sdk::Priority::Low => "low",
            recado_plugin_sdk::Priority::Normal => "normal",
            recado_plugin_sdk::Priority::High => "high",
            recado_plugin_sdk::Priority::Urgent => "urgent",
        }),
        escalate: decision.escalate.map(|e| (e.level, e.reason, e.notify_owner)),
        reason: decision.reason,
    }))
}

#[plugin_fn]
pub fn business_hours_ack(Json(input): Json<Input>) -> FnResult<Json<Output>> {
    run(input, business_hours_ack::BusinessHoursAck::on_message)
}

#[plugin_fn]
pub fn keyword_router(Json(input): Json<Input>) -> FnResult<Json<Output>> {
    run(input, keyword_router::KeywordRouter::on_message)
}

#[plugin_fn]
pub fn escalation(Json(input): Json<Input>) -> FnResult<Json<Output>> {
    run(input, escalation::Escalation::on_message)
}
