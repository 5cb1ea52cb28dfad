//! Which language a customer wrote in, among the client's languages.
//!
//! Short chat messages are hard: "ok", "gràcies!" or "2 pm?" say little. So detection runs only on
//! messages of at least [`MIN_WORDS`] words, only among the languages the client answers in (which is far
//! more accurate than guessing among all), and its answer is used only when confident; otherwise the
//! caller's fallback (the conversation's language, then the client's) stands.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use lingua::{IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder};

/// Fewer words than this and the fallback is used.
pub(crate) const MIN_WORDS: usize = 3;

/// Detections less confident than this are not trusted.
const MIN_CONFIDENCE: f64 = 0.5;

/// The outcome of a detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    /// The language code chosen.
    pub language: String,
    /// True if and only if the text itself decided it (not the fallback).
    pub detected: bool,
}

/// Detectors per set of candidate languages. Models load once inside lingua and are shared.
#[derive(Default)]
pub struct Detectors {
    cache: Mutex<HashMap<Vec<Language>, Arc<LanguageDetector>>>,
}

/// The lingua language of a code (base language of `pt-BR`), if lingua has its model compiled in.
fn lingua_language(code: &str) -> Option<Language> {
    let base = code.split(['-', '_']).next()?.to_ascii_lowercase();
    let iso = IsoCode639_1::from_str(&base).ok()?;
    let language = Language::from_iso_code_639_1(&iso);
    Language::all().contains(&language).then_some(language)
}

impl Detectors {
    /// Detects the language of `text` among `candidates` (language codes), or returns `fallback`.
    pub fn detect(&self, text: &str, candidates: &[String], fallback: &str) -> Guess {
        let keep = || Guess { language: fallback.to_owned(), detected: false };
        if candidates.len() == 1 {
            return Guess { language: candidates[0].clone(), detected: false };
        }
        if text.split_whitespace().filter(|word| word.chars().any(char::is_alphabetic)).count() < MIN_WORDS {
            return keep();
        }
        let mut languages: Vec<(Language, &String)> =
            candidates.iter().filter_map(|code| lingua_language(code).map(|language| (language, code))).collect();
        languages.sort_by_key(|(language, _)| *language);
        languages.dedup_by_key(|(language, _)| *language);
        if languages.len() < 2 {
            return keep();
        }
        let key: Vec<Language> = languages.iter().map(|(language, _)| *language).collect();
        let detector = {
            let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                cache
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(LanguageDetectorBuilder::from_languages(&key).build())),
            )
        };
        let best = detector.compute_language_confidence_values(text).into_iter().next();
        match best {
            Some((language, confidence)) if confidence >= MIN_CONFIDENCE => languages
                .iter()
                .find(|(candidate, _)| *candidate == language)
                .map(|(_, code)| Guess { language: (*code).clone(), detected: true })
                .unwrap_or_else(keep),
            _ => keep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(list: &[&str]) -> Vec<String> {
        list.iter().map(|code| (*code).to_owned()).collect()
    }

    #[test]
    fn detects_among_the_clients_languages() {
        let detectors = Detectors::default();
        let ca_es = codes(&["ca", "es"]);
        assert_eq!(detectors.detect("Voldria demanar hora per a una neteja dijous", &ca_es, "es").language, "ca");
        assert_eq!(detectors.detect("Quería pedir hora para una limpieza el jueves", &ca_es, "ca").language, "es");
        let guess = detectors.detect("Где мой заказ, уже неделя прошла", &codes(&["ru", "en"]), "en");
        assert_eq!((guess.language.as_str(), guess.detected), ("ru", true));
    }

    #[test]
    fn short_messages_and_single_language_clients_use_the_fallback() {
        let detectors = Detectors::default();
        let guess = detectors.detect("gràcies!", &codes(&["ca", "es"]), "es");
        assert_eq!((guess.language.as_str(), guess.detected), ("es", false));
        assert_eq!(detectors.detect("Where is my order please", &codes(&["it"]), "it").language, "it");
        // A language lingua has no model for cannot be detected; the fallback stands.
        assert_eq!(
            detectors.detect("Bo día, queríalle preguntar unha cousa", &codes(&["gl", "eu"]), "gl").language,
            "gl"
        );
    }
}
