//! The rule-plugin host: runs clients' WebAssembly components (the `recado:plugin` world) under limits.
//!
//! One [`PluginHost`] per process owns the wasmtime engine (fuel as the deterministic instruction budget,
//! an epoch deadline as the wall-clock backstop, a capped wasm stack) and a 1 ms epoch ticker. Each call
//! gets a fresh store with a memory cap and an empty WASI context (no files, environment, arguments or
//! network; clocks fixed at the decision's time; randomness seeded), so calls cannot see each other and a
//! decision depends only on its inputs. Host imports are budgeted per call; key-value writes are buffered
//! and handed back only when the call succeeds. Whatever goes wrong (trap, budget, memory, deadline, an
//! error result, an output out of bounds) comes back as a [`Failure`], never as a panic of the host: the
//! caller then applies the client's defaults.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::domain::{Decision, Escalation, LogLevel, LogLine, Priority, parse_label};

pub mod check;
pub mod compile;
pub mod fixtures;
pub mod runtime;

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins-sdk/wit/since_v0.1.0",
        world: "rules",
        imports: { default: trappable },
    });
}

use bindings::recado::plugin::types as wit;

/// Limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a plugin may grow to.
    pub memory_bytes: usize,
    /// Instructions (fuel units) per call.
    pub fuel: u64,
    /// Wall-clock deadline per call.
    pub deadline: Duration,
    /// Host calls per call.
    pub host_calls: u32,
    /// Log lines kept per call (more are counted and dropped).
    pub log_lines: usize,
    /// Longest log line kept, in bytes.
    pub log_line_bytes: usize,
    /// Key-value pairs written per call, and the longest value.
    pub kv_writes: usize,
    /// Longest key-value value, in bytes.
    pub kv_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 16 << 20,
            fuel: 50_000_000,
            deadline: Duration::from_millis(50),
            host_calls: 200,
            log_lines: 50,
            log_line_bytes: 1_024,
            kv_writes: 20,
            kv_value_bytes: 4_096,
        }
    }
}

/// What went wrong in a call. The message of each is shown with the recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The instruction budget ran out.
    #[error("ran out of its instruction budget")]
    OutOfFuel,
    /// The wall-clock deadline passed.
    #[error("took longer than its deadline")]
    Timeout,
    /// It tried to grow its memory past the cap.
    #[error("tried to use more memory than allowed")]
    OutOfMemory,
    /// It made more host calls than allowed.
    #[error("made too many host calls")]
    HostCallBudget,
    /// It trapped (panic, stack overflow, out-of-bounds access...).
    #[error("crashed: {0}")]
    Trap(String),
    /// It returned an error.
    #[error("returned an error: {0}")]
    Error(String),
    /// Its decision breaks a rule (too long, malformed label...).
    #[error("returned an invalid decision: {0}")]
    InvalidOutput(String),
    /// The component could not be instantiated (missing imports, limits at instantiation).
    #[error("could not start: {0}")]
    Instantiate(String),
}

impl Failure {
    /// Stable machine-readable code (metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::OutOfFuel => "out_of_fuel",
            Self::Timeout => "timeout",
            Self::OutOfMemory => "out_of_memory",
            Self::HostCallBudget => "host_call_budget",
            Self::Trap(_) => "trap",
            Self::Error(_) => "error",
            Self::InvalidOutput(_) => "invalid_output",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

/// The outcome of one call, with what it logged and what it cost.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The validated decision, or why there is none.
    pub result: Result<Decision, Failure>,
    /// Log lines kept, with their level.
    pub logs: Vec<LogLine>,
    /// Key-value writes to commit (empty unless the call succeeded).
    pub kv_writes: Vec<(String, String)>,
    /// Instructions used.
    pub fuel_used: u64,
    /// Wall time of the call, instantiation included.
    pub duration: Duration,
}

/// A knowledge-base hit offered to plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct KbHit {
    /// Article id.
    pub article_id: String,
    /// Its title.
    pub title: String,
    /// Its score.
    pub score: f32,
}

/// Searches one client's knowledge base for a plugin.
pub type KbSearch = std::sync::Arc<dyn Fn(&str, u32) -> Vec<KbHit> + Send + Sync>;

/// What a call can reach on the host: the installation's stored values and the client's knowledge base.
#[derive(Clone)]
pub struct HostAccess {
    /// Values stored by earlier calls of this installation.
    pub kv: HashMap<String, String>,
    /// Searches the client's own knowledge base.
    pub kb_search: KbSearch,
}

/// The inputs of `on-message`, in the contract's terms.
#[derive(Debug, Clone)]
pub struct MessageCall {
    /// The message.
    pub message: PluginMessage,
    /// Its sender.
    pub contact: PluginContact,
    /// Where and when.
    pub context: PluginContext,
}

/// The message given to a plugin.
#[derive(Debug, Clone)]
pub struct PluginMessage {
    /// Message id.
    pub id: String,
    /// Channel.
    pub channel: String,
    /// Text.
    pub text: String,
    /// Detected language.
    pub language: Option<String>,
    /// Received at (ms since the epoch).
    pub received_at: i64,
}

/// The contact given to a plugin.
#[derive(Debug, Clone)]
pub struct PluginContact {
    /// Contact id.
    pub id: String,
    /// Handle.
    pub handle: String,
    /// Name.
    pub name: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// First message to this client.
    pub is_new: bool,
}

/// The context given to a plugin.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// Client slug.
    pub client: String,
    /// The decision's time (ms since the epoch).
    pub now: i64,
    /// Client's time zone.
    pub timezone: String,
    /// Open now.
    pub within_business_hours: bool,
    /// Client's languages.
    pub languages: Vec<String>,
    /// Conversation id.
    pub conversation_id: String,
    /// Messages so far.
    pub messages_in_conversation: u32,
    /// Customer messages since the last human reply.
    pub unanswered_inbound: u32,
    /// Last automatic acknowledgement.
    pub last_acknowledged_at: Option<i64>,
    /// Last human reply.
    pub last_human_reply_at: Option<i64>,
    /// Installation configuration (JSON).
    pub config: String,
}

/// Per-call state inside the store.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    call_limits: Limits,
    host_calls: u32,
    host_budget_hit: bool,
    logs: Vec<LogLine>,
    kv: HashMap<String, String>,
    kv_writes: Vec<(String, String)>,
    kb_search: KbSearch,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The error a budgeted host call traps with.
#[derive(Debug)]
struct HostBudgetExceeded;

impl std::fmt::Display for HostBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("host call budget exceeded")
    }
}

impl std::error::Error for HostBudgetExceeded {}

impl CallState {
    /// Counts a host call; traps once the budget is spent.
    fn charge(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.call_limits.host_calls {
            self.host_budget_hit = true;
            return Err(wasmtime::Error::new(HostBudgetExceeded));
        }
        Ok(())
    }
}

impl wit::Host for CallState {}

impl bindings::recado::plugin::host::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
        self.charge()?;
        if self.logs.len() < self.call_limits.log_lines {
            let level = match level {
                wit::LogLevel::Trace => LogLevel::Trace,
                wit::LogLevel::Debug => LogLevel::Debug,
                wit::LogLevel::Info => LogLevel::Info,
                wit::LogLevel::Warn => LogLevel::Warn,
                wit::LogLevel::Error => LogLevel::Error,
            };
            let mut line = message;
            if line.len() > self.call_limits.log_line_bytes {
                let mut cut = self.call_limits.log_line_bytes;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            self.logs.push(LogLine { level, message: line });
        }
        Ok(())
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.charge()?;
        Ok(self.kv.get(&key).cloned())
    }

    fn kv_set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        self.charge()?;
        if key.is_empty() || key.len() > 128 {
            return Ok(Err("keys must be 1 to 128 bytes".into()));
        }
        if value.len() > self.call_limits.kv_value_bytes {
            return Ok(Err(format!("values must be at most {} bytes", self.call_limits.kv_value_bytes)));
        }
        if self.kv_writes.len() >= self.call_limits.kv_writes {
            return Ok(Err(format!("at most {} writes per call", self.call_limits.kv_writes)));
        }
        self.kv.insert(key.clone(), value.clone());
        self.kv_writes.push((key, value));
        Ok(Ok(()))
    }

    fn kb_search(&mut self, query: String, limit: u32) -> wasmtime::Result<Vec<wit::KbHit>> {
        self.charge()?;
        let query: String = query.chars().take(500).collect();
        let hits = (self.kb_search)(&query, limit.min(10));
        Ok(hits
            .into_iter()
            .map(|hit| wit::KbHit { article_id: hit.article_id, title: hit.title, score: hit.score })
            .collect())
    }
}

/// A wall clock stopped at the decision's time: plugins get time as an input, never from a clock.
struct FixedWallClock(Duration);

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that does not move.
struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A compiled plugin, ready to be instantiated for each call.
#[derive(Clone)]
pub struct LoadedPlugin {
    pre: bindings::RulesPre<CallState>,
}

/// The plugin host. One per process; clone freely.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    linker: std::sync::Arc<Linker<CallState>>,
    limits: Limits,
}

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid WebAssembly component (a core module, a precompiled artefact, garbage).
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// Larger than uploads may be.
    #[error("the component is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A single function is larger than allowed (compile time grows with function size).
    #[error("a function body of {size} bytes is larger than the {max} bytes allowed")]
    FunctionTooLarge {
        /// The largest function's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A component, but not of the `recado:plugin` world at a version this host serves.
    #[error("{0}")]
    Contract(String),
    /// The compiler refused it or ran out of its limits.
    #[error("compiling failed: {0}")]
    Compile(String),
    /// Compiling took longer than allowed; the compiler was stopped.
    #[error("compiling took longer than {0} ms and was stopped")]
    CompileTimeout(u64),
}

impl LoadError {
    /// Stable machine-readable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAComponent(_) => "not_a_component",
            Self::TooLarge { .. } => "too_large",
            Self::FunctionTooLarge { .. } => "function_too_large",
            Self::Contract(_) => "wrong_contract",
            Self::Compile(_) => "compile_failed",
            Self::CompileTimeout(_) => "compile_timeout",
        }
    }
}

/// The engine configuration shared by the server and the compiler process: compiled code is only valid for
/// an engine configured the same way, so both build it here. The pooling allocator is the server's alone;
/// it changes how memory is handed out, not the compiled code.
fn engine_config(limits: &Limits, pooling: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024)
        .wasm_threads(false);
    if pooling {
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
            .max_memory_size(limits.memory_bytes)
            // Keeping a little of each memory mapped saves page faults on the next call.
            .linear_memory_keep_resident(512 * 1024)
            .table_keep_resident(64 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl PluginHost {
    /// Builds the engine (with the pooling allocator), the linker and the epoch ticker.
    ///
    /// # Errors
    /// The engine cannot be configured on this machine.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits, true))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Rules::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
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

    /// The limits every call runs under.
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
    /// `recado plugin test`, the tests). Uploads are compiled by [`compile::compile_isolated`] and loaded with
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
            LoadError::Contract(format!("does not fit the recado:plugin@0.1.0 contract: {error:#}"))
        })?;
        let pre = bindings::RulesPre::new(pre).map_err(|error| {
            LoadError::Contract(format!("does not export the recado:plugin@0.1.0 rules world: {error:#}"))
        })?;
        Ok(LoadedPlugin { pre })
    }

    fn store(&self, access: HostAccess, now: i64, seed: u64) -> (Store<CallState>, MemoryOutputPipe) {
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
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .table_elements(20_000)
                .instances(50)
                .tables(10)
                .memories(10)
                .trap_on_grow_failure(true)
                .build(),
            call_limits: self.limits.clone(),
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
        let ticks = u64::try_from(self.limits.deadline.as_millis()).unwrap_or(u64::MAX).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        // Fuel is enabled in the engine config, so this cannot fail.
        let _ = store.set_fuel(self.limits.fuel);
        (store, stderr)
    }

    /// Runs `on-message`. Blocking (guest code runs on this thread); call it off the async threads.
    pub fn on_message(&self, plugin: &LoadedPlugin, call: &MessageCall, access: HostAccess) -> Outcome {
        let seed = seed_of(&call.message.id);
        let (mut store, stderr) = self.store(access, call.context.now, seed);
        let started = Instant::now();
        let (message, contact, context) = wit_inputs(call);
        let result = match plugin.pre.instantiate(&mut store) {
            Ok(instance) => match instance.call_on_message(&mut store, &message, &contact, &context) {
                Ok(Ok(decision)) => validate(decision),
                Ok(Err(error)) => Err(Failure::Error(truncate(&error, 500))),
                Err(error) => Err(classify(&error, &store)),
            },
            Err(error) => Err(instantiate_failure(&error, &store)),
        };
        finish(store, result, started, self.limits.fuel, &stderr)
    }

    /// Runs `on-overdue`. Blocking; call it off the async threads.
    pub fn on_overdue(
        &self,
        plugin: &LoadedPlugin,
        context: &PluginContext,
        waited_seconds: u64,
        access: HostAccess,
    ) -> Outcome {
        let (mut store, stderr) = self.store(access, context.now, seed_of(&context.conversation_id));
        let started = Instant::now();
        let result = match plugin.pre.instantiate(&mut store) {
            Ok(instance) => match instance.call_on_overdue(&mut store, &wit_context(context), waited_seconds) {
                Ok(Ok(decision)) => validate(decision),
                Ok(Err(error)) => Err(Failure::Error(truncate(&error, 500))),
                Err(error) => Err(classify(&error, &store)),
            },
            Err(error) => Err(instantiate_failure(&error, &store)),
        };
        finish(store, result, started, self.limits.fuel, &stderr)
    }
}

/// One instance kept for many calls. The server never does this (each call gets a fresh instance, so calls
/// cannot see each other); it exists to measure what instantiation costs.
pub struct ReusedInstance {
    store: Store<CallState>,
    instance: bindings::Rules,
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
        let (message, contact, context) = wit_inputs(call);
        match self.instance.call_on_message(&mut self.store, &message, &contact, &context) {
            Ok(Ok(decision)) => validate(decision),
            Ok(Err(error)) => Err(Failure::Error(truncate(&error, 500))),
            Err(error) => Err(classify(&error, &self.store)),
        }
    }
}

impl PluginHost {
    /// Instantiates `plugin` once for repeated calls (benchmarks only; see [`ReusedInstance`]).
    ///
    /// # Errors
    /// The component cannot be instantiated.
    pub fn reused_instance(&self, plugin: &LoadedPlugin, access: HostAccess) -> Result<ReusedInstance, Failure> {
        let (mut store, _) = self.store(access, 0, 0);
        let instance = plugin.pre.instantiate(&mut store).map_err(|error| instantiate_failure(&error, &store))?;
        let deadline_ticks = u64::try_from(self.limits.deadline.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(ReusedInstance { store, instance, fuel: self.limits.fuel, deadline_ticks })
    }
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
    let state = store.into_data();
    let kv_writes = if result.is_ok() { state.kv_writes } else { Vec::new() };
    Outcome { result, logs: state.logs, kv_writes, fuel_used, duration: started.elapsed() }
}

/// A seeded random source for WASI's "secure" random: a plugin's randomness is part of its inputs.
struct SeededRandom(u64);

impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        // splitmix64: small, fast, and good enough for a guest's non-cryptographic needs.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
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

fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// Checks a plugin's decision against the contract's bounds and turns it into the domain's.
fn validate(decision: wit::Decision) -> Result<Decision, Failure> {
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

/// Helpers shared by the tests of several modules.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    /// The example components, built once per test run if `scripts/test` has not built them already.
    pub(crate) fn example_component(name: &str) -> Vec<u8> {
        static BUILT: OnceLock<()> = OnceLock::new();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("example-plugins");
        let path = root.join(format!("target/wasm32-wasip2/release/{name}.wasm"));
        BUILT.get_or_init(|| {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(root.join("Cargo.toml"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the example plugins failed (is the wasm32-wasip2 target installed?)");
        });
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, OnceLock};

    use test_support::example_component as component;

    /// One host for the tests, and each component compiled once (compiling is the slow part).
    fn host() -> &'static PluginHost {
        static HOST: OnceLock<PluginHost> = OnceLock::new();
        HOST.get_or_init(|| PluginHost::new(Limits::default()).expect("engine"))
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

    fn call(text: &str, config: &str) -> MessageCall {
        MessageCall {
            message: PluginMessage {
                id: "msg_1".into(),
                channel: "whatsapp".into(),
                text: text.into(),
                language: Some("ca".into()),
                received_at: 1_700_000_000_000,
            },
            contact: PluginContact {
                id: "ctc_1".into(),
                handle: "+34600".into(),
                name: None,
                tags: vec![],
                is_new: true,
            },
            context: PluginContext {
                client: "dental-gracia".into(),
                now: 1_700_000_000_000,
                timezone: "Europe/Madrid".into(),
                within_business_hours: true,
                languages: vec!["ca".into(), "es".into()],
                conversation_id: "cnv_1".into(),
                messages_in_conversation: 1,
                unanswered_inbound: 1,
                last_acknowledged_at: None,
                last_human_reply_at: None,
                config: config.into(),
            },
        }
    }

    #[test]
    fn the_example_plugin_acknowledges_in_the_customers_language() {
        let host = host();
        let plugin = loaded("business_hours_ack");
        let config = r#"{"open": {"ca": "Hola! Et responem aviat.", "es": "¡Hola!"}, "repeat_after_minutes": 60}"#;
        let outcome = host.on_message(&plugin, &call("Bon dia", config), access());
        let decision = outcome.result.expect("decides");
        assert_eq!(decision.acknowledge.as_deref(), Some("Hola! Et responem aviat."));
        assert!(outcome.fuel_used > 0);

        let mut again = call("Hi ha algú?", config);
        again.context.last_acknowledged_at = Some(again.context.now - 10 * 60_000);
        let decision = host.on_message(&plugin, &again, access()).result.expect("decides");
        assert_eq!(decision.acknowledge, None, "{}", decision.reason);
    }

    fn hostile(behaviour: &str) -> Outcome {
        host().on_message(&loaded("hostile"), &call("hola", &format!(r#"{{"behaviour": "{behaviour}"}}"#)), access())
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
            .args(["plugins::tests::hostile_calls_memory_probe", "--exact", "--ignored", "--test-threads=1"])
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
    fn bytes_that_are_not_a_rules_component_are_refused() {
        let host = host();
        assert!(matches!(host.load(b"not wasm"), Err(LoadError::NotAComponent(_))));
        // A core module (the Extism style) is not a component.
        let core_module = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(matches!(host.load(&core_module), Err(LoadError::NotAComponent(_))));
    }
}
