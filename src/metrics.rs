//! Prometheus metrics: HTTP requests and latencies, ingest counts, processing, deliveries, outbox backlog.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngestLabels {
    channel: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpdateLabels {
    channel: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    hook: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// A request counted in flight; dropping it (the answer sent, or the connection gone) counts it out.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Handle to the process's metrics. Clone freely.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    in_flight: Family<RouteLabels, Gauge>,
    ingested: Family<IngestLabels, Counter>,
    changes: Family<UpdateLabels, Counter>,
    media: Family<OutcomeLabels, Counter>,
    ignored: Family<UpdateLabels, Counter>,
    processed: Counter,
    queue_timeouts: Counter,
    deliveries: Family<OutcomeLabels, Counter>,
    outbox: Family<StateLabels, Gauge>,
    plugin_calls: Family<PluginCallLabels, Counter>,
    plugin_seconds: Histogram,
    sla_events: Family<KindLabels, Counter>,
    worker_steps: Family<WorkerLabels, Counter>,
    connections_shed: Family<ReasonLabels, Counter>,
    plugins_loaded: Gauge,
    backups: Family<OutcomeLabels, Counter>,
    backup_failing: Gauge,
    backup_last_success: Gauge,
    backup_last_bytes: Gauge,
    backup_last_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("recado");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("http_request_duration_seconds", "Time to answer HTTP requests", latency.clone());
        let in_flight = Family::<RouteLabels, Gauge>::default();
        registry.register("http_requests_in_flight", "HTTP requests being answered, by route", in_flight.clone());
        let ingested = Family::<IngestLabels, Counter>::default();
        registry.register("ingested_messages", "Inbound messages received, new or duplicate", ingested.clone());
        let changes = Family::<UpdateLabels, Counter>::default();
        registry.register(
            "channel_changes",
            "Edits, reactions, deletions and identity changes reported by channels, by kind",
            changes.clone(),
        );
        let ignored = Family::<UpdateLabels, Counter>::default();
        registry.register(
            "channel_updates_ignored",
            "Provider updates acknowledged and not used (service messages, other webhook fields), by kind",
            ignored.clone(),
        );
        let media = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "media_downloads",
            "Media download attempts by outcome (stored, retry, failed)",
            media.clone(),
        );
        let processed = Counter::default();
        registry.register("processed_messages", "Inbound messages processed by the pipeline", processed.clone());
        let queue_timeouts = Counter::default();
        registry.register(
            "plugin_queue_timeouts",
            "Messages decided by their client's defaults because they waited longer than plugins.client_queue_ms for the client's rules",
            queue_timeouts.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register("delivery_attempts", "Outbound delivery attempts by outcome", deliveries.clone());
        let outbox = Family::<StateLabels, Gauge>::default();
        registry.register("outbox_backlog", "Outbox rows waiting, in flight or dead", outbox.clone());
        let plugin_calls = Family::<PluginCallLabels, Counter>::default();
        registry.register("plugin_calls", "Rule-plugin calls by hook and outcome", plugin_calls.clone());
        let plugin_seconds = Histogram::new([
            0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
        ]);
        registry.register(
            "plugin_call_duration_seconds",
            "Wall time of rule-plugin calls, instantiation included",
            plugin_seconds.clone(),
        );
        let sla_events = Family::<KindLabels, Counter>::default();
        registry.register("sla_events", "First-response clock events (warning, overdue)", sla_events.clone());
        let worker_steps = Family::<WorkerLabels, Counter>::default();
        registry.register("worker_steps", "Completed steps of the background workers, by worker", worker_steps.clone());
        let connections_shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_shed",
            "Connections closed by the connection limits: refused over a cap (total, per_address) or closed to make room (evicted_silent)",
            connections_shed.clone(),
        );
        let plugins_loaded = Gauge::default();
        registry.register(
            "plugins_loaded",
            "Compiled rule plugins kept in memory (the running ones)",
            plugins_loaded.clone(),
        );
        let backups = Family::<OutcomeLabels, Counter>::default();
        registry.register("backups", "Scheduled backups by outcome (ok, failed)", backups.clone());
        let backup_failing = Gauge::default();
        registry.register(
            "backup_failing",
            "1 while the last scheduled backup failed (alert on it), 0 once one succeeds",
            backup_failing.clone(),
        );
        let backup_last_success = Gauge::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the last scheduled backup succeeded (Unix time)",
            backup_last_success.clone(),
        );
        let backup_last_bytes = Gauge::default();
        registry.register("backup_last_size_bytes", "Size of the last scheduled backup", backup_last_bytes.clone());
        let backup_last_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "backup_last_duration_seconds",
            "How long the last scheduled backup took",
            backup_last_seconds.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                in_flight,
                ingested,
                changes,
                media,
                ignored,
                processed,
                queue_timeouts,
                deliveries,
                outbox,
                plugin_calls,
                plugin_seconds,
                sla_events,
                worker_steps,
                connections_shed,
                plugins_loaded,
                backups,
                backup_failing,
                backup_last_success,
                backup_last_bytes,
                backup_last_seconds,
            }),
        }
    }

    /// Counts a request to `route` as in flight until the returned guard is dropped.
    pub fn request_started(&self, route: &str) -> InFlight {
        let gauge = self.inner.in_flight.get_or_create(&RouteLabels { route: route.to_owned() }).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Records an answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let route = route.to_owned();
        self.inner
            .requests
            .get_or_create(&RequestLabels { method: method.to_owned(), route: route.clone(), status })
            .inc();
        self.inner.latency.get_or_create(&RouteLabels { route }).observe(seconds);
    }

    /// Sets how many compiled plugins are kept in memory.
    pub fn plugins_loaded(&self, count: usize) {
        self.inner.plugins_loaded.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Records a scheduled backup that succeeded: `bytes` written in `seconds`.
    pub fn backup_succeeded(&self, bytes: u64, seconds: f64) {
        self.inner.backups.get_or_create(&OutcomeLabels { outcome: "ok" }).inc();
        self.inner.backup_failing.set(0);
        self.inner.backup_last_success.set(crate::domain::Timestamp::now().0 / 1000);
        self.inner.backup_last_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.inner.backup_last_seconds.set(seconds);
    }

    /// Records a scheduled backup that failed.
    pub fn backup_failed(&self) {
        self.inner.backups.get_or_create(&OutcomeLabels { outcome: "failed" }).inc();
        self.inner.backup_failing.set(1);
    }

    /// Records a connection closed by the connection limits, for `reason`.
    pub fn connection_shed(&self, reason: &'static str) {
        self.inner.connections_shed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records ingested messages on `channel`.
    pub fn ingested(&self, channel: &str, new: u64, duplicate: u64) {
        if new > 0 {
            self.inner
                .ingested
                .get_or_create(&IngestLabels { channel: channel.to_owned(), outcome: "new" })
                .inc_by(new);
        }
        if duplicate > 0 {
            self.inner
                .ingested
                .get_or_create(&IngestLabels { channel: channel.to_owned(), outcome: "duplicate" })
                .inc_by(duplicate);
        }
    }

    /// Records a change reported on `channel` and applied.
    pub fn channel_change(&self, channel: &'static str, kind: &'static str) {
        self.inner.changes.get_or_create(&UpdateLabels { channel, kind }).inc();
    }

    /// Records a media download attempt's outcome.
    pub fn media_download(&self, outcome: &'static str) {
        self.inner.media.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records an update on `channel` acknowledged and not used.
    pub fn update_ignored(&self, channel: &'static str, kind: &'static str) {
        self.inner.ignored.get_or_create(&UpdateLabels { channel, kind }).inc();
    }

    /// Records processed messages.
    pub fn messages_processed(&self, count: usize) {
        self.inner.processed.inc_by(u64::try_from(count).unwrap_or(0));
    }

    /// Records messages decided by defaults because they waited too long for their client's rules.
    pub fn plugin_queue_timeouts(&self, count: usize) {
        self.inner.queue_timeouts.inc_by(u64::try_from(count).unwrap_or(0));
    }

    /// Records a rule-plugin call: its hook (`on-message`, `on-overdue`), outcome (`ok` or a failure code)
    /// and wall time.
    pub fn plugin_call(&self, hook: &'static str, outcome: &'static str, seconds: f64) {
        self.inner.plugin_calls.get_or_create(&PluginCallLabels { hook, outcome }).inc();
        self.inner.plugin_seconds.observe(seconds);
    }

    /// Records a first-response clock event (`warning`, `overdue`).
    pub fn sla_event(&self, kind: &'static str) {
        self.inner.sla_events.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts a completed step of a background worker (a sign of life, and what tests wait on).
    pub fn worker_step(&self, worker: &'static str) {
        self.inner.worker_steps.get_or_create(&WorkerLabels { worker }).inc();
    }

    /// Records a delivery attempt's outcome (`sent`, `retry`, `dead`).
    pub fn delivery_attempt(&self, outcome: &'static str) {
        self.inner.deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Sets the outbox backlog gauges.
    pub fn set_outbox_backlog(&self, pending: u64, sending: u64, dead: u64) {
        for (state, count) in [("pending", pending), ("sending", sending), ("dead", dead)] {
            self.inner.outbox.get_or_create(&StateLabels { state }).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }
}

/// Resident memory of this process in bytes, from `/proc/self/status` (0 where that file does not exist).
pub(crate) fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map_or(0, |kib| kib * 1024)
}
