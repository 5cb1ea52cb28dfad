//! Knowledge-base articles: canned answers of one client, in one language, with alternative phrasings of
//! the customer's question and a template body.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Invalid, parse_label};

/// The id of an article, unique within its client: `[a-z0-9-]`, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ArticleId(String);

impl ArticleId {
    /// Longest id.
    pub const MAX_LEN: usize = 100;

    /// Parses an id as given by a user or a file name.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("id", "must be 1 to 100 characters of a-z, 0-9 and '-', not starting or ending with '-'"))
        }
    }

    /// Derives an id from a title in any script: transliterated to ASCII, lowercased, words joined by '-'.
    /// `"Horari d'estiu (juliol)"` becomes `horari-d-estiu-juliol`; `"Доставка по Москве"` becomes
    /// `dostavka-po-moskve`. A title with nothing usable gives `article`.
    pub fn from_title(title: &str) -> Self {
        let ascii = deunicode::deunicode(title).to_ascii_lowercase();
        let mut id = String::with_capacity(ascii.len());
        for word in ascii.split(|c: char| !c.is_ascii_alphanumeric()).filter(|word| !word.is_empty()) {
            if id.len() + word.len() + 1 > Self::MAX_LEN {
                break;
            }
            if !id.is_empty() {
                id.push('-');
            }
            id.push_str(word);
        }
        if id.is_empty() { Self("article".to_owned()) } else { Self(id) }
    }

    /// This id with a numeric suffix, for when the derived id is taken: `hours` -> `hours-2`.
    pub fn with_suffix(&self, n: u32) -> Self {
        let suffix = format!("-{n}");
        let keep = self.0.len().min(Self::MAX_LEN - suffix.len());
        Self(format!("{}{suffix}", self.0[..keep].trim_end_matches('-')))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ArticleId {
    type Err = Invalid;
    fn from_str(value: &str) -> Result<Self, Invalid> {
        Self::parse(value)
    }
}

impl fmt::Display for ArticleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ArticleId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The editable content of an article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleContent {
    /// Language code of the article, e.g. `ca`; any code is allowed (unknown ones get neutral analysis).
    pub language: String,
    /// The title: usually the customer's question in its plainest form.
    pub title: String,
    /// Other ways customers ask the same thing (and phrasings learned from assistants' picks).
    #[serde(default)]
    pub questions: Vec<String>,
    /// The answer: a template filled in for the contact (see `kb::template`).
    pub body: String,
    /// Tags for filtering and reports.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A short code assistants type to insert this answer, e.g. `hours`.
    #[serde(default)]
    pub shortcut: Option<String>,
}

impl ArticleContent {
    /// Most question phrasings kept per article.
    pub const MAX_QUESTIONS: usize = 100;
    /// Longest body, in characters.
    pub const MAX_BODY_CHARS: usize = 20_000;

    /// Normalises what users cannot see the difference of (surrounding white space, trailing white space of
    /// the body, repeated or empty phrasings), so files and API round-trip to the same content.
    pub fn normalized(mut self) -> Self {
        self.language = self.language.trim().to_owned();
        self.title = self.title.trim().to_owned();
        self.body = self.body.replace("\r\n", "\n").trim_end().to_owned();
        let mut seen = std::collections::HashSet::new();
        self.questions = self
            .questions
            .into_iter()
            .map(|question| question.trim().to_owned())
            .filter(|question| !question.is_empty() && seen.insert(question.to_lowercase()))
            .collect();
        self.tags = self.tags.into_iter().map(|tag| tag.trim().to_owned()).collect();
        self.shortcut = self.shortcut.map(|s| s.trim().trim_start_matches('/').to_owned()).filter(|s| !s.is_empty());
        self
    }

    /// Checks every field except the template syntax (see `kb::template::validate`).
    pub fn validate(&self) -> Result<(), Invalid> {
        super::client::validate_language(&self.language).map_err(|e| e.within("language"))?;
        super::parse_text("title", &self.title, 200)?;
        if self.questions.len() > Self::MAX_QUESTIONS {
            return Err(Invalid::new("questions", format!("at most {} phrasings", Self::MAX_QUESTIONS)));
        }
        for (index, question) in self.questions.iter().enumerate() {
            super::parse_text(&format!("questions[{index}]"), question, 500)?;
        }
        super::parse_text("body", &self.body, Self::MAX_BODY_CHARS)?;
        if self.tags.len() > 20 {
            return Err(Invalid::new("tags", "at most 20 tags"));
        }
        for (index, tag) in self.tags.iter().enumerate() {
            parse_label(&format!("tags[{index}]"), tag, 40)?;
        }
        if let Some(shortcut) = &self.shortcut {
            parse_label("shortcut", shortcut, 32)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derive_from_titles_in_any_script() {
        assert_eq!(ArticleId::from_title("Horari d'estiu (juliol)").as_str(), "horari-d-estiu-juliol");
        assert_eq!(ArticleId::from_title("Доставка по Москве").as_str(), "dostavka-po-moskve");
        assert_eq!(ArticleId::from_title("¿Cuánto cuesta una limpieza?").as_str(), "cuanto-cuesta-una-limpieza");
        assert_eq!(ArticleId::from_title("!!!").as_str(), "article");
        let long = ArticleId::from_title(&"word ".repeat(60));
        assert!(long.as_str().len() <= ArticleId::MAX_LEN && ArticleId::parse(long.as_str()).is_ok());
        assert_eq!(ArticleId::from_title("hours").with_suffix(2).as_str(), "hours-2");
    }

    #[test]
    fn content_is_normalised_and_validated() {
        let content = ArticleContent {
            language: " ca ".into(),
            title: " Horari ".into(),
            questions: vec!["A quina hora obriu?".into(), "a quina hora obriu?".into(), "  ".into()],
            body: "Obrim de 9 a 14.\r\n\n".into(),
            tags: vec!["horaris".into()],
            shortcut: Some("/horari".into()),
        }
        .normalized();
        assert_eq!(content.language, "ca");
        assert_eq!(content.questions, ["A quina hora obriu?"]);
        assert_eq!(content.body, "Obrim de 9 a 14.");
        assert_eq!(content.shortcut.as_deref(), Some("horari"));
        assert!(content.validate().is_ok());

        let mut bad = content.clone();
        bad.tags = vec!["Not A Label".into()];
        assert_eq!(bad.validate().expect_err("invalid").field, "tags[0]");
        let mut bad = content;
        bad.body = String::new();
        assert_eq!(bad.validate().expect_err("invalid").field, "body");
    }
}
