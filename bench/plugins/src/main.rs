//! `cargo run --release` (from bench/plugins, after building the example components): per-call cost of each
//! example rule, natively and as a sandboxed component, fresh and reused. Prints a Markdown table.
//!
//! `cargo run --release -- python=PATH javascript=PATH` also measures the language templates (`recado plugin
//! new <language> DIR`, then `DIR/build.sh`): fresh and reused, and what instantiating alone costs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use recado::plugins::{HostAccess, Limits, MessageCall, PluginContact, PluginContext, PluginHost, PluginMessage};
use recado_plugin_sdk::Plugin;

const WARMUP: usize = 2_000;
const CALLS: usize = 20_000;

struct Case {
    name: &'static str,
    component: &'static str,
    dir: &'static str,
    text: &'static str,
    language: &'static str,
    handle: &'static str,
    native: fn(
        recado_plugin_sdk::Message,
        recado_plugin_sdk::Contact,
        recado_plugin_sdk::Context,
    ) -> Result<recado_plugin_sdk::Decision, String>,
}

const CASES: [Case; 3] = [
    Case {
        name: "business-hours-ack",
        component: "business_hours_ack",
        dir: "business-hours-ack",
        text: "Bon dia, teniu hora per dijous a la tarda?",
        language: "ca",
        handle: "+34600000001",
        native: business_hours_ack::BusinessHoursAck::on_message,
    },
    Case {
        name: "keyword-router",
        component: "keyword_router",
        dir: "keyword-router",
        text: "Hola, em podeu enviar la factura de la neteja de l'últim dia?",
        language: "ca",
        handle: "+34600111222",
        native: keyword_router::KeywordRouter::on_message,
    },
    Case {
        name: "escalation",
        component: "escalation",
        dir: "escalation",
        text: "És urgent, em sagna la geniva des d'ahir i em fa molt de mal",
        language: "ca",
        handle: "+34600000003",
        native: escalation::Escalation::on_message,
    },
];

fn call(case: &Case, config: &str) -> MessageCall {
    MessageCall {
        message: PluginMessage {
            id: "msg_bench".into(),
            channel: "whatsapp".into(),
            text: case.text.into(),
            language: Some(case.language.into()),
            received_at: 1_795_000_000_000,
        },
        contact: PluginContact {
            id: "ctc_bench".into(),
            handle: case.handle.into(),
            name: Some("Núria".into()),
            tags: vec![],
            is_new: true,
        },
        context: PluginContext {
            client: "dental-gracia".into(),
            now: 1_795_000_000_000,
            timezone: "Europe/Madrid".into(),
            within_business_hours: true,
            languages: vec!["ca".into(), "es".into()],
            conversation_id: "cnv_bench".into(),
            messages_in_conversation: 1,
            unanswered_inbound: 1,
            last_acknowledged_at: None,
            last_human_reply_at: None,
            config: config.into(),
            local: recado::domain::BusinessHours::default()
                .around(recado::domain::Timestamp(1_795_000_000_000), "Europe/Madrid"),
        },
    }
}

/// The SDK's own records for the native call.
fn native_inputs(
    call: &MessageCall,
) -> (recado_plugin_sdk::Message, recado_plugin_sdk::Contact, recado_plugin_sdk::Context) {
    (
        recado_plugin_sdk::Message {
            id: call.message.id.clone(),
            channel: call.message.channel.clone(),
            text: call.message.text.clone(),
            language: call.message.language.clone(),
            received_at: call.message.received_at,
        },
        recado_plugin_sdk::Contact {
            id: call.contact.id.clone(),
            handle: call.contact.handle.clone(),
            name: call.contact.name.clone(),
            tags: call.contact.tags.clone(),
            is_new: call.contact.is_new,
        },
        recado_plugin_sdk::Context {
            client: call.context.client.clone(),
            now: call.context.now,
            timezone: call.context.timezone.clone(),
            within_business_hours: call.context.within_business_hours,
            languages: call.context.languages.clone(),
            conversation_id: call.context.conversation_id.clone(),
            messages_in_conversation: call.context.messages_in_conversation,
            unanswered_inbound: call.context.unanswered_inbound,
            last_acknowledged_at: call.context.last_acknowledged_at,
            last_human_reply_at: call.context.last_human_reply_at,
            config: call.context.config.clone(),
            local: recado_plugin_sdk::BusinessTime {
                now: local_time(&call.context.local.now),
                open: call.context.local.open,
                closes_at: call.context.local.closes_at.as_ref().map(local_time),
                next_opening: call.context.local.next_opening.as_ref().map(local_time),
            },
        },
    )
}

fn local_time(time: &recado::domain::LocalTime) -> recado_plugin_sdk::LocalTime {
    recado_plugin_sdk::LocalTime {
        at: time.at.millis(),
        year: time.year,
        month: time.month,
        day: time.day,
        weekday: time.weekday,
        minute_of_day: time.minute_of_day,
        utc_offset_minutes: time.utc_offset_minutes,
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(once: impl FnMut()) -> Stats {
    measure_n(WARMUP, CALLS, once)
}

fn measure_n(warmup: usize, calls: usize, mut once: impl FnMut()) -> Stats {
    for _ in 0..warmup {
        once();
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        once();
        times.push(started.elapsed());
    }
    let mean = times.iter().sum::<Duration>() / u32::try_from(calls).expect("fits");
    times.sort_unstable();
    Stats { p50: times[calls / 2], p99: times[calls * 99 / 100], mean }
}

/// Calls of each language template (an interpreter call costs a thousand times a native one).
const TEMPLATE_CALLS: usize = 2_000;

/// The language templates (`recado plugin new <language>`, built with their `build.sh`), named on the command
/// line as `language=path/to/plugin.wasm`: each called with the templates' shared configuration.
fn templates(host: &PluginHost, access: &HostAccess) {
    let config =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins-sdk/templates/config.json"))
            .expect("the templates' config.json");
    let case = Case {
        name: "template",
        component: "",
        dir: "",
        text: "Hola, necesito la factura de octubre, es urgente",
        language: "es",
        handle: "+34600000004",
        native: |_, _, _| Err("no native form".into()),
    };
    let mut call = call(&case, &config);
    call.context.languages = vec!["es".into(), "en".into()];
    for argument in std::env::args().skip(1) {
        let (language, path) = argument.split_once('=').expect("language=path/to/plugin.wasm");
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let started = Instant::now();
        let loaded = host.load(&bytes).expect("loads");
        eprintln!("{language}: {} bytes compiled in {:.1} s", bytes.len(), started.elapsed().as_secs_f64());
        let decision =
            host.on_message(&loaded, &call, access.clone(), host.limits()).result.expect("the template decides");
        assert_eq!(decision.queue.as_deref(), Some("billing"), "{language}: {}", decision.reason);
        let name = format!("template ({language})");
        let fresh = measure_n(TEMPLATE_CALLS / 10, TEMPLATE_CALLS, || {
            std::hint::black_box(
                host.on_message(&loaded, &call, access.clone(), host.limits()).result.expect("decides"),
            );
        });
        row(&name, "component, fresh instance per call", &fresh);
        let inst = measure_n(TEMPLATE_CALLS / 10, TEMPLATE_CALLS, || {
            std::hint::black_box(host.reused_instance(&loaded, access.clone()).ok());
        });
        row(&name, "instantiation alone, no call", &inst);
        let mut reused = host.reused_instance(&loaded, access.clone()).expect("instance");
        let kept = measure_n(TEMPLATE_CALLS / 10, TEMPLATE_CALLS, || {
            std::hint::black_box(reused.on_message(&call).expect("decides"));
        });
        row(&name, "component, one instance reused", &kept);
    }
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../example-plugins");
    let host = PluginHost::new(Limits::default()).expect("engine");
    let access = HostAccess { kv: HashMap::new(), kb_search: Arc::new(|_, _| Vec::new()) };
    println!("{CALLS} calls each after {WARMUP} warm-up calls, one thread; calls/s = 1 / mean.\n");
    println!("| plugin | how | p50 µs | p99 µs | calls/s per core |");
    println!("|---|---|---|---|---|");
    for case in &CASES {
        let config = std::fs::read_to_string(root.join(case.dir).join("config.json")).expect("config");
        let path: PathBuf = root.join(format!("target/wasm32-wasip2/release/{}.wasm", case.component));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (build the example plugins first)", path.display()));
        let loaded = host.load(&bytes).expect("loads");
        let call = call(case, &config);

        // Every variant must decide the same, or the comparison means nothing.
        let (m, c, x) = native_inputs(&call);
        let native_decision = (case.native)(m, c, x).expect("native decides");
        let wasm_decision =
            host.on_message(&loaded, &call, access.clone(), host.limits()).result.expect("component decides");
        assert_eq!(native_decision.reason, wasm_decision.reason, "{}", case.name);

        let native = measure(|| {
            let (m, c, x) = native_inputs(&call);
            std::hint::black_box((case.native)(m, c, x).expect("decides"));
        });
        row(case.name, "native (the floor)", &native);
        let fresh = measure(|| {
            std::hint::black_box(
                host.on_message(&loaded, &call, access.clone(), host.limits()).result.expect("decides"),
            );
        });
        row(case.name, "component, fresh instance per call", &fresh);
        let mut reused = host.reused_instance(&loaded, access.clone()).expect("instance");
        let kept = measure(|| {
            std::hint::black_box(reused.on_message(&call).expect("decides"));
        });
        row(case.name, "component, one instance reused", &kept);
    }
    templates(&host, &access);
}
