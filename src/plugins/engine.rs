//! The engine and the one path every call takes.
//!
//! One [`PluginHost`] per process owns the wasmtime engine (fuel as the deterministic instruction budget,
//! an epoch deadline as the wall-clock backstop, a capped wasm stack, the pooling allocator) and a 1 ms
//! epoch ticker. Each call gets a fresh store (see `host`) and instance; whatever goes wrong comes back as a
//! [`Failure`].

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::host::{
    CallState, FixedMonotonicClock, FixedWallClock, HostBudgetExceeded, PeakLimits, SeededRandom, seed_of,
};
use super::wit::{self, Call, Instance, Stopped, Version};
use super::{Failure, HostAccess, Limits, LoadError, MessageCall, Outcome, PluginContext, truncate};
use crate::domain::Decision;

/// A compiled plugin, ready to be instantiated for each call.
#[derive(Clone)]
pub struct LoadedPlugin {
    pre: Version,
}

impl LoadedPlugin {
    /// The contract version it was built against (`recado:plugin@0.2.0`).
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }
}

/// The plugin host. One per process; clone freely.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    linker: std::sync::Arc<Linker<CallState>>,
    limits: Limits,
}

/// The engine configuration shared by the server and the compiler process: compiled code is only valid for
/// an engine configured the same way, so both build it here. The pooling allocator (its slots sized for
/// `pool_memory_bytes` of linear memory) is the server's alone; it changes how memory is handed out, not the
/// compiled code.
pub(crate) fn engine_config(pool_memory_bytes: Option<usize>) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024)
        .wasm_threads(false);
    if let Some(memory_bytes) = pool_memory_bytes {
        let mut pool = PoolingAllocationConfig::new();
        // Sized for the calls that run at once (the pipeline, smoke calls and replays), not for the number
        // of plugins: an instance slot is taken only for the length of one call. Past it a call fails to
        // start and the client's defaults apply.
        pool.total_component_instances(64)
            .total_core_instances(256)
            .total_memories(64)
            .total_tables(128)
            .max_memories_per_component(10)
            .max_tables_per_component(10)
            .max_core_instances_per_component(50)
            .table_elements(20_000)
            .max_memory_size(memory_bytes)
            // A fresh instance per call must not cost a page fault per page the guest touches: an interpreter
            // (componentize-py, StarlingMonkey) starts from a pre-initialised heap of 10 MB or more and reads
            // much of it on every call. So a slot's memory stays mapped between calls (up to 16 MiB: an
            // interpreter's heap fits, and many slots stay affordable), and where the kernel can tell which
            // pages a call wrote (PAGEMAP_SCAN, Linux 6.7) only those are copied back from the component's
            // image. Without it, the kept part is reset whole: cheap for small memories, which is why this
            // falls back instead of failing.
            .linear_memory_keep_resident(memory_bytes.min(16 << 20))
            .table_keep_resident(256 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl PluginHost {
    /// Builds the engine (with the pooling allocator), the linker and the epoch ticker, for calls under
    /// `limits` and no more.
    ///
    /// # Errors
    /// The engine cannot be configured on this machine.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let most = limits.memory_bytes;
        Self::with_room(limits, most)
    }

    /// As [`PluginHost::new`], with room for calls granted up to `max_memory_bytes` of linear memory
    /// (calls of clients with limits of their own).
    ///
    /// # Errors
    /// The engine cannot be configured on this machine.
    pub fn with_room(limits: Limits, max_memory_bytes: usize) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(Some(max_memory_bytes.max(limits.memory_bytes))))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wit::add_to_linker(&mut linker)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("recado-wasm-epoch".into()).spawn(move || {
            // Ends with the engine: the ticker must not keep it alive.
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(Duration::from_millis(1));
            }
        })?;
        Ok(Self { engine, linker: std::sync::Arc::new(linker), limits })
    }

    /// The default limits of a call (a client's own are given with each call).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Identifies the compiled code this engine accepts: part of the compile cache's key, so an upgrade of
    /// wasmtime or a change of settings recompiles from the kept original instead of loading stale code.
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        // `DefaultHasher::new` uses fixed keys: the same engine gives the same key in every process.
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Compiles a component and checks that it implements the `rules` world with imports this host offers.
    ///
    /// This compiles in the calling process: it is for trusted bytes (an author's own file in
    /// `recado plugin test`, the tests). Uploads are compiled by [`super::compile::compile_isolated`] and loaded with
    /// [`PluginHost::load_compiled`].
    ///
    /// # Errors
    /// The bytes are not a valid component, or the component needs imports or exports this host lacks.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let component =
            Component::new(&self.engine, bytes).map_err(|error| LoadError::NotAComponent(format!("{error:#}")))?;
        self.prepare(&component)
    }

    /// Loads code compiled by our own compiler process from the compile cache.
    ///
    /// # Errors
    /// The file is missing, was compiled for another engine, or the component does not fit the contract.
    pub fn load_compiled(&self, path: &std::path::Path) -> Result<LoadedPlugin, LoadError> {
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. Only files in our compile
        // cache get here: written by our compiler process from bytes checked at upload, under a name made of
        // their hash and this engine's compatibility key, in a directory only the server writes. Clients'
        // bytes never reach this call (a precompiled upload fails the component check long before).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|error| LoadError::Compile(format!("compiled code could not be loaded: {error:#}")))?;
        self.prepare(&component)
    }

    fn prepare(&self, component: &Component) -> Result<LoadedPlugin, LoadError> {
        let pre = self.linker.instantiate_pre(component).map_err(|error| {
            let error = format!("{error:#}");
            LoadError::Contract(format!("does not fit the {} contract: {}", wit::NEWEST, import_hint(&error)))
        })?;
        let pre = Version::of(&pre).map_err(LoadError::Contract)?;
        Ok(LoadedPlugin { pre })
    }

    fn store(&self, access: HostAccess, now: i64, seed: u64, limits: &Limits) -> (Store<CallState>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(4096);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone())
            .wall_clock(FixedWallClock(Duration::from_millis(u64::try_from(now).unwrap_or(0))))
            .monotonic_clock(FixedMonotonicClock)
            .insecure_random_seed(u128::from(seed))
            .secure_random(SeededRandom(seed));
        let state = CallState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: PeakLimits {
                peak_memory: 0,
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .table_elements(20_000)
                    .instances(50)
                    .tables(10)
                    .memories(10)
                    .trap_on_grow_failure(true)
                    .build(),
            },
            call_limits: limits.clone(),
            host_calls: 0,
            host_budget_hit: false,
            logs: Vec::new(),
            kv: access.kv,
            kv_writes: Vec::new(),
            kb_search: access.kb_search,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Both set before instantiation: a component's start code is bounded too.
        let ticks = u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        // Fuel is enabled in the engine config, so this cannot fail.
        let _ = store.set_fuel(limits.fuel);
        (store, stderr)
    }

    /// Runs `on-message` under `limits`. Blocking (guest code runs on this thread); call it off the async
    /// threads.
    pub fn on_message(
        &self,
        plugin: &LoadedPlugin,
        call: &MessageCall,
        access: HostAccess,
        limits: &Limits,
    ) -> Outcome {
        let seed = seed_of(&call.message.id);
        self.call(plugin, (access, limits), call.context.now, seed, Call::Message(call))
    }

    /// Runs `on-overdue` under `limits`. Blocking; call it off the async threads.
    pub fn on_overdue(
        &self,
        plugin: &LoadedPlugin,
        context: &PluginContext,
        waited_seconds: u64,
        access: HostAccess,
        limits: &Limits,
    ) -> Outcome {
        let seed = seed_of(&context.conversation_id);
        self.call(plugin, (access, limits), context.now, seed, Call::Overdue(context, waited_seconds))
    }

    /// The path of every call: a fresh store and instance, the hook, its answer checked, the failure
    /// classified, and what the call logged, wrote and cost.
    fn call(
        &self,
        plugin: &LoadedPlugin,
        (access, limits): (HostAccess, &Limits),
        now: i64,
        seed: u64,
        hook: Call<'_>,
    ) -> Outcome {
        let (mut store, stderr) = self.store(access, now, seed, limits);
        let started = Instant::now();
        let result = plugin
            .pre
            .instantiate(&mut store)
            .map_err(Stopped::Instantiate)
            .and_then(|instance| instance.call(&mut store, hook));
        let result = settle(result, &store);
        finish(store, result, started, limits.fuel, &stderr)
    }
}

/// What the host offers a component to import, for the messages that refuse an import.
const OFFERED: &str = "this host offers `recado:plugin/host` and WASI 0.2 (`wasi:cli`, `wasi:clocks`, \
     `wasi:filesystem` with no files, `wasi:io`, `wasi:random`, `wasi:sockets` with no network), nothing else";

/// Says which import the host lacks and what to do about it, before the linker's own words: a linker
/// message alone ("resource implementation is missing") does not tell an author that the fix is a build flag.
fn import_hint(linker: &str) -> String {
    let interface = linker
        .split_once("component imports instance `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    match interface {
        Some(name) if name.starts_with("wasi:http/") => format!(
            "components may not import `wasi:http` (it imports `{name}`): plugins do not reach the network. \
             With componentize-js, build with `--disable http fetch-event`; otherwise remove the HTTP client \
             from the build; {OFFERED}. The linker said: {linker}"
        ),
        Some(name) => format!(
            "it imports `{name}`, which this host does not offer ({OFFERED}); build without it. \
             The linker said: {linker}"
        ),
        None => linker.to_owned(),
    }
}

/// What a call's end means: the guest's checked decision or its error as they are, or the way it stopped.
fn settle(result: Result<Result<Decision, Failure>, Stopped>, store: &Store<CallState>) -> Result<Decision, Failure> {
    match result {
        Ok(answer) => answer,
        Err(Stopped::Instantiate(error)) => Err(instantiate_failure(&error, store)),
        Err(Stopped::Call(error)) => Err(classify(&error, store)),
    }
}

/// One instance kept for many calls. The server never does this (each call gets a fresh instance, so calls
/// cannot see each other); it exists to measure what instantiation costs.
pub struct ReusedInstance {
    store: Store<CallState>,
    instance: Instance,
    fuel: u64,
    deadline_ticks: u64,
}

impl ReusedInstance {
    /// Runs `on-message` on the kept instance, with the budgets reset.
    pub fn on_message(&mut self, call: &MessageCall) -> Result<Decision, Failure> {
        let _ = self.store.set_fuel(self.fuel);
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().host_calls = 0;
        self.store.data_mut().logs.clear();
        self.store.data_mut().kv_writes.clear();
        let result = self.instance.call(&mut self.store, Call::Message(call));
        settle(result, &self.store)
    }
}

impl PluginHost {
    /// Instantiates `plugin` once for repeated calls (benchmarks only; see [`ReusedInstance`]).
    ///
    /// # Errors
    /// The component cannot be instantiated.
    pub fn reused_instance(&self, plugin: &LoadedPlugin, access: HostAccess) -> Result<ReusedInstance, Failure> {
        let (mut store, _) = self.store(access, 0, 0, &self.limits);
        let instance = plugin.pre.instantiate(&mut store).map_err(|error| instantiate_failure(&error, &store))?;
        let deadline_ticks = u64::try_from(self.limits.deadline.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(ReusedInstance { store, instance, fuel: self.limits.fuel, deadline_ticks })
    }
}

/// A failure to instantiate: budgets are reported as such, anything else as a start failure.
fn instantiate_failure(error: &wasmtime::Error, store: &Store<CallState>) -> Failure {
    match classify(error, store) {
        Failure::Trap(text) => Failure::Instantiate(text),
        other => other,
    }
}

fn finish(
    store: Store<CallState>,
    result: Result<Decision, Failure>,
    started: Instant,
    fuel: u64,
    stderr: &MemoryOutputPipe,
) -> Outcome {
    // A crashing guest usually says why on stderr (a Rust panic message): keep it with the failure.
    let result = match result {
        Err(Failure::Trap(text)) => {
            let said = String::from_utf8_lossy(&stderr.contents()).trim().chars().take(300).collect::<String>();
            Err(Failure::Trap(if said.is_empty() { text } else { format!("{text}; stderr: {said}") }))
        }
        other => other,
    };
    let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let duration = started.elapsed();
    let state = store.into_data();
    let kv_writes = if result.is_ok() { state.kv_writes } else { Vec::new() };
    Outcome { result, logs: state.logs, kv_writes, fuel_used, duration, peak_memory: state.limits.peak_memory }
}

fn classify(error: &wasmtime::Error, store: &Store<CallState>) -> Failure {
    if store.data().host_budget_hit || error.downcast_ref::<HostBudgetExceeded>().is_some() {
        return Failure::HostCallBudget;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel,
        Some(Trap::Interrupt) => Failure::Timeout,
        Some(trap) => Failure::Trap(trap.to_string()),
        None => {
            // `StoreLimits` with `trap_on_grow_failure` reports a refused growth as an error, not a `Trap`.
            let text = format!("{error:#}");
            if text.contains("forcing trap when growing memory") {
                Failure::OutOfMemory
            } else {
                Failure::Trap(truncate(&text, 500))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};

    use crate::plugins::test_support::{example_component as component, message_call as call};

    /// One host for the tests, and each component compiled once (compiling is the slow part). Its memory cap
    /// is 16 MiB: a memory bomb reaches it well within the deadline even in a debug build on a busy machine,
    /// so the bomb is classified as such and not as a timeout.
    fn host() -> &'static PluginHost {
        static HOST: OnceLock<PluginHost> = OnceLock::new();
        HOST.get_or_init(|| PluginHost::new(Limits { memory_bytes: 16 << 20, ..Limits::default() }).expect("engine"))
    }

    fn loaded(name: &str) -> LoadedPlugin {
        static LOADED: OnceLock<std::sync::Mutex<HashMap<String, LoadedPlugin>>> = OnceLock::new();
        let cache = LOADED.get_or_init(Default::default);
        // One failing test must not poison the cache for the others.
        let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.entry(name.to_owned()).or_insert_with(|| host().load(&component(name)).expect("loads")).clone()
    }

    fn access() -> HostAccess {
        HostAccess { kv: HashMap::new(), kb_search: Arc::new(|_, _| Vec::new()) }
    }

    #[test]
    fn the_example_plugin_acknowledges_in_the_customers_language() {
        let host = host();
        let plugin = loaded("business_hours_ack");
        let config = r#"{"open": {"ca": "Hola! Et responem aviat.", "es": "¡Hola!"}, "repeat_after_minutes": 60}"#;
        let outcome = host.on_message(&plugin, &call("Bon dia", config), access(), host.limits());
        let decision = outcome.result.expect("decides");
        assert_eq!(decision.acknowledge.as_deref(), Some("Hola! Et responem aviat."));
        assert!(outcome.fuel_used > 0);

        let mut again = call("Hi ha algú?", config);
        again.context.last_acknowledged_at = Some(again.context.now - 10 * 60_000);
        let decision = host.on_message(&plugin, &again, access(), host.limits()).result.expect("decides");
        assert_eq!(decision.acknowledge, None, "{}", decision.reason);
    }

    #[test]
    fn a_0_2_0_component_sees_the_clients_local_time_and_a_0_1_0_component_keeps_working() {
        let plugin = loaded("hostile");
        assert_eq!(plugin.contract(), "recado:plugin@0.2.0");
        let hours: crate::domain::BusinessHours =
            toml::from_str("mon = [\"09:00-14:00\"]\nfri = [\"09:00-14:00\"]").expect("hours");
        // Friday 2026-11-27, 20:30 in Madrid: closed until Monday at 09:00.
        let at = "2026-11-27T19:30:00Z".parse::<jiff::Timestamp>().expect("time").as_millisecond();
        let mut friday = call("hola", r#"{"behaviour": "local"}"#);
        friday.context.now = at;
        friday.context.local = hours.around(crate::domain::Timestamp(at), "Europe/Madrid");
        let decision = host().on_message(&plugin, &friday, access(), host().limits()).result.expect("decides");
        assert_eq!(decision.reason, "local 2026-11-27 weekday=5 minute=1230 offset=60 open=false closes=- next=1/540");

        // The acknowledgement example as built against 0.1.0 (kept as a file: what a client uploaded then).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plugins/business-hours-ack-0.1.0.wasm");
        let old = host().load(&std::fs::read(path).expect("the 0.1.0 component")).expect("still accepted");
        assert_eq!(old.contract(), "recado:plugin@0.1.0");
        let config = r#"{"open": {"ca": "Hola! Et responem aviat."}, "repeat_after_minutes": 60}"#;
        let decision =
            host().on_message(&old, &call("Bon dia", config), access(), host().limits()).result.expect("decides");
        assert_eq!(decision.acknowledge.as_deref(), Some("Hola! Et responem aviat."));
    }

    fn hostile(behaviour: &str) -> Outcome {
        host().on_message(
            &loaded("hostile"),
            &call("hola", &format!(r#"{{"behaviour": "{behaviour}"}}"#)),
            access(),
            host().limits(),
        )
    }

    #[test]
    fn hostile_plugins_fail_alone_and_are_classified() {
        let loop_outcome = hostile("loop");
        assert!(matches!(loop_outcome.result, Err(Failure::OutOfFuel | Failure::Timeout)), "{:?}", loop_outcome.result);
        assert!(matches!(hostile("memory").result, Err(Failure::OutOfMemory)), "memory bomb");
        assert!(
            matches!(hostile("huge-output").result, Err(Failure::InvalidOutput(_) | Failure::OutOfMemory)),
            "huge output"
        );
        assert!(matches!(hostile("many-tags").result, Err(Failure::InvalidOutput(_))), "too many tags");
        assert!(matches!(hostile("bad-label").result, Err(Failure::InvalidOutput(_))), "bad queue");
        let trap = hostile("trap").result;
        assert!(
            matches!(&trap, Err(Failure::Trap(text)) if text.contains("panics on purpose")),
            "the panic message is kept: {trap:?}"
        );
        assert!(matches!(hostile("recursion").result, Err(Failure::Trap(_))), "deep recursion");
        let flood = hostile("host-flood");
        assert!(matches!(flood.result, Err(Failure::HostCallBudget)), "{:?}", flood.result);
        assert_eq!(flood.logs.len(), Limits::default().log_lines, "logs are capped");
        let files = hostile("filesystem");
        assert!(
            matches!(&files.result, Err(Failure::Error(text)) if text.contains("no filesystem")),
            "{:?}",
            files.result
        );
    }

    #[test]
    fn writes_of_a_failed_call_are_discarded_and_time_is_an_input() {
        let outcome = hostile("kv-then-trap");
        assert!(outcome.result.is_err());
        assert!(outcome.kv_writes.is_empty(), "nothing from a trapped call is kept");
        let clock = hostile("clock").result.expect("decides");
        assert_eq!(clock.reason, "clock 1700000000000", "the guest's clock is the decision's time");
    }

    #[test]
    fn memory_returns_to_its_baseline_after_thousands_of_hostile_calls() {
        // Resident memory belongs to the whole process: the probe runs in a process of its own, so the other
        // tests running beside it (compiles, indexes) do not count.
        let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["plugins::engine::tests::hostile_calls_memory_probe", "--exact", "--ignored", "--test-threads=1"])
            .output()
            .expect("the probe runs");
        let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{report}");
        assert!(report.contains("1 passed"), "the probe ran: {report}");
    }

    #[test]
    #[ignore = "run alone, in its own process, by memory_returns_to_its_baseline_after_thousands_of_hostile_calls"]
    fn hostile_calls_memory_probe() {
        let behaviours = ["memory", "trap", "huge-output", "recursion"];
        // Warm up: allocator arenas, code, caches.
        for behaviour in behaviours.iter().cycle().take(100) {
            assert!(hostile(behaviour).result.is_err());
        }
        let baseline = crate::metrics::resident_bytes();
        for behaviour in behaviours.iter().cycle().take(2_000) {
            assert!(hostile(behaviour).result.is_err());
        }
        let after = crate::metrics::resident_bytes();
        // Each memory bomb reaches the 16 MiB cap: keeping even one store per call would add tens of GiB.
        let grown = after.saturating_sub(baseline);
        assert!(grown < 64 << 20, "resident memory grew by {} MiB over 2,000 hostile calls", grown >> 20);
    }

    #[test]
    fn a_missing_import_is_named_with_what_to_do() {
        let load = |import: &str| {
            let wat = format!(r#"(component (import "{import}" (instance (export "f" (func)))))"#);
            match host().load(&wat::parse_str(wat).expect("wat")) {
                Err(LoadError::Contract(message)) => message,
                other => panic!("refused as a contract problem, not {:?}", other.map(|_| ())),
            }
        };
        let http = load("wasi:http/types@0.2.10");
        assert!(http.contains("components may not import `wasi:http` (it imports `wasi:http/types@0.2.10`)"), "{http}");
        assert!(http.contains("--disable http fetch-event"), "the fix for componentize-js: {http}");
        assert!(http.contains("The linker said: "), "{http}");
        let other = load("acme:telemetry/export@1.0.0");
        assert!(other.contains("it imports `acme:telemetry/export@1.0.0`, which this host does not offer"), "{other}");
        assert!(other.contains("`recado:plugin/host` and WASI 0.2"), "{other}");
    }

    #[test]
    fn bytes_that_are_not_a_rules_component_are_refused() {
        let host = host();
        assert!(matches!(host.load(b"not wasm"), Err(LoadError::NotAComponent(_))));
        // A core module (the Extism style) is not a component.
        let core_module = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(matches!(host.load(&core_module), Err(LoadError::NotAComponent(_))));
    }
}
