//! Knowledge bases as files: `<dir>/<client>/client.toml` and `<dir>/<client>/articles/<id>.md`.
//!
//! An article file is TOML front matter between `+++` lines, then the body template:
//!
//! ```text
//! +++
//! language = "ca"
//! title = "Horari de la clínica"
//! questions = [
//!     "A quina hora obriu?",
//! ]
//! tags = ["horaris"]
//! shortcut = "horari"
//! +++
//! Obrim de dilluns a dijous de 9 a 14 i de 16 a 20.
//! ```
//!
//! The file name is the article id. [`write_article`] writes the canonical form (this field order, empty
//! fields left out, one newline at the end), and reading a canonical file then writing it gives the same
//! bytes. Reading checks everything a save through the API checks, and reports each problem with its file
//! and line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::template;
use crate::domain::{ArticleContent, ArticleId, ClientProfile, ClientSlug, Invalid};
use crate::store::{Db, ImportSummary};

/// The front matter fence.
const FENCE: &str = "+++";

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    language: String,
    title: String,
    #[serde(default)]
    questions: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    shortcut: Option<String>,
}

/// Parses an article file's text. Errors carry the line within the file.
pub fn parse_article(text: &str) -> Result<ArticleContent, (Option<usize>, String)> {
    let text = text.replace("\r\n", "\n");
    let rest = text
        .strip_prefix(FENCE)
        .and_then(|rest| rest.strip_prefix('\n'))
        .ok_or((Some(1), format!("the file must start with a `{FENCE}` line opening the front matter")))?;
    let end = rest
        .find(&format!("\n{FENCE}\n"))
        .map(|at| (at, at + FENCE.len() + 2))
        .or_else(|| rest.strip_suffix(&format!("\n{FENCE}")).map(|front| (front.len(), rest.len())))
        .ok_or((None, format!("the front matter is not closed by a `{FENCE}` line")))?;
    let (front, body) = (&rest[..end.0], &rest[end.1..]);
    // Line 1 is the opening fence; the front matter starts on line 2 and the body after the closing fence.
    let body_line = front.lines().count() + 3;
    let matter: FrontMatter = toml::from_str(front).map_err(|error| {
        let line = error.span().map(|span| front[..span.start].matches('\n').count() + 2);
        (line, error.message().to_owned())
    })?;
    let content = ArticleContent {
        language: matter.language,
        title: matter.title,
        questions: matter.questions,
        body: body.to_owned(),
        tags: matter.tags,
        shortcut: matter.shortcut,
    }
    .normalized();
    content.validate().map_err(|invalid| (field_line(front, &invalid, body_line), invalid.to_string()))?;
    template::validate(&content.body)
        .map_err(|error| (error.line.map(|line| line + body_line - 1), format!("body: {}", error.message)))?;
    Ok(content)
}

/// The line where a field's problem is: the body's first line, or the line of its key in the front matter.
fn field_line(front: &str, invalid: &Invalid, body_line: usize) -> Option<usize> {
    let key = invalid.field.split(['.', '[']).next().unwrap_or_default();
    if key == "body" {
        return Some(body_line);
    }
    front.lines().position(|line| line.trim_start().starts_with(key)).map(|index| index + 2)
}

/// The canonical text of an article file.
pub fn write_article(content: &ArticleContent) -> String {
    let mut text = format!("{FENCE}\nlanguage = {}\ntitle = {}\n", quote(&content.language), quote(&content.title));
    if !content.questions.is_empty() {
        text.push_str("questions = [\n");
        for question in &content.questions {
            text.push_str(&format!("    {},\n", quote(question)));
        }
        text.push_str("]\n");
    }
    if !content.tags.is_empty() {
        let tags: Vec<String> = content.tags.iter().map(|tag| quote(tag)).collect();
        text.push_str(&format!("tags = [{}]\n", tags.join(", ")));
    }
    if let Some(shortcut) = &content.shortcut {
        text.push_str(&format!("shortcut = {}\n", quote(shortcut)));
    }
    text.push_str(FENCE);
    text.push('\n');
    text.push_str(&content.body);
    text.push('\n');
    text
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Everything read for one client.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    /// The client (the directory name).
    pub slug: ClientSlug,
    /// Its profile, when the directory has a `client.toml`.
    pub profile: Option<ClientProfile>,
    /// Its articles, by id.
    pub articles: Vec<(ArticleId, ArticleContent)>,
    /// The files read, for progress reporting.
    pub files: usize,
}

/// Reads every client directory under `dir`. Returns every problem found, so a user fixes them in one go.
pub fn read_tree(dir: &Path) -> Result<Vec<ClientFiles>, Vec<Problem>> {
    let problem = |path: &Path, line, message: String| Problem { path: path.to_owned(), line, message };
    let mut problems = Vec::new();
    let mut clients = Vec::new();
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => {
            entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).filter(|path| path.is_dir()).collect()
        }
        Err(error) => return Err(vec![problem(dir, None, format!("cannot read the directory: {error}"))]),
    };
    entries.sort();
    for client_dir in entries {
        let name = client_dir.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
        let slug = match ClientSlug::parse(&name) {
            Ok(slug) => slug,
            Err(error) => {
                problems.push(problem(
                    &client_dir,
                    None,
                    format!("the directory name is the client slug: {}", error.message),
                ));
                continue;
            }
        };
        let mut files = 0;
        let profile_path = client_dir.join("client.toml");
        let profile = if profile_path.is_file() {
            files += 1;
            match read_profile(&profile_path) {
                Ok(profile) => Some(profile),
                Err((line, message)) => {
                    problems.push(problem(&profile_path, line, message));
                    None
                }
            }
        } else {
            None
        };
        let mut articles = Vec::new();
        let articles_dir = client_dir.join("articles");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&articles_dir)
            .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
            .unwrap_or_default();
        paths.sort();
        for path in paths.into_iter().filter(|path| path.extension().is_some_and(|ext| ext == "md")) {
            files += 1;
            let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
            let id = match ArticleId::parse(stem) {
                Ok(id) => id,
                Err(error) => {
                    problems.push(problem(&path, None, format!("the file name is the article id: {}", error.message)));
                    continue;
                }
            };
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    problems.push(problem(&path, None, format!("cannot read: {error}")));
                    continue;
                }
            };
            match parse_article(&text) {
                Ok(content) => articles.push((id, content)),
                Err((line, message)) => problems.push(problem(&path, line, message)),
            }
        }
        clients.push(ClientFiles { slug, profile, articles, files });
    }
    if problems.is_empty() { Ok(clients) } else { Err(problems) }
}

/// Reads and validates a `client.toml`.
pub fn read_profile(path: &Path) -> Result<ClientProfile, (Option<usize>, String)> {
    let text = std::fs::read_to_string(path).map_err(|error| (None, format!("cannot read: {error}")))?;
    parse_profile(&text)
}

/// Parses and validates the text of a `client.toml`. Errors carry the line within the file.
pub fn parse_profile(text: &str) -> Result<ClientProfile, (Option<usize>, String)> {
    let profile: ClientProfile = toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| text[..span.start].matches('\n').count() + 1);
        (line, error.message().to_owned())
    })?;
    profile.validate().map_err(|invalid| (None, invalid.to_string()))?;
    Ok(profile)
}

/// The text of a `client.toml`.
pub fn write_profile(profile: &ClientProfile) -> std::io::Result<String> {
    toml::to_string(profile).map_err(std::io::Error::other)
}

/// Writes one client's profile and articles under `dir/<slug>/`. Returns the number of files written.
pub fn write_client(
    dir: &Path,
    slug: &ClientSlug,
    profile: &ClientProfile,
    articles: &[(ArticleId, ArticleContent)],
) -> std::io::Result<usize> {
    let client_dir = dir.join(slug.as_str());
    let articles_dir = client_dir.join("articles");
    std::fs::create_dir_all(&articles_dir)?;
    std::fs::write(client_dir.join("client.toml"), write_profile(profile)?)?;
    for (id, content) in articles {
        std::fs::write(articles_dir.join(format!("{id}.md")), write_article(content))?;
    }
    Ok(articles.len() + 1)
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some files are broken; nothing was written.
    #[error("{} problem(s) found; nothing was imported:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Files(Vec<Problem>),
    /// Writing to the store failed (earlier clients may have been imported; importing again is safe).
    #[error("storing {client} failed: {source}")]
    Store {
        /// The client being imported.
        client: ClientSlug,
        /// The cause.
        #[source]
        source: crate::store::Error,
    },
}

/// What `recado kb import` prints: per client what was created, updated and left as it was, then totals.
pub fn import_report(summaries: &[(ClientSlug, ImportSummary)]) -> String {
    let mut text = String::new();
    let mut totals = ImportSummary::default();
    for (slug, summary) in summaries {
        let client = if summary.client_created {
            " (new client)"
        } else if summary.client_updated {
            " (profile updated)"
        } else {
            ""
        };
        text.push_str(&format!(
            "{slug}: {} created, {} updated, {} unchanged{client}\n",
            summary.created, summary.updated, summary.unchanged
        ));
        totals.created += summary.created;
        totals.updated += summary.updated;
        totals.unchanged += summary.unchanged;
    }
    text.push_str(&format!(
        "total: {} clients, {} created, {} updated, {} unchanged\n",
        summaries.len(),
        totals.created,
        totals.updated,
        totals.unchanged
    ));
    text
}

/// Imports every client directory under `dir`: all files are read and checked first, and if any is broken
/// nothing is written. Each client is then written in one transaction. Importing the same files again
/// changes nothing. `progress` is called with the number of files of each client as it is stored.
pub async fn import_dir(
    db: &Db,
    dir: &Path,
    actor: &str,
    mut progress: impl FnMut(&ClientSlug, usize),
) -> Result<Vec<(ClientSlug, ImportSummary)>, ImportError> {
    let clients = read_tree(dir).map_err(ImportError::Files)?;
    let mut summaries = Vec::with_capacity(clients.len());
    for client in clients {
        let summary = db
            .import_client(client.slug.clone(), client.profile, client.articles, actor.to_owned())
            .await
            .map_err(|source| ImportError::Store { client: client.slug.clone(), source })?;
        progress(&client.slug, client.files);
        summaries.push((client.slug, summary));
    }
    Ok(summaries)
}

/// Writes every client's profile and articles under `dir`, in the form [`import_dir`] reads. Returns the
/// number of files written.
///
/// # Errors
/// Reading the store or writing a file failed.
pub async fn export_dir(db: &Db, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for client in db.clients().await? {
        let articles: Vec<_> = db
            .all_articles(client.slug.clone())
            .await?
            .into_iter()
            .map(|article| (article.id, article.content))
            .collect();
        written += write_client(dir, &client.slug, &client.profile, &articles)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str = "+++\nlanguage = \"ca\"\ntitle = \"Horari de la clínica\"\nquestions = [\n    \"A quina hora obriu?\",\n    \"Obriu \\\"dissabte\\\"?\",\n]\ntags = [\"horaris\", \"info\"]\nshortcut = \"horari\"\n+++\nHola {{ contact.first_name | default(\"\") }}!\n\nObrim de 9 a 14.\n";

    #[test]
    fn a_canonical_file_reads_and_writes_back_byte_for_byte() {
        let content = parse_article(CANONICAL).expect("valid");
        assert_eq!(content.questions[1], "Obriu \"dissabte\"?");
        assert_eq!(content.body, "Hola {{ contact.first_name | default(\"\") }}!\n\nObrim de 9 a 14.");
        assert_eq!(write_article(&content), CANONICAL);
    }

    #[test]
    fn minimal_files_leave_out_empty_fields() {
        let text = "+++\nlanguage = \"en\"\ntitle = \"Invoices\"\n+++\nInvoices are due in 30 days.\n";
        assert_eq!(write_article(&parse_article(text).expect("valid")), text);
    }

    #[test]
    fn problems_are_reported_with_their_line() {
        let (line, message) = parse_article("language = \"ca\"\n").expect_err("no fence");
        assert_eq!(line, Some(1), "{message}");
        let (line, message) = parse_article("+++\nlanguage = \"ca\"\ntitle = \"x\"\nbody\n").expect_err("not closed");
        assert!(message.contains("not closed"), "{message} {line:?}");
        let (line, message) = parse_article("+++\nlanguage = \"ca\"\ntitle = \"x\"\ncolour = \"red\"\n+++\nbody\n")
            .expect_err("unknown key");
        assert_eq!(line, Some(4), "{message}");
        let (line, message) = parse_article("+++\nlanguage = \"ca\"\ntitle = \"x\"\n+++\nHola\n{{ contact.phone }}\n")
            .expect_err("template");
        assert_eq!(line, Some(6), "{message}");
        assert!(message.contains("contact.phone"), "{message}");
        let (line, message) =
            parse_article("+++\nlanguage = \"Catalan\"\ntitle = \"x\"\n+++\nHola\n").expect_err("language");
        assert_eq!(line, Some(2), "{message}");
        let (line, message) = parse_article("+++\nlanguage = \"ca\"\ntitle = \"x\"\n+++\n\n").expect_err("empty body");
        assert_eq!(line, Some(5), "{message}");
    }

    #[test]
    fn a_tree_reports_every_broken_file_and_reads_nothing_partial() {
        let dir = tempfile::tempdir().expect("temp dir");
        let articles = dir.path().join("bakery/articles");
        std::fs::create_dir_all(&articles).expect("mkdir");
        std::fs::write(
            articles.join("hours.md"),
            "+++\nlanguage = \"es\"\ntitle = \"Horario\"\n+++\nAbrimos a las 7.\n",
        )
        .expect("write");
        std::fs::write(articles.join("prices.md"), "+++\nlanguage = \"es\"\ntitle = \"Precios\"\n+++\n{{ precio }}\n")
            .expect("write");
        std::fs::write(articles.join("Bad Name.md"), "+++\nlanguage = \"es\"\ntitle = \"x\"\n+++\ny\n").expect("write");
        let problems = read_tree(dir.path()).expect_err("two problems");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.path.ends_with("prices.md") && p.line == Some(5)), "{problems:?}");
        assert!(problems.iter().any(|p| p.path.ends_with("Bad Name.md")), "{problems:?}");

        std::fs::remove_file(articles.join("prices.md")).expect("rm");
        std::fs::remove_file(articles.join("Bad Name.md")).expect("rm");
        let clients = read_tree(dir.path()).expect("valid now");
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].articles[0].0.as_str(), "hours");
        assert!(clients[0].profile.is_none());
    }
}
