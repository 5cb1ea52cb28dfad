//! First-response clocks: a warning at the configured fraction of a client's target, and at the target the
//! `on-overdue` hook of the client's chain, whose escalation is applied (the client's defaults escalate when
//! no active plugin decides).
//!
//! Clocks live in the store (`sla_next_at` on each conversation), so the worker keeps no state: it claims
//! what is due, at start-up too, which is how a target passed while the server was down fires after the
//! restart. Nodes sharing a database claim different clocks; one a stopped node claimed comes due again when
//! its claim (`pipeline.lease_ms`) runs out.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{Decision, Escalation, Priority, SlaState, Timestamp};
use crate::pipeline::{DEFAULTS_SOURCE, LoadedChain, Pipeline, with_defaults};
use crate::plugins::PluginContext;
use crate::plugins::rules::{Hook, kb_search_for};
use crate::store::{DueClock, OverdueContext, OverdueDecision};
use crate::worker::{StepWorker, Wake, run_steps};

/// Clocks handled per round.
const BATCH: usize = 100;

/// What the client's defaults decide about an overdue conversation: tag it, raise its priority and escalate
/// at level 1, telling the escalation contact if the client has one.
pub(crate) fn default_overdue_decision(context: &OverdueContext) -> Decision {
    let minutes = context.profile.sla.first_response_minutes;
    Decision {
        tags: vec!["overdue".into()],
        priority: Some(Priority::High),
        escalate: Some(Escalation {
            level: 1,
            reason: format!("no first reply within the {minutes}-minute target"),
            notify_owner: context.profile.escalation_contact.is_some(),
        }),
        reason: "client defaults: first response overdue".into(),
        ..Decision::default()
    }
}

/// Runs until `shutdown` is cancelled: at each clock's next step, and at least every `poll` (a clock
/// started meanwhile is found then).
pub(crate) async fn run(pipeline: Pipeline, poll: Duration, shutdown: CancellationToken) {
    let metrics = pipeline.metrics.clone();
    run_steps(Clocks(pipeline), poll, Wake::default(), metrics, shutdown).await;
}

/// The first-response clock worker: each step handles every clock due now.
pub(crate) struct Clocks(pub Pipeline);

impl StepWorker for Clocks {
    type Error = crate::store::Error;
    const NAME: &'static str = "clocks";

    async fn step(&self) -> crate::store::Result<Option<Duration>> {
        let clock = &self.0.clock;
        process_due(&self.0, clock.now()).await?;
        Ok(self.0.db.next_clock_at().await?.map(|due| clock.until(due)))
    }
}

/// Handles every clock due at `now`. Returns how many steps were applied.
///
/// # Errors
/// The store fails.
pub(crate) async fn process_due(pipeline: &Pipeline, now: Timestamp) -> crate::store::Result<usize> {
    let mut applied = 0;
    loop {
        let lease = Duration::from_millis(pipeline.settings.lease_ms);
        let due = pipeline.db.claim_due_clocks(now, lease, BATCH).await?;
        let count = due.len();
        for clock in due {
            let done = if clock.state == SlaState::Running && clock.due_at.millis() > now.millis() {
                let warned = pipeline.db.warn_clock(clock).await?;
                if warned {
                    pipeline.metrics.sla_event("warning");
                }
                warned
            } else {
                let escalated = overdue(pipeline, clock, now).await?;
                if escalated {
                    pipeline.metrics.sla_event("overdue");
                }
                escalated
            };
            applied += usize::from(done);
        }
        if count < BATCH {
            return Ok(applied);
        }
    }
}

async fn overdue(pipeline: &Pipeline, clock: DueClock, now: Timestamp) -> crate::store::Result<bool> {
    let context = pipeline.db.overdue_context(clock.client.clone(), clock.conversation_id.clone()).await?;
    let chain = LoadedChain::load(&pipeline.rules, &pipeline.db, &clock.client, &context.chain).await?;
    let profile = &context.profile;
    let waited_ms = profile.business_hours.open_time_between(clock.started_at, now, &profile.timezone);
    let local = profile.business_hours.around(now, &profile.timezone);
    let plugin_context = PluginContext {
        client: clock.client.as_str().to_owned(),
        now: now.millis(),
        timezone: profile.timezone.clone(),
        within_business_hours: local.open,
        local,
        languages: profile.languages.clone(),
        conversation_id: clock.conversation_id.to_string(),
        messages_in_conversation: context.messages,
        unanswered_inbound: context.unanswered_inbound,
        last_acknowledged_at: context.last_acknowledged_at.map(Timestamp::millis),
        last_human_reply_at: context.last_human_reply_at.map(Timestamp::millis),
        config: String::new(),
    };
    let rules = pipeline.rules.clone();
    let index = pipeline.index.clone();
    let client = clock.client.clone();
    let last_inbound_id = context.last_inbound_id.clone();
    let decided = tokio::task::spawn_blocking(move || {
        let defaults = default_overdue_decision(&context);
        if chain.links.is_empty() && chain.broken.is_empty() {
            return OverdueDecision { source: DEFAULTS_SOURCE, decision: defaults, runs: Vec::new() };
        }
        let mut kv: HashMap<_, _> = context.kv;
        let kb_search = kb_search_for(&index, &client, &context.profile, context.profile.primary_language());
        let hook =
            Hook::Overdue { context: &plugin_context, waited_seconds: u64::try_from(waited_ms / 1000).unwrap_or(0) };
        let outcome = rules.run_chain(&chain.links, &hook, &mut kv, &kb_search, &context.profile);
        let mut runs = outcome.runs;
        runs.extend(chain.broken.iter().map(|(plugin, why)| crate::pipeline::broken_run(plugin, why)));
        let (source, decision) = with_defaults(outcome.merged, defaults, chain.has_active());
        OverdueDecision { source, decision, runs }
    })
    .await?;
    let breaker = pipeline.rules.breaker();
    let applied = pipeline.db.apply_overdue(clock, last_inbound_id, decided, breaker).await?;
    if applied {
        pipeline.outbox.wake();
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{process_available, test_support};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clocks_step_through_warning_and_target_at_the_time_they_are_given() {
        // Time is an input: the steps are driven at chosen instants instead of waiting or moving rows.
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = test_support::pipeline(dir.path()).await;
        test_support::ingest(&pipeline.db, 1).await;
        process_available(&pipeline).await.expect("decided");
        let clock = || async { test_support::inbox(&pipeline.db).await.remove(0) };
        let started = clock().await.sla.expect("the first message started the clock");
        assert_eq!(started.state, SlaState::Running);

        assert_eq!(process_due(&pipeline, started.warn_at.minus(Duration::from_millis(1))).await.expect("step"), 0);
        assert_eq!(clock().await.sla.expect("clock").state, SlaState::Running, "nothing is due before the warning");
        assert_eq!(process_due(&pipeline, started.warn_at).await.expect("step"), 1);
        assert_eq!(clock().await.sla.expect("clock").state, SlaState::Warned);
        assert_eq!(process_due(&pipeline, started.due_at).await.expect("step"), 1);
        let overdue = clock().await;
        assert_eq!(overdue.sla.expect("clock").state, SlaState::Overdue);
        assert_eq!(overdue.escalation_level, 1, "the client's defaults escalate an overdue conversation");
        assert_eq!(process_due(&pipeline, started.due_at.plus(Duration::from_secs(3_600))).await.expect("step"), 0);
        // The worker's own step sees nothing due now, and says when to look again: never, as no clock runs.
        assert_eq!(Clocks(pipeline).step().await.expect("step"), None);
    }
}
