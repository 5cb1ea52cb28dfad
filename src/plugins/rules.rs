//! [`Rules`]: the handle the rest of the server uses for plugins. It admits uploads (checks, compiles in a
//! separate process, caches the compiled code, smoke-calls), keeps compiled plugins loaded, and runs a
//! client's chain for a message or an overdue conversation.
//!
//! Calls are blocking (guest code runs on the calling thread): callers run them on blocking threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::check::{UploadLimits, check_component};
use super::compile::{CompileCache, CompilerSettings, compile_isolated, sha256_hex};
use super::{
    ClientLimits, Failure, HostAccess, KbHit, KbSearch, Limits, LoadError, LoadedPlugin, MessageCall, Outcome,
    PluginContact, PluginContext, PluginHost, PluginMessage,
};
use crate::config::PluginSettings;
use crate::domain::{ClientProfile, ClientSlug, Decision, PluginState, Timestamp, merge_chain};
use crate::kb::SearchIndex;
use crate::kb::suggest::Request;
use crate::kb::template::Fill;
use crate::store::{Db, PluginRun, RunningPlugin};

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The bytes were refused before or while compiling.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// It compiled but failed when called with a sample message.
    #[error("the plugin failed a trial call with a sample message: {0}")]
    Smoke(Failure),
    /// Our side failed (disk, a task).
    #[error("admitting the plugin failed: {0:#}")]
    Internal(anyhow::Error),
}

/// Why a stored plugin version could not be made ready to run.
#[derive(Debug, thiserror::Error)]
pub enum LoadStoredError {
    /// The store could not be read: an outage, worth retrying.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Its kept component no longer loads (it fails the checks or the compiler now).
    #[error(transparent)]
    Admit(#[from] AdmitError),
}

impl From<LoadError> for LoadStoredError {
    fn from(error: LoadError) -> Self {
        Self::Admit(AdmitError::Load(error))
    }
}

/// A component that passed the upload checks, compiled and loaded.
#[derive(Clone)]
pub struct Admitted {
    /// SHA-256 of the component.
    pub sha256: String,
    /// The loaded plugin.
    pub plugin: LoadedPlugin,
}

/// The plugin service. One per process; clone freely.
#[derive(Clone)]
pub struct Rules {
    inner: Arc<Inner>,
}

struct Inner {
    host: PluginHost,
    cache: CompileCache,
    compiler: CompilerSettings,
    upload: UploadLimits,
    settings: PluginSettings,
    metrics: crate::metrics::Metrics,
    /// Loaded plugins by component hash (the configuration is an input of each call, not of the code). Only
    /// running plugins are kept: see [`Rules::release_unused`].
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
    /// One compile at a time: compiling takes a core. The lock queues in arrival order and each client has
    /// at most one upload in it ([`Rules::begin_upload`]), so the queue is fair between clients.
    compiling: tokio::sync::Mutex<()>,
    /// Clients with an upload being checked.
    uploading: Mutex<std::collections::HashSet<ClientSlug>>,
}

/// A client's upload in progress; the client may start another once this is dropped.
pub struct UploadGuard {
    rules: Rules,
    client: ClientSlug,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.rules.inner.uploading.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.client);
    }
}

impl Limits {
    /// The per-call limits configured in `settings`.
    pub fn from_settings(settings: &PluginSettings) -> Self {
        Self {
            memory_bytes: settings.memory_bytes,
            fuel: settings.fuel,
            deadline: Duration::from_millis(settings.deadline_ms),
            ..Self::default()
        }
    }
}

impl Rules {
    /// Builds the engine and the service. Compiled plugins are cached in `cache_dir`; calls are counted in
    /// `metrics`.
    ///
    /// # Errors
    /// The engine cannot be built, or the compiler program cannot be found.
    pub fn new(
        settings: &PluginSettings,
        cache_dir: PathBuf,
        metrics: crate::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let program = match &settings.compiler {
            Some(program) => program.clone(),
            None => std::env::current_exe()?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                host: PluginHost::with_room(Limits::from_settings(settings), settings.per_client_max.memory_bytes)?,
                cache: CompileCache::new(cache_dir),
                compiler: CompilerSettings {
                    program,
                    timeout: Duration::from_millis(settings.compile_timeout_ms),
                    memory_bytes: settings.compile_memory_bytes,
                },
                upload: UploadLimits::from(settings),
                settings: settings.clone(),
                metrics,
                loaded: Mutex::new(HashMap::new()),
                compiling: tokio::sync::Mutex::new(()),
                uploading: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }

    /// The host (engine and limits).
    pub fn host(&self) -> &PluginHost {
        &self.inner.host
    }

    /// The settings.
    pub fn settings(&self) -> &PluginSettings {
        &self.inner.settings
    }

    /// `profile`'s client's limits: the settings' defaults with what an admin granted it.
    pub fn limits_for(&self, profile: &ClientProfile) -> ClientLimits {
        ClientLimits::of(&self.inner.settings, &profile.plugin_limits)
    }

    /// The circuit breaker the runs of these plugins are recorded under.
    pub fn breaker(&self) -> super::Breaker {
        super::Breaker { failures: self.inner.settings.breaker_failures }
    }

    /// Starts an upload of `client`, or returns `None` when one of its uploads is still being checked.
    pub fn begin_upload(&self, client: &ClientSlug) -> Option<UploadGuard> {
        let mut uploading = self.inner.uploading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        uploading.insert(client.clone()).then(|| UploadGuard { rules: self.clone(), client: client.clone() })
    }

    /// Drops the loaded code of every plugin whose hash is not in `running`, so versions that stopped running
    /// give their memory back (they load again from the compile cache if they run again).
    pub fn release_unused(&self, running: &std::collections::HashSet<String>) {
        let mut loaded = self.inner.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.retain(|sha256, _| running.contains(sha256));
        self.inner.metrics.plugins_loaded(loaded.len());
    }

    /// Checks (a component of at most `max_component_bytes`: the uploading client's own limit), compiles (in
    /// the compiler process, or from the cache) and loads a component. The loaded code is not kept: only
    /// running plugins are ([`Rules::loaded`]).
    ///
    /// # Errors
    /// The component is refused, or the cache cannot be written.
    pub async fn admit(&self, wasm: &[u8], max_component_bytes: usize) -> Result<Admitted, AdmitError> {
        // Validating and hashing up to `max_component_bytes` takes a while: not on the async threads.
        let (bytes, limits) = (wasm.to_vec(), UploadLimits { max_component_bytes, ..self.inner.upload });
        let sha256 = tokio::task::spawn_blocking(move || {
            check_component(&bytes, limits)?;
            Ok::<_, LoadError>(sha256_hex(&bytes))
        })
        .await
        .map_err(|error| AdmitError::Internal(error.into()))??;
        if let Some(plugin) = self.cached(&sha256) {
            return Ok(Admitted { sha256, plugin });
        }
        let _one_at_a_time = self.inner.compiling.lock().await;
        let key = self.inner.host.compatibility_key();
        if !self.inner.cache.contains(&sha256, &key) {
            let compiled = compile_isolated(wasm, &self.inner.compiler).await?;
            let cache = self.inner.cache.clone();
            let (hash, engine_key) = (sha256.clone(), key.clone());
            tokio::task::spawn_blocking(move || cache.store(&hash, &engine_key, &compiled))
                .await
                .map_err(|error| AdmitError::Internal(error.into()))?
                .map_err(|error| {
                    AdmitError::Internal(anyhow::Error::new(error).context("writing the compile cache"))
                })?;
        }
        let plugin = self.load_cached(&sha256).await?;
        Ok(Admitted { sha256, plugin })
    }

    fn cached(&self, sha256: &str) -> Option<LoadedPlugin> {
        self.inner.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(sha256).cloned()
    }

    async fn load_cached(&self, sha256: &str) -> Result<LoadedPlugin, LoadError> {
        let path = self.inner.cache.path(sha256, &self.inner.host.compatibility_key());
        let host = self.inner.host.clone();
        tokio::task::spawn_blocking(move || host.load_compiled(&path))
            .await
            .map_err(|error| LoadError::Compile(format!("loading task failed: {error}")))?
    }

    fn keep_loaded(&self, sha256: &str, plugin: &LoadedPlugin) {
        let mut loaded = self.inner.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loaded.insert(sha256.to_owned(), plugin.clone());
        self.inner.metrics.plugins_loaded(loaded.len());
    }

    /// The loaded form of a running plugin: from memory, else from the compile cache, else compiled again
    /// from the bytes kept in the store (after a wasmtime upgrade or a deleted cache).
    ///
    /// # Errors
    /// The stored bytes no longer compile or load, or the store fails.
    pub async fn loaded(
        &self,
        db: &Db,
        client: &ClientSlug,
        plugin: &RunningPlugin,
    ) -> Result<LoadedPlugin, LoadStoredError> {
        if let Some(loaded) = self.cached(&plugin.sha256) {
            return Ok(loaded);
        }
        let loaded = if self.inner.cache.contains(&plugin.sha256, &self.inner.host.compatibility_key()) {
            self.load_cached(&plugin.sha256).await?
        } else {
            tracing::info!(client = client.as_str(), plugin = %plugin.id, "compiling a stored plugin again");
            let wasm = db.plugin_component(client.clone(), plugin.id.clone()).await?;
            // It was accepted once: only the server's own ceiling applies, not the client's limit of today.
            self.admit(&wasm, self.inner.settings.largest_component_bytes()).await?.plugin
        };
        self.keep_loaded(&plugin.sha256, &loaded);
        Ok(loaded)
    }

    /// Calls a freshly admitted plugin with a sample message of `client` and an overdue check, then with
    /// the longest message allowed. Returns warnings: a limit a call used more than half of, and the longest
    /// message failing (a plugin that only fails on it is accepted: such messages get the defaults). Blocking.
    ///
    /// # Errors
    /// The sample message or the overdue check failed (trap, budget, error result, invalid decision).
    pub fn smoke_call(
        &self,
        plugin: &LoadedPlugin,
        profile: &ClientProfile,
        client: &ClientSlug,
        config: &str,
    ) -> Result<Vec<String>, Failure> {
        let host = &self.inner.host;
        let limits = &self.limits_for(profile).call;
        let now = Timestamp::now().millis();
        let mut call = sample_call(profile, client, config, now);
        let access = HostAccess { kv: HashMap::new(), kb_search: Arc::new(|_, _| Vec::new()) };
        let message = host.on_message(plugin, &call, access.clone(), limits);
        message.result.as_ref().map_err(Clone::clone)?;
        let overdue = host.on_overdue(plugin, &call.context, 3_600, access.clone(), limits);
        overdue.result.as_ref().map_err(Clone::clone)?;
        let mut warnings: Vec<String> = [("a message", &message), ("an overdue check", &overdue)]
            .into_iter()
            .flat_map(|(what, outcome)| outcome.warnings(limits).into_iter().map(move |w| format!("on {what}, {w}")))
            .collect();
        call.message.text = super::fixtures::stress_text();
        let longest = host.on_message(plugin, &call, access, limits);
        let chars = crate::domain::InboundMessage::MAX_TEXT_CHARS;
        match &longest.result {
            Err(failure) => warnings.push(format!(
                "on the longest message allowed ({chars} characters) it {failure}: such messages will get the \
                 client's defaults"
            )),
            Ok(_) => warnings
                .extend(longest.warnings(limits).into_iter().map(|w| format!("on the longest message allowed, {w}"))),
        }
        Ok(warnings)
    }
}

/// A message that exercises a plugin at upload: a new contact's first message, in the client's language.
fn sample_call(profile: &ClientProfile, client: &ClientSlug, config: &str, now: i64) -> MessageCall {
    let local = profile.business_hours.around(Timestamp(now), &profile.timezone);
    MessageCall {
        message: PluginMessage {
            id: "msg_sample".into(),
            channel: "api".into(),
            text: "Hello! Is anyone there? I have a question.".into(),
            language: Some(profile.primary_language().to_owned()),
            received_at: now,
        },
        contact: PluginContact {
            id: "ctc_sample".into(),
            handle: "+10000000000".into(),
            name: Some("Sample Customer".into()),
            tags: Vec::new(),
            is_new: true,
        },
        context: PluginContext {
            client: client.as_str().to_owned(),
            now,
            timezone: profile.timezone.clone(),
            within_business_hours: local.open,
            local,
            languages: profile.languages.clone(),
            conversation_id: "cnv_sample".into(),
            messages_in_conversation: 1,
            unanswered_inbound: 1,
            last_acknowledged_at: None,
            last_human_reply_at: None,
            config: config.to_owned(),
        },
    }
}

/// Searches `client`'s own knowledge base for its plugins: the client is fixed here, not chosen by the
/// plugin, so a plugin never sees another client's articles.
pub fn kb_search_for(index: &SearchIndex, client: &ClientSlug, profile: &ClientProfile, language: &str) -> KbSearch {
    let index = index.clone();
    let client = client.as_str().to_owned();
    let language = language.to_owned();
    let others: Vec<String> = profile.languages.iter().filter(|other| **other != language).cloned().collect();
    let min_score = profile.suggestions.min_score;
    Arc::new(move |query: &str, limit: u32| {
        let boosts = HashMap::new();
        let fill = Fill::default();
        let request = Request {
            client: &client,
            text: query,
            language: &language,
            other_languages: &others,
            k: usize::try_from(limit).unwrap_or(1).clamp(1, 10),
            min_score,
            boosts: &boosts,
            fill: &fill,
        };
        match index.suggest(&request) {
            Ok(hits) => hits
                .into_iter()
                .map(|hit| KbHit { article_id: hit.article_id, title: hit.title, score: hit.score })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, client, "knowledge-base search for a plugin failed");
                Vec::new()
            }
        }
    })
}

/// One plugin of a chain, ready to run.
#[derive(Clone)]
pub struct ChainLink {
    /// What the store knows about it.
    pub plugin: RunningPlugin,
    /// Its loaded code.
    pub loaded: LoadedPlugin,
}

/// What running a chain gave: each plugin's run (to record) and the merge of the active ones' decisions.
#[derive(Debug, Clone)]
pub struct ChainOutcome {
    /// Every run, shadow ones included, in chain order.
    pub runs: Vec<PluginRun>,
    /// The merged decision of the active plugins that succeeded (`None` when none did).
    pub merged: Option<Decision>,
    /// Whether the chain has any active plugin.
    pub has_active: bool,
    /// Wall time spent in plugins.
    pub spent: Duration,
}

/// Which hook a chain runs.
#[derive(Debug, Clone)]
pub enum Hook<'a> {
    /// `on-message` for this message and contact.
    Message(&'a MessageCall),
    /// `on-overdue` after waiting this many seconds.
    Overdue {
        /// The conversation's context.
        context: &'a PluginContext,
        /// Seconds waited.
        waited_seconds: u64,
    },
}

impl Rules {
    /// Runs `chain` (in order) for `hook`, under the limits of the client whose `profile` is given. Each
    /// installation sees its own key-value store from `kv`, which is updated in place with the writes of
    /// successful runs (so later messages of a batch see them). Blocking.
    ///
    /// When the profile lists queues, a decision routing to any other queue counts as an invalid output: a
    /// plugin routes only within its own client.
    pub fn run_chain(
        &self,
        chain: &[ChainLink],
        hook: &Hook<'_>,
        kv: &mut HashMap<String, HashMap<String, String>>,
        kb_search: &KbSearch,
        profile: &ClientProfile,
    ) -> ChainOutcome {
        let queues = &profile.queues;
        let limits = &self.limits_for(profile).call;
        let mut runs = Vec::with_capacity(chain.len());
        let mut spent = Duration::ZERO;
        for link in chain {
            let store = kv.entry(link.plugin.name.clone()).or_default();
            let access = HostAccess { kv: store.clone(), kb_search: Arc::clone(kb_search) };
            let hook_name = match hook {
                Hook::Message(_) => "on-message",
                Hook::Overdue { .. } => "on-overdue",
            };
            let outcome: Outcome = match hook {
                Hook::Message(call) => {
                    let mut call = (*call).clone();
                    call.context.config.clone_from(&link.plugin.config);
                    self.inner.host.on_message(&link.loaded, &call, access, limits)
                }
                Hook::Overdue { context, waited_seconds } => {
                    let mut context = (*context).clone();
                    context.config.clone_from(&link.plugin.config);
                    self.inner.host.on_overdue(&link.loaded, &context, *waited_seconds, access, limits)
                }
            };
            spent += outcome.duration;
            // A shadow run reads the installation's store but its writes are dropped: trying out a version
            // must not change what the active one sees.
            let active = link.plugin.state == PluginState::Active;
            let kv_writes = if active { outcome.kv_writes } else { Vec::new() };
            let result = outcome.result.and_then(|decision| match &decision.queue {
                Some(queue) if !queues.is_empty() && !queues.contains(queue) => Err(Failure::InvalidOutput(format!(
                    "queue {queue:?} is not one of this client's queues ({})",
                    queues.join(", ")
                ))),
                _ => Ok(decision),
            });
            // An output refused here must not leave its writes behind either.
            let kv_writes = if result.is_ok() { kv_writes } else { Vec::new() };
            for (key, value) in &kv_writes {
                store.insert(key.clone(), value.clone());
            }
            let code = match &result {
                Ok(_) => "ok",
                Err(failure) => failure.code(),
            };
            self.inner.metrics.plugin_call(hook_name, code, outcome.duration.as_secs_f64());
            let (decision, failure) = match result {
                Ok(decision) => (Some(decision), None),
                Err(failure) => (None, Some(failure.to_string())),
            };
            runs.push(PluginRun {
                plugin_id: link.plugin.id.clone(),
                plugin_name: link.plugin.name.clone(),
                plugin_version: link.plugin.version.clone(),
                applied: active && decision.is_some(),
                decision,
                failure,
                logs: outcome.logs,
                fuel: outcome.fuel_used,
                duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
                kv_writes,
            });
        }
        let has_active = chain.iter().any(|link| link.plugin.state == PluginState::Active);
        let applied: Vec<(&str, &Decision)> = runs
            .iter()
            .filter(|run| run.applied)
            .filter_map(|run| run.decision.as_ref().map(|decision| (run.plugin_name.as_str(), decision)))
            .collect();
        let merged = (!applied.is_empty()).then(|| merge_chain(applied));
        ChainOutcome { runs, merged, has_active, spent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PluginId;

    #[test]
    fn a_shadow_run_reads_the_installations_store_and_its_writes_are_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let rules =
            Rules::new(&PluginSettings::default(), dir.path().into(), crate::metrics::Metrics::new()).expect("engine");
        let loaded = rules.host().load(&crate::plugins::test_support::example_component("hostile")).expect("loads");
        let link = |state: PluginState| ChainLink {
            plugin: RunningPlugin {
                id: PluginId::generate(),
                name: "counter".into(),
                version: "1".into(),
                sha256: String::new(),
                config: r#"{"behaviour": "kv-counter"}"#.into(),
                state,
            },
            loaded: loaded.clone(),
        };
        let call = crate::plugins::test_support::message_call("hola", "{}");
        let profile = ClientProfile::new("A", "Europe/Madrid", &["es"]);
        let no_kb: KbSearch = Arc::new(|_, _| Vec::new());
        let mut kv = HashMap::from([("counter".to_owned(), HashMap::from([("count".to_owned(), "4".to_owned())]))]);

        let shadow = rules.run_chain(&[link(PluginState::Shadow)], &Hook::Message(&call), &mut kv, &no_kb, &profile);
        let run = &shadow.runs[0];
        assert_eq!(run.decision.as_ref().map(|d| d.reason.as_str()), Some("count 5"), "it read the stored 4");
        assert!(run.kv_writes.is_empty() && !run.applied, "{run:?}");
        assert_eq!(kv["counter"]["count"], "4", "the active version's store is untouched");

        let active = rules.run_chain(&[link(PluginState::Active)], &Hook::Message(&call), &mut kv, &no_kb, &profile);
        assert_eq!(active.runs[0].kv_writes, [("count".to_owned(), "5".to_owned())]);
        assert_eq!(kv["counter"]["count"], "5", "an active run's writes are kept");
    }
}
