//! The message pipeline after ingest: every stored message that is still `received` gets a decision, and
//! the decision is applied in one transaction that also marks it `processed`.
//!
//! Clients take turns, several at once on blocking threads ([`process_available`]). A turn reads one
//! client's oldest waiting messages with each one's context as it was when it arrived. Each message is
//! decided by its client's chain of rule plugins (`chain.rs` loads it; `plugins::rules` runs it), merged,
//! with the client's defaults filling in what the chain leaves (an acknowledgement) or deciding alone when
//! the client has no active plugin, every active plugin failed, or the message waited longer than allowed
//! for the client's rules. Each decision is carried forward to later messages of its conversation in the
//! turn. Plugins run at the message's own time, so [`replay`] (`replay.rs`) decides history the same way.
//!
//! The database is the queue: ingest wakes the worker, and the worker also sweeps on an interval and at
//! start-up, so messages left `received` by a crash are processed after restart. Applying is idempotent
//! (only `received` messages are claimed), so a decision takes effect exactly once. Nodes sharing a database
//! divide the clients between them: a turn holds its client's lease, which the transaction applying the turn
//! ends, and which another node takes once it expires if the node holding it stopped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;
use crate::domain::{ClientSlug, Clock, ConversationId, Decision, DecisionSource, PluginLimits, Timestamp};
use crate::kb::SearchIndex;
use crate::kb::language::Detectors;
use crate::metrics::Metrics;
use crate::outbox::OutboxHandle;
use crate::plugins::rules::{Hook, Rules, kb_search_for};
use crate::plugins::{ClientLimits, KbSearch, MessageCall, PluginContact, PluginContext, PluginMessage};
use crate::store::{Db, PendingBatch, PendingMessage, PluginRun, ProcessedDecision, ProcessingLease};
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
    /// Wakes this pipeline's worker (ingest holds a clone): a free lane takes a newly waiting client at once.
    pub wake: PipelineHandle,
}

/// Processes messages until `shutdown` is cancelled.
///
/// Ingest wakes it; it also sweeps every `pipeline.sweep_interval_ms`, which finds the messages a crash left
/// `received`.
pub(crate) async fn run(pipeline: Pipeline, shutdown: CancellationToken) {
    match pipeline.db.forget_stale_processing_claims().await {
        Ok(0) => {}
        Ok(forgotten) => tracing::info!(forgotten, "forgot the processing claims of an earlier run"),
        // Not fatal: they expire (`pipeline.lease_ms`).
        Err(error) => tracing::warn!(%error, "could not forget the processing claims of an earlier run"),
    }
    let sweep = Duration::from_millis(pipeline.settings.sweep_interval_ms);
    let metrics = pipeline.metrics.clone();
    let handle = pipeline.wake.clone();
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
    let local = profile.business_hours.around(at, &profile.timezone);
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
            within_business_hours: local.open,
            local,
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
    let outcome = rules.run_chain(&chain.links, &Hook::Message(&call), kv, &kb_search, &message.profile);
    let mut runs = outcome.runs;
    runs.extend(chain.broken.iter().map(|(plugin, why)| broken_run(plugin, why)));
    (runs, outcome.merged, outcome.spent)
}

/// How a client's turn is bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Turn {
    /// Plugin time of one turn: once spent, the client's later messages wait for its next turn.
    pub slice: Duration,
    /// Longest a message may wait for the client's rules before its defaults decide it.
    pub queue_limit: Duration,
    /// The time the waits are measured at.
    pub now: Timestamp,
}

/// Decides a batch in arrival order. The context read from the store does not include the batch's own
/// outcomes, so each is carried forward to the later messages of its conversation: two messages of one
/// conversation in one batch must not both be acknowledged, and a language detected on the first is the
/// fallback of the second. Plugins' key-value writes are carried the same way.
///
/// A client's rules decide each of its messages; once they have used `turn.slice` of plugin time, the
/// client's later messages are left out (they stay waiting for the client's next turn), so a slow client
/// delays its own messages only. A message that has already waited longer than `turn.queue_limit` is
/// decided by the client's defaults, and the decision says why.
fn decide_in_order(
    batch: PendingBatch,
    chains: &HashMap<ClientSlug, LoadedChain>,
    detectors: &Detectors,
    rules: Option<(&Rules, &KbFor<'_>)>,
    turn: Turn,
) -> Vec<ProcessedDecision> {
    let PendingBatch { messages, mut kv, .. } = batch;
    let mut acknowledged: HashMap<ConversationId, Timestamp> = HashMap::new();
    let mut languages: HashMap<ConversationId, String> = HashMap::new();
    let mut spent: HashMap<ClientSlug, Duration> = HashMap::new();
    let mut decided = Vec::with_capacity(messages.len());
    for mut message in messages {
        let chain = chains.get(&message.client);
        if chain.is_some() && spent.get(&message.client).is_some_and(|used| *used >= turn.slice) {
            continue;
        }
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
        let waited =
            Duration::from_millis(u64::try_from(turn.now.millis() - message.received_at.millis()).unwrap_or(0));
        let mut queue_timeout = None;
        let (source, decision, runs) = match (chain, rules) {
            (Some(chain), Some(_)) if waited > turn.queue_limit && chain.has_active() => {
                let reason = format!(
                    "rules not run: the message waited {} s for this client's rules, longer than the {} s allowed; {}",
                    waited.as_secs(),
                    turn.queue_limit.as_secs(),
                    defaults.reason
                );
                let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                queue_timeout = Some((millis(waited), millis(turn.queue_limit)));
                (DEFAULTS_SOURCE, Decision { reason, ..defaults }, Vec::new())
            }
            (Some(chain), Some((rules, kb))) => {
                let stores = kv.entry(message.client.clone()).or_default();
                let (runs, merged, took) = decide_with_chain(rules, kb, chain, &message, &guess.language, stores);
                *spent.entry(message.client.clone()).or_default() += took;
                let (source, decision) = with_defaults(merged, defaults, chain.has_active());
                (source, decision, runs)
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
        decided.push(ProcessedDecision {
            sla: Some((message.received_at, warn, due)),
            client: message.client,
            message_id: message.message_id,
            source,
            decision,
            language,
            runs,
            queue_timeout,
        });
    }
    decided
}

/// Processes every message currently waiting, client by client. Returns how many were processed.
///
/// Up to `pipeline.lanes` clients are served at once, each in a turn of its own (its oldest waiting
/// messages, up to `batch_size`, for at most `plugins.client_slice_ms` of plugin time), decided on a
/// blocking thread and applied in one transaction. When a turn ends the next client is the one that has
/// waited longest for a turn, so a client with a long backlog or slow rules takes turns with the others
/// instead of holding everyone up.
///
/// A turn begins by claiming the client ([`Db::claim_processing`](crate::store::Db::claim_processing)):
/// nodes sharing a database each take the clients no other node is serving, and a client another node
/// serves is left to it until this call ends (the next sweep or wake-up looks again).
pub(crate) async fn process_available(pipeline: &Pipeline) -> crate::store::Result<usize> {
    let lanes = pipeline.settings.lanes.max(1);
    let lease = Duration::from_millis(pipeline.settings.lease_ms);
    let mut running = tokio::task::JoinSet::new();
    let mut busy: HashSet<ClientSlug> = HashSet::new();
    let mut elsewhere: HashSet<ClientSlug> = HashSet::new();
    // When each client's last turn began, in turns taken by this call: the next turn goes to the client
    // that has waited longest for one (never served first, then the oldest message).
    let mut last_turn: HashMap<ClientSlug, u64> = HashMap::new();
    let mut turns = 0u64;
    let mut total = 0;
    loop {
        if running.len() < lanes {
            let mut waiting: Vec<(ClientSlug, Timestamp)> = pipeline
                .db
                .clients_waiting()
                .await?
                .into_iter()
                .filter(|(client, _)| !busy.contains(client) && !elsewhere.contains(client))
                .collect();
            waiting.sort_by_key(|(client, oldest)| (last_turn.get(client).copied(), *oldest));
            for (client, _) in waiting {
                if running.len() >= lanes {
                    break;
                }
                let Some(lease) = pipeline.db.claim_processing(client.clone(), lease).await? else {
                    elsewhere.insert(client);
                    continue;
                };
                turns += 1;
                last_turn.insert(client.clone(), turns);
                busy.insert(client.clone());
                let pipeline = pipeline.clone();
                running.spawn(async move { (client, client_turn(&pipeline, lease).await) });
            }
        }
        if running.is_empty() {
            return Ok(total);
        }
        let joined = if running.len() < lanes {
            // A lane is free: a message of another client arriving meanwhile is taken at once, not after
            // the running turns end.
            tokio::select! {
                joined = running.join_next() => joined,
                () = pipeline.wake.woken() => continue,
            }
        } else {
            running.join_next().await
        };
        let Some(joined) = joined else { return Ok(total) };
        let (client, result) = joined?;
        busy.remove(&client);
        total += result?;
    }
}

/// One turn of the client `lease` is for: decides its oldest waiting messages and applies the decisions,
/// which ends the lease. Returns how many were processed.
async fn client_turn(pipeline: &Pipeline, lease: ProcessingLease) -> crate::store::Result<usize> {
    let client = lease.client.clone();
    let outcome = decide_turn(pipeline, &client).await;
    let db = &pipeline.db;
    let (decisions, any_failed) = match outcome {
        Ok(decided) => decided,
        Err(error) => {
            give_back(db, lease).await;
            return Err(error);
        }
    };
    let timed_out = decisions.iter().filter(|decision| decision.queue_timeout.is_some()).count();
    let applied = match db.apply_decisions(lease.clone(), decisions, pipeline.rules.breaker()).await {
        Ok(applied) => applied,
        Err(crate::store::Error::LeaseLost) => {
            // The turn outlasted its lease and another node serves the client now: it decides these again.
            tracing::warn!(%client, "a turn outlasted its processing lease; another node took the client over");
            return Ok(0);
        }
        Err(error) => {
            // Nothing was applied (the transaction rolled back): the lease is still this turn's.
            give_back(db, lease).await;
            return Err(error);
        }
    };
    // A failed run may trip a breaker, which stops a plugin: its compiled code is then given back.
    if any_failed {
        pipeline.rules.release_unused(&db.running_plugin_hashes().await?);
    }
    pipeline.metrics.messages_processed(applied);
    pipeline.metrics.plugin_queue_timeouts(timed_out);
    Ok(applied)
}

/// Gives back the lease of a turn that failed, at once rather than at its expiry, so the next sweep can try
/// the client again.
async fn give_back(db: &Db, lease: ProcessingLease) {
    let client = lease.client.clone();
    if let Err(error) = db.release_processing(lease).await {
        tracing::warn!(%client, %error, "could not give back a processing lease");
    }
}

/// Decides `client`'s oldest waiting messages (its chain on a blocking thread). Returns the decisions and
/// whether any plugin run failed.
async fn decide_turn(pipeline: &Pipeline, client: &ClientSlug) -> crate::store::Result<(Vec<ProcessedDecision>, bool)> {
    let db = &pipeline.db;
    let ids = db.client_waiting_messages(client.clone(), pipeline.settings.batch_size).await?;
    let batch = db.pending_context(ids).await?;
    let mut chains = HashMap::new();
    if let Some(plugins) = batch.chains.get(client) {
        chains.insert(client.clone(), LoadedChain::load(&pipeline.rules, db, client, plugins).await?);
    }
    let detectors = Arc::clone(&pipeline.detectors);
    let rules = pipeline.rules.clone();
    let index = pipeline.index.clone();
    // Every message of the turn is the client's: its profile (read with the batch) carries its limits.
    let limits = match batch.messages.first() {
        Some(message) => rules.limits_for(&message.profile),
        None => ClientLimits::of(rules.settings(), &PluginLimits::default()),
    };
    let turn = Turn {
        slice: limits.slice,
        queue_limit: limits.queue,
        // Waits are real time, whatever clock the first-response timers are stepped with.
        now: Timestamp::now(),
    };
    // Language detection and plugins are CPU work: keep them off the async threads.
    let decisions = tokio::task::spawn_blocking(move || {
        decide_in_order(batch, &chains, &detectors, Some((&rules, &kb_of(&index))), turn)
    })
    .await?;
    let any_failed = decisions.iter().flat_map(|decision| &decision.runs).any(|run| run.failure.is_some());
    Ok((decisions, any_failed))
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
            wake: super::PipelineHandle::default(),
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
        let acknowledged: Vec<_> =
            decide_in_order(batch, &HashMap::new(), &Detectors::default(), None, turn(Duration::ZERO, 5))
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

    /// A turn of `slice` measured at `now`, with messages allowed to wait 30 s.
    fn turn(slice: Duration, now: i64) -> Turn {
        Turn { slice, queue_limit: Duration::from_secs(30), now: Timestamp(now) }
    }

    fn no_kb(_: &PendingMessage, _: &str) -> KbSearch {
        Arc::new(|_, _| Vec::new())
    }

    #[test]
    fn a_client_whose_rules_use_up_its_turn_leaves_the_rest_waiting_and_others_keep_their_rules() {
        let dir = tempfile::tempdir().expect("dir");
        // The slow client's call spins until its deadline (400 ms; fuel does not run out first), far past the
        // 150 ms slice below; the fast client's four calls take a few milliseconds even on a busy machine, so
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
        let decided = decide_in_order(
            batch,
            &chains,
            &Detectors::default(),
            Some((&rules, &no_kb)),
            turn(Duration::from_millis(150), 10),
        );
        let slow_decided: Vec<(String, usize)> =
            decided.iter().filter(|d| d.client == slow).map(|d| (d.message_id.to_string(), d.runs.len())).collect();
        // The first call uses up the slice: the client's later messages are not decided by anything now (no
        // defaults), they wait for the client's next turn.
        assert_eq!(slow_decided, [("s0".to_owned(), 1)]);
        let fast_reasons: Vec<String> = decided
            .iter()
            .filter(|d| d.client == fast)
            .map(|d| d.runs[0].decision.as_ref().expect("decides").reason.clone())
            .collect();
        assert_eq!(fast_reasons, ["count 1", "count 2", "count 3", "count 4"], "the other client's rules all ran");
        assert!(decided.iter().all(|d| d.queue_timeout.is_none()));
    }

    #[test]
    fn a_message_that_waited_longer_than_allowed_gets_the_defaults_and_says_why() {
        let dir = tempfile::tempdir().expect("dir");
        let rules =
            Rules::new(&crate::config::PluginSettings::default(), dir.path().into(), Metrics::new()).expect("engine");
        let client = ClientSlug::parse("client-a").expect("slug");
        let chains = HashMap::from([(client, chain_of(&rules, "hostile", r#"{"behaviour": "kv-counter"}"#))]);
        // Received at 0 and 25 s; the turn comes at 40 s, and messages may wait 30 s.
        let messages = vec![pending("old", "c1", 0), pending("recent", "c2", 25_000)];
        let batch = PendingBatch { messages, ..PendingBatch::default() };
        let decided = decide_in_order(
            batch,
            &chains,
            &Detectors::default(),
            Some((&rules, &no_kb)),
            turn(Duration::from_secs(1), 40_000),
        );
        let old = &decided[0];
        assert_eq!(old.source, DEFAULTS_SOURCE);
        assert!(old.runs.is_empty(), "the rules did not run for it");
        assert_eq!(old.queue_timeout, Some((40_000, 30_000)));
        assert!(
            old.decision.reason.starts_with(
                "rules not run: the message waited 40 s for this client's rules, longer than the 30 s allowed; client defaults"
            ),
            "{}",
            old.decision.reason
        );
        assert_eq!(old.decision.acknowledge.as_deref(), Some("Recibido"), "the defaults decide it");
        let recent = &decided[1];
        assert_eq!((&recent.source, recent.queue_timeout), (&CHAIN_SOURCE, None));
        assert_eq!(recent.runs[0].decision.as_ref().expect("decides").reason, "count 1");
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
