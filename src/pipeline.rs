//! The message pipeline after ingest: every stored message that is still `received` gets a decision
//! (today the client's defaults; the rule-plugin chain plugs in here), applied in one transaction that also
//! marks it `processed`.
//!
//! The database is the queue: ingest wakes the worker, and the worker also sweeps on an interval and at
//! start-up, so messages left `received` by a crash are processed after restart. Applying is idempotent
//! (only `received` messages are claimed), so a decision takes effect exactly once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;
use crate::domain::Decision;
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

/// The decision the client's defaults give for a message.
///
/// The first message of a conversation gets the acknowledgement text (the closed-hours variant outside
/// business hours), if the client turned acknowledgements on.
pub fn default_decision(message: &PendingMessage) -> Decision {
    let profile = &message.profile;
    let defaults = &profile.defaults;
    let open = profile.business_hours.is_open(message.received_at, &profile.timezone);
    // Language detection arrives with the knowledge-base issue; until then the client's primary language.
    let language = profile.primary_language();
    let first = message.last_acknowledged_at.is_none();
    let acknowledge = (defaults.auto_acknowledge && first)
        .then(|| defaults.acknowledgement_for(language, language, open).map(str::to_owned))
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
    shutdown: CancellationToken,
) {
    let sweep = Duration::from_millis(settings.sweep_interval_ms);
    loop {
        match process_available(&db, settings.batch_size, &metrics).await {
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

/// Processes every message currently waiting, batch by batch. Returns how many were processed.
pub async fn process_available(db: &Db, batch_size: usize, metrics: &Metrics) -> crate::store::Result<usize> {
    let mut total = 0;
    loop {
        let ids = db.unprocessed_messages(batch_size).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let fetched = ids.len();
        let pending = db.pending_context(ids).await?;
        let decisions = pending
            .iter()
            .map(|message| ProcessedDecision {
                client: message.client.clone(),
                message_id: message.message_id.clone(),
                source: DEFAULTS_SOURCE.to_owned(),
                decision: default_decision(message),
            })
            .collect();
        let applied = db.apply_decisions(decisions).await?;
        metrics.messages_processed(applied);
        total += applied;
        if fetched < batch_size {
            return Ok(total);
        }
    }
}
