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
//!
//! # Layout
//! - `engine` ([`PluginHost`]): the engine, loading compiled components, and the one path every call takes.
//! - `host`: what a call can do on the host (logs, its key-value store, knowledge-base search), budgeted, and
//!   the fixed clocks and seeded randomness it sees.
//! - `wit`: the versioned contracts (`wit::since_v0_2_0` is `recado:plugin@0.2.0`), every one still served:
//!   bindings and the conversions between their records and ours. A new contract version is one more module
//!   there.
//! - [`rules`]: the server's side: compiled-plugin cache, upload admission, running a client's chain.
//! - [`check`], [`compile`]: upload checks, and compiling in a separate, limited process.
//! - [`fixtures`]: `recado plugin test`'s fixture files.
//! - [`templates`]: `recado plugin new`, projects in other languages from `plugins-sdk/templates`.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::PluginSettings;
use crate::domain::{BusinessTime, Decision, Invalid, LogLine, PluginLimits};

pub mod check;
pub mod compile;
mod engine;
pub mod fixtures;
mod host;
pub mod rules;
pub mod templates;
mod wit;

pub(crate) use engine::engine_config;
pub use engine::{LoadedPlugin, PluginHost, ReusedInstance};

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
            memory_bytes: 32 << 20,
            fuel: 250_000_000,
            deadline: Duration::from_millis(50),
            host_calls: 200,
            log_lines: 50,
            log_line_bytes: 1_024,
            kv_writes: 20,
            kv_value_bytes: 4_096,
        }
    }
}

/// One client's plugin limits: the server's defaults, with what an admin granted the client in its
/// profile (`plugin_limits`), never past the server's most-per-client.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Limits of each call.
    pub call: Limits,
    /// Largest component the client may upload.
    pub max_component_bytes: usize,
    /// Plugin time of one of its turns in the pipeline.
    pub slice: Duration,
    /// Longest one of its messages waits for its rules.
    pub queue: Duration,
}

impl ClientLimits {
    /// The limits `granted` gives under `settings`. A grant past a ceiling (one lowered after the grant was
    /// made) is capped at the ceiling.
    pub fn of(settings: &PluginSettings, granted: &PluginLimits) -> Self {
        let most = &settings.per_client_max;
        let pick = |granted: Option<u64>, default: u64, most: u64| granted.unwrap_or(default).min(most.max(default));
        let bytes = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        let wide = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        Self {
            call: Limits {
                memory_bytes: bytes(pick(granted.memory_bytes, wide(settings.memory_bytes), wide(most.memory_bytes))),
                fuel: pick(granted.fuel, settings.fuel, most.fuel),
                deadline: Duration::from_millis(pick(granted.deadline_ms, settings.deadline_ms, most.deadline_ms)),
                ..Limits::default()
            },
            max_component_bytes: bytes(pick(
                granted.max_component_bytes,
                wide(settings.max_component_bytes),
                wide(most.max_component_bytes),
            )),
            slice: Duration::from_millis(pick(granted.client_slice_ms, settings.client_slice_ms, most.client_slice_ms)),
            queue: Duration::from_millis(pick(granted.client_queue_ms, settings.client_queue_ms, most.client_queue_ms)),
        }
    }

    /// Checks a grant against the server's most-per-client: what an admin is told when asking for more.
    ///
    /// # Errors
    /// A granted value is above its ceiling; the error names the field and the ceiling.
    pub fn check(settings: &PluginSettings, granted: &PluginLimits) -> Result<(), Invalid> {
        let (most, wide) = (&settings.per_client_max, |value: usize| u64::try_from(value).unwrap_or(u64::MAX));
        let ceilings = [
            wide(most.memory_bytes.max(settings.memory_bytes)),
            most.fuel.max(settings.fuel),
            most.deadline_ms.max(settings.deadline_ms),
            wide(most.max_component_bytes.max(settings.max_component_bytes)),
            most.client_slice_ms.max(settings.client_slice_ms),
            most.client_queue_ms.max(settings.client_queue_ms),
        ];
        for ((name, value), ceiling) in granted.fields().into_iter().zip(ceilings) {
            if let Some(value) = value
                && value > ceiling
            {
                return Err(Invalid::new(
                    format!("plugin_limits.{name}"),
                    format!(
                        "must be at most {ceiling}, the most this server grants one client (plugins.per_client_max.{name})"
                    ),
                ));
            }
        }
        Ok(())
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
    /// The most linear memory the call used, in bytes (what its image starts with included).
    pub peak_memory: usize,
}

impl Outcome {
    /// A warning for each limit this call used more than half of: a longer message or a busier machine may
    /// cross it. Shown by `recado plugin test` and with an upload.
    pub fn warnings(&self, limits: &Limits) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut over_half = |what: &str, used: f64, limit: f64, unit: &str| {
            if used * 2.0 > limit {
                let percent = (used * 100.0 / limit.max(1.0)).round();
                warnings.push(format!(
                    "used more than half of its {what}: {used:.1} {unit} of {limit:.0} {unit} ({percent}%)"
                ));
            }
        };
        #[allow(clippy::cast_precision_loss, reason = "a figure for people, one decimal shown")]
        {
            over_half("instructions (fuel)", self.fuel_used as f64 / 1e6, limits.fuel as f64 / 1e6, "M");
            over_half("time", self.duration.as_secs_f64() * 1e3, limits.deadline.as_secs_f64() * 1e3, "ms");
            let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
            over_half("memory", mib(self.peak_memory), mib(limits.memory_bytes), "MiB");
        }
        warnings
    }
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
    /// `now` on the client's clock and its business hours around it (contract 0.2.0 and later).
    pub local: BusinessTime,
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

/// The circuit breaker: a plugin that fails this many runs in a row is disabled (by the store, in the
/// transaction that records the run that trips it), so a broken version stops costing its client time and
/// the client's defaults decide until someone looks. A success resets the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that trip it (`plugins.breaker_failures`).
    pub failures: u32,
}

impl crate::store::TripRule for Breaker {
    fn trips(&self, consecutive: u32, last_failure: &str) -> Option<String> {
        (consecutive >= self.failures)
            .then(|| format!("circuit breaker: {} consecutive failures, the last: {last_failure}", self.failures))
    }
}

/// At most `chars` characters of `text` (error texts a plugin hands back are cut to this).
fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
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

    /// A message call as the pipeline makes one, for a text and an installation's configuration.
    pub(crate) fn message_call(text: &str, config: &str) -> super::MessageCall {
        super::MessageCall {
            message: super::PluginMessage {
                id: "msg_1".into(),
                channel: "whatsapp".into(),
                text: text.into(),
                language: Some("ca".into()),
                received_at: 1_700_000_000_000,
            },
            contact: super::PluginContact {
                id: "ctc_1".into(),
                handle: "+34600".into(),
                name: None,
                tags: vec![],
                is_new: true,
            },
            context: super::PluginContext {
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
                local: crate::domain::BusinessHours::default()
                    .around(crate::domain::Timestamp(1_700_000_000_000), "Europe/Madrid"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TripRule as _;

    #[test]
    fn the_breaker_trips_at_its_count_of_failures_in_a_row_and_says_why() {
        let breaker = Breaker { failures: 3 };
        assert_eq!(breaker.trips(2, "timeout"), None);
        let reason = breaker.trips(3, "took longer than its deadline").expect("trips");
        assert_eq!(reason, "circuit breaker: 3 consecutive failures, the last: took longer than its deadline");
        assert!(breaker.trips(7, "x").is_some(), "past the count too (a count carried over a restart)");
    }

    #[test]
    fn a_clients_limits_are_the_defaults_with_its_grant_capped_at_the_ceilings() {
        let mut settings = PluginSettings::default();
        let none = ClientLimits::of(&settings, &PluginLimits::default());
        assert_eq!((none.call.memory_bytes, none.call.fuel), (settings.memory_bytes, settings.fuel));
        assert_eq!((none.slice, none.queue), (Duration::from_millis(250), Duration::from_secs(30)));

        let granted = PluginLimits {
            memory_bytes: Some(96 << 20),
            deadline_ms: Some(20),
            client_queue_ms: Some(120_000),
            ..PluginLimits::default()
        };
        assert_eq!(ClientLimits::check(&settings, &granted), Ok(()));
        let limits = ClientLimits::of(&settings, &granted);
        assert_eq!(limits.call.memory_bytes, 96 << 20);
        assert_eq!(limits.call.deadline, Duration::from_millis(20), "a grant may also be stricter");
        assert_eq!(limits.call.fuel, settings.fuel, "what is not granted stays the default");
        assert_eq!(limits.queue, Duration::from_secs(120));

        // The ceiling lowered after the grant: the grant is capped, and asking again is refused.
        settings.per_client_max.memory_bytes = 64 << 20;
        assert_eq!(ClientLimits::of(&settings, &granted).call.memory_bytes, 64 << 20);
        let refused = ClientLimits::check(&settings, &granted).expect_err("past the ceiling");
        assert_eq!(refused.field, "plugin_limits.memory_bytes");
        assert!(refused.message.starts_with("must be at most 67108864"), "{refused}");

        // A default raised past its ceiling: the ceiling is the default, and granting the default is allowed.
        settings.deadline_ms = 2_000;
        let default_deadline = PluginLimits { deadline_ms: Some(2_000), ..PluginLimits::default() };
        assert_eq!(ClientLimits::check(&settings, &default_deadline), Ok(()));
        assert_eq!(ClientLimits::of(&settings, &PluginLimits::default()).call.deadline, Duration::from_secs(2));
    }
}
