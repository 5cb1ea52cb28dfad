//! A plugin that misbehaves on purpose, chosen by its configuration's `behaviour`, to prove that a hostile
//! plugin harms nobody but itself. Used only by recado's tests; never install it.

use recado_plugin_sdk::{Contact, Context, Decision, LogLevel, Message, Plugin, export_plugin, host};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    behaviour: String,
    /// Misbehave only on messages containing this text (so the plugin passes recado's upload check and
    /// fails later, on live traffic); always when absent.
    #[serde(default)]
    trigger: Option<String>,
    /// For `allocate`: how many MiB to hold at once.
    #[serde(default)]
    mib: usize,
    /// For `spin`: how many loop steps to take.
    #[serde(default)]
    steps: u64,
}

struct Hostile;

fn recurse(depth: u64, pad: [u8; 256]) -> u64 {
    // The array keeps frames large; black_box stops the compiler from turning this into a loop.
    std::hint::black_box(pad);
    if depth == u64::MAX { depth } else { recurse(depth + 1, pad) + 1 }
}

impl Plugin for Hostile {
    fn on_message(message: Message, contact: Contact, context: Context) -> Result<Decision, String> {
        let config: Config = context.config()?;
        if config.trigger.as_ref().is_some_and(|trigger| !message.text.contains(trigger.as_str())) {
            return Ok(Decision::because("behaving"));
        }
        match config.behaviour.as_str() {
            "loop" => loop {
                std::hint::black_box(&message);
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            // Heavy but finite: within a client's limits or not, depending on what it was granted.
            "allocate" => {
                let hoard: Vec<Vec<u8>> = (0..config.mib).map(|_| vec![1u8; 1 << 20]).collect();
                Ok(Decision::because(format!("allocated {} MiB", std::hint::black_box(hoard).len())))
            }
            "spin" => {
                let mut sum = 0u64;
                for step in 0..config.steps {
                    sum = std::hint::black_box(sum.wrapping_add(step));
                }
                Ok(Decision::because(format!("spun {} steps ({sum})", config.steps)))
            }
            "huge-output" => Ok(Decision::because("x").acknowledge("y".repeat(8 << 20))),
            "many-tags" => Ok((0..100).fold(Decision::because("tags"), |decision, n| decision.tag(format!("t{n}")))),
            "bad-label" => Ok(Decision::because("bad queue").queue("Not A Queue!")),
            "trap" => panic!("this plugin panics on purpose"),
            "recursion" => Ok(Decision::because(format!("{}", recurse(0, [0u8; 256])))),
            "host-flood" => {
                for n in 0..10_000_000u64 {
                    host::log(LogLevel::Info, &format!("line {n}"));
                }
                Ok(Decision::because("flooded"))
            }
            "filesystem" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(Decision::because(format!("read {} bytes of the host's files", text.len()))),
                Err(error) => Err(format!("no filesystem: {error}")),
            },
            "kv-then-trap" => {
                host::kv_set("written-before-trap", "yes").map_err(|e| e.to_string())?;
                panic!("trap after a write");
            }
            "clock" => {
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
                Ok(Decision::because(format!("clock {}", now.as_millis())))
            }
            // Not hostile: probes of what a plugin can see, for recado's isolation and context tests.
            "logs" => {
                host::log(LogLevel::Debug, "looking at the message");
                host::log(LogLevel::Warn, &format!("{} characters", message.text.chars().count()));
                Ok(Decision::because("logged"))
            }
            "kv-counter" => {
                let count = host::kv_get("count").and_then(|text| text.parse::<u64>().ok()).unwrap_or(0) + 1;
                host::kv_set("count", &count.to_string()).map_err(|e| e.to_string())?;
                Ok(Decision::because(format!("count {count}")))
            }
            "kb-probe" => {
                let hits = host::kb_search(&message.text, 3);
                let ids: Vec<String> = hits.into_iter().map(|hit| hit.article_id).collect();
                Ok(Decision::because(format!("kb {}", ids.join(","))))
            }
            "context" => Ok(Decision::because(format!(
                "client={} new={} unanswered={} messages={} acknowledged={} replied={} open={} language={}",
                context.client,
                contact.is_new,
                context.unanswered_inbound,
                context.messages_in_conversation,
                context.last_acknowledged_at.is_some(),
                context.last_human_reply_at.is_some(),
                context.within_business_hours,
                message.language.as_deref().unwrap_or("-"),
            ))),
            "local" => {
                let local = &context.local;
                let next = local
                    .next_opening
                    .as_ref()
                    .map_or("-".to_owned(), |t| format!("{}/{}", t.weekday, t.minute_of_day));
                let closes = local.closes_at.as_ref().map_or("-".to_owned(), |t| t.minute_of_day.to_string());
                Ok(Decision::because(format!(
                    "local {}-{:02}-{:02} weekday={} minute={} offset={} open={} closes={closes} next={next}",
                    local.now.year,
                    local.now.month,
                    local.now.day,
                    local.now.weekday,
                    local.now.minute_of_day,
                    local.now.utc_offset_minutes,
                    local.open,
                )))
            }
            other => Err(format!("unknown behaviour {other}")),
        }
    }
}

export_plugin!(Hostile);
