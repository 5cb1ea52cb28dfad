//! A plugin that misbehaves on purpose, chosen by its configuration's `behaviour`, to prove that a hostile
//! plugin harms nobody but itself. Used only by recado's tests; never install it.

use recado_plugin_sdk::{Contact, Context, Decision, LogLevel, Message, Plugin, export_plugin, host};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    behaviour: String,
}

struct Hostile;

fn recurse(depth: u64, pad: [u8; 256]) -> u64 {
    // The array keeps frames large; black_box stops the compiler from turning this into a loop.
    std::hint::black_box(pad);
    if depth == u64::MAX { depth } else { recurse(depth + 1, pad) + 1 }
}

impl Plugin for Hostile {
    fn on_message(message: Message, _contact: Contact, context: Context) -> Result<Decision, String> {
        let config: Config = context.config()?;
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
            other => Err(format!("unknown behaviour {other}")),
        }
    }
}

export_plugin!(Hostile);
