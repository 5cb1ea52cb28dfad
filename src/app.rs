//! Wiring: builds the handles from [`Settings`], binds the listener, runs the server and the background
//! workers, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blobs::Blobs;
use crate::config::Settings;
use crate::domain::Clock;
use crate::http::{self, AppState};
use crate::kb::language::Detectors;
use crate::kb::{Knowledge, SearchIndex};
use crate::media::{Fetcher, MediaHandle};
use crate::metrics::Metrics;
use crate::outbox::{Deliverer, OutboxHandle};
use crate::pipeline::{self, Pipeline, PipelineHandle};
use crate::plugins::rules::Rules;
use crate::store::Db;
use crate::worker::Workers;

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: CancellationToken,
    clock: Clock,
}

impl Application {
    /// Opens the store and binds the listener. Once this returns, connections are accepted by the kernel,
    /// so callers need no readiness polling.
    ///
    /// # Errors
    /// The store cannot be opened (permissions, newer schema) or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// [`Application::build`], with the first-response clocks stepped at `clock`'s time (one set ahead
    /// shows what a server does once that much time has passed).
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        settings.check_backups()?;
        let db = Db::connect(&settings.storage, &settings.database).await.with_context(|| {
            if settings.database.postgres_url().is_some() {
                "opening the PostgreSQL store".to_owned()
            } else {
                format!("opening the store in {}", settings.storage.data_dir.display())
            }
        })?;
        let index = SearchIndex::open(&settings.storage.index_path(), &settings.search, &db)
            .await
            .with_context(|| format!("opening the search index in {}", settings.storage.index_path().display()))?;
        let knowledge = Knowledge::new(index, Arc::new(Detectors::default()));
        let metrics = Metrics::new();
        let rules = Rules::new(&settings.plugins, settings.storage.plugin_cache_path(), metrics.clone())
            .context("starting the plugin engine")?;
        let blobs_path = settings.storage.blobs_path();
        let blobs =
            Blobs::open(&blobs_path).with_context(|| format!("opening the media store in {}", blobs_path.display()))?;
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding {}", settings.http.listen))?;
        let shutdown = CancellationToken::new();
        let state = AppState {
            db,
            pipeline: PipelineHandle::default(),
            outbox: OutboxHandle::default(),
            media: MediaHandle::default(),
            blobs,
            metrics,
            knowledge,
            rules,
            admission: http::Admission::new(&settings),
            passwords: crate::people::Passwords::new(settings.auth.max_concurrent_password_checks),
            stopping: shutdown.clone(),
            workers: Workers::default(),
            settings: Arc::new(settings),
        };
        let router = http::router(state.clone());
        Ok(Self { listener, router, state, shutdown, clock })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound TCP listener has a local address")
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The store handle (for seeding demo data before serving).
    pub fn db(&self) -> Db {
        self.state.db.clone()
    }

    /// The plugin service (for tools that install plugins before serving).
    pub fn rules(&self) -> Rules {
        self.state.rules.clone()
    }

    /// Runs until the shutdown token is cancelled: stops accepting, lets requests in flight finish, stops the
    /// workers after their current batch, and closes the store once everything queued is committed.
    ///
    /// # Errors
    /// The delivery worker cannot be built.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { listener, router, state, shutdown, clock } = self;
        let settings = Arc::clone(&state.settings);
        let workers = CancellationToken::new();
        let deliverer =
            Deliverer::new(state.db.clone(), state.blobs.clone(), settings.outbox.clone(), state.metrics.clone())?;
        let watch = &state.workers;
        let delivery = watch.spawn("delivery", deliverer.run(state.outbox.clone(), workers.clone()), workers.clone());
        let fetcher = Fetcher::new(
            state.db.clone(),
            state.blobs.clone(),
            settings.media.clone(),
            settings.outbox.allow_private_targets,
            state.metrics.clone(),
        )?;
        let downloads = watch.spawn("downloads", fetcher.run(state.media.clone(), workers.clone()), workers.clone());
        let pipeline = Pipeline {
            db: state.db.clone(),
            outbox: state.outbox.clone(),
            settings: settings.pipeline.clone(),
            metrics: state.metrics.clone(),
            detectors: state.knowledge.detectors(),
            rules: state.rules.clone(),
            index: state.knowledge.index().clone(),
            clock,
            wake: state.pipeline.clone(),
        };
        let sla_poll = Duration::from_millis(settings.pipeline.sla_poll_interval_ms);
        let clocks =
            watch.spawn("clocks", crate::sla::run(pipeline.clone(), sla_poll, workers.clone()), workers.clone());
        let processing = watch.spawn("processing", pipeline::run(pipeline, workers.clone()), workers.clone());
        let index_poll = Duration::from_millis(settings.search.poll_interval_ms);
        let indexing = watch.spawn(
            "indexing",
            state.knowledge.index().clone().run(state.db.clone(), index_poll, state.metrics.clone(), workers.clone()),
            workers.clone(),
        );

        let housekeeping = watch.spawn(
            "housekeeping",
            crate::housekeeping::run(state.db.clone(), settings.events.clone(), state.metrics.clone(), workers.clone()),
            workers.clone(),
        );

        // Only with a folder configured: a worker that returns at once would be reported down.
        let backups = settings.backup.folder.is_some().then(|| {
            watch.spawn(
                "backups",
                crate::backup::run_scheduled((*settings).clone(), state.metrics.clone(), workers.clone()),
                workers.clone(),
            )
        });

        http::serve(listener, router, settings.http.clone(), state.metrics.clone(), shutdown).await;
        tracing::info!("HTTP server stopped; stopping workers");
        workers.cancel();
        // Outbound calls are bounded by the provider timeout; give them that long to record their outcome.
        let worker_grace = settings.outbox.request_timeout() + Duration::from_secs(2);
        let workers = [
            ("delivery", delivery),
            ("downloads", downloads),
            ("processing", processing),
            ("indexing", indexing),
            ("clocks", clocks),
            ("housekeeping", housekeeping),
        ];
        for (name, handle) in workers.into_iter().chain(backups.map(|handle| ("backups", handle))) {
            match tokio::time::timeout(worker_grace, handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(worker = name, %error, "worker failed"),
                Err(_) => tracing::warn!(worker = name, "worker did not stop in time"),
            }
        }
        let db = state.db.clone();
        drop(state);
        db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
