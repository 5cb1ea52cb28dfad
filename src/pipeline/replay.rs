//! Replays: one plugin version run over a client's latest messages next to the active chain, each message
//! seen as it was when it arrived. Nothing is stored, sent or changed.

use std::collections::HashMap;
use std::sync::Arc;

use super::chain::LoadedChain;
use super::{decide_with_chain, default_decision, kb_of, message_call, with_defaults};
use crate::domain::{ClientSlug, ConversationId, Decision, DecisionSource, HookKind, LogLine, MessageId, PluginState};
use crate::kb::SearchIndex;
use crate::kb::language::Detectors;
use crate::plugins::rules::{ChainLink, Hook, LoadStoredError, Rules, kb_search_for};
use crate::store::{Db, PluginRecord, RunningPlugin};

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    /// The store could not be read (an outage: retry later), or the plugin is not there.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The version to replay no longer loads.
    #[error("the plugin version cannot be loaded: {0}")]
    Load(LoadStoredError),
    /// The task running the plugins failed.
    #[error("the replay task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<LoadStoredError> for ReplayError {
    fn from(error: LoadStoredError) -> Self {
        match error {
            LoadStoredError::Store(error) => Self::Store(error),
            other => Self::Load(other),
        }
    }
}

/// One message of a replay: what the candidate version decides, next to what the active chain decides now
/// and what was applied when the message arrived.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReplayItem {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its text.
    pub text: String,
    /// The language it was decided in.
    pub language: String,
    /// The candidate's own decision (`None` if it failed).
    pub candidate: Option<Decision>,
    /// Why the candidate failed.
    pub candidate_failure: Option<String>,
    /// The candidate's log lines.
    pub candidate_logs: Vec<LogLine>,
    /// Fuel the candidate used.
    pub fuel: u64,
    /// The candidate's wall time, microseconds.
    pub duration_us: u64,
    /// What the current active chain (with the client's defaults) decides for the same message.
    pub active: Decision,
    /// The chain, or the client's defaults (shown as `chain` or `defaults`).
    pub active_source: DecisionSource,
    /// What was applied when the message arrived, if recorded.
    pub recorded: Option<Decision>,
    /// Whether the candidate's actions (acknowledgement, routing, tags, priority, escalation) differ from the
    /// active chain's.
    pub differs: bool,
}

/// A replay of one plugin version over a client's latest messages.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReplayReport {
    /// Messages replayed.
    pub messages: usize,
    /// Messages where the candidate's actions differ from the active chain's.
    pub differing: usize,
    /// Messages where the candidate failed.
    pub failures: usize,
    /// Per message, oldest first.
    pub items: Vec<ReplayItem>,
}

fn same_actions(a: &Decision, b: &Decision) -> bool {
    a.acknowledge == b.acknowledge
        && a.queue == b.queue
        && a.assignee == b.assignee
        && a.tags == b.tags
        && a.priority == b.priority
        && a.escalate == b.escalate
}

/// Runs plugin version `plugin` of `client` over the client's latest `limit` inbound messages, next to the
/// active chain. Nothing is stored, sent or changed: key-value writes live only for the replay.
///
/// # Errors
/// The store fails (or has no such plugin), or the version cannot be loaded.
pub(crate) async fn replay(
    db: &Db,
    rules: &Rules,
    index: &SearchIndex,
    detectors: &Arc<Detectors>,
    client: &ClientSlug,
    plugin: &PluginRecord,
    limit: usize,
) -> Result<ReplayReport, ReplayError> {
    let candidate = RunningPlugin {
        id: plugin.id.clone(),
        name: plugin.name.clone(),
        version: plugin.version.clone(),
        sha256: plugin.sha256.clone(),
        config: plugin.config.clone(),
        // Run as if active, so its key-value writes carry from one replayed message to the next.
        state: PluginState::Active,
    };
    let candidate = ChainLink { loaded: rules.loaded(db, client, &candidate).await?, plugin: candidate };
    let running = db.running_plugins(client.clone()).await?;
    let active: Vec<RunningPlugin> = running.into_iter().filter(|p| p.state == PluginState::Active).collect();
    let chain = LoadedChain::load(rules, db, client, &active).await?;
    let mut candidate_kv = HashMap::new();
    candidate_kv.insert(plugin.name.clone(), db.plugin_kv(client.clone(), plugin.name.clone()).await?);
    let mut active_kv = HashMap::new();
    for running in &active {
        active_kv.insert(running.name.clone(), db.plugin_kv(client.clone(), running.name.clone()).await?);
    }
    let messages = db.recent_inbound(client.clone(), limit).await?;
    let mut recorded = Vec::with_capacity(messages.len());
    for message in &messages {
        let decisions =
            db.decisions_for(crate::store::Scope::Client(client.clone()), message.message_id.clone()).await?;
        recorded.push(
            decisions
                .into_iter()
                .find(|record| record.plugin_id.is_none() && record.applied && record.hook == HookKind::OnMessage)
                .and_then(|record| record.decision),
        );
    }
    let (rules, index, detectors) = (rules.clone(), index.clone(), Arc::clone(detectors));
    let items = tokio::task::spawn_blocking(move || {
        messages
            .into_iter()
            .zip(recorded)
            .map(|(message, recorded)| {
                let fallback = message
                    .conversation_language
                    .clone()
                    .unwrap_or_else(|| message.profile.primary_language().to_owned());
                let language = detectors.detect(&message.text, &message.profile.languages, &fallback).language;
                let kb_search = kb_search_for(&index, &message.client, &message.profile, &language);
                let call = message_call(&message, &language);
                let mut own = rules.run_chain(
                    std::slice::from_ref(&candidate),
                    &Hook::Message(&call),
                    &mut candidate_kv,
                    &kb_search,
                    &message.profile,
                );
                let run = own.runs.pop();
                let defaults = default_decision(&message, &language);
                let (_, merged, _) =
                    decide_with_chain(&rules, &kb_of(&index), &chain, &message, &language, &mut active_kv);
                let (source, active) = with_defaults(merged, defaults, chain.has_active());
                let candidate_decision = run.as_ref().and_then(|run| run.decision.clone());
                ReplayItem {
                    differs: candidate_decision.as_ref().is_none_or(|decision| !same_actions(decision, &active)),
                    message_id: message.message_id,
                    conversation_id: message.conversation_id,
                    text: message.text,
                    language,
                    candidate: candidate_decision,
                    candidate_failure: run.as_ref().and_then(|run| run.failure.clone()),
                    candidate_logs: run.as_ref().map(|run| run.logs.clone()).unwrap_or_default(),
                    fuel: run.as_ref().map_or(0, |run| run.fuel),
                    duration_us: run.as_ref().map_or(0, |run| run.duration_us),
                    active,
                    active_source: source,
                    recorded,
                }
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(ReplayReport {
        messages: items.len(),
        differing: items.iter().filter(|item| item.differs).count(),
        failures: items.iter().filter(|item| item.candidate_failure.is_some()).count(),
        items,
    })
}
