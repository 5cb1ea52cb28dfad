//! Housekeeping: the event log keeps `events.retention_days` of events, sessions that ended a day ago are
//! forgotten, and replied conversations without first-response figures (from before reports) get them. One step every few minutes, in batches, so a large backlog never holds the writer long.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::EventSettings;
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::Db;
use crate::worker::{StepWorker, Wake, run_steps};

/// Time between steps.
const POLL: Duration = Duration::from_secs(300);
/// Events deleted per write.
const BATCH: i64 = 10_000;
/// Ended sessions are kept this long (the audit log keeps who signed in and out for good).
const ENDED_SESSIONS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The housekeeping worker.
pub(crate) struct Housekeeping {
    db: Db,
    settings: EventSettings,
}

impl StepWorker for Housekeeping {
    type Error = crate::store::Error;
    const NAME: &'static str = "housekeeping";

    async fn step(&self) -> crate::store::Result<Option<Duration>> {
        let retention = Duration::from_secs(self.settings.retention_days.saturating_mul(24 * 3600));
        let before = Timestamp::now().minus(retention);
        loop {
            let deleted = self.db.trim_events(before, BATCH).await?;
            if deleted > 0 {
                tracing::debug!(deleted, "trimmed the event log");
            }
            if deleted < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        self.db.forget_sessions(Timestamp::now().minus(ENDED_SESSIONS_KEPT)).await?;
        // Conversations replied before recado kept first-response figures get them, a batch at a time.
        while self.db.fill_first_responses(BATCH).await? > 0 {}
        Ok(None)
    }
}

/// Runs housekeeping until `shutdown` is cancelled.
pub(crate) async fn run(db: Db, settings: EventSettings, metrics: Metrics, shutdown: CancellationToken) {
    run_steps(Housekeeping { db, settings }, POLL, Wake::default(), metrics, shutdown).await;
}
