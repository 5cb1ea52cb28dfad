//! The knowledge-base search index: tantivy, derived from the articles in SQLite and rebuilt from them when
//! missing, corrupt or of another schema version.
//!
//! One shared index holds every client's articles with a `client` field (queries always filter on it, and
//! score with that client's own statistics; see [`super::suggest`]). Each analyzer language has its own
//! title, questions and body fields; a trigram field spans all languages. The raw texts are stored, so a
//! suggestion is built without going back to SQLite.
//!
//! Exactly one task writes: it follows the `kb_changes` log in SQLite, so edits made through the API (which
//! wake it) and by other processes such as `recado kb import` (found by polling) are indexed alike. Each
//! commit records the last applied change in the commit payload, then reloads the reader, so an edit is
//! searchable well within a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::worker::{StepWorker, Wake, run_steps};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use tokio_util::sync::CancellationToken;

use super::analysis;
use crate::config::SearchSettings;
use crate::domain::{ArticleId, ClientSlug};
use crate::store::{Article, Db};

/// Version of the index layout; an index written with another version is rebuilt.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Most changes applied in one commit.
const CHANGES_PER_COMMIT: usize = 2_000;

/// What can go wrong with the index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// tantivy failed.
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// Another process holds the index writer.
    #[error("the search index in {0} is in use by another recado process; stop it first")]
    Locked(PathBuf),
    /// Reading the articles failed.
    #[error("reading articles for the index: {0}")]
    Store(#[from] crate::store::Error),
    /// A file operation on the index directory failed.
    #[error("index directory: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking task panicked.
    #[error("index task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Result of index operations.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The fields of one analyzer language.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LanguageFields {
    pub(crate) title: Field,
    pub(crate) questions: Field,
    pub(crate) body: Field,
}

/// Every field of the schema.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// `client/id`, to replace or delete one article.
    pub(crate) key: Field,
    pub(crate) client: Field,
    pub(crate) article_id: Field,
    pub(crate) language: Field,
    pub(crate) version: Field,
    pub(crate) title_raw: Field,
    pub(crate) questions_raw: Field,
    pub(crate) body_raw: Field,
    pub(crate) trigram: Field,
    pub(crate) by_language: HashMap<&'static str, LanguageFields>,
}

fn text_options(analyzer: &str) -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(analyzer).set_index_option(IndexRecordOption::WithFreqs),
    )
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let key = builder.add_text_field("key", STRING);
    let client = builder.add_text_field("client", STRING);
    let article_id = builder.add_text_field("article_id", STORED);
    let language = builder.add_text_field("language", STRING | STORED);
    let version = builder.add_i64_field("version", STORED);
    let title_raw = builder.add_text_field("title_raw", STORED);
    let questions_raw = builder.add_text_field("questions_raw", STORED);
    let body_raw = builder.add_text_field("body_raw", STORED);
    let trigram = builder.add_text_field("trigram", text_options(analysis::TRIGRAM));
    let mut by_language = HashMap::new();
    for key_name in analysis::analyzer_keys() {
        let options = text_options(&analysis::analyzer_name(key_name));
        by_language.insert(
            key_name,
            LanguageFields {
                title: builder.add_text_field(&format!("title_{key_name}"), options.clone()),
                questions: builder.add_text_field(&format!("questions_{key_name}"), options.clone()),
                body: builder.add_text_field(&format!("body_{key_name}"), options),
            },
        );
    }
    let fields =
        Fields { key, client, article_id, language, version, title_raw, questions_raw, body_raw, trigram, by_language };
    (builder.build(), fields)
}

/// The body without template markup, for indexing: variables are not words of the answer.
pub(crate) fn strip_template(body: &str) -> String {
    let mut text = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find(['{']) {
        let closing = match rest[start..].chars().nth(1) {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                text.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        text.push_str(&rest[..start]);
        text.push(' ');
        rest = match rest[start + 2..].find(closing) {
            Some(end) => &rest[start + 2 + end + closing.len()..],
            None => "",
        };
    }
    text.push_str(rest);
    text
}

fn document(fields: &Fields, article: &Article) -> TantivyDocument {
    let content = &article.content;
    let language = fields.by_language[analysis::analyzer_key(&content.language)];
    let mut document = TantivyDocument::default();
    document.add_text(fields.key, format!("{}/{}", article.client, article.id));
    document.add_text(fields.client, article.client.as_str());
    document.add_text(fields.article_id, article.id.as_str());
    document.add_text(fields.language, &content.language);
    document.add_i64(fields.version, article.version);
    document.add_text(fields.title_raw, &content.title);
    document.add_text(fields.body_raw, &content.body);
    document.add_text(language.title, &content.title);
    document.add_text(fields.trigram, &content.title);
    for question in &content.questions {
        document.add_text(fields.questions_raw, question);
        document.add_text(language.questions, question);
        document.add_text(fields.trigram, question);
    }
    let body = strip_template(&content.body);
    document.add_text(language.body, &body);
    document.add_text(fields.trigram, &body);
    document
}

fn key_term(fields: &Fields, client: &ClientSlug, id: &ArticleId) -> Term {
    Term::from_field_text(fields.key, &format!("{client}/{id}"))
}

/// The commit payload: which layout wrote the index and the last article change it contains.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    schema: u32,
    seq: i64,
}

/// Handle to the index. Clone freely.
#[derive(Clone)]
pub struct SearchIndex {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    writer: Mutex<IndexWriter>,
    indexed_seq: AtomicI64,
    wake: Wake,
    pub(crate) statistics: super::suggest::StatisticsCache,
    /// Held for as long as the index is open: only one process may open (and so rebuild) it.
    _lock: std::fs::File,
}

/// Opens an existing index if it is readable and of this layout; otherwise empties the directory and
/// creates a new one. Returns the index and the change sequence it contains (`None` when new).
fn open_or_create(path: &Path) -> Result<(Index, Option<i64>)> {
    let (schema, _) = schema();
    if path.join("meta.json").exists() {
        match Index::open_in_dir(path) {
            Ok(index) => {
                let payload = index.load_metas()?.payload.and_then(|text| serde_json::from_str::<Payload>(&text).ok());
                match payload {
                    Some(payload) if payload.schema == SCHEMA_VERSION && index.schema() == schema => {
                        return Ok((index, Some(payload.seq)));
                    }
                    _ => tracing::warn!(path = %path.display(), "the search index has another layout; rebuilding it"),
                }
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "the search index cannot be opened; rebuilding it")
            }
        }
        std::fs::remove_dir_all(path)?;
    }
    std::fs::create_dir_all(path)?;
    Ok((Index::create_in_dir(path, schema)?, None))
}

impl SearchIndex {
    /// Opens the index under `path`, rebuilding it from the store when it is missing, unreadable or of
    /// another layout. Pending changes are applied by [`SearchIndex::run`] (or [`SearchIndex::catch_up`]).
    ///
    /// # Errors
    /// The directory cannot be written, another process holds the index, or the store cannot be read.
    pub async fn open(path: &Path, settings: &SearchSettings, db: &Db) -> Result<Self> {
        let path = path.to_owned();
        let memory = settings.writer_memory_bytes;
        let (index, seq, writer, lock) = tokio::task::spawn_blocking(move || -> Result<_> {
            // Our own lock before anything else: opening may delete and rebuild the directory, which must never
            // happen under another process's feet (tantivy's writer lock lives inside that directory).
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path.with_extension("lock"))?;
            lock.try_lock().map_err(|_| Error::Locked(path.clone()))?;
            let (index, seq) = open_or_create(&path)?;
            analysis::register(&index);
            let writer: IndexWriter = index.writer_with_num_threads(1, memory).map_err(|error| match error {
                tantivy::TantivyError::LockFailure(..) => Error::Locked(path.clone()),
                other => Error::Tantivy(other),
            })?;
            Ok((index, seq, writer, lock))
        })
        .await??;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let (_, fields) = schema();
        let search = Self {
            inner: Arc::new(Inner {
                reader,
                fields,
                writer: Mutex::new(writer),
                indexed_seq: AtomicI64::new(0),
                wake: Wake::default(),
                statistics: Default::default(),
                _lock: lock,
            }),
        };
        match seq {
            Some(seq) => search.inner.indexed_seq.store(seq, Ordering::SeqCst),
            None => {
                search.rebuild(db).await?;
            }
        }
        Ok(search)
    }

    /// Replaces the whole index with the store's articles.
    ///
    /// # Errors
    /// Reading the store or writing the index failed.
    pub async fn rebuild(&self, db: &Db) -> Result<usize> {
        let (articles, seq) = db.all_articles_for_index().await?;
        let count = articles.len();
        self.apply(seq, move |writer, fields| {
            writer.delete_all_documents()?;
            for article in &articles {
                writer.add_document(document(fields, article))?;
            }
            Ok(())
        })
        .await?;
        tracing::info!(articles = count, "search index rebuilt");
        Ok(count)
    }

    /// Applies every article change made since the last commit, and makes it searchable. Returns how many
    /// articles changed.
    ///
    /// # Errors
    /// Reading the store or writing the index failed.
    pub async fn catch_up(&self, db: &Db) -> Result<usize> {
        let mut total = 0;
        loop {
            let after = self.indexed_seq();
            let (changes, seq) = db.kb_changes_after(after, CHANGES_PER_COMMIT).await?;
            if seq == after {
                return Ok(total);
            }
            total += changes.len();
            self.apply(seq, move |writer, fields| {
                for (client, id, article) in &changes {
                    writer.delete_term(key_term(fields, client, id));
                    if let Some(article) = article {
                        writer.add_document(document(fields, article))?;
                    }
                }
                Ok(())
            })
            .await?;
        }
    }

    /// Runs `change` with the writer off the async threads, commits it as containing changes up to `seq`
    /// and makes it searchable.
    async fn apply<F>(&self, seq: i64, change: F) -> Result<()>
    where
        F: FnOnce(&mut IndexWriter, &Fields) -> Result<()> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut writer = inner.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            change(&mut writer, &inner.fields)?;
            commit(&mut writer, seq)?;
            inner.reader.reload()?;
            inner.indexed_seq.store(seq, Ordering::SeqCst);
            Ok(())
        })
        .await?
    }

    /// The last article change the searchable index contains.
    pub fn indexed_seq(&self) -> i64 {
        self.inner.indexed_seq.load(Ordering::SeqCst)
    }

    /// Asks the indexer to look for changes now (after an edit through the API).
    pub fn wake(&self) {
        self.inner.wake.wake();
    }

    /// Keeps the index up to date until `shutdown`: at once when woken (by an edit on this node, or by the
    /// store when another node's edit became readable), otherwise every `poll`.
    pub async fn run(self, db: Db, poll: Duration, metrics: Metrics, shutdown: CancellationToken) {
        let wake = self.inner.wake.clone();
        let mut ticks = db.kb_ticks();
        let forward = {
            let (wake, shutdown) = (wake.clone(), shutdown.clone());
            async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        changed = ticks.changed() => match changed {
                            Ok(()) => wake.wake(),
                            Err(_) => return,
                        },
                    }
                }
            }
        };
        tokio::join!(run_steps(Indexing { index: self, db }, poll, wake, metrics, shutdown), forward);
    }
}

/// The indexing worker: each step indexes every article change not yet in the index.
pub(crate) struct Indexing {
    /// The index kept up to date.
    pub index: SearchIndex,
    /// Where the changes are read.
    pub db: Db,
}

impl StepWorker for Indexing {
    type Error = Error;
    const NAME: &'static str = "indexing";

    async fn step(&self) -> Result<Option<Duration>> {
        self.index.catch_up(&self.db).await?;
        Ok(None)
    }
}

fn commit(writer: &mut IndexWriter, seq: i64) -> Result<()> {
    let mut prepared = writer.prepare_commit()?;
    let payload = serde_json::to_string(&Payload { schema: SCHEMA_VERSION, seq }).expect("the payload serialises");
    prepared.set_payload(&payload);
    prepared.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_markup_is_left_out_of_the_indexed_body() {
        assert_eq!(
            strip_template("Hola {{ contact.first_name }}! {% if x %}sí{% endif %} {# nota #}fi"),
            "Hola  !  sí   fi"
        );
        assert_eq!(strip_template("preu {50 €} i {{ sense tancar"), "preu {50 €} i  ");
    }

    async fn store_with_one_article(dir: &Path) -> Db {
        let storage = crate::config::StorageSettings {
            data_dir: dir.to_owned(),
            readers: 1,
            max_batch: 16,
            secrets_key_file: None,
            database_file: None,
        };
        let db = Db::open(&storage).expect("store");
        let profile: crate::domain::ClientProfile =
            serde_json::from_value(serde_json::json!({ "name": "A", "timezone": "Europe/Rome", "languages": ["it"] }))
                .expect("profile");
        let slug = ClientSlug::parse("client-a").expect("slug");
        db.create_client(slug.clone(), profile, "test".into()).await.expect("client");
        let content = crate::domain::ArticleContent {
            language: "it".into(),
            title: "Orari".into(),
            questions: vec![],
            body: "Apriamo alle nove.".into(),
            tags: vec![],
            shortcut: None,
        };
        db.create_article(slug, None, content, "test".into()).await.expect("article");
        db
    }

    fn documents(index: &SearchIndex) -> u64 {
        index.inner.reader.searcher().num_docs()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_corrupt_or_outdated_index_is_rebuilt_from_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = store_with_one_article(dir.path()).await;
        let path = dir.path().join("index");
        let settings = SearchSettings::default();

        let index = SearchIndex::open(&path, &settings, &db).await.expect("built from scratch");
        assert_eq!(documents(&index), 1);
        drop(index);

        std::fs::write(path.join("meta.json"), b"{ not json").expect("corrupt it");
        let index = SearchIndex::open(&path, &settings, &db).await.expect("rebuilt after corruption");
        assert_eq!(documents(&index), 1);
        assert_eq!(index.indexed_seq(), 1);

        // An index written by another layout version.
        {
            let mut writer = index.inner.writer.lock().expect("writer");
            let mut prepared = writer.prepare_commit().expect("prepare");
            prepared.set_payload(&serde_json::json!({ "schema": SCHEMA_VERSION + 1, "seq": 1 }).to_string());
            prepared.commit().expect("commit");
        }
        drop(index);
        let index = SearchIndex::open(&path, &settings, &db).await.expect("rebuilt after a layout change");
        assert_eq!(documents(&index), 1);

        // A second writer on the same directory is refused with a clear error, not corrupted data.
        let error = SearchIndex::open(&path, &settings, &db).await.err().expect("locked");
        assert!(matches!(error, Error::Locked(_)), "{error}");
        drop(index);
        db.close().await;
    }

    #[test]
    fn every_analyzer_language_has_its_three_fields() {
        let (schema, fields) = schema();
        assert_eq!(fields.by_language.len(), analysis::STEMMED.len() + 1);
        assert!(schema.get_field("body_ca").is_ok() && schema.get_field("questions_xx").is_ok());
    }
}
