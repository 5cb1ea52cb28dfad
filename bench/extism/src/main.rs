//! `cargo run --release` (from bench/extism, after building ./guest for wasm32-unknown-unknown): the same
//! three rules as recado's example plugins, run by Extism with JSON in and out, with a fresh plugin instance
//! per call and with one instance reused. Same limits as recado: 16 MiB of memory, 50 ms, 50 million fuel.

use std::time::{Duration, Instant};

use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};

const WARMUP: usize = 2_000;
const CALLS: usize = 20_000;

const CASES: [(&str, &str, &str, &str); 3] = [
    ("business-hours-ack", "business_hours_ack", "Bon dia, teniu hora per dijous a la tarda?", "+34600000001"),
    (
        "keyword-router",
        "keyword_router",
        "Hola, em podeu enviar la factura de la neteja de l'últim dia?",
        "+34600111222",
    ),
    ("escalation", "escalation", "És urgent, em sagna la geniva des d'ahir i em fa molt de mal", "+34600000003"),
];

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(mut once: impl FnMut()) -> Stats {
    for _ in 0..WARMUP {
        once();
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        once();
        times.push(started.elapsed());
    }
    let mean = times.iter().sum::<Duration>() / u32::try_from(CALLS).expect("fits");
    times.sort_unstable();
    Stats { p50: times[CALLS / 2], p99: times[CALLS * 99 / 100], mean }
}

fn row(plugin: &str, how: &str, stats: &Stats) {
    println!(
        "| {plugin} | {how} | {:.1} | {:.1} | {:.0} |",
        stats.p50.as_secs_f64() * 1e6,
        stats.p99.as_secs_f64() * 1e6,
        1.0 / stats.mean.as_secs_f64()
    );
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guest = root.join("guest/target/wasm32-unknown-unknown/release/extism_guest.wasm");
    let examples = root.join("../../example-plugins");
    let manifest = Manifest::new([Wasm::file(&guest)])
        .with_memory_max(256) // pages of 64 KiB: 16 MiB
        .with_timeout(Duration::from_millis(50));
    let builder = || PluginBuilder::new(manifest.clone()).with_wasi(false).with_fuel_limit(50_000_000);
    let compiled = CompiledPlugin::new(builder()).expect("compiles");
    println!("{CALLS} calls each after {WARMUP} warm-up calls, one thread; calls/s = 1 / mean.\n");
    println!("| plugin | how | p50 µs | p99 µs | calls/s per core |");
    println!("|---|---|---|---|---|");
    for (name, function, text, handle) in CASES {
        let config = std::fs::read_to_string(examples.join(name).join("config.json")).expect("config");
        // The host serialises the input and parses the output on every call, as a real host would.
        let input = serde_json::json!({
            "message": { "id": "msg_bench", "channel": "whatsapp", "text": text, "language": "ca", "received_at": 1_795_000_000_000i64 },
            "contact": { "id": "ctc_bench", "handle": handle, "name": "Núria", "tags": [], "is_new": true },
            "context": {
                "client": "dental-gracia", "now": 1_795_000_000_000i64, "timezone": "Europe/Madrid",
                "within_business_hours": true, "languages": ["ca", "es"], "conversation_id": "cnv_bench",
                "messages_in_conversation": 1, "unanswered_inbound": 1, "last_acknowledged_at": null,
                "last_human_reply_at": null, "config": config,
            }
        });
        let run = |plugin: &mut Plugin| -> serde_json::Value {
            let body = serde_json::to_vec(&input).expect("encode");
            let output: Vec<u8> = plugin.call::<&[u8], Vec<u8>>(function, &body).expect("decides");
            serde_json::from_slice(&output).expect("decision")
        };
        let mut probe = Plugin::new_from_compiled(&compiled).expect("instance");
        println!("<!-- {name}: {} -->", run(&mut probe)["reason"]);
        let fresh = measure(|| {
            let mut plugin = Plugin::new_from_compiled(&compiled).expect("instance");
            std::hint::black_box(run(&mut plugin));
        });
        row(name, "Extism, fresh instance per call", &fresh);
        let mut reused = Plugin::new_from_compiled(&compiled).expect("instance");
        let kept = measure(|| {
            std::hint::black_box(run(&mut reused));
        });
        row(name, "Extism, one instance reused", &kept);
    }
}
