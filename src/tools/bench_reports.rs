//! The report benchmark: a year of a busy agency (by default two million messages in 400,000 conversations of
//! 20 clients, answered by 12 assistants) written straight into a fresh store, then the yearly report timed
//! for an admin (everything), one client and one assistant, by day and by week.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::StorageSettings;
use crate::domain::{ClientProfile, ClientSlug, Timestamp};
use crate::reports::{GroupBy, compute};
use crate::store::{DAY_MS, Db, ReportRange, Scope, SyntheticHistory};

/// Options of `recado bench-reports`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportBenchArgs {
    /// Messages in the year.
    #[arg(long, default_value_t = 2_000_000)]
    pub messages: usize,
    /// Messages per conversation.
    #[arg(long, default_value_t = 5)]
    pub per_conversation: usize,
    /// Clients.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Assistants.
    #[arg(long, default_value_t = 12)]
    pub assistants: usize,
    /// Times each report is asked for (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Keep the store in this directory (by default a temporary one, deleted afterwards). When it already
    /// holds a history written by this benchmark, that history is measured again instead of written: for
    /// comparing changes to the reports (and timing the schema migrations over a big store).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct ReportBench {
    messages: u64,
    conversations: u64,
    write: Option<Duration>,
    open: Duration,
    database_bytes: u64,
    rows: Vec<(String, Duration, Duration)>,
}

impl fmt::Display for ReportBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} messages in {} conversations over 365 days", self.messages, self.conversations)?;
        match self.write {
            Some(write) => write!(f, ", written in {:.1} s", write.as_secs_f64())?,
            None => write!(f, ", written before (store opened and migrated in {:.1} s)", self.open.as_secs_f64())?,
        }
        writeln!(f, "; database {:.0} MiB", self.database_bytes as f64 / (1024.0 * 1024.0))?;
        writeln!(f, "| report (a year) | reading the rows (median) | computing the figures (median) | total |")?;
        writeln!(f, "|---|---|---|---|")?;
        for (name, read, figures) in &self.rows {
            writeln!(
                f,
                "| {name} | {:.0} ms | {:.0} ms | {:.0} ms |",
                read.as_secs_f64() * 1000.0,
                figures.as_secs_f64() * 1000.0,
                (*read + *figures).as_secs_f64() * 1000.0
            )?;
        }
        Ok(())
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Runs the benchmark in a temporary data directory.
///
/// # Errors
/// The store fails.
pub async fn run(args: ReportBenchArgs) -> anyhow::Result<ReportBench> {
    let temporary = tempfile::tempdir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temporary.path().to_owned());
    let reused = data_dir.join("recado.db").exists();
    let settings = StorageSettings { data_dir: data_dir.clone(), ..StorageSettings::default() };
    let started = Instant::now();
    let db = Db::open(&settings)?;
    let open = started.elapsed();
    let clients: Vec<ClientSlug> =
        (0..args.clients.max(1)).map(|n| ClientSlug::parse(&format!("client-{n:03}"))).collect::<Result<_, _>>()?;
    let assistants: Vec<String> = (0..args.assistants.max(1)).map(|n| format!("prs_bench{n:027x}")).collect();
    let conversations = args.messages / args.per_conversation.max(3);
    let (from, to, write) = if reused {
        // The history's year ends with its last conversation.
        let (from, to) = db.synthetic_history_span().await?;
        (from, to, None)
    } else {
        for client in &clients {
            let profile = ClientProfile::new(client.as_str(), "Europe/Madrid", &["es"]);
            db.create_client(client.clone(), profile, "bench".into()).await?;
        }
        let to = Timestamp::now();
        let from = Timestamp(to.millis() - 365 * DAY_MS);
        let history = Arc::new(SyntheticHistory {
            clients: clients.clone(),
            assistants: assistants.clone(),
            conversations,
            messages_per_conversation: args.per_conversation.max(3),
            from,
            to,
        });
        let started = Instant::now();
        let chunk = 5_000;
        for start in (0..conversations).step_by(chunk) {
            db.write_synthetic_history(Arc::clone(&history), start, (start + chunk).min(conversations)).await?;
        }
        (from, to, Some(started.elapsed()))
    };
    let database_bytes = std::fs::metadata(data_dir.join("recado.db")).map(|m| m.len()).unwrap_or(0);

    let cases = [
        ("everything, by day (an admin)", None, None, GroupBy::Day),
        ("everything, by week", None, None, GroupBy::Week),
        ("one client, by day", Some(clients[0].clone()), None, GroupBy::Day),
        ("one assistant, by day", None, Some(assistants[0].clone()), GroupBy::Day),
    ];
    let mut rows = Vec::new();
    for (name, client, assistant, group_by) in cases {
        let (mut reads, mut figures) = (Vec::new(), Vec::new());
        for _ in 0..args.runs.max(1) {
            let range = ReportRange { from, to, client: client.clone(), assistant: assistant.clone() };
            let started = Instant::now();
            let report_rows = db.report_rows(Scope::All, range).await?;
            reads.push(started.elapsed());
            let started = Instant::now();
            let report = compute(&report_rows, from, to, group_by);
            figures.push(started.elapsed());
            std::hint::black_box(report);
        }
        rows.push((name.to_owned(), median(reads), median(figures)));
    }
    let (messages, conversations) = db.synthetic_history_size().await?;
    db.close().await;
    Ok(ReportBench { messages, conversations, write, open, database_bytes, rows })
}
