//! The message pipeline after ingest: every stored message that is still `received` gets a decision
//! (today the client's defaults; the rule-plugin chain plugs in here), applied in one transaction that also
//! marks it `processed`.
//!
//! The database is the queue: ingest wakes the worker, and the worker also sweeps on an interval and at
//! start-up, so messages left `received` by a crash are processed after restart. Applying is idempotent
//! (only `received` messages are claimed), so a decision takes effect exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;
use crate::domain::{Decision, Timestamp};
use crate::kb::language::Detectors;
use crate::metrics::Metrics;
use crate::outbox::OutboxHandle;
use crate::store::{Db, PendingMessage, ProcessedDecision};

/// Source name of decisions made from the client's defaults.
pub const DEFAULTS_SOURCE: &str = "defaults";

/// Handle used to wake the pipeline worker when new messages are stored.
#[derive(Clone, Default)]
pub struct PipelineHandle {
    wake: Arc<Notify>,
}

impl PipelineHandle {
    /// Tells the worker there is new work. Cheap; many calls collapse into one wake-up.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The decision the client's defaults give for a message written in `language`.
///
/// The first message of a conversation gets the acknowledgement text in that language (the closed-hours
/// variant outside business hours), if the client turned acknowledgements on.
pub fn default_decision(message: &PendingMessage, language: &str) -> Decision {
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

/// Processes messages until `shutdown` is cancelled.
pub async fn run(
    db: Db,
    handle: PipelineHandle,
    outbox: OutboxHandle,
    settings: PipelineSettings,
    metrics: Metrics,
    detectors: Arc<Detectors>,
    shutdown: CancellationToken,
) {
    let sweep = Duration::from_millis(settings.sweep_interval_ms);
    loop {
        match process_available(&db, settings.batch_size, &metrics, &detectors).await {
            Ok(0) => {}
            // Acknowledgements may have been queued.
            Ok(_) => outbox.wake(),
            Err(error) => {
                tracing::error!(%error, "processing messages failed; retrying after the sweep interval");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = handle.wake.notified() => {}
            () = tokio::time::sleep(sweep) => {}
        }
    }
}

/// Decides a batch in arrival order. The context read from the store does not include the batch's own
/// outcomes, so each is carried forward to the later messages of its conversation: two messages of one
/// conversation in one batch must not both be acknowledged, and a language detected on the first is the
/// fallback of the second.
fn decide_in_order(pending: Vec<PendingMessage>, detectors: &Detectors) -> Vec<ProcessedDecision> {
    let mut acknowledged: HashMap<String, Timestamp> = HashMap::new();
    let mut languages: HashMap<String, String> = HashMap::new();
    pending
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
            let decision = default_decision(&message, &guess.language);
            if decision.acknowledge.is_some() {
                acknowledged.insert(message.conversation_id.clone(), message.received_at);
            }
            let language = guess.detected.then_some(guess.language);
            if let Some(language) = &language {
                languages.insert(message.conversation_id.clone(), language.clone());
            }
            ProcessedDecision {
                client: message.client,
                message_id: message.message_id,
                source: DEFAULTS_SOURCE.to_owned(),
                decision,
                language,
            }
        })
        .collect()
}

/// Processes every message currently waiting, batch by batch. Returns how many were processed.
pub async fn process_available(
    db: &Db,
    batch_size: usize,
    metrics: &Metrics,
    detectors: &Arc<Detectors>,
) -> crate::store::Result<usize> {
    let mut total = 0;
    loop {
        let ids = db.unprocessed_messages(batch_size).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let fetched = ids.len();
        let pending = db.pending_context(ids).await?;
        let detectors = Arc::clone(detectors);
        // Language detection is CPU work (about 0.2 ms a message): keep it off the async threads.
        let decisions = tokio::task::spawn_blocking(move || decide_in_order(pending, &detectors)).await?;
        let applied = db.apply_decisions(decisions).await?;
        metrics.messages_processed(applied);
        total += applied;
        if fetched < batch_size {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientDefaults, ClientProfile, ClientSlug};

    fn pending(id: &str, conversation: &str, at: i64) -> PendingMessage {
        let mut defaults = ClientDefaults { auto_acknowledge: true, ..ClientDefaults::default() };
        defaults.acknowledgement.insert("es".into(), "Recibido".into());
        PendingMessage {
            client: ClientSlug::parse("client-a").expect("slug"),
            profile: ClientProfile { defaults, ..ClientProfile::new("A", "Europe/Madrid", &["es"]) },
            message_id: id.into(),
            conversation_id: conversation.into(),
            channel: "api".into(),
            text: "hola".into(),
            received_at: Timestamp(at),
            inbound_in_conversation: 1,
            last_acknowledged_at: None,
            conversation_language: None,
        }
    }

    #[test]
    fn one_batch_acknowledges_each_conversation_once() {
        let batch =
            vec![pending("m1", "c1", 1), pending("m2", "c1", 2), pending("m3", "c2", 3), pending("m4", "c1", 4)];
        let acknowledged: Vec<_> = decide_in_order(batch, &Detectors::default())
            .into_iter()
            .filter(|d| d.decision.acknowledge.is_some())
            .map(|d| d.message_id)
            .collect();
        assert_eq!(acknowledged, ["m1", "m3"]);
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
