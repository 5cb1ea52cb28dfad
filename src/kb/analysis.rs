//! Text analysis per language, the same at indexing and at query time.
//!
//! Every language with a Snowball stemmer gets its own analyzer: words (Catalan `l·l` kept inside a word),
//! long tokens dropped, lower case, stop words (lists that keep negations: a customer writing "no puc venir"
//! must not match "puc venir"), the stemmer, then Latin diacritics folded so `cancelación` and `cancelacion`
//! meet. Any other language code gets the neutral analyzer (no stop words, no stemming). A language-neutral
//! character-trigram analyzer catches the typos of chat messages.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, StopWordFilter, TextAnalyzer, Token, TokenFilter, TokenStream,
    Tokenizer,
};

/// The analyzer key of languages without a stemmer.
pub(crate) const NEUTRAL: &str = "xx";

/// Name of the trigram analyzer.
pub(crate) const TRIGRAM: &str = "recado_trigram";

/// Language codes with a stemmer (ISO 639-1), each with its own analyzer and fields.
pub(crate) const STEMMED: &[&str] = &[
    "ar", "ca", "cs", "da", "de", "el", "en", "eo", "es", "et", "eu", "fa", "fi", "fr", "ga", "hi", "hu", "hy", "id",
    "it", "lt", "ne", "nl", "no", "pl", "pt", "ro", "ru", "sr", "sv", "ta", "tr", "yi",
];

/// Longest token kept, in bytes (longer ones are URLs and noise).
const MAX_TOKEN_BYTES: usize = 40;

/// The analyzer key for a language code: its base language if it has a stemmer (`pt-BR` -> `pt`,
/// `nb` -> `no`), otherwise [`NEUTRAL`].
pub(crate) fn analyzer_key(language: &str) -> &'static str {
    let base = language.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
    let base = match base.as_str() {
        "nb" | "nn" => "no",
        other => other,
    };
    STEMMED.iter().find(|code| **code == base).copied().unwrap_or(NEUTRAL)
}

/// Every analyzer key: the stemmed languages and the neutral one.
pub(crate) fn analyzer_keys() -> impl Iterator<Item = &'static str> {
    STEMMED.iter().copied().chain(std::iter::once(NEUTRAL))
}

/// The tantivy analyzer name of a key.
pub(crate) fn analyzer_name(key: &str) -> String {
    format!("recado_{key}")
}

/// Builds the analyzer of a key.
pub(crate) fn analyzer(key: &str) -> TextAnalyzer {
    let base = TextAnalyzer::builder(WordTokenizer).filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES)).filter(LowerCaser);
    if key == NEUTRAL {
        return base.filter(AsciiFoldingFilter).build();
    }
    let algorithm = frostem::Algorithm::from_name(key).ok();
    match (stop_words(key), algorithm) {
        (Some(words), Some(algorithm)) => base
            .filter(StopWordFilter::remove(words.iter().map(|w| (*w).to_owned())))
            .filter(Snowball(algorithm))
            .filter(AsciiFoldingFilter)
            .build(),
        (None, Some(algorithm)) => base.filter(Snowball(algorithm)).filter(AsciiFoldingFilter).build(),
        (Some(words), None) => base
            .filter(StopWordFilter::remove(words.iter().map(|w| (*w).to_owned())))
            .filter(AsciiFoldingFilter)
            .build(),
        (None, None) => base.filter(AsciiFoldingFilter).build(),
    }
}

/// The trigram analyzer: each word lower-cased and folded, padded with `_`, cut into 3-character grams.
pub(crate) fn trigram_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(TrigramTokenizer::default()).build()
}

/// Registers every analyzer with an index.
pub(crate) fn register(index: &tantivy::Index) {
    let manager = index.tokenizers();
    for key in analyzer_keys() {
        manager.register(&analyzer_name(key), analyzer(key));
    }
    manager.register(TRIGRAM, trigram_analyzer());
}

/// Runs `analyzer` over `text`, returning each token's text and byte range in `text`.
pub(crate) fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut stream = analyzer.token_stream(text);
    let mut tokens = Vec::new();
    while stream.advance() {
        let token = stream.token();
        tokens.push((token.text.clone(), token.offset_from..token.offset_to));
    }
    tokens
}

/// Splits text into words: runs of letters and digits. A middle dot (or a typed full stop) between two `l`s
/// stays inside the word and is dropped from the token, so Catalan `cancel·lar` is one word, `cancellar`.
/// Apostrophes split words (`l'any` -> `l`, `any`); elided articles are stop words.
#[derive(Clone, Default)]
pub(crate) struct WordTokenizer;

/// The token stream of [`WordTokenizer`].
pub(crate) struct WordStream<'a> {
    text: &'a str,
    position: usize,
    token: Token,
    index: usize,
}

fn is_geminate_dot(text: &str, at: usize, dot: char) -> bool {
    let before = text[..at].chars().next_back();
    let after = text[at + dot.len_utf8()..].chars().next();
    matches!(before, Some('l' | 'L')) && matches!(after, Some('l' | 'L'))
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        WordStream { text, position: 0, token: Token::default(), index: 0 }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        let rest = &self.text[self.position..];
        let Some(start) = rest.char_indices().find(|(_, c)| c.is_alphanumeric()).map(|(i, _)| self.position + i) else {
            self.position = self.text.len();
            return false;
        };
        let mut end = start;
        let mut word = String::new();
        for (offset, c) in self.text[start..].char_indices() {
            let at = start + offset;
            if c.is_alphanumeric() {
                word.push(c);
                end = at + c.len_utf8();
            } else if matches!(c, '·' | '\u{2027}' | '.') && is_geminate_dot(self.text, at, c) {
                end = at + c.len_utf8();
            } else {
                break;
            }
        }
        self.position = end;
        self.token.text = word;
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = self.index;
        self.token.position_length = 1;
        self.index += 1;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Snowball stemming for any language frostem knows (tantivy's own filter exposes fewer, and not Catalan).
#[derive(Clone, Copy)]
pub(crate) struct Snowball(frostem::Algorithm);

impl TokenFilter for Snowball {
    type Tokenizer<T: Tokenizer> = SnowballFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> SnowballFilter<T> {
        SnowballFilter { algorithm: self.0, inner: tokenizer }
    }
}

/// The tokenizer [`Snowball`] wraps.
#[derive(Clone)]
pub(crate) struct SnowballFilter<T> {
    algorithm: frostem::Algorithm,
    inner: T,
}

impl<T: Tokenizer> Tokenizer for SnowballFilter<T> {
    type TokenStream<'a> = SnowballStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        SnowballStream { inner: self.inner.token_stream(text), stemmer: frostem::Stemmer::new(self.algorithm) }
    }
}

/// The token stream of [`SnowballFilter`].
pub(crate) struct SnowballStream<S> {
    inner: S,
    stemmer: frostem::Stemmer,
}

impl<S: TokenStream> TokenStream for SnowballStream<S> {
    fn advance(&mut self) -> bool {
        if !self.inner.advance() {
            return false;
        }
        let token = self.inner.token_mut();
        let stemmed = self.stemmer.stem(&token.text).into_owned();
        token.text = stemmed;
        true
    }

    fn token(&self) -> &Token {
        self.inner.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.inner.token_mut()
    }
}

/// Cuts each word into padded character trigrams: `hora` -> `_ho`, `hor`, `ora`, `ra_`.
#[derive(Clone)]
pub(crate) struct TrigramTokenizer {
    normalizer: TextAnalyzer,
    grams: Vec<Token>,
}

impl Default for TrigramTokenizer {
    fn default() -> Self {
        let normalizer = TextAnalyzer::builder(WordTokenizer)
            .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        Self { normalizer, grams: Vec::new() }
    }
}

/// The token stream of [`TrigramTokenizer`].
pub(crate) struct TrigramStream<'a> {
    grams: std::slice::Iter<'a, Token>,
    current: Token,
}

impl Tokenizer for TrigramTokenizer {
    type TokenStream<'a> = TrigramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> TrigramStream<'a> {
        self.grams.clear();
        let words = tokens(&mut self.normalizer, text);
        for (word, range) in words {
            let padded: Vec<char> = std::iter::once('_').chain(word.chars()).chain(std::iter::once('_')).collect();
            for window in padded.windows(3) {
                let position = self.grams.len();
                self.grams.push(Token {
                    offset_from: range.start,
                    offset_to: range.end,
                    position,
                    text: window.iter().collect(),
                    position_length: 1,
                });
            }
        }
        TrigramStream { grams: self.grams.iter(), current: Token::default() }
    }
}

impl TokenStream for TrigramStream<'_> {
    fn advance(&mut self) -> bool {
        match self.grams.next() {
            Some(gram) => {
                self.current = gram.clone();
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// Stop words of a language, lower-cased, before stemming. The lists keep negations on purpose.
fn stop_words(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "ca" => &[
            "a",
            "al",
            "als",
            "amb",
            "de",
            "del",
            "dels",
            "d",
            "el",
            "els",
            "en",
            "i",
            "la",
            "les",
            "l",
            "lo",
            "per",
            "pel",
            "pels",
            "que",
            "s",
            "se",
            "es",
            "em",
            "et",
            "ens",
            "us",
            "m",
            "t",
            "n",
            "un",
            "una",
            "uns",
            "unes",
            "o",
            "com",
            "hi",
            "ho",
            "li",
            "si",
            "ja",
            "jo",
            "tu",
            "ell",
            "ella",
            "nosaltres",
            "vosaltres",
            "meu",
            "meva",
            "teu",
            "teva",
            "seu",
            "seva",
            "és",
            "son",
            "són",
            "sóc",
            "soc",
            "estic",
            "està",
            "molt",
            "més",
            "però",
            "pero",
            "aquest",
            "aquesta",
            "aquí",
            "hola",
            "bon",
            "bona",
            "dia",
            "tarda",
            "gràcies",
            "gracies",
            "si-us-plau",
        ],
        "es" => &[
            "a", "al", "con", "de", "del", "el", "la", "las", "los", "lo", "en", "y", "e", "o", "u", "un", "una",
            "unos", "unas", "por", "para", "que", "se", "me", "te", "le", "les", "nos", "os", "mi", "mis", "tu", "tus",
            "su", "sus", "es", "son", "soy", "estoy", "está", "esta", "este", "esto", "muy", "más", "mas", "pero",
            "como", "si", "ya", "yo", "usted", "ustedes", "vos", "hola", "buenas", "buenos", "días", "dias", "gracias",
            "favor", "porfa", "che",
        ],
        "it" => &[
            "a",
            "ad",
            "al",
            "alla",
            "alle",
            "allo",
            "ai",
            "agli",
            "all",
            "con",
            "da",
            "dal",
            "dalla",
            "dall",
            "dei",
            "degli",
            "del",
            "della",
            "dell",
            "delle",
            "di",
            "e",
            "ed",
            "il",
            "i",
            "in",
            "la",
            "le",
            "lo",
            "gli",
            "l",
            "nel",
            "nella",
            "nell",
            "per",
            "su",
            "sul",
            "sulla",
            "tra",
            "fra",
            "un",
            "una",
            "uno",
            "un'",
            "che",
            "si",
            "mi",
            "ti",
            "ci",
            "vi",
            "è",
            "sono",
            "sei",
            "siamo",
            "mio",
            "mia",
            "suo",
            "sua",
            "ma",
            "come",
            "anche",
            "molto",
            "buongiorno",
            "buonasera",
            "salve",
            "grazie",
            "cortesia",
        ],
        "ru" => &[
            "и",
            "в",
            "во",
            "на",
            "с",
            "со",
            "к",
            "ко",
            "по",
            "о",
            "об",
            "от",
            "до",
            "из",
            "за",
            "у",
            "а",
            "но",
            "что",
            "это",
            "как",
            "я",
            "мы",
            "вы",
            "он",
            "она",
            "они",
            "мне",
            "меня",
            "вам",
            "вас",
            "нам",
            "нас",
            "мой",
            "моя",
            "мое",
            "моё",
            "ваш",
            "ваша",
            "бы",
            "ли",
            "же",
            "то",
            "уже",
            "здравствуйте",
            "добрый",
            "день",
            "спасибо",
            "пожалуйста",
        ],
        "en" => &[
            "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "with", "by", "from", "is", "are",
            "am", "was", "be", "it", "its", "this", "that", "i", "we", "you", "me", "my", "our", "your", "us", "do",
            "does", "hi", "hello", "thanks", "please", "so", "as",
        ],
        "pt" => &[
            "a", "o", "as", "os", "ao", "aos", "de", "do", "da", "dos", "das", "em", "no", "na", "nos", "nas", "e",
            "um", "uma", "por", "para", "com", "que", "se", "me", "te", "meu", "minha", "é", "são", "olá", "obrigado",
            "obrigada",
        ],
        "fr" => &[
            "le", "la", "les", "l", "un", "une", "des", "de", "du", "d", "et", "ou", "à", "au", "aux", "en", "dans",
            "sur", "pour", "par", "avec", "que", "qui", "je", "j", "tu", "il", "elle", "nous", "vous", "me", "m", "te",
            "se", "s", "mon", "ma", "mes", "est", "sont", "bonjour", "merci",
        ],
        "de" => &[
            "der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "und", "oder", "zu", "zum",
            "zur", "in", "im", "an", "am", "auf", "für", "mit", "von", "vom", "ich", "wir", "sie", "ist", "sind",
            "mein", "meine", "hallo", "danke", "bitte",
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(key: &str, text: &str) -> Vec<String> {
        tokens(&mut analyzer(key), text).into_iter().map(|(text, _)| text).collect()
    }

    #[test]
    fn every_stemmed_language_has_a_stemmer_and_unknown_codes_are_neutral() {
        for code in STEMMED {
            assert!(frostem::Algorithm::from_name(code).is_ok(), "no stemmer for {code}");
        }
        assert_eq!(analyzer_key("pt-BR"), "pt");
        assert_eq!(analyzer_key("nb"), "no");
        assert_eq!(analyzer_key("gl"), NEUTRAL);
        assert_eq!(texts(NEUTRAL, "Olá, Mañá!"), ["ola", "mana"]);
    }

    #[test]
    fn catalan_keeps_geminate_l_and_drops_elided_articles() {
        let tokens = tokens(&mut analyzer("ca"), "Vull cancel·lar la cita de l'any");
        let words: Vec<_> = tokens.iter().map(|(text, _)| text.as_str()).collect();
        assert!(words.iter().any(|w| w.starts_with("cancel") && !w.contains('·')), "{words:?}");
        assert!(!words.contains(&"lar"), "{words:?}");
        assert!(!words.contains(&"l"), "{words:?}");
        // Offsets point into the original text, dot included, for highlighting.
        let (_, range) = tokens.iter().find(|(text, _)| text.starts_with("cancel")).expect("cancel");
        assert_eq!(&"Vull cancel·lar la cita de l'any"[range.clone()], "cancel·lar");
        assert_eq!(texts("ca", "cancel·lar"), texts("ca", "cancel.lar"), "a typed full stop counts too");
    }

    #[test]
    fn negations_survive_and_accents_fold_after_stemming() {
        assert!(texts("es", "no puedo ir").contains(&"no".to_owned()));
        assert!(texts("it", "non riesco").contains(&"non".to_owned()));
        assert!(texts("ru", "не могу").contains(&"не".to_owned()));
        assert!(texts("en", "I can not come").contains(&"not".to_owned()));
        assert_eq!(texts("es", "cancelación"), texts("es", "cancelacion"));
    }

    #[test]
    fn stemming_joins_word_forms() {
        assert_eq!(texts("es", "citas"), texts("es", "cita"));
        assert_eq!(texts("it", "appuntamenti"), texts("it", "appuntamento"));
        assert_eq!(texts("ru", "заказы"), texts("ru", "заказ"));
        assert_eq!(texts("en", "invoices"), texts("en", "invoice"));
        assert_eq!(texts("ca", "factures"), texts("ca", "factura"));
    }

    #[test]
    fn trigrams_cover_typos() {
        let grams = |text: &str| -> std::collections::HashSet<String> {
            tokens(&mut trigram_analyzer(), text).into_iter().map(|(text, _)| text).collect()
        };
        let right = grams("cancelación");
        let typo = grams("cancelasion");
        let shared = right.intersection(&typo).count();
        assert!(shared * 2 > right.len(), "{right:?} vs {typo:?}");
        assert!(grams("Hora").contains("_ho") && grams("Hora").contains("ra_"));
    }
}
