//! The load generator: starts a real server on a temporary data directory (durable commits, as in
//! production) and drives it over loopback with a fixed number of requests in flight, then reports
//! sustained acknowledged throughput and latency percentiles.
//!
//! Client and server share this machine's cores, as they would in a one-box deployment with a local proxy;
//! the figures are for that setting.

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
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.acknowledged as f64 / self.elapsed.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "route:        {:?} (durable commits, {} in flight)", self.route, self.concurrency)?;
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

struct Target {
    slug: ClientSlug,
    token: String,
}

/// Runs the load generator.
///
/// # Errors
/// The server cannot start or the clients cannot be created.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    let data_dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let mut settings = Settings::for_tests(data_dir.path());
    // Measure the server, not the shedding: let every request in. Every connection comes from loopback, one
    // address standing for many providers' and clients' addresses.
    let in_flight = args.concurrency.max(1) * 2;
    settings.http.max_concurrent_ingest = in_flight;
    settings.http.max_concurrent_ingest_per_client = in_flight;
    settings.http.max_connections_per_address = settings.http.max_connections_per_address.max(in_flight + 16);
    let app = Application::build(settings).await?;
    let addr = app.local_addr();
    let db = app.db();
    let rules = app.rules();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let mut targets = Vec::new();
    for index in 0..args.clients.max(1) {
        let slug = ClientSlug::parse(&format!("load-{index}"))?;
        let profile = ClientProfile::new(&format!("Load client {index}"), "Europe/Madrid", &["es"]);
        db.create_client(slug.clone(), profile, "loadgen".into()).await?;
        let token = db.create_token(Role::Client, Some(slug.clone()), "loadgen".into()).await?.token;
        let telegram = TelegramConfig {
            bot_token: "1:load".into(),
            secret_token: format!("secret{index}").into(),
            api_base_url: "http://127.0.0.1:9".into(),
        };
        db.put_channel(slug.clone(), ChannelKind::Telegram, telegram, "loadgen".into()).await?;
        if let Some(dir) = &args.plugins {
            super::demo::install_example_chain(&rules, &db, &slug, dir).await?;
        }
        targets.push(Target { slug, token });
    }
    let chain = if args.plugins.is_some() {
        super::demo::EXAMPLE_CHAIN.iter().map(|(name, _)| (*name).to_owned()).collect()
    } else {
        Vec::new()
    };
    let targets = Arc::new(targets);
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let base = format!("http://{addr}");

    drive(&http, &base, &targets, args.route, args.warmup, args.concurrency, "warmup").await;
    let started = Instant::now();
    let latencies = drive(&http, &base, &targets, args.route, args.messages, args.concurrency, "run").await;
    let elapsed = started.elapsed();
    while !db.unprocessed_messages(1).await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let processed_in = started.elapsed();

    shutdown.cancel();
    server.await.context("server task")??;

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
    })
}

/// Sends `count` messages with `concurrency` in flight; returns each request's latency and success.
async fn drive(
    http: &reqwest::Client,
    base: &str,
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
        let (http, base, targets, next, results) =
            (http.clone(), base.to_owned(), Arc::clone(targets), Arc::clone(&next), Arc::clone(&results));
        workers.push(tokio::spawn(async move {
            let mut local = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let target = &targets[index % targets.len()];
                let request = match route {
                    Route::Api => http
                        .post(format!("{base}/api/v1/clients/{}/messages", target.slug))
                        .bearer_auth(&target.token)
                        .json(&serde_json::json!({
                            "external_id": format!("{label}-{index}"),
                            "from": { "handle": format!("+3460{:07}", index % 5_000), "name": "Load" },
                            "text": "Hola, ¿a qué hora abrís mañana?",
                        })),
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
