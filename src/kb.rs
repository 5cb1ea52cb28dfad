//! The knowledge base: canned answers per client, and the suggestion service over them.
//!
//! SQLite holds the articles (see [`crate::store`]); the tantivy index (`index`) is derived from them.
//! [`Knowledge`] suggests answers for a message or a query (`suggest`) in the customer's language
//! (`language`, `analysis`), filled in from their templates (`template`), and learns from what
//! assistants pick. Knowledge bases as files (`kb/<client>/...`) are read and written by [`files`], which
//! also imports and exports whole directories; [`archive`] does the same for one client as a zip.

pub(crate) mod analysis;
pub mod archive;
pub mod files;
pub(crate) mod index;
pub(crate) mod language;
pub(crate) mod suggest;
pub(crate) mod template;

pub use files::{ImportError, export_dir, import_dir};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::{ArticleId, ClientSlug, MessageId};
use crate::store::{Db, Feedback, Scope};
pub use index::{Error, SearchIndex};
use language::Detectors;
use suggest::{Request, Suggestion};
use template::Fill;

/// Most suggestions one request may ask for.
pub const MAX_SUGGESTIONS: usize = 20;

/// How much a frequently picked article's score may grow: a pick rate of 1 multiplies it by `1 + PICK_WEIGHT`.
/// Kept small so that relevance to the message, not popularity, decides.
const PICK_WEIGHT: f32 = 0.3;

/// Impressions every article is assumed to start with, so a single pick does not reach the full boost.
const PICK_PRIOR: f32 = 5.0;

/// Suggestions and how their language was chosen.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Suggestions {
    /// The language the text was taken to be in.
    pub language: String,
    /// True if and only if the text itself showed the language (not a fallback).
    pub language_detected: bool,
    /// The articles, best first.
    pub suggestions: Vec<Suggestion>,
}

/// The knowledge-base service: the search index, language detection and the boosts learned from picks.
/// Clone freely.
#[derive(Clone)]
pub struct Knowledge {
    index: SearchIndex,
    detectors: Arc<Detectors>,
    /// Per client: article -> score multiplier; dropped when feedback changes it.
    boosts: Arc<Mutex<HashMap<ClientSlug, Boosts>>>,
}

/// Score multipliers of one client's articles.
type Boosts = Arc<HashMap<String, f32>>;

/// What an assistant did with the suggestions shown for a message.
#[derive(Debug, Clone)]
pub struct Pick {
    /// The message the suggestions were for.
    pub message_id: MessageId,
    /// The articles shown, in order.
    pub shown: Vec<ArticleId>,
    /// The article used, if any.
    pub picked: Option<ArticleId>,
    /// Whether the answer was edited before it was sent.
    pub edited: bool,
}

impl Knowledge {
    /// A service over an opened index.
    pub fn new(index: SearchIndex, detectors: Arc<Detectors>) -> Self {
        Self { index, detectors, boosts: Arc::default() }
    }

    /// The search index (to run its indexer or wake it after an edit).
    pub fn index(&self) -> &SearchIndex {
        &self.index
    }

    /// The language detectors (shared with the message pipeline).
    pub fn detectors(&self) -> Arc<Detectors> {
        Arc::clone(&self.detectors)
    }

    async fn boosts(&self, db: &Db, client: &ClientSlug) -> Result<Boosts, Error> {
        if let Some(boosts) = self.boosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(client) {
            return Ok(Arc::clone(boosts));
        }
        let stats = db.suggestion_stats(client.clone()).await?;
        let boosts: HashMap<String, f32> = stats
            .into_iter()
            .map(|(article, impressions, picks)| {
                let rate = picks as f32 / (impressions.max(picks) as f32 + PICK_PRIOR);
                (article, 1.0 + PICK_WEIGHT * rate.clamp(0.0, 1.0))
            })
            .collect();
        let boosts = Arc::new(boosts);
        self.boosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client.clone(), Arc::clone(&boosts));
        Ok(boosts)
    }

    /// Suggestions for a text of `client`. The language is `language` when given, else detected among the
    /// client's languages with `fallback` (or the client's primary language) for short or unclear texts.
    #[allow(clippy::too_many_arguments)]
    async fn suggest(
        &self,
        db: &Db,
        client: &ClientSlug,
        profile: &crate::domain::ClientProfile,
        text: String,
        language: Option<String>,
        fallback: Option<String>,
        k: usize,
        fill: Fill,
    ) -> Result<Suggestions, Error> {
        let (language, detected) = match language {
            Some(language) => (language, false),
            None => {
                let fallback = fallback.unwrap_or_else(|| profile.primary_language().to_owned());
                let detectors = Arc::clone(&self.detectors);
                let languages = profile.languages.clone();
                let probe = text.chars().take(2_000).collect::<String>();
                let guess =
                    tokio::task::spawn_blocking(move || detectors.detect(&probe, &languages, &fallback)).await?;
                (guess.language, guess.detected)
            }
        };
        let boosts = self.boosts(db, client).await?;
        let index = self.index.clone();
        let client = client.as_str().to_owned();
        let others: Vec<String> = profile.languages.iter().filter(|other| **other != language).cloned().collect();
        let min_score = profile.suggestions.min_score;
        let chosen = language.clone();
        let suggestions = tokio::task::spawn_blocking(move || {
            let request = Request {
                client: &client,
                text: &text,
                language: &chosen,
                other_languages: &others,
                k: k.clamp(1, MAX_SUGGESTIONS),
                min_score,
                boosts: &boosts,
                fill: &fill,
            };
            index.suggest(&request)
        })
        .await??;
        Ok(Suggestions { language, language_detected: detected, suggestions })
    }

    /// Suggestions for an ad hoc query of an assistant.
    pub async fn suggest_query(
        &self,
        db: &Db,
        client: ClientSlug,
        query: String,
        language: Option<String>,
        k: usize,
        assistant: Option<String>,
    ) -> Result<Suggestions, Error> {
        let profile = db.client(client.clone()).await?.profile;
        let fill = Fill { client_name: Some(profile.name.clone()), assistant_name: assistant, ..Fill::default() };
        self.suggest(db, &client, &profile, query, language, None, k, fill).await
    }

    /// Suggestions for a stored message, filled in for its contact.
    pub async fn suggest_message(
        &self,
        db: &Db,
        scope: Scope,
        message_id: MessageId,
        k: usize,
        assistant: Option<String>,
    ) -> Result<Suggestions, Error> {
        let context = db.suggestion_context(scope, message_id).await?;
        let fill = Fill {
            contact_name: context.contact_name.clone(),
            client_name: Some(context.profile.name.clone()),
            assistant_name: assistant,
            conversation_id: Some(context.conversation_id.to_string()),
        };
        self.suggest(
            db,
            &context.client,
            &context.profile,
            context.text.clone(),
            context.language.clone(),
            context.conversation_language.clone(),
            k,
            fill,
        )
        .await
    }

    /// Records what an assistant did with the suggestions for a message. The message's own text is the
    /// phrasing learned for the picked article when `may_write_articles` (learning writes into the article,
    /// so it follows the knowledge base's write rule); otherwise only the bounded boost is fed. Returns true
    /// if and only if a phrasing was learned.
    pub async fn feedback(
        &self,
        db: &Db,
        scope: Scope,
        pick: Pick,
        actor: String,
        may_write_articles: bool,
    ) -> Result<bool, Error> {
        let Pick { message_id, shown, picked, edited } = pick;
        let context = db.suggestion_context(scope, message_id.clone()).await?;
        // Long messages are conversations, not questions; learn only question-sized phrasings.
        let phrasing = (may_write_articles && context.text.chars().count() <= 200).then(|| context.text.clone());
        let feedback = Feedback { message_id, shown, picked, edited, phrasing };
        let learned = db.record_feedback(context.client.clone(), feedback, actor).await?;
        self.boosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&context.client);
        if learned {
            self.index.wake();
        }
        Ok(learned)
    }
}
