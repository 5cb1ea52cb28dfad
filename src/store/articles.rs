//! Knowledge-base articles: versioned edits (a stale version is refused), import, and the change log.

use super::sql::{Connection, Lock, OptionalExtension, Row, params};

use super::clients::{audit, ensure_client};
use super::paging::{Page, PageRequest};
use super::{Db, Error, Result, Scope};
use crate::domain::{ArticleContent, ArticleId, ClientProfile, ClientSlug, Timestamp};

/// A stored article.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Article {
    /// Its client.
    pub client: ClientSlug,
    /// Its id.
    pub id: ArticleId,
    /// What it says.
    #[serde(flatten)]
    pub content: ArticleContent,
    /// Increases by one with every change; edits name the version they change.
    pub version: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// Who changed it last.
    pub updated_by: String,
}

/// The outcome of a versioned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit<T> {
    /// The change was made.
    Applied(T),
    /// The caller's version is not the current one; nothing changed. Carries the current article.
    Stale(Box<Article>),
}

/// Counts of one client's import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Whether the client itself was created.
    pub client_created: bool,
    /// Whether the client's profile changed.
    pub client_updated: bool,
    /// New articles.
    pub created: usize,
    /// Changed articles.
    pub updated: usize,
    /// Articles already as in the files.
    pub unchanged: usize,
}

const COLUMNS: &str =
    "client_id, id, language, title, questions, body, tags, shortcut, version, created_at, updated_at, updated_by";

fn from_row(row: &Row<'_>) -> Result<(String, String, ArticleContentRow, i64, i64, i64, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        ArticleContentRow {
            language: row.get(2)?,
            title: row.get(3)?,
            questions: row.get(4)?,
            body: row.get(5)?,
            tags: row.get(6)?,
            shortcut: row.get(7)?,
        },
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
    ))
}

struct ArticleContentRow {
    language: String,
    title: String,
    questions: String,
    body: String,
    tags: String,
    shortcut: Option<String>,
}

type RawArticle = (String, String, ArticleContentRow, i64, i64, i64, String);

fn to_article(raw: RawArticle) -> Result<Article> {
    let (client, id, content, version, created_at, updated_at, updated_by) = raw;
    Ok(Article {
        client: ClientSlug::parse(&client)?,
        id: ArticleId::parse(&id)?,
        content: ArticleContent {
            language: content.language,
            title: content.title,
            questions: serde_json::from_str(&content.questions)?,
            body: content.body,
            tags: serde_json::from_str(&content.tags)?,
            shortcut: content.shortcut,
        },
        version,
        created_at: Timestamp(created_at),
        updated_at: Timestamp(updated_at),
        updated_by,
    })
}

pub(super) fn load_article(connection: &Connection, client: &ClientSlug, id: &ArticleId) -> Result<Option<Article>> {
    let raw = connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM articles WHERE client_id = ?1 AND id = ?2"))?
        .query_row(params![client.as_str(), id.as_str()], from_row)
        .optional()?;
    raw.map(to_article).transpose()
}

fn record_change(connection: &Connection, client: &ClientSlug, id: &ArticleId, now: i64) -> Result<()> {
    connection
        .prepare_cached("INSERT INTO kb_changes (client_id, article_id, at) VALUES (?1, ?2, ?3)")?
        .execute(params![client.as_str(), id.as_str(), now])?;
    super::events::log_written();
    Ok(())
}

/// Records an `article.changed` event (`change`: created, updated, deleted, learned) in the caller's
/// transaction.
pub(super) fn article_event(connection: &Connection, client: &ClientSlug, id: &ArticleId, change: &str) -> Result<()> {
    let data = serde_json::json!({ "article_id": id.as_str(), "change": change });
    super::events::record(connection, client.as_str(), "article.changed", None, &data)
}

fn shortcut_taken(connection: &Connection, client: &ClientSlug, id: &ArticleId, shortcut: Option<&str>) -> Result<()> {
    let Some(shortcut) = shortcut else { return Ok(()) };
    let holder: Option<String> = connection
        .prepare_cached("SELECT id FROM articles WHERE client_id = ?1 AND shortcut = ?2 AND id <> ?3")?
        .query_row(params![client.as_str(), shortcut, id.as_str()], |row| row.get(0))
        .optional()?;
    match holder {
        Some(holder) => {
            Err(Error::Conflict(format!("the shortcut {shortcut:?} is already used by article {holder:?}")))
        }
        None => Ok(()),
    }
}

/// Inserts or replaces an article's content, bumping its version; returns the stored article.
pub(super) fn write_article_content(
    connection: &Connection,
    client: &ClientSlug,
    id: &ArticleId,
    content: &ArticleContent,
    actor: &str,
) -> Result<Article> {
    shortcut_taken(connection, client, id, content.shortcut.as_deref())?;
    let now = Timestamp::now().millis();
    connection
        .prepare_cached(
            "INSERT INTO articles (client_id, id, language, title, questions, body, tags, shortcut, version, created_at, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?9, ?10)
             ON CONFLICT (client_id, id) DO UPDATE SET
                 language = excluded.language, title = excluded.title, questions = excluded.questions,
                 body = excluded.body, tags = excluded.tags, shortcut = excluded.shortcut,
                 version = articles.version + 1, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )?
        .execute(params![
            client.as_str(),
            id.as_str(),
            content.language,
            content.title,
            serde_json::to_string(&content.questions)?,
            content.body,
            serde_json::to_string(&content.tags)?,
            content.shortcut,
            now,
            actor
        ])?;
    record_change(connection, client, id, now)?;
    load_article(connection, client, id)?.ok_or(Error::NotFound("article"))
}

impl Db {
    /// Creates an article. Without an id, one is derived from the title (with a numeric suffix if taken);
    /// a given id that is taken is a conflict.
    pub async fn create_article(
        &self,
        client: ClientSlug,
        id: Option<ArticleId>,
        content: ArticleContent,
        actor: String,
    ) -> Result<Article> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            let id = match id.clone() {
                Some(id) => {
                    if load_article(connection, &client, &id)?.is_some() {
                        return Err(Error::Conflict(format!("an article with id {id:?} already exists")));
                    }
                    id
                }
                None => {
                    let base = ArticleId::from_title(&content.title);
                    let mut candidate = base.clone();
                    let mut n = 2;
                    while load_article(connection, &client, &candidate)?.is_some() {
                        candidate = base.with_suffix(n);
                        n += 1;
                    }
                    candidate
                }
            };
            let article = write_article_content(connection, &client, &id, &content, &actor)?;
            audit(
                connection,
                Some(&client),
                &actor,
                "article.create",
                &serde_json::json!({ "article_id": id, "version": 1 }),
            )?;
            article_event(connection, &client, &id, "created")?;
            Ok(article)
        })
        .await
    }

    /// One article.
    pub async fn article(&self, client: ClientSlug, id: ArticleId) -> Result<Article> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            load_article(connection, &client, &id)?.ok_or(Error::NotFound("article"))
        })
        .await
    }

    /// Replaces an article's content if `version` is its current version.
    pub async fn update_article(
        &self,
        client: ClientSlug,
        id: ArticleId,
        version: i64,
        content: ArticleContent,
        actor: String,
    ) -> Result<Edit<Article>> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            // Checked against the version the editor saw, then written: nobody may write in between.
            connection.lock(Lock::Article(&client, &id))?;
            let current = load_article(connection, &client, &id)?.ok_or(Error::NotFound("article"))?;
            if current.version != version {
                return Ok(Edit::Stale(Box::new(current)));
            }
            if current.content == content {
                return Ok(Edit::Applied(current));
            }
            let article = write_article_content(connection, &client, &id, &content, &actor)?;
            audit(
                connection,
                Some(&client),
                &actor,
                "article.update",
                &serde_json::json!({ "article_id": id, "version": article.version }),
            )?;
            article_event(connection, &client, &id, "updated")?;
            Ok(Edit::Applied(article))
        })
        .await
    }

    /// Deletes an article if `version` is its current version.
    pub async fn delete_article(
        &self,
        client: ClientSlug,
        id: ArticleId,
        version: i64,
        actor: String,
    ) -> Result<Edit<()>> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            // Checked against the version the editor saw, then written: nobody may write in between.
            connection.lock(Lock::Article(&client, &id))?;
            let current = load_article(connection, &client, &id)?.ok_or(Error::NotFound("article"))?;
            if current.version != version {
                return Ok(Edit::Stale(Box::new(current)));
            }
            connection.execute(
                "DELETE FROM articles WHERE client_id = ?1 AND id = ?2",
                params![client.as_str(), id.as_str()],
            )?;
            record_change(connection, &client, &id, Timestamp::now().millis())?;
            audit(
                connection,
                Some(&client),
                &actor,
                "article.delete",
                &serde_json::json!({ "article_id": id, "version": version }),
            )?;
            article_event(connection, &client, &id, "deleted")?;
            Ok(Edit::Applied(()))
        })
        .await
    }

    /// A page of a client's articles by id, optionally only those whose title, questions or body contain
    /// `contains` (case-insensitive) or in `language`.
    pub async fn articles(
        &self,
        client: ClientSlug,
        contains: Option<String>,
        language: Option<String>,
        page: PageRequest<ArticleId>,
    ) -> Result<Page<Article, ArticleId>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            let pattern = contains.map(|text| {
                format!("%{}%", text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
            });
            let raw: Vec<RawArticle> = connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM articles
                     WHERE client_id = ?1 AND id > ?2 AND (CAST(?3 AS TEXT) IS NULL OR language = ?3)
                       AND (CAST(?4 AS TEXT) IS NULL OR LOWER(title) LIKE ?4 ESCAPE '\\' OR LOWER(questions) LIKE ?4 ESCAPE '\\'
                            OR LOWER(body) LIKE ?4 ESCAPE '\\')
                     ORDER BY id LIMIT ?5"
                ))?
                .query_map(
                    params![
                        client.as_str(),
                        page.after.as_ref().map_or("", ArticleId::as_str),
                        language,
                        pattern,
                        page.probe()
                    ],
                    from_row,
                )?
                .collect::<Result<_>>()?;
            let articles = raw.into_iter().map(to_article).collect::<Result<Vec<_>>>()?;
            Ok(page.page(articles, |article| article.id.clone()))
        })
        .await
    }

    /// Every article of a client, by id (for export).
    pub async fn all_articles(&self, client: ClientSlug) -> Result<Vec<Article>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let raw: Vec<RawArticle> = connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM articles WHERE client_id = ?1 ORDER BY id"))?
                .query_map([client.as_str()], from_row)?
                .collect::<Result<_>>()?;
            raw.into_iter().map(to_article).collect()
        })
        .await
    }

    /// The articles changed after change `after` (deleted ones as `None`), each once, and the last change's
    /// sequence number; read in one snapshot so the pair is consistent.
    pub async fn kb_changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<(ClientSlug, ArticleId, Option<Article>)>, i64)> {
        self.read(move |connection| {
            let rows: Vec<(i64, String, String)> = connection
                .prepare_cached(
                    "SELECT seq, client_id, article_id FROM kb_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<_>>()?;
            let last = rows.last().map(|(seq, _, _)| *seq).unwrap_or(after);
            let mut seen = std::collections::HashSet::new();
            let mut changes = Vec::new();
            for (_, client, id) in rows {
                if !seen.insert((client.clone(), id.clone())) {
                    continue;
                }
                let (client, id) = (ClientSlug::parse(&client)?, ArticleId::parse(&id)?);
                let article = load_article(connection, &client, &id)?;
                changes.push((client, id, article));
            }
            Ok((changes, last))
        })
        .await
    }

    /// Every article of every client and the sequence number of the last change they include, in one
    /// snapshot (for rebuilding the index).
    pub async fn all_articles_for_index(&self) -> Result<(Vec<Article>, i64)> {
        self.read(|connection| {
            let last: i64 =
                connection.query_row("SELECT COALESCE(MAX(seq), 0) FROM kb_changes", [], |row| row.get(0))?;
            let raw: Vec<RawArticle> = connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM articles ORDER BY client_id, id"))?
                .query_map([], from_row)?
                .collect::<Result<_>>()?;
            Ok((raw.into_iter().map(to_article).collect::<Result<_>>()?, last))
        })
        .await
    }

    /// Imports one client's files in one transaction: the profile (creating the client if needed) and each
    /// article, created or updated when its content differs. Articles not in the files are left alone.
    pub async fn import_client(
        &self,
        client: ClientSlug,
        profile: Option<ClientProfile>,
        articles: Vec<(ArticleId, ArticleContent)>,
        actor: String,
    ) -> Result<ImportSummary> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let mut summary = ImportSummary::default();
            let exists = ensure_client(connection, &client).is_ok();
            match (&profile, exists) {
                (Some(profile), false) => {
                    let now = Timestamp::now().millis();
                    connection.execute(
                        "INSERT INTO clients (id, name, profile, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![client.as_str(), profile.name, serde_json::to_string(profile)?, now],
                    )?;
                    summary.client_created = true;
                }
                (Some(profile), true) => {
                    summary.client_updated = connection.execute(
                        "UPDATE clients SET name = ?2, profile = ?3, updated_at = ?4 WHERE id = ?1 AND profile <> ?3",
                        params![client.as_str(), profile.name, serde_json::to_string(profile)?, Timestamp::now().millis()],
                    )? == 1;
                }
                (None, false) => return Err(Error::NotFound("client")),
                (None, true) => {}
            }
            for (id, content) in &articles {
                match load_article(connection, &client, id)? {
                    Some(current) if current.content == *content => summary.unchanged += 1,
                    Some(_) => {
                        write_article_content(connection, &client, id, content, &actor)?;
                        summary.updated += 1;
                    }
                    None => {
                        write_article_content(connection, &client, id, content, &actor)?;
                        summary.created += 1;
                    }
                }
            }
            audit(
                connection,
                Some(&client),
                &actor,
                "kb.import",
                &serde_json::json!({ "created": summary.created, "updated": summary.updated, "unchanged": summary.unchanged }),
            )?;
            Ok(summary)
        })
        .await
    }
}
