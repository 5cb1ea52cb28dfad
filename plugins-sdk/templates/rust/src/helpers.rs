//! Helpers for recado rules: keyword matching that ignores case and accents, the acknowledgement window,
//! and picking a text by language.

use std::collections::BTreeMap;

use crate::recado::plugin::types::{Context, Decision};

/// An empty decision (no opinion on anything) with a reason.
pub fn decision(reason: &str) -> Decision {
    Decision {
        acknowledge: None,
        queue: None,
        assignee: None,
        tags: Vec::new(),
        priority: None,
        escalate: None,
        reason: reason.to_owned(),
    }
}

/// Lower-cases `text` and removes accents of Latin letters, so `Urgència`, `URGENCIA` and `urgencia` compare
/// equal. Other scripts (Cyrillic, Greek) are only lower-cased.
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ё' => 'е',
            other => other,
        })
        .collect()
}

/// The words of `text`, folded: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    fold(text).split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_owned).collect()
}

/// True if `text` contains one of `keywords` (a word or a phrase) as whole words, ignoring case and accents:
/// "Es URGENTE" contains "urgente", "urgentemente" does not.
pub fn contains_any(text: &str, keywords: &[String]) -> bool {
    let tokens = words(text);
    keywords.iter().any(|keyword| {
        let wanted = words(keyword);
        !wanted.is_empty() && tokens.windows(wanted.len()).any(|window| window == wanted.as_slice())
    })
}

/// True if the conversation got an automatic acknowledgement within the last `minutes`.
pub fn acknowledged_within(ctx: &Context, minutes: u32) -> bool {
    ctx.last_acknowledged_at.is_some_and(|at| ctx.now.saturating_sub(at) < i64::from(minutes) * 60_000)
}

/// The text for `language`, else the client's first language, else any.
pub fn pick_text<'a, T>(texts: &'a BTreeMap<String, T>, language: Option<&str>, languages: &[String]) -> Option<&'a T> {
    language
        .into_iter()
        .chain(languages.first().map(String::as_str))
        .find_map(|candidate| texts.get(candidate))
        .or_else(|| texts.values().next())
}
