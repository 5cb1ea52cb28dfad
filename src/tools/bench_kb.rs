//! The knowledge-base benchmark: many clients with many articles, built from the demo knowledge bases with
//! per-client vocabulary so that clients' texts differ, then suggestion latency measured on customer
//! messages from the labelled set.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};

use super::eval::read_labelled;
use crate::config::{SearchSettings, StorageSettings};
use crate::domain::{ArticleContent, ArticleId, ClientSlug};
use crate::kb::files::read_tree;
use crate::kb::language::Detectors;
use crate::kb::{Knowledge, SearchIndex};
use crate::store::Db;

/// Options of `recado bench-kb`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Clients to create.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Articles per client.
    #[arg(long, default_value_t = 1_000)]
    pub articles: usize,
    /// Suggestion requests to time.
    #[arg(long, default_value_t = 20_000)]
    pub queries: usize,
    /// The demo knowledge bases the articles are made from.
    #[arg(long, default_value = "kb")]
    pub kb: std::path::PathBuf,
    /// The labelled messages used as queries.
    #[arg(long, default_value = "eval/queries.tsv")]
    pub messages: std::path::PathBuf,
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    clients: usize,
    articles: usize,
    import: Duration,
    index_build: Duration,
    index_bytes: u64,
    database_bytes: u64,
    rss_after_build: u64,
    rss_after_queries: u64,
    search: Latencies,
    service: Latencies,
}

#[derive(Debug, Clone, Default)]
struct Latencies {
    count: usize,
    total: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn latencies(mut samples: Vec<Duration>) -> Latencies {
    samples.sort();
    let at = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Latencies {
        count: samples.len(),
        total: samples.iter().sum(),
        p50: at(0.5),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "corpus:       {} clients x {} articles = {} articles",
            self.clients,
            self.articles / self.clients.max(1),
            self.articles
        )?;
        writeln!(
            f,
            "import:       {:.2} s ({:.0} articles/s, SQLite, durable)",
            self.import.as_secs_f64(),
            self.articles as f64 / self.import.as_secs_f64()
        )?;
        writeln!(
            f,
            "index build:  {:.2} s ({:.0} articles/s)",
            self.index_build.as_secs_f64(),
            self.articles as f64 / self.index_build.as_secs_f64()
        )?;
        writeln!(
            f,
            "sizes:        index {:.1} MiB, database {:.1} MiB",
            mib(self.index_bytes),
            mib(self.database_bytes)
        )?;
        writeln!(
            f,
            "memory (RSS): {:.0} MiB after building, {:.0} MiB after the queries",
            mib(self.rss_after_build),
            mib(self.rss_after_queries)
        )?;
        for (name, figures) in [("search+render", &self.search), ("service call ", &self.service)] {
            writeln!(
                f,
                "{name}: {} requests, p50 {:.0} us, p99 {:.0} us, max {:.0} us, {:.0} requests/s on one thread",
                figures.count,
                us(figures.p50),
                us(figures.p99),
                us(figures.max),
                figures.count as f64 / figures.total.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() { directory_bytes(&path) } else { entry.metadata().map(|m| m.len()).unwrap_or(0) }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Words mixed into generated articles so that every client has vocabulary of its own.
const FILLER: &[&str] = &[
    "model",
    "series",
    "edition",
    "pack",
    "plan",
    "service",
    "option",
    "variant",
    "line",
    "collection",
    "range",
    "set",
];

/// Creates `clients` clients with `articles` articles each, generated from the demo knowledge bases in `kb`
/// with per-client vocabulary (the same every time). Returns each client's slug with the demo client it was
/// made from.
///
/// # Errors
/// The demo files cannot be read, or the store fails.
pub(crate) async fn import_generated(
    db: &Db,
    kb: &Path,
    clients: usize,
    articles: usize,
) -> anyhow::Result<Vec<(ClientSlug, ClientSlug)>> {
    let demo =
        read_tree(kb).map_err(|problems| anyhow::anyhow!("{} problem(s) in {}", problems.len(), kb.display()))?;
    let templates: Vec<_> =
        demo.iter().flat_map(|client| client.articles.iter().cloned().map(move |a| (client.slug.clone(), a))).collect();
    let profiles: Vec<_> =
        demo.iter().filter_map(|client| client.profile.clone().map(|p| (client.slug.clone(), p))).collect();
    anyhow::ensure!(!templates.is_empty() && !profiles.is_empty(), "no demo articles in {}", kb.display());
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    let mut slugs = Vec::with_capacity(clients);
    for c in 0..clients {
        let (source_slug, profile) = &profiles[c % profiles.len()];
        let slug = ClientSlug::parse(&format!("{source_slug}-{c}"))?;
        let own: Vec<&ArticleContent> =
            templates.iter().filter(|(client, _)| client == source_slug).map(|(_, (_, content))| content).collect();
        let mut generated = Vec::with_capacity(articles);
        for a in 0..articles {
            let base = own[a % own.len()];
            let word = FILLER[random.random_range(0..FILLER.len())];
            let code = format!("{word}{c}x{a}");
            let mut content = base.clone();
            content.title = format!("{} ({code})", base.title);
            content.questions = base.questions.iter().map(|q| format!("{q} {code}")).collect();
            content.body = format!("{}\n\n{} {code}.", base.body, word);
            content.shortcut = None;
            generated.push((ArticleId::parse(&format!("a{a}"))?, content));
        }
        db.import_client(slug.clone(), Some(profile.clone()), generated, "bench".into()).await?;
        slugs.push((slug, source_slug.clone()));
    }
    Ok(slugs)
}

/// Runs the benchmark.
///
/// # Errors
/// The demo files or labelled set cannot be read, or the store or index cannot be built.
pub async fn run(args: BenchArgs) -> anyhow::Result<BenchReport> {
    let labelled = read_labelled(&args.messages)?;
    let demo = read_tree(&args.kb)
        .map_err(|problems| anyhow::anyhow!("{} problem(s) in {}", problems.len(), args.kb.display()))?;
    let profiles: Vec<_> =
        demo.iter().filter_map(|client| client.profile.clone().map(|p| (client.slug.clone(), p))).collect();
    // Which labelled message each query uses (seeded: the same queries every run).
    let mut random = rand::rngs::StdRng::seed_from_u64(8);
    let dir = tempfile::tempdir()?;
    let storage = StorageSettings {
        data_dir: dir.path().to_owned(),
        readers: 4,
        max_batch: 256,
        secrets_key_file: None,
        database_file: None,
    };
    let db = tokio::task::block_in_place(|| Db::open(&storage))?;
    let started = Instant::now();
    let slugs = import_generated(&db, &args.kb, args.clients, args.articles).await?;
    let import = started.elapsed();

    let started = Instant::now();
    let index = SearchIndex::open(&storage.index_path(), &SearchSettings::default(), &db)
        .await
        .context("building the index")?;
    let index_build = started.elapsed();
    let index_bytes = directory_bytes(&storage.index_path());
    let database_bytes = directory_bytes(dir.path()) - index_bytes;
    let rss_after_build = crate::metrics::resident_bytes();

    let knowledge = Knowledge::new(index, std::sync::Arc::new(Detectors::default()));
    let mut search = Vec::with_capacity(args.queries);
    let mut service = Vec::with_capacity(args.queries);
    for q in 0..args.queries {
        let (slug, source) = &slugs[q % slugs.len()];
        let candidates: Vec<_> = labelled.iter().filter(|item| item.client == source.as_str()).collect();
        let item = candidates[random.random_range(0..candidates.len())];
        let profile = &profiles.iter().find(|(s, _)| s == source).expect("profile of a source client").1;
        // The search itself (index, statistics, snippets, rendering), in the language the service would pick.
        let others: Vec<String> = profile.languages.iter().skip(1).cloned().collect();
        let boosts = std::collections::HashMap::new();
        let fill = crate::kb::template::Fill { contact_name: Some("Núria Vila".into()), ..Default::default() };
        let request = crate::kb::suggest::Request {
            client: slug.as_str(),
            text: &item.text,
            language: profile.primary_language(),
            other_languages: &others,
            k: 5,
            min_score: 0.0,
            boosts: &boosts,
            fill: &fill,
        };
        let began = Instant::now();
        let found = tokio::task::block_in_place(|| knowledge.index().suggest(&request))?;
        search.push(began.elapsed());
        std::hint::black_box(found);
        // The whole service call: profile read, language detection, boosts, search, rendering.
        let began = Instant::now();
        let found = knowledge.suggest_query(&db, slug.clone(), item.text.clone(), None, 5, Some("Ana".into())).await?;
        service.push(began.elapsed());
        std::hint::black_box(found);
    }
    let rss_after_queries = crate::metrics::resident_bytes();
    db.close().await;
    Ok(BenchReport {
        clients: args.clients,
        articles: args.clients * args.articles,
        import,
        index_build,
        index_bytes,
        database_bytes,
        rss_after_build,
        rss_after_queries,
        search: latencies(search),
        service: latencies(service),
    })
}
