//! Relevance evaluation: recado's suggestions against two baselines on a labelled set of customer messages.
//!
//! Each line of the set names a client, the article that answers the message, and the message. All three
//! systems index the same knowledge bases and answer the same messages:
//! - **recado**: the suggester as served (language detected among the client's languages, per-language
//!   analysis, trigrams, per-client statistics), ranking only (no confidence threshold);
//! - **tantivy default**: tantivy's default tokenizer and plain BM25 over title, questions and body;
//! - **SQLite FTS5**: `unicode61 remove_diacritics 2` and `bm25()`.
//!
//! Reported per language of the expected article, per slice of the set (`#slice NAME:` lines) and
//! overall: recall@1, recall@3 and MRR@10.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, STORED, STRING, Schema, TEXT, Value};
use tantivy::{Index, TantivyDocument, Term};

use crate::config::{SearchSettings, StorageSettings};
use crate::domain::{ArticleContent, ArticleId, ClientProfile};
use crate::kb::files::read_tree;
use crate::kb::language::Detectors;
use crate::kb::suggest::Request;
use crate::kb::template::Fill;
use crate::kb::{SearchIndex, analysis};
use crate::store::Db;

/// One labelled message.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The client it was sent to.
    pub client: String,
    /// The article that answers it.
    pub expected: String,
    /// The message.
    pub text: String,
    /// The slice of the set it belongs to (`#slice NAME:` lines).
    pub slice: String,
}

/// Reads a labelled set: `client<TAB>article<TAB>message` per line, `#` comments.
///
/// # Errors
/// The file cannot be read or a line has the wrong shape (named with its number).
pub fn read_labelled(path: &Path) -> anyhow::Result<Vec<Labelled>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut set = Vec::new();
    let mut slice = "plain".to_owned();
    for (number, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("#slice ") {
            slice = rest.split(':').next().unwrap_or_default().trim().to_owned();
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, '\t').collect();
        let [client, expected, message] = parts[..] else {
            anyhow::bail!("{}:{}: expected client<TAB>article<TAB>message", path.display(), number + 1);
        };
        set.push(Labelled {
            client: client.to_owned(),
            expected: expected.to_owned(),
            text: message.to_owned(),
            slice: slice.clone(),
        });
    }
    Ok(set)
}

/// Relevance figures of one system on one slice.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Messages evaluated.
    pub count: usize,
    /// Share with the expected article first.
    pub recall_at_1: f64,
    /// Share with it in the first three.
    pub recall_at_3: f64,
    /// Mean reciprocal rank of it within the first ten.
    pub mrr_at_10: f64,
}

fn figures(ranks: &[Option<usize>]) -> Figures {
    let count = ranks.len();
    let share = |hit: &dyn Fn(usize) -> bool| {
        ranks.iter().filter(|rank| rank.is_some_and(hit)).count() as f64 / count.max(1) as f64
    };
    Figures {
        count,
        recall_at_1: share(&|rank| rank == 0),
        recall_at_3: share(&|rank| rank < 3),
        mrr_at_10: ranks
            .iter()
            .map(|rank| rank.filter(|r| *r < 10).map_or(0.0, |r| 1.0 / (r as f64 + 1.0)))
            .sum::<f64>()
            / count.max(1) as f64,
    }
}

/// The systems compared.
pub const SYSTEMS: [&str; 3] = ["recado", "tantivy default + BM25", "SQLite FTS5 bm25()"];

/// Figures per system and language (`all` for every message).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(system, language) -> figures`.
    pub figures: BTreeMap<(String, String), Figures>,
    /// Per system, the messages whose expected article was not first, with what came first instead.
    pub misses: BTreeMap<String, Vec<(Labelled, Option<String>)>>,
}

impl Report {
    /// The figures of `system` on `language` (or `all`).
    pub fn get(&self, system: &str, language: &str) -> Figures {
        self.figures.get(&(system.to_owned(), language.to_owned())).copied().unwrap_or_default()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut languages: Vec<&String> = self.figures.keys().map(|(_, language)| language).collect();
        languages.sort_by_key(|language| {
            (String::as_str(language) == "all", language.starts_with("slice:"), (*language).clone())
        });
        languages.dedup();
        writeln!(f, "| system | language | messages | recall@1 | recall@3 | MRR@10 |")?;
        writeln!(f, "|---|---|---:|---:|---:|---:|")?;
        for language in languages {
            for system in SYSTEMS {
                let figures = self.get(system, language);
                writeln!(
                    f,
                    "| {system} | {language} | {} | {:.3} | {:.3} | {:.3} |",
                    figures.count, figures.recall_at_1, figures.recall_at_3, figures.mrr_at_10
                )?;
            }
        }
        Ok(())
    }
}

/// The articles and profiles of a knowledge-base directory.
struct Corpus {
    profiles: HashMap<String, ClientProfile>,
    articles: Vec<(String, ArticleId, ArticleContent)>,
}

fn corpus(kb: &Path) -> anyhow::Result<Corpus> {
    let clients = read_tree(kb)
        .map_err(|problems| anyhow::anyhow!("{} problem(s) in {}: {}", problems.len(), kb.display(), problems[0]))?;
    let mut profiles = HashMap::new();
    let mut articles = Vec::new();
    for client in clients {
        let profile = client.profile.with_context(|| format!("{} has no client.toml", client.slug))?;
        for (id, content) in client.articles {
            articles.push((client.slug.to_string(), id, content));
        }
        profiles.insert(client.slug.to_string(), profile);
    }
    Ok(Corpus { profiles, articles })
}

/// Runs the evaluation of `labelled` over the knowledge bases in `kb`.
///
/// # Errors
/// The files are broken or a temporary store or index cannot be built.
pub async fn run(kb: &Path, labelled: &[Labelled]) -> anyhow::Result<Report> {
    let corpus = corpus(kb)?;
    let language_of: HashMap<(String, String), String> = corpus
        .articles
        .iter()
        .map(|(client, id, content)| ((client.clone(), id.to_string()), content.language.clone()))
        .collect();
    for item in labelled {
        anyhow::ensure!(
            language_of.contains_key(&(item.client.clone(), item.expected.clone())),
            "the labelled set names an article that does not exist: {}/{}",
            item.client,
            item.expected
        );
    }

    let recado = recado_ranks(kb, &corpus, labelled).await?;
    let default = tantivy_default_ranks(&corpus, labelled)?;
    let fts5 = fts5_ranks(&corpus, labelled)?;

    let mut report = Report::default();
    for (system, ranks) in SYSTEMS.iter().zip([recado, default, fts5]) {
        let mut by_language: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
        for (item, (rank, first)) in labelled.iter().zip(ranks) {
            let language = language_of[&(item.client.clone(), item.expected.clone())].clone();
            by_language.entry(language).or_default().push(rank);
            by_language.entry("all".to_owned()).or_default().push(rank);
            by_language.entry(format!("slice:{}", item.slice)).or_default().push(rank);
            if rank != Some(0) {
                report.misses.entry((*system).to_owned()).or_default().push((item.clone(), first));
            }
        }
        for (language, ranks) in by_language {
            report.figures.insert(((*system).to_owned(), language), figures(&ranks));
        }
    }
    Ok(report)
}

/// Where the expected article came, and what came first.
type Outcome = (Option<usize>, Option<String>);

fn rank_of(results: &[String], expected: &str) -> Outcome {
    (results.iter().position(|id| id == expected), results.first().cloned())
}

async fn recado_ranks(kb: &Path, corpus: &Corpus, labelled: &[Labelled]) -> anyhow::Result<Vec<Outcome>> {
    let dir = tempfile::tempdir()?;
    let storage = StorageSettings {
        data_dir: dir.path().to_owned(),
        readers: 2,
        max_batch: 256,
        secrets_key_file: None,
        database_file: None,
    };
    let db = tokio::task::block_in_place(|| Db::open(&storage))?;
    crate::kb::import_dir(&db, kb, "eval", |_, _| {}).await?;
    let index = SearchIndex::open(&storage.index_path(), &SearchSettings::default(), &db).await?;
    let detectors = Detectors::default();
    let boosts = HashMap::new();
    let fill = Fill::default();
    let mut ranks = Vec::with_capacity(labelled.len());
    for item in labelled {
        let profile = &corpus.profiles[&item.client];
        let guess = detectors.detect(&item.text, &profile.languages, profile.primary_language());
        let others: Vec<String> = profile.languages.iter().filter(|l| **l != guess.language).cloned().collect();
        let request = Request {
            client: &item.client,
            text: &item.text,
            language: &guess.language,
            other_languages: &others,
            k: 10,
            min_score: 0.0,
            boosts: &boosts,
            fill: &fill,
        };
        let results: Vec<String> =
            tokio::task::block_in_place(|| index.suggest(&request))?.into_iter().map(|s| s.article_id).collect();
        ranks.push(rank_of(&results, &item.expected));
    }
    drop(index);
    db.close().await;
    Ok(ranks)
}

fn tantivy_default_ranks(corpus: &Corpus, labelled: &[Labelled]) -> anyhow::Result<Vec<Outcome>> {
    let mut builder = Schema::builder();
    let client = builder.add_text_field("client", STRING);
    let article_id = builder.add_text_field("article_id", STORED);
    let title = builder.add_text_field("title", TEXT);
    let questions = builder.add_text_field("questions", TEXT);
    let body = builder.add_text_field("body", TEXT);
    let index = Index::create_in_ram(builder.build());
    let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 50_000_000)?;
    for (slug, id, content) in &corpus.articles {
        let mut document = TantivyDocument::default();
        document.add_text(client, slug);
        document.add_text(article_id, id.as_str());
        document.add_text(title, &content.title);
        for question in &content.questions {
            document.add_text(questions, question);
        }
        document.add_text(body, crate::kb::index::strip_template(&content.body));
        writer.add_document(document)?;
    }
    writer.commit()?;
    let searcher = index.reader()?.searcher();
    let mut tokenizer = index.tokenizer_for_field(body)?;
    let mut ranks = Vec::with_capacity(labelled.len());
    for item in labelled {
        let terms: Vec<String> =
            analysis::tokens(&mut tokenizer, &item.text).into_iter().map(|(term, _)| term).collect();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in &terms {
            for field in [title, questions, body] {
                clauses.push((
                    Occur::Should,
                    Box::new(TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs)),
                ));
            }
        }
        if clauses.is_empty() {
            ranks.push((None, None));
            continue;
        }
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(Term::from_field_text(client, &item.client), IndexRecordOption::Basic)),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(clauses))),
        ]);
        let hits = searcher.search(&query, &TopDocs::with_limit(10).order_by_score())?;
        let mut results = Vec::new();
        for (_, address) in hits {
            let document: TantivyDocument = searcher.doc(address)?;
            results.push(document.get_first(article_id).and_then(|v| v.as_str()).unwrap_or_default().to_owned());
        }
        ranks.push(rank_of(&results, &item.expected));
    }
    Ok(ranks)
}

/// The FTS5 baseline runs on its own in-memory SQLite; it is a measuring stick, not part of the store.
fn fts5_ranks(corpus: &Corpus, labelled: &[Labelled]) -> anyhow::Result<Vec<Outcome>> {
    let connection = rusqlite::Connection::open_in_memory()?;
    connection.execute_batch(
        "CREATE VIRTUAL TABLE kb USING fts5(client UNINDEXED, article_id UNINDEXED, title, questions, body,
             tokenize = 'unicode61 remove_diacritics 2')",
    )?;
    for (slug, id, content) in &corpus.articles {
        connection.execute(
            "INSERT INTO kb (client, article_id, title, questions, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                slug,
                id.as_str(),
                content.title,
                content.questions.join("\n"),
                crate::kb::index::strip_template(&content.body)
            ],
        )?;
    }
    let mut statement =
        connection.prepare("SELECT article_id FROM kb WHERE kb MATCH ?1 AND client = ?2 ORDER BY bm25(kb) LIMIT 10")?;
    let mut ranks = Vec::with_capacity(labelled.len());
    for item in labelled {
        // Each word quoted: FTS5 syntax in a message must not change the query.
        let words: Vec<String> = item
            .text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(|word| format!("\"{}\"", word.to_lowercase()))
            .collect();
        if words.is_empty() {
            ranks.push((None, None));
            continue;
        }
        let results: Vec<String> = statement
            .query_map(rusqlite::params![words.join(" OR "), item.client], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        ranks.push(rank_of(&results, &item.expected));
    }
    Ok(ranks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_ranks() {
        let computed = figures(&[Some(0), Some(2), None, Some(12)]);
        assert_eq!(computed.count, 4);
        assert!((computed.recall_at_1 - 0.25).abs() < 1e-9);
        assert!((computed.recall_at_3 - 0.5).abs() < 1e-9);
        assert!((computed.mrr_at_10 - (1.0 + 1.0 / 3.0) / 4.0).abs() < 1e-9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recado_beats_both_baselines_on_the_demo_set() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let labelled = read_labelled(&root.join("eval/queries.tsv")).expect("labelled set");
        assert!(labelled.len() >= 300);
        let report = run(&root.join("kb"), &labelled).await.expect("evaluation runs");
        let failure = |what: &str| format!("{what}\n{report}");
        let recado = report.get("recado", "all");
        let typos = report.get("recado", "slice:typos");
        let plain = report.get("recado", "slice:plain");
        for baseline in &SYSTEMS[1..] {
            let other = report.get(baseline, "all");
            assert!(
                recado.recall_at_1 >= other.recall_at_1 + 0.03,
                "{}",
                failure(&format!("overall R@1 against {baseline}"))
            );
            assert!(recado.recall_at_3 > other.recall_at_3, "{}", failure(&format!("overall R@3 against {baseline}")));
            assert!(recado.mrr_at_10 > other.mrr_at_10, "{}", failure(&format!("overall MRR@10 against {baseline}")));
            let other_typos = report.get(baseline, "slice:typos");
            assert!(
                typos.recall_at_1 >= other_typos.recall_at_1 + 0.15,
                "{}",
                failure(&format!("typos R@1 against {baseline}"))
            );
            // On plain wording lexical baselines do well; recado must not fall behind them by much.
            let other_plain = report.get(baseline, "slice:plain");
            assert!(
                plain.recall_at_1 >= other_plain.recall_at_1 - 0.03,
                "{}",
                failure(&format!("plain R@1 against {baseline}"))
            );
        }
        for language in ["ca", "es", "it", "ru", "en"] {
            assert!(report.get("recado", language).count > 0, "no {language} messages");
        }
    }
}
