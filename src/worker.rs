//! Background workers: how they are watched, and the shape of those that claim due rows from the store.
//!
//! - [`Workers`] spawns every worker watched: one that stops before shutdown (a panic, an early return) is
//!   logged at once and marked down, which turns `/readyz` red, instead of the server going on
//!   acknowledging messages that nobody processes.
//! - `run` is the loop of the workers that claim due rows and work on them concurrently (deliveries, media
//!   downloads): claim up to the free slots, run each claimed item in a task of its own, then sleep until
//!   the next item falls due, a wake-up, or a slot frees; stop claiming at shutdown.
//! - `run_steps` is the loop of the workers that handle everything due in one step (message processing,
//!   first-response clocks, indexing): a step, then [`Wake::wait`] until the next is due or a wake-up.
//!
//! Every step and every claimed item runs in a `worker` span, and each completed step is counted in
//! `recado_worker_steps_total{worker}`: a sign of life for operators, and the signal tests wait on instead
//! of sleeping.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::domain::Timestamp;
use crate::metrics::Metrics;

/// The background workers of a server, watched. Clone freely.
#[derive(Clone, Default)]
pub struct Workers {
    down: Arc<Mutex<Vec<&'static str>>>,
}

impl Workers {
    /// Spawns `work` as the worker `name`. The returned handle completes when the worker has stopped; if it
    /// stops while `stopping` is not cancelled, it is logged and marked down.
    pub fn spawn(
        &self,
        name: &'static str,
        work: impl Future<Output = ()> + Send + 'static,
        stopping: CancellationToken,
    ) -> JoinHandle<()> {
        let worker = tokio::spawn(work);
        let workers = self.clone();
        tokio::spawn(async move {
            let outcome = worker.await;
            if stopping.is_cancelled() {
                if let Err(error) = outcome {
                    tracing::error!(worker = name, %error, "worker failed while stopping");
                }
                return;
            }
            match outcome {
                Ok(()) => tracing::error!(worker = name, "worker stopped before shutdown; the server is not ready"),
                Err(error) => tracing::error!(worker = name, %error, "worker failed; the server is not ready"),
            }
            workers.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(name);
        })
    }

    /// The workers that have stopped before shutdown, by name.
    pub fn down(&self) -> Vec<&'static str> {
        self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Wakes a worker when there is new work (a message queued, a file to fetch). Clone freely.
#[derive(Clone, Default)]
pub struct Wake {
    notify: Arc<Notify>,
}

impl Wake {
    /// Tells the worker there is something to do. A wake-up while it is busy is kept for its next wait.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits until the worker is woken (a wake-up given while nobody waited counts).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// Sleeps until `timeout` has passed or the worker is woken. Returns false if and only if `shutdown` was
    /// asked for meanwhile.
    pub async fn wait(&self, timeout: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = self.notify.notified() => true,
            () = tokio::time::sleep(timeout) => true,
        }
    }
}

/// How long until `due`, from now (zero if it has passed).
pub(crate) fn until(due: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(due.millis() - Timestamp::now().millis()).unwrap_or(0))
}

/// A worker that handles everything due in one step.
pub(crate) trait StepWorker: Send + Sync + 'static {
    /// What a failed step reports.
    type Error: std::fmt::Display;
    /// The worker's name in logs and metrics.
    const NAME: &'static str;
    /// Handles what is due now. Returns how long until the next work falls due, if known.
    fn step(&self) -> impl Future<Output = Result<Option<Duration>, Self::Error>> + Send;
}

/// Runs `worker` until `shutdown` is cancelled: a step, then a wait of at most `poll`, shorter when the step
/// knows the next work is due sooner, cut short by `wake`. A failed step is logged and tried again after
/// `poll`.
pub(crate) async fn run_steps<W: StepWorker>(
    worker: W,
    poll: Duration,
    wake: Wake,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match worker.step().instrument(tracing::debug_span!("worker", name = W::NAME)).await {
            Ok(next) => {
                metrics.worker_step(W::NAME);
                next.map_or(poll, |next| next.min(poll))
            }
            Err(error) => {
                tracing::error!(worker = W::NAME, %error, "worker step failed; trying again after the poll interval");
                poll
            }
        };
        // A floor keeps a clock due "now" but not yet visible (clock skew between rows) from spinning.
        if !wake.wait(wait.max(Duration::from_millis(5)), &shutdown).await {
            break;
        }
    }
}

/// A worker of claimed items.
pub(crate) trait ClaimWorker: Send + Sync + 'static {
    /// One claimed unit of work.
    type Item: Send + 'static;
    /// The worker's name in logs.
    const NAME: &'static str;
    /// Claims up to `limit` due items (under a lease, so a crash leaves them to be claimed again).
    fn claim(&self, limit: usize) -> impl Future<Output = crate::store::Result<Vec<Self::Item>>> + Send;
    /// When the next item falls due, if any.
    fn next_due(&self) -> impl Future<Output = crate::store::Result<Option<Timestamp>>> + Send;
    /// Works on one item and records its outcome.
    fn work(&self, item: Self::Item) -> impl Future<Output = ()> + Send;
}

/// How a worker runs.
pub(crate) struct Limits {
    /// Items worked on at once.
    pub concurrency: usize,
    /// Longest sleep when nothing wakes the worker.
    pub poll: Duration,
    /// At shutdown, drop the items in flight instead of waiting for them (for long, idempotent work whose
    /// lease makes it claimable again).
    pub abort_on_shutdown: bool,
}

/// Runs `worker` until `shutdown` is cancelled.
pub(crate) async fn run<W: ClaimWorker>(worker: W, limits: Limits, wake: Wake, shutdown: CancellationToken) {
    let worker = Arc::new(worker);
    let permits = Arc::new(Semaphore::new(limits.concurrency));
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        let available = permits.available_permits();
        let claimed = if available == 0 || shutdown.is_cancelled() {
            Vec::new()
        } else {
            worker.claim(available).await.unwrap_or_else(|error| {
                tracing::error!(worker = W::NAME, %error, "claiming work failed");
                Vec::new()
            })
        };
        let claimed_any = !claimed.is_empty();
        for item in claimed {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
            let worker = Arc::clone(&worker);
            in_flight.spawn(
                async move {
                    worker.work(item).await;
                    drop(permit);
                }
                .instrument(tracing::debug_span!("worker", name = W::NAME)),
            );
        }
        if claimed_any && permits.available_permits() > 0 {
            continue;
        }
        let wait = match worker.next_due().await {
            Ok(Some(due)) => until(due).min(limits.poll),
            _ => limits.poll,
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notify.notified() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    if limits.abort_on_shutdown {
        in_flight.abort_all();
    }
    while in_flight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_that_dies_before_shutdown_is_marked_down_and_one_stopped_by_shutdown_is_not() {
        let workers = Workers::default();
        let stopping = CancellationToken::new();
        let dying = workers.spawn("dying", async { panic!("a bug") }, stopping.clone());
        let returning = workers.spawn("returning", async {}, stopping.clone());
        dying.await.expect("the watch itself never fails");
        returning.await.expect("the watch itself never fails");
        let mut down = workers.down();
        down.sort_unstable();
        assert_eq!(down, ["dying", "returning"]);

        let healthy = Workers::default();
        let stop = stopping.clone();
        let handle = healthy.spawn("healthy", async move { stop.cancelled().await }, stopping.clone());
        stopping.cancel();
        handle.await.expect("stopped");
        assert!(healthy.down().is_empty(), "stopping at shutdown is not a failure");
    }
}
