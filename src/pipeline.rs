//! The message pipeline after ingest: every stored message that is still `received` gets a decision, and
//! the decision is applied in one transaction that also marks it `processed`.
//!
//! A batch is read oldest first with each message's context as it was when it arrived. Each message is
//! decided by its client's chain of rule plugins (`chain.rs` loads it; `plugins::rules` runs it), merged,
//! with the client's defaults filling in what the chain leaves (an acknowledgement) or deciding alone when
//! the client has no active plugin, every active plugin failed, or the client's plugin time for the batch is
//! spent. Each decision is carried forward to later messages of its conversation in the batch. Plugins run
//! at the message's own time, so [`replay`] (`replay.rs`) decides history the same way.
//!
//! The database is the queue: ingest wakes the worker, and the worker also sweeps on an interval and at
//! start-up, so messages left `received` by a crash are processed after restart. Applying is idempotent
//! (only `received` messages are claimed), so a decision takes effect exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;
use crate::domain::{ClientSlug, Clock, ConversationId, Decision, DecisionSource, Timestamp};
use crate::kb::SearchIndex;
use crate::kb::language::Detectors;
use crate::metrics::Metrics;
use crate::outbox::OutboxHandle;
use crate::plugins::rules::{Hook, Rules, kb_search_for};
use crate::plugins::{KbSearch, MessageCall, PluginContact, PluginContext, PluginMessage};
use crate::store::{Db, PendingBatch, PendingMessage, PluginRun, ProcessedDecision};
use crate::worker::{StepWorker, Wake, run_steps};

/// Source name of decisions made from the client's defaults.
pub(crate) const DEFAULTS_SOURCE: DecisionSource = DecisionSource::Defaults;

/// Handle used to wake the pipeline worker when new messages are stored.
pub(crate) type PipelineHandle = Wake;

/// The decision the client's defaults give for a message written in `language`.
///
/// The first message of a conversation gets the acknowledgement text in that language (the closed-hours
/// variant outside business hours), if the client turned acknowledgements on.
pub(crate) fn default_decision(message: &PendingMessage, language: &str) -> Decision {
    let profile = &message.profile;
    let defaults = &profile.defaults;
    let open = profile.business_hours.is_open(message.received_at, &profile.timezone);
    let first = message.last_acknowledged_at.is_none();
    let acknowledge = (defaults.auto_acknowledge && first)
        .then(|| defaults.acknowledgement_for(language, profile.primary_language(), open).map(str::to_owned))
        .flatten();
    let reason = match (&acknowledge, open) {
        (Some(_), true) => "client defaults: acknowledge the first message of a conversation".to_owned(),
        (Some(_), false) => "client defaults: acknowledge the first message, outside business hours".to_owned(),
        (None, _) if !defaults.auto_acknowledge => "client defaults: automatic acknowledgement is off".to_owned(),
        (None, _) if !first => "client defaults: conversation already acknowledged".to_owned(),
        (None, _) => "client defaults: no acknowledgement text configured".to_owned(),
    };
    Decision { acknowledge, reason, ..Decision::default() }
}

/// What the pipeline needs. Every field is a cheap handle.
#[derive(Clone)]
pub(crate) struct Pipeline {
    /// The store.
    pub db: Db,
    /// Wakes delivery when acknowledgements or notices are queued.
    pub outbox: OutboxHandle,
    /// Batch size and sweep interval.
    pub settings: PipelineSettings,
    /// Metrics.
    pub metrics: Metrics,
    /// Language detection.
    pub detectors: Arc<Detectors>,
    /// The rule plugins.
    pub rules: Rules,
    /// The knowledge-base index, searched by plugins.
    pub index: SearchIndex,
    /// The time the first-response clocks are stepped at.
    pub clock: Clock,
}

/// Processes messages until `shutdown` is cancelled.
///
/// Ingest wakes it; it also sweeps every `pipeline.sweep_interval_ms`, which finds the messages a crash left
/// `received`.
pub(crate) async fn run(pipeline: Pipeline, handle: PipelineHandle, shutdown: CancellationToken) {
    let sweep = Duration::from_millis(pipeline.settings.sweep_interval_ms);
    let metrics = pipeline.metrics.clone();
    run_steps(Processing(pipeline), sweep, handle, metrics, shutdown).await;
}

/// The message-processing worker: each step decides every message still `received`.
pub(crate) struct Processing(pub Pipeline);

impl StepWorker for Processing {
    type Error = crate::store::Error;
    const NAME: &'static str = "processing";

    async fn step(&self) -> crate::store::Result<Option<Duration>> {
        if process_available(&self.0).await? > 0 {
            // Acknowledgements and owner notices may have been queued.
            self.0.outbox.wake();
        }
        Ok(None)
    }
}

mod chain;
mod replay;

pub(crate) use chain::LoadedChain;
pub(crate) use chain::broken_run;
pub(crate) use replay::{ReplayError, ReplayReport, replay};

/// The `on-message` inputs for a stored message written in `language`.
pub(crate) fn message_call(message: &PendingMessage, language: &str) -> MessageCall {
    let profile = &message.profile;
    let at = message.received_at;
    MessageCall {
        message: PluginMessage {
            id: message.message_id.to_string(),
            channel: message.channel.to_string(),
            text: message.text.clone(),
            language: Some(language.to_owned()),
            received_at: at.millis(),
        },
        contact: PluginContact {
            id: message.contact.id.to_string(),
            handle: message.contact.handle.clone(),
            name: message.contact.name.clone(),
            tags: message.contact.tags.clone(),
            is_new: message.contact.is_new,
        },
        context: PluginContext {
            client: message.client.as_str().to_owned(),
            // The message's own time: a decision depends on its inputs only, so a replay decides the same.
            now: at.millis(),
            timezone: profile.timezone.clone(),
            within_business_hours: profile.business_hours.is_open(at, &profile.timezone),
            languages: profile.languages.clone(),
            conversation_id: message.conversation_id.to_string(),
            messages_in_conversation: message.messages_in_conversation,
            unanswered_inbound: message.unanswered_inbound,
            last_acknowledged_at: message.last_acknowledged_at.map(Timestamp::millis),
            last_human_reply_at: message.last_human_reply_at.map(Timestamp::millis),
            config: String::new(),
        },
    }
}

/// The decision applied for a message: the active chain's merge, with the client's defaults filling in an
/// acknowledgement the chain did not give; the defaults alone when the client has no active plugin or every
/// active plugin failed. Returns the source (`chain` or `defaults`) and the decision.
pub(crate) fn with_defaults(
    merged: Option<Decision>,
    defaults: Decision,
    has_active: bool,
) -> (DecisionSource, Decision) {
    match merged {
        _ if !has_active => (DEFAULTS_SOURCE, defaults),
        None => {
            let reason = format!("every active plugin failed; {}", defaults.reason);
            (DEFAULTS_SOURCE, Decision { reason, ..defaults })
        }
        Some(mut decision) => {
            if decision.acknowledge.is_none() && defaults.acknowledge.is_some() {
                decision.acknowledge = defaults.acknowledge;
                decision.reason = if decision.reason.is_empty() {
                    defaults.reason
                } else {
                    format!("{}; {}", decision.reason, defaults.reason)
                };
            }
            (CHAIN_SOURCE, decision)
        }
    }
}

/// Source name of decisions merged from a client's plugin chain.
pub(crate) const CHAIN_SOURCE: DecisionSource = DecisionSource::Chain;

/// Gives the knowledge-base search a plugin gets for a message written in a language.
pub(crate) type KbFor<'a> = dyn Fn(&PendingMessage, &str) -> KbSearch + 'a;

/// The knowledge-base search of the message's own client, in `index`.
fn kb_of(index: &SearchIndex) -> impl Fn(&PendingMessage, &str) -> KbSearch + '_ {
    move |message, language| kb_search_for(index, &message.client, &message.profile, language)
}

/// Runs `chain` for `message`: returns the runs to record and what is applied.
fn decide_with_chain(
    rules: &Rules,
    kb: &KbFor<'_>,
    chain: &LoadedChain,
    message: &PendingMessage,
    language: &str,
    kv: &mut HashMap<String, HashMap<String, String>>,
) -> (Vec<PluginRun>, Option<Decision>, Duration) {
    let call = message_call(message, language);
    let kb_search = kb(message, language);
    let outcome = rules.run_chain(&chain.links, &Hook::Message(&call), kv, &kb_search, &message.profile.queues);
    let mut runs = outcome.runs;
    runs.extend(chain.broken.iter().map(|(plugin, why)| broken_run(plugin, why)));
    (runs, outcome.merged, outcome.spent)
}

/// Decides a batch in arrival order. The context read from the store does not include the batch's own
/// outcomes, so each is carried forward to the later messages of its conversation: two messages of one
/// conversation in one batch must not both be acknowledged, and a language detected on the first is the
/// fallback of the second. Plugins' key-value writes are carried the same way.
///
/// Each client may spend `budget` of plugin time in the batch; past it, its remaining messages get its
/// defaults, so one client's slow rules cannot hold up everyone else's messages.
fn decide_in_order(
    batch: PendingBatch,
    chains: &HashMap<ClientSlug, LoadedChain>,
    detectors: &Detectors,
    rules: Option<(&Rules, &KbFor<'_>)>,
    budget: Duration,
) -> Vec<ProcessedDecision> {
    let PendingBatch { messages, mut kv, .. } = batch;
    let mut acknowledged: HashMap<ConversationId, Timestamp> = HashMap::new();
    let mut languages: HashMap<ConversationId, String> = HashMap::new();
    let mut spent: HashMap<ClientSlug, Duration> = HashMap::new();
    messages
        .into_iter()
        .map(|mut message| {
            if let Some(at) = acknowledged.get(&message.conversation_id) {
                message.last_acknowledged_at = Some(*at);
            }
            if let Some(language) = languages.get(&message.conversation_id) {
                message.conversation_language = Some(language.clone());
            }
            let fallback =
                message.conversation_language.clone().unwrap_or_else(|| message.profile.primary_language().to_owned());
            let guess = detectors.detect(&message.text, &message.profile.languages, &fallback);
            let defaults = default_decision(&message, &guess.language);
            let chain = chains.get(&message.client);
            let (source, decision, runs) = match (chain, rules) {
                (Some(chain), Some((rules, kb))) => {
                    let used = spent.entry(message.client.clone()).or_default();
                    if *used >= budget {
                        let reason = format!(
                            "plugins skipped: this client's plugin time for the batch is used up; {}",
                            defaults.reason
                        );
                        (DEFAULTS_SOURCE, Decision { reason, ..defaults }, Vec::new())
                    } else {
                        let stores = kv.entry(message.client.clone()).or_default();
                        let (runs, merged, took) =
                            decide_with_chain(rules, kb, chain, &message, &guess.language, stores);
                        *used += took;
                        let (source, decision) = with_defaults(merged, defaults, chain.has_active());
                        (source, decision, runs)
                    }
                }
                _ => (DEFAULTS_SOURCE, defaults, Vec::new()),
            };
            if decision.acknowledge.is_some() {
                acknowledged.insert(message.conversation_id.clone(), message.received_at);
            }
            let language = guess.detected.then_some(guess.language);
            if let Some(language) = &language {
                languages.insert(message.conversation_id.clone(), language.clone());
            }
            let profile = &message.profile;
            let (warn, due) = profile.sla.deadlines(&profile.business_hours, message.received_at, &profile.timezone);
            ProcessedDecision {
                sla: Some((message.received_at, warn, due)),
                client: message.client,
                message_id: message.message_id,
                source,
                decision,
                language,
                runs,
            }
        })
        .collect()
}

/// Processes every message currently waiting, batch by batch. Returns how many were processed.
pub(crate) async fn process_available(pipeline: &Pipeline) -> crate::store::Result<usize> {
    let db = &pipeline.db;
    let batch_size = pipeline.settings.batch_size;
    let mut total = 0;
    loop {
        let ids = db.unprocessed_messages(batch_size).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let fetched = ids.len();
        let batch = db.pending_context(ids).await?;
        let mut chains = HashMap::new();
        for (client, plugins) in &batch.chains {
            chains.insert(client.clone(), LoadedChain::load(&pipeline.rules, db, client, plugins).await?);
        }
        let detectors = Arc::clone(&pipeline.detectors);
        let rules = pipeline.rules.clone();
        let index = pipeline.index.clone();
        let budget = Duration::from_millis(rules.settings().client_batch_budget_ms);
        let breaker = rules.breaker();
        // Language detection and plugins are CPU work: keep them off the async threads.
        let decisions = tokio::task::spawn_blocking(move || {
            decide_in_order(batch, &chains, &detectors, Some((&rules, &kb_of(&index))), budget)
        })
        .await?;
        // A failed run may trip a breaker, which stops a plugin: its compiled code is then given back.
        let any_failed = decisions.iter().flat_map(|decision| &decision.runs).any(|run| run.failure.is_some());
        let applied = db.apply_decisions(decisions, breaker).await?;
        if any_failed {
            pipeline.rules.release_unused(&db.running_plugin_hashes().await?);
        }
        pipeline.metrics.messages_processed(applied);
        total += applied;
        if fetched < batch_size {
            return Ok(total);
        }
    }
}

/// A pipeline over a fresh store with one client, for the tests of the workers built on it.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::sync::Arc;

    use super::Pipeline;
    use crate::domain::{ChannelName, ClientDefaults, ClientProfile, ClientSlug, Context, InboundMessage, Timestamp};
    use crate::kb::SearchIndex;
    use crate::kb::language::Detectors;
    use crate::metrics::Metrics;
    use crate::plugins::rules::Rules;
    use crate::store::{Db, InboundBatch};

    /// The client every message here belongs to.
    pub(crate) const CLIENT: &str = "client-a";

    /// A pipeline with a store in `dir` holding [`CLIENT`], whose defaults acknowledge in Spanish and whose
    /// first-response target is 15 minutes.
    pub(crate) async fn pipeline(dir: &Path) -> Pipeline {
        let settings = crate::config::Settings::for_tests(dir);
        let db = Db::open(&settings.storage).expect("store");
        let mut defaults = ClientDefaults { auto_acknowledge: true, ..ClientDefaults::default() };
        defaults.acknowledgement.insert("es".into(), "Recibido".into());
        let profile = ClientProfile { defaults, ..ClientProfile::new("A", "Europe/Madrid", &["es"]) };
        db.create_client(ClientSlug::parse(CLIENT).expect("slug"), profile, "test".into()).await.expect("client");
        let index = SearchIndex::open(&settings.storage.index_path(), &settings.search, &db).await.expect("index");
        let rules = Rules::new(&settings.plugins, settings.storage.plugin_cache_path(), Metrics::new()).expect("rules");
        Pipeline {
            db,
            outbox: crate::outbox::OutboxHandle::default(),
            settings: settings.pipeline.clone(),
            metrics: Metrics::new(),
            detectors: Arc::new(Detectors::default()),
            rules,
            index,
            clock: crate::domain::Clock::system(),
        }
    }

    /// Every conversation, most recent first.
    pub(crate) async fn inbox(db: &Db) -> Vec<crate::store::ConversationSummary> {
        let filter = crate::store::ConversationFilter::default();
        let page = crate::store::PageRequest::first(100);
        db.conversations(crate::store::Scope::All, filter, page).await.expect("inbox").items
    }

    /// Stores `count` first messages of as many customers of [`CLIENT`], received now.
    pub(crate) async fn ingest(db: &Db, count: usize) {
        let client = ClientSlug::parse(CLIENT).expect("slug");
        let channel = ChannelName::known(ChannelName::API);
        let messages = (0..count)
            .map(|n| InboundMessage {
                client: client.clone(),
                channel: channel.clone(),
                external_id: format!("m{n}"),
                handle: format!("+3460000{n:04}"),
                name: None,
                text: "Hola, ¿abrís el sábado?".into(),
                parts: Vec::new(),
                context: Context::default(),
                user_id: None,
                username: None,
                received_at: Timestamp::now(),
            })
            .collect();
        db.ingest(client, channel, InboundBatch { messages, ..InboundBatch::default() }).await.expect("stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ChannelName, ClientDefaults, ClientProfile, ClientSlug, ContactId, MessageId, PluginId, PluginState,
    };
    use crate::plugins::rules::ChainLink;
    use crate::store::RunningPlugin;

    fn pending(id: &str, conversation: &str, at: i64) -> PendingMessage {
        let mut defaults = ClientDefaults { auto_acknowledge: true, ..ClientDefaults::default() };
        defaults.acknowledgement.insert("es".into(), "Recibido".into());
        PendingMessage {
            client: ClientSlug::parse("client-a").expect("slug"),
            profile: ClientProfile { defaults, ..ClientProfile::new("A", "Europe/Madrid", &["es"]) },
            message_id: MessageId::from_stored(id.into()),
            conversation_id: ConversationId::from_stored(conversation.into()),
            channel: ChannelName::known(ChannelName::API),
            text: "hola".into(),
            received_at: Timestamp(at),
            inbound_in_conversation: 1,
            messages_in_conversation: 1,
            unanswered_inbound: 1,
            last_acknowledged_at: None,
            last_human_reply_at: None,
            conversation_language: None,
            contact: crate::store::ContactFacts {
                id: ContactId::from_stored(format!("k-{conversation}")),
                handle: "+34600000000".into(),
                name: None,
                is_new: true,
                tags: Vec::new(),
            },
        }
    }

    #[test]
    fn one_batch_acknowledges_each_conversation_once() {
        let batch =
            vec![pending("m1", "c1", 1), pending("m2", "c1", 2), pending("m3", "c2", 3), pending("m4", "c1", 4)];
        let batch = PendingBatch { messages: batch, ..PendingBatch::default() };
        let acknowledged: Vec<_> = decide_in_order(batch, &HashMap::new(), &Detectors::default(), None, Duration::ZERO)
            .into_iter()
            .filter(|d| d.decision.acknowledge.is_some())
            .map(|d| d.message_id.to_string())
            .collect();
        assert_eq!(acknowledged, ["m1", "m3"]);
    }

    /// A loaded chain of one example component of `client`, with `config`.
    fn chain_of(rules: &Rules, component: &str, config: &str) -> LoadedChain {
        let loaded = rules.host().load(&crate::plugins::test_support::example_component(component)).expect("loads");
        let plugin = RunningPlugin {
            id: PluginId::from_stored(format!("plg_{component}")),
            name: component.into(),
            version: "1".into(),
            sha256: String::new(),
            config: config.into(),
            state: PluginState::Active,
        };
        LoadedChain { links: vec![ChainLink { plugin, loaded }], broken: Vec::new() }
    }

    #[test]
    fn a_client_whose_plugins_use_up_their_time_gets_defaults_and_others_keep_their_rules() {
        let dir = tempfile::tempdir().expect("dir");
        // The slow client's call spins until its deadline (400 ms; fuel does not run out first), far past the
        // 150 ms budget below; the fast client's four calls take a few milliseconds even on a busy machine, so
        // the outcome does not depend on how loaded the machine is.
        let settings = crate::config::PluginSettings {
            fuel: u64::MAX / 4,
            deadline_ms: 400,
            ..crate::config::PluginSettings::default()
        };
        let rules = Rules::new(&settings, dir.path().into(), Metrics::new()).expect("engine");
        let slow = ClientSlug::parse("slow").expect("slug");
        let fast = ClientSlug::parse("client-a").expect("slug");
        let mut chains = HashMap::new();
        chains.insert(slow.clone(), chain_of(&rules, "hostile", r#"{"behaviour": "loop"}"#));
        chains.insert(fast.clone(), chain_of(&rules, "hostile", r#"{"behaviour": "kv-counter"}"#));
        let mut messages = Vec::new();
        for n in 0..4 {
            let mut message = pending(&format!("s{n}"), &format!("cs{n}"), n);
            message.client = slow.clone();
            messages.push(message);
            messages.push(pending(&format!("f{n}"), &format!("cf{n}"), n));
        }
        let batch = PendingBatch { messages, ..PendingBatch::default() };
        let no_kb = |_: &PendingMessage, _: &str| -> KbSearch { Arc::new(|_, _| Vec::new()) };
        let decided =
            decide_in_order(batch, &chains, &Detectors::default(), Some((&rules, &no_kb)), Duration::from_millis(150));
        let slow_runs: Vec<usize> = decided.iter().filter(|d| d.client == slow).map(|d| d.runs.len()).collect();
        // The first call uses up the budget: the client's later messages in the batch run no plugin at all.
        assert_eq!(slow_runs, [1, 0, 0, 0]);
        let skipped = decided.iter().rfind(|d| d.client == slow).expect("decided");
        assert!(skipped.decision.reason.contains("plugins skipped"), "{}", skipped.decision.reason);
        assert_eq!(skipped.decision.acknowledge.as_deref(), Some("Recibido"), "the defaults still apply");
        let fast_reasons: Vec<String> = decided
            .iter()
            .filter(|d| d.client == fast)
            .map(|d| d.runs[0].decision.as_ref().expect("decides").reason.clone())
            .collect();
        assert_eq!(fast_reasons, ["count 1", "count 2", "count 3", "count 4"], "the other client's rules all ran");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_processing_step_decides_every_waiting_message_once() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = test_support::pipeline(dir.path()).await;
        let db = pipeline.db.clone();
        test_support::ingest(&db, 3).await;
        let worker = Processing(pipeline);

        assert_eq!(db.unprocessed_messages(10).await.expect("waiting").len(), 3);
        assert_eq!(worker.step().await.expect("a step"), None, "woken by ingest, not by a due time");
        assert!(db.unprocessed_messages(10).await.expect("waiting").is_empty(), "one step decided them all");
        let inbox = test_support::inbox(&db).await;
        assert_eq!(inbox.len(), 3);
        for conversation in &inbox {
            assert_eq!(conversation.message_count, 2, "the message and its one acknowledgement");
        }
        worker.step().await.expect("another step");
        let again = test_support::inbox(&db).await;
        assert!(again.iter().all(|c| c.message_count == 2), "a second step changes nothing");
        db.close().await;
    }

    #[test]
    fn an_acknowledged_conversation_gets_no_second_acknowledgement() {
        let mut message = pending("m5", "c1", 5);
        message.last_acknowledged_at = Some(Timestamp(4));
        let decision = default_decision(&message, "es");
        assert_eq!(decision.acknowledge, None);
        assert!(decision.reason.contains("already acknowledged"), "{}", decision.reason);
    }
}
