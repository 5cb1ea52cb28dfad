//! The load generator: starts a real server on a temporary data directory (durable commits, as in
//! production) and drives it over loopback with a fixed number of requests in flight, then reports
//! sustained acknowledged throughput and latency percentiles. With `--burst` it measures fairness instead:
//! one client's burst under slow rules while the other clients get a steady trickle.
//!
//! Client and server share this machine's cores, as they would in a one-box deployment with a local proxy;
//! the figures are for that setting.
//!
//! With `--database-url` the server stores into that PostgreSQL database (which must hold no clients yet: the
//! run creates its own, and leaves them there), and `--nodes N` starts N nodes on it, each with a data
//! directory of its own, in this one process (each its own pool, workers and listener; they share the
//! process's runtime and this machine's cores); the requests go to the nodes in turn, as a load balancer's
//! would.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum;
use tokio::sync::Mutex;

use crate::app::Application;
use crate::channels::telegram::TelegramConfig;
use crate::config::Settings;
use crate::domain::{ChannelKind, ClientProfile, ClientSlug, Role};

/// Which ingest route to drive.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Route {
    /// `POST /api/v1/clients/{slug}/messages` with a client token.
    Api,
    /// `POST /webhooks/telegram/{slug}` with the secret-token header.
    Telegram,
}

/// Options of `recado loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Messages to send in the measured run.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Clients the messages are spread over.
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// Messages sent before measuring, to warm up connections and caches.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: usize,
    /// Ingest route to drive.
    #[arg(long, value_enum, default_value_t = Route::Api)]
    pub route: Route,
    /// Activate the example plugin chain (acknowledgement, router, escalation) for every client, from this
    /// `example-plugins` directory (components built for wasm32-wasip2).
    #[arg(long)]
    pub plugins: Option<std::path::PathBuf>,
    /// Instead of the throughput run: this many messages sent at once to one more client, `busy`, whose rules
    /// are the component `--burst-plugin`, while the other clients get `--trickle` messages a second; the
    /// report says how many of the burst its rules decided, and the other clients' decision delays while it
    /// was idle and during the burst.
    #[arg(long, requires = "burst_plugin")]
    pub burst: Option<usize>,
    /// The busy client's rule plugin (a component, e.g. a Python template's `plugin.wasm`).
    #[arg(long)]
    pub burst_plugin: Option<std::path::PathBuf>,
    /// Its configuration (a JSON file; `{}` without one).
    #[arg(long)]
    pub burst_config: Option<std::path::PathBuf>,
    /// Messages a second sent to the other clients in a burst run.
    #[arg(long, default_value_t = 40)]
    pub trickle: u32,
    /// The server's settings, as `recado serve --config` reads them (with `RECADO__*` variables); the data
    /// directory, the address and the ingest budgets are the load generator's own.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Store into this PostgreSQL database instead of SQLite (a `postgres://` URL; the database must hold no
    /// clients yet).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Nodes sharing the database (more than one needs `--database-url`).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Route driven.
    pub route: Route,
    /// Requests acknowledged with 2xx.
    pub acknowledged: usize,
    /// Requests that failed (non-2xx or transport error).
    pub failed: usize,
    /// Wall time of the measured run.
    pub elapsed: Duration,
    /// Latency percentiles (p50, p90, p99, max).
    pub latency: [Duration; 4],
    /// Requests in flight.
    pub concurrency: usize,
    /// From the start of the measured run until every message was processed (decided and applied).
    pub processed_in: Duration,
    /// Plugins active per client.
    pub chain: Vec<String>,
    /// The store: `SQLite` or `PostgreSQL`.
    pub database: &'static str,
    /// Nodes the requests were spread over.
    pub nodes: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.acknowledged as f64 / self.elapsed.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "route:        {:?} (durable commits, {} in flight)", self.route, self.concurrency)?;
        let nodes = if self.nodes == 1 { "one node".to_owned() } else { format!("{} nodes", self.nodes) };
        writeln!(f, "store:        {} ({nodes})", self.database)?;
        writeln!(
            f,
            "acknowledged: {} in {:.2} s ({} failed)",
            self.acknowledged,
            self.elapsed.as_secs_f64(),
            self.failed
        )?;
        writeln!(f, "throughput:   {rate:.0} messages/s")?;
        let chain = if self.chain.is_empty() { "client defaults only".to_owned() } else { self.chain.join(", ") };
        writeln!(
            f,
            "processed:    all {} in {:.2} s ({:.0} messages/s; rules: {chain})",
            self.acknowledged,
            self.processed_in.as_secs_f64(),
            self.acknowledged as f64 / self.processed_in.as_secs_f64()
        )?;
        write!(
            f,
            "latency:      p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.latency[0]),
            ms(self.latency[1]),
            ms(self.latency[2]),
            ms(self.latency[3])
        )
    }
}

pub(crate) struct Target {
    slug: ClientSlug,
    token: String,
}

/// One node started for a run.
struct Node {
    /// Kept until the run ends: the node's data directory.
    _data_dir: tempfile::TempDir,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The nodes started for a run, with their clients.
struct Started {
    nodes: Vec<Node>,
    /// The first node's store and plugins (the database is the same for every node).
    db: crate::store::Db,
    rules: crate::plugins::rules::Rules,
    targets: Arc<Vec<Target>>,
    http: reqwest::Client,
    /// Each node's base URL; requests go to them in turn.
    bases: Arc<Vec<String>>,
    chain: Vec<String>,
}

impl Started {
    /// Waits until no message is left to process.
    async fn drained(&self) -> anyhow::Result<()> {
        while !self.db.unprocessed_messages(1).await?.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        for node in &self.nodes {
            node.shutdown.cancel();
        }
        for node in self.nodes {
            node.server.await.context("server task")??;
        }
        Ok(())
    }
}

/// Creates a client with a token and a Telegram channel.
pub(crate) async fn add_client(db: &crate::store::Db, slug: &ClientSlug, index: usize) -> anyhow::Result<Target> {
    let profile = ClientProfile::new(&format!("Load client {slug}"), "Europe/Madrid", &["es"]);
    db.create_client(slug.clone(), profile, "loadgen".into()).await?;
    let token = db.create_token(Role::Client, Some(slug.clone()), "loadgen".into()).await?.token;
    let telegram = TelegramConfig {
        bot_token: "1:load".into(),
        secret_token: format!("secret{index}").into(),
        api_base_url: "http://127.0.0.1:9".into(),
    };
    db.put_channel(slug.clone(), ChannelKind::Telegram, telegram, "loadgen".into()).await?;
    Ok(Target { slug: slug.clone(), token })
}

/// Starts `args.nodes` nodes, each on a temporary data directory (and on `args.database_url` when given),
/// with `args.clients` clients (each with the example chain when `args.plugins` is given).
async fn start(args: &LoadgenArgs) -> anyhow::Result<Started> {
    // SQLite is one server's database: a second node would be a second writer on the file.
    if args.nodes > 1 && args.database_url.is_none() {
        anyhow::bail!("--nodes above 1 needs --database-url: several nodes share a PostgreSQL database");
    }
    let mut nodes = Vec::new();
    let mut bases = Vec::new();
    let mut first: Option<(crate::store::Db, crate::plugins::rules::Rules)> = None;
    let mut secrets_key = None;
    for _ in 0..args.nodes.max(1) {
        let data_dir = tempfile::tempdir().context("creating a temporary data directory")?;
        let overrides = crate::config::Overrides {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: Some(data_dir.path().to_owned()),
            database_url: args.database_url.clone().map(Into::into),
        };
        let mut settings = match &args.config {
            Some(file) => Settings::load(Some(file), &overrides)?,
            None => {
                let mut settings = Settings::for_tests(data_dir.path());
                settings.database.url = overrides.database_url;
                settings
            }
        };
        // Every node seals channel secrets with the first one's key, as a deployment's nodes do.
        if settings.storage.secrets_key_file.is_none() {
            settings.storage.secrets_key_file.clone_from(&secrets_key);
        }
        secrets_key.get_or_insert_with(|| settings.storage.secrets_key_path());
        // Measure the server, not the shedding: let every request in. Every connection comes from loopback,
        // one address standing for many providers' and clients' addresses.
        let in_flight = args.concurrency.max(1) * 2;
        settings.http.max_concurrent_ingest = in_flight;
        settings.http.max_concurrent_ingest_per_client = in_flight;
        settings.http.max_connections_per_address = settings.http.max_connections_per_address.max(in_flight + 16);
        let app = Application::build(settings).await?;
        bases.push(format!("http://{}", app.local_addr()));
        if first.is_none() {
            first = Some((app.db(), app.rules()));
        }
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        nodes.push(Node { _data_dir: data_dir, shutdown, server });
    }
    let (db, rules) = first.context("no node started")?;
    if !db.clients_visible_to(crate::store::Scope::All).await?.is_empty() {
        anyhow::bail!("the database already holds clients: the load generator needs an empty one for its own");
    }

    let mut targets = Vec::new();
    for index in 0..args.clients.max(1) {
        let slug = ClientSlug::parse(&format!("load-{index}"))?;
        let target = add_client(&db, &slug, index).await?;
        if let Some(dir) = &args.plugins {
            super::demo::install_example_chain(&rules, &db, &slug, dir).await?;
        }
        targets.push(target);
    }
    let chain = if args.plugins.is_some() {
        super::demo::EXAMPLE_CHAIN.iter().map(|(name, _)| (*name).to_owned()).collect()
    } else {
        Vec::new()
    };
    Ok(Started {
        nodes,
        db,
        rules,
        targets: Arc::new(targets),
        http: reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?,
        bases: Arc::new(bases),
        chain,
    })
}

/// Runs the load generator.
///
/// # Errors
/// The server cannot start or the clients cannot be created.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    let run = start(&args).await?;
    let (http, bases, targets) = (&run.http, &run.bases, &run.targets);
    drive(http, bases, targets, args.route, args.warmup, args.concurrency, "warmup").await;
    let started = Instant::now();
    let latencies = drive(http, bases, targets, args.route, args.messages, args.concurrency, "run").await;
    let elapsed = started.elapsed();
    run.drained().await?;
    let processed_in = started.elapsed();
    let chain = run.chain.clone();
    let run_on_postgres = run.db.is_postgres();
    run.stop().await?;

    let mut ok: Vec<Duration> = latencies.iter().filter_map(|(latency, ok)| ok.then_some(*latency)).collect();
    ok.sort();
    let percentile =
        |p: f64| ok.get(((ok.len() as f64 * p) as usize).min(ok.len().saturating_sub(1))).copied().unwrap_or_default();
    Ok(Report {
        route: args.route,
        acknowledged: ok.len(),
        failed: latencies.len() - ok.len(),
        elapsed,
        latency: [percentile(0.50), percentile(0.90), percentile(0.99), ok.last().copied().unwrap_or_default()],
        concurrency: args.concurrency,
        processed_in,
        chain,
        database: if run_on_postgres { "PostgreSQL" } else { "SQLite" },
        nodes: args.nodes.max(1),
    })
}

/// Sends `count` messages with `concurrency` in flight, to `bases` in turn; returns each request's latency
/// and success.
async fn drive(
    http: &reqwest::Client,
    bases: &Arc<Vec<String>>,
    targets: &Arc<Vec<Target>>,
    route: Route,
    count: usize,
    concurrency: usize,
    label: &'static str,
) -> Vec<(Duration, bool)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, bases, targets, next, results) =
            (http.clone(), Arc::clone(bases), Arc::clone(targets), Arc::clone(&next), Arc::clone(&results));
        workers.push(tokio::spawn(async move {
            let mut local = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let target = &targets[index % targets.len()];
                let base = &bases[index % bases.len()];
                let request = match route {
                    Route::Api => api_message(&http, base, target, &format!("{label}-{index}"), index),
                    Route::Telegram => {
                        let slot = targets.iter().position(|t| t.slug == target.slug).unwrap_or(0);
                        http.post(format!("{base}/webhooks/telegram/{}", target.slug))
                            .header("x-telegram-bot-api-secret-token", format!("secret{slot}"))
                            .json(&serde_json::json!({
                                "update_id": index,
                                "message": {
                                    "message_id": index,
                                    "chat": { "id": 1_000 + (index % 5_000) },
                                    "from": { "first_name": "Load" },
                                    "text": format!("{label} Hola, ¿a qué hora abrís mañana?"),
                                }
                            }))
                    }
                };
                let started = Instant::now();
                let ok = matches!(request.send().await, Ok(response) if response.status().is_success());
                local.push((started.elapsed(), ok));
            }
            results.lock().await.extend(local);
        }));
    }
    for worker in workers {
        if let Err(error) = worker.await {
            tracing::error!(%error, "load worker failed");
        }
    }
    Arc::try_unwrap(results).map(Mutex::into_inner).unwrap_or_default()
}

/// What a burst run measured.
#[derive(Debug, Clone)]
pub struct BurstReport {
    /// Messages sent to the busy client at once.
    pub burst: usize,
    /// Of them, how many its rules decided (the rest got its defaults).
    pub by_chain: usize,
    /// From the first of them sent to the last of them decided.
    pub drained_in: Duration,
    /// The other clients' decision delays (p50, p99, max, count) before the burst ...
    pub idle: [Duration; 3],
    /// ... and while the busy client's messages were waiting.
    pub during: [Duration; 3],
    /// How many of the other clients' messages each figure is over (idle, during).
    pub counts: (usize, usize),
    /// Messages a second the other clients got.
    pub trickle: u32,
    /// The other clients' rules.
    pub chain: Vec<String>,
}

impl fmt::Display for BurstReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let row = |figures: &[Duration; 3]| {
            format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms(figures[0]), ms(figures[1]), ms(figures[2]))
        };
        let chain = if self.chain.is_empty() { "client defaults only".to_owned() } else { self.chain.join(", ") };
        writeln!(
            f,
            "busy client:  {} messages at once; its rules decided {} ({} got its defaults), all in {:.2} s",
            self.burst,
            self.by_chain,
            self.burst - self.by_chain,
            self.drained_in.as_secs_f64()
        )?;
        writeln!(f, "other clients ({} messages/s; rules: {chain}), from receipt to applied decision:", self.trickle)?;
        writeln!(f, "  idle:         {} over {} messages", row(&self.idle), self.counts.0)?;
        let ratio = self.during[0].as_secs_f64() / self.idle[0].as_secs_f64().max(1e-6);
        write!(f, "  during burst: {} over {} messages (p50 {ratio:.2}x idle)", row(&self.during), self.counts.1)
    }
}

/// The burst run (see [`LoadgenArgs::burst`]).
///
/// # Errors
/// The server cannot start, or the busy client's plugin cannot be read or is refused.
pub async fn run_burst(args: LoadgenArgs) -> anyhow::Result<BurstReport> {
    let burst = args.burst.unwrap_or(500);
    let path = args.burst_plugin.clone().context("--burst needs --burst-plugin")?;
    let run = start(&args).await?;
    let busy = ClientSlug::parse("busy")?;
    let busy_target = add_client(&run.db, &busy, run.targets.len()).await?;
    let component = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = match &args.burst_config {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        None => "{}".to_owned(),
    };
    let admitted = run.rules.admit(&component, run.rules.settings().max_component_bytes).await?;
    let plugin = crate::store::NewPlugin {
        name: "burst".into(),
        version: "1".into(),
        contract: admitted.plugin.contract().to_owned(),
        sha256: admitted.sha256,
        component,
        config: serde_json::from_str::<serde_json::Value>(&config)?.to_string(),
    };
    let record = run.db.insert_plugin(busy.clone(), plugin, "loadgen".into()).await?;
    run.db.set_plugin_state(busy.clone(), record.id, crate::domain::PluginState::Active, "loadgen".into()).await?;

    // The other clients' steady trickle, through both phases.
    let stop = tokio_util::sync::CancellationToken::new();
    let trickle = {
        let (http, bases, targets, stop) =
            (run.http.clone(), Arc::clone(&run.bases), Arc::clone(&run.targets), stop.clone());
        let every = Duration::from_secs_f64(1.0 / f64::from(args.trickle.max(1)));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            let mut index = 0usize;
            let mut sending = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let target = &targets[index % targets.len()];
                let request =
                    api_message(&http, &bases[index % bases.len()], target, &format!("trickle-{index}"), index);
                // Sent without waiting for the answer: a slow answer must not slow the trickle down.
                sending.spawn(request.send());
                index += 1;
            }
            while sending.join_next().await.is_some() {}
        })
    };
    let quiet_since = crate::domain::Timestamp::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    run.drained().await?;

    let burst_at = crate::domain::Timestamp::now();
    let started = Instant::now();
    let busy_only = Arc::new(vec![busy_target]);
    drive(&run.http, &run.bases, &busy_only, Route::Api, burst, args.concurrency, "burst").await;
    let busy_done = loop {
        let decided = run.db.decision_delays(busy.clone(), burst_at).await?;
        if decided.len() >= burst {
            break decided;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let drained_in = started.elapsed();
    let burst_end = crate::domain::Timestamp::now();
    stop.cancel();
    trickle.await.context("trickle task")?;
    run.drained().await?;

    let (mut idle, mut during) = (Vec::new(), Vec::new());
    for target in run.targets.iter() {
        for delay in run.db.decision_delays(target.slug.clone(), quiet_since).await? {
            let wait = Duration::from_millis(
                u64::try_from(delay.decided_at.millis() - delay.received_at.millis()).unwrap_or(0),
            );
            if delay.received_at < burst_at {
                idle.push(wait);
            } else if delay.received_at <= burst_end {
                during.push(wait);
            }
        }
    }
    let figures = |waits: &mut Vec<Duration>| {
        waits.sort();
        let at = |p: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let index = ((waits.len() as f64 * p) as usize).min(waits.len().saturating_sub(1));
            waits.get(index).copied().unwrap_or_default()
        };
        [at(0.5), at(0.99), waits.last().copied().unwrap_or_default()]
    };
    let report = BurstReport {
        burst,
        by_chain: busy_done.iter().filter(|delay| delay.by_chain).count(),
        drained_in,
        idle: figures(&mut idle),
        during: figures(&mut during),
        counts: (idle.len(), during.len()),
        trickle: args.trickle,
        chain: run.chain.clone(),
    };
    run.stop().await?;
    Ok(report)
}

/// A generic-API message from a customer of `target`.
pub(crate) fn api_message(
    http: &reqwest::Client,
    base: &str,
    target: &Target,
    external_id: &str,
    index: usize,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/api/v1/clients/{}/messages", target.slug)).bearer_auth(&target.token).json(
        &serde_json::json!({
            "external_id": external_id,
            "from": { "handle": format!("+3460{:07}", index % 5_000), "name": "Load" },
            "text": "Hola, ¿a qué hora abrís mañana?",
        }),
    )
}
