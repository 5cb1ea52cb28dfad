//! What suggestions need from the store: a message's context, and what assistants did with suggestions.

use super::sql::{Lock, OptionalExtension, params};

use super::access::Scope;
use super::articles::{load_article, write_article_content};
use super::clients::{audit, load_client};
use super::pipeline::conversation_language;
use super::{Db, Error, Result};
use crate::domain::{
    ArticleContent, ArticleId, ClientProfile, ClientSlug, ConversationId, MessageId, Timestamp, new_id,
};

/// A message and what is needed to suggest answers to it.
#[derive(Debug, Clone)]
pub struct SuggestionContext {
    /// The message's client.
    pub client: ClientSlug,
    /// The client's profile.
    pub profile: ClientProfile,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message's text.
    pub text: String,
    /// The contact's name, if known.
    pub contact_name: Option<String>,
    /// The language detected in the message, if processed and long enough.
    pub language: Option<String>,
    /// The language of the conversation's latest earlier message with one.
    pub conversation_language: Option<String>,
}

/// What an assistant did with the suggestions shown for a message.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// The message the suggestions were for.
    pub message_id: MessageId,
    /// The articles shown, in order.
    pub shown: Vec<ArticleId>,
    /// The article used, if any.
    pub picked: Option<ArticleId>,
    /// Whether the answer was edited before sending.
    pub edited: bool,
    /// The customer's phrasing to add to the picked article's questions, if learning applies.
    pub phrasing: Option<String>,
}

/// Most phrasings an article may hold before learning stops adding to it.
pub const LEARNED_PHRASINGS_CAP: usize = 50;

impl Db {
    /// The context of message `id`, if `scope` may see it.
    pub async fn suggestion_context(&self, scope: Scope, id: MessageId) -> Result<SuggestionContext> {
        self.read_as(&scope.clone(), move |connection| {
            type Row = (ClientSlug, ConversationId, String, Option<String>, i64, Option<String>);
            let (every, person) = scope.params();
            let row: Option<Row> = connection
                .prepare_cached(&format!(
                    "SELECT m.client_id, m.conversation_id, m.text, m.language, m.created_at, k.name
                     FROM messages m
                     JOIN conversations c ON c.client_id = m.client_id AND c.id = m.conversation_id
                     JOIN contacts k ON k.client_id = c.client_id AND k.id = c.contact_id
                     WHERE m.id = ?1 AND {}",
                    Scope::condition("m.client_id", 2)
                ))?
                .query_row(params![id, every, person], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
                })
                .optional()?;
            let (client, conversation_id, text, language, created_at, contact_name) =
                row.ok_or(Error::NotFound("message"))?;
            let conversation_language = conversation_language(connection, &client, &conversation_id, created_at, &id)?;
            let profile = load_client(connection, &client)?.profile;
            Ok(SuggestionContext {
                client,
                profile,
                conversation_id,
                text,
                contact_name,
                language,
                conversation_language,
            })
        })
        .await
    }

    /// Records feedback on suggestions for one of `client`'s messages: impressions and the pick feed the
    /// boost, and the customer's phrasing is added to the picked article (deduplicated, capped).
    /// Returns true if and only if a phrasing was learned.
    pub async fn record_feedback(&self, client: ClientSlug, feedback: Feedback, actor: String) -> Result<bool> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let belongs: bool = connection
                .query_row(
                    "SELECT 1 FROM messages WHERE client_id = ?1 AND id = ?2",
                    params![client.as_str(), feedback.message_id],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if !belongs {
                return Err(Error::NotFound("message"));
            }
            let picked = match &feedback.picked {
                Some(id) => {
                    // A phrasing learned is added to the article as read.
                    connection.lock(Lock::Article(&client, id))?;
                    Some(load_article(connection, &client, id)?.ok_or(Error::NotFound("article"))?)
                }
                None => None,
            };
            let shown: Vec<&str> = feedback.shown.iter().map(ArticleId::as_str).collect();
            connection.execute(
                "INSERT INTO suggestion_feedback (client_id, id, message_id, shown, picked, edited, actor, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    client.as_str(),
                    new_id("fbk"),
                    feedback.message_id,
                    serde_json::to_string(&shown)?,
                    feedback.picked.as_ref().map(ArticleId::as_str),
                    feedback.edited,
                    actor,
                    Timestamp::now().millis()
                ],
            )?;
            for id in &shown {
                connection
                    .prepare_cached(
                        "INSERT INTO suggestion_stats (client_id, article_id, impressions, picks) VALUES (?1, ?2, 1, 0)
                         ON CONFLICT (client_id, article_id) DO UPDATE SET impressions = suggestion_stats.impressions + 1",
                    )?
                    .execute(params![client.as_str(), id])?;
            }
            let Some(article) = picked else { return Ok(false) };
            connection
                .prepare_cached(
                    "INSERT INTO suggestion_stats (client_id, article_id, impressions, picks) VALUES (?1, ?2, 0, 1)
                     ON CONFLICT (client_id, article_id) DO UPDATE SET picks = suggestion_stats.picks + 1",
                )?
                .execute(params![client.as_str(), article.id.as_str()])?;
            let Some(phrasing) = feedback.phrasing.as_deref().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()) else { return Ok(false) };
            let known = article.content.questions.iter().chain(std::iter::once(&article.content.title)).any(|q| q.to_lowercase() == phrasing.to_lowercase());
            if known || article.content.questions.len() >= LEARNED_PHRASINGS_CAP {
                return Ok(false);
            }
            let mut content: ArticleContent = article.content.clone();
            content.questions.push(phrasing.clone());
            write_article_content(connection, &client, &article.id, &content, &format!("learned:{actor}"))?;
            audit(connection, Some(&client), &actor, "article.learn", &serde_json::json!({ "article_id": article.id, "phrasing": phrasing }))?;
            super::articles::article_event(connection, &client, &article.id, "learned")?;
            Ok(true)
        })
        .await
    }

    /// Impressions and picks of each article of a client that has feedback.
    pub async fn suggestion_stats(&self, client: ClientSlug) -> Result<Vec<(String, i64, i64)>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let rows = connection
                .prepare_cached("SELECT article_id, impressions, picks FROM suggestion_stats WHERE client_id = ?1")?
                .query_map([client.as_str()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_>>()?;
            Ok(rows)
        })
        .await
    }
}
