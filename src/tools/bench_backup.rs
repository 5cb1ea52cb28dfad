//! The backup benchmark: an agency's installation (by default 100 clients with 1,000 articles each and a
//! year of a million messages), backed up with the server stopped and again while customers keep writing,
//! then restored. It reports the backup's time and size, the restore's time, and the ingest rate and
//! latency before and during the backup taken under load.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::Application;
use crate::backup::{BackupOptions, RestoreOptions};
use crate::config::Settings;
use crate::domain::{ClientSlug, Timestamp};
use crate::store::{DAY_MS, Db, SyntheticHistory};

/// Options of `recado bench-backup`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupBenchArgs {
    /// Clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Articles per client.
    #[arg(long, default_value_t = 1_000)]
    pub articles: usize,
    /// Messages in the year of history.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Requests in flight while measuring ingest.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of ingest measured before the backup under load starts.
    #[arg(long, default_value_t = 10)]
    pub baseline_seconds: u64,
    /// The demo knowledge bases the articles are made from.
    #[arg(long, default_value = "kb")]
    pub kb: PathBuf,
    /// Keep the installation in this directory (by default a temporary one). When it already holds one, it
    /// is measured again instead of written.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Ingest over one stretch of time.
#[derive(Debug, Clone, Default)]
struct Window {
    acknowledged: usize,
    failed: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct BackupBench {
    clients: u64,
    articles: u64,
    messages: u64,
    write: Option<Duration>,
    database_bytes: u64,
    backup: Duration,
    backup_bytes: u64,
    restore: Duration,
    backup_under_load: Duration,
    before: Window,
    during: Window,
}

/// Runs the benchmark.
///
/// # Errors
/// The installation cannot be written, the server cannot start, or a backup or restore fails.
pub async fn run(args: BackupBenchArgs) -> anyhow::Result<BackupBench> {
    let temporary = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temporary.path().join("data"));
    let mut settings = Settings::default();
    settings.storage.data_dir = data_dir.clone();
    settings.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));

    let write = if settings.storage.database_path().exists() {
        None
    } else {
        let started = Instant::now();
        let db = tokio::task::block_in_place(|| Db::open(&settings.storage))?;
        let slugs = super::bench_kb::import_generated(&db, &args.kb, args.clients, args.articles).await?;
        let clients: Vec<ClientSlug> = slugs.into_iter().map(|(slug, _)| slug).collect();
        let to = Timestamp::now();
        let per_conversation = 5;
        let history = Arc::new(SyntheticHistory {
            clients,
            assistants: (0..12).map(|n| format!("prs_bench{n:027x}")).collect(),
            conversations: args.messages / per_conversation,
            messages_per_conversation: per_conversation,
            from: Timestamp(to.millis() - 365 * DAY_MS),
            to,
        });
        let chunk = 5_000;
        for start in (0..history.conversations).step_by(chunk) {
            db.write_synthetic_history(Arc::clone(&history), start, (start + chunk).min(history.conversations)).await?;
        }
        db.close().await;
        Some(started.elapsed())
    };
    let database_bytes = std::fs::metadata(settings.storage.database_path())?.len();

    // Stopped server: the backup and the restore alone.
    let backups = temporary.path().join("backups");
    let taken = {
        let (settings, to) = (settings.clone(), backups.join("stopped"));
        tokio::task::spawn_blocking(move || crate::backup::take(&settings, &to, &BackupOptions::default())).await??
    };
    let counts = taken.manifest.counts.clone();
    let restore = {
        let (from, into) = (taken.path.clone(), temporary.path().join("restored"));
        // A reused installation has the load clients' channels, sealed with its key.
        let key = settings.storage.secrets_key_path();
        let options = RestoreOptions { secrets_key: key.exists().then_some(key) };
        let started = Instant::now();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            crate::backup::restore(&from, &into, &options)?;
            Ok(std::fs::remove_dir_all(&into)?)
        })
        .await??;
        started.elapsed()
    };
    let stopped_backup = taken.path.clone();
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(stopped_backup)).await??;

    // Running server: customers writing before and during a backup.
    let mut serving = settings.clone();
    let in_flight = args.concurrency.max(1) * 2;
    serving.http.max_concurrent_ingest = in_flight;
    serving.http.max_concurrent_ingest_per_client = in_flight;
    serving.http.max_connections_per_address = serving.http.max_connections_per_address.max(in_flight + 16);
    let app = Application::build(serving).await?;
    let base = format!("http://{}", app.local_addr());
    let db = app.db();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let slug = ClientSlug::parse(&format!("backup-load-{}", Timestamp::now().millis()))?;
    let target = Arc::new(super::loadgen::add_client(&db, &slug, 0).await?);

    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(Instant, Duration, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let mut workers = Vec::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..args.concurrency.max(1) {
        let (http, base, target, stop, results, next) = (
            http.clone(),
            base.clone(),
            Arc::clone(&target),
            Arc::clone(&stop),
            Arc::clone(&results),
            Arc::clone(&next),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let request = super::loadgen::api_message(&http, &base, &target, &format!("bb-{index}"), index);
                let ok = request.send().await.is_ok_and(|response| response.status().is_success());
                results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
                    Instant::now(),
                    started.elapsed(),
                    ok,
                ));
            }
        }));
    }
    // Warm up, then the baseline window, then the backup.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.baseline_seconds.max(1))).await;
    let backup_start = Instant::now();
    let under_load = {
        let (settings, to) = (settings.clone(), backups.join("under-load"));
        // As the server's scheduled backups and `recado backup` take it: at a low priority.
        tokio::task::spawn_blocking(move || crate::backup::take_gently(&settings, &to, &BackupOptions::default()))
            .await??
    };
    let backup_end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await?;
    }
    shutdown.cancel();
    server.await??;
    let results = Arc::try_unwrap(results).map_err(|_| anyhow::anyhow!("workers still running"))?;
    let results = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let window = |from: Instant, to: Instant| {
        let inside: Vec<&(Instant, Duration, bool)> =
            results.iter().filter(|(at, _, _)| *at >= from && *at < to).collect();
        let mut latencies: Vec<Duration> =
            inside.iter().filter(|(_, _, ok)| *ok).map(|(_, latency, _)| *latency).collect();
        latencies.sort();
        let at = |p: f64| {
            latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied()
        };
        Window {
            acknowledged: latencies.len(),
            failed: inside.len() - latencies.len(),
            seconds: (to - from).as_secs_f64(),
            p50: at(0.5).unwrap_or_default(),
            p99: at(0.99).unwrap_or_default(),
        }
    };
    Ok(BackupBench {
        clients: counts.clients,
        articles: counts.articles,
        messages: counts.messages,
        write,
        database_bytes,
        backup: taken.elapsed,
        backup_bytes: taken.bytes,
        restore,
        backup_under_load: under_load.elapsed,
        before: window(baseline_start, backup_start),
        during: window(backup_start, backup_end),
    })
}

impl fmt::Display for BackupBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let written = match self.write {
            Some(took) => format!("written in {:.1} s", took.as_secs_f64()),
            None => "reused".to_owned(),
        };
        writeln!(
            f,
            "{} clients, {} articles, {} messages ({written}); database {:.0} MiB\n",
            self.clients,
            self.articles,
            self.messages,
            mib(self.database_bytes)
        )?;
        writeln!(f, "| measure | figure |\n|---|---|")?;
        writeln!(
            f,
            "| backup, server stopped | {:.1} s, {:.0} MiB |",
            self.backup.as_secs_f64(),
            mib(self.backup_bytes)
        )?;
        writeln!(f, "| restore (checks every file, then copies) | {:.1} s |", self.restore.as_secs_f64())?;
        writeln!(f, "| backup while customers write | {:.1} s |", self.backup_under_load.as_secs_f64())?;
        for (name, window) in [("before the backup", &self.before), ("during the backup", &self.during)] {
            writeln!(
                f,
                "| ingest {name} | {:.0} acknowledged/s ({} in {:.1} s, {} failed), p50 {:.1} ms, p99 {:.1} ms |",
                window.acknowledged as f64 / window.seconds.max(f64::EPSILON),
                window.acknowledged,
                window.seconds,
                window.failed,
                window.p50.as_secs_f64() * 1e3,
                window.p99.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}
