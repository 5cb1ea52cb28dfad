//! One client's knowledge base as a zip archive of the `kb/` file layout, for the console's download and
//! upload: `kb/<client>/client.toml` and `kb/<client>/articles/<id>.md`, exactly the files
//! `recado kb export` writes, so an archive unzipped beside a checkout is a directory `recado kb import`
//! reads, and the reverse.
//!
//! An upload is read in memory and checked whole before anything is stored, as an import of a directory
//! is: every problem is reported with its file and line, and a broken archive imports nothing. The archive
//! is someone else's file, so its size is bounded as read (entries, bytes per file, bytes in all),
//! whatever its headers claim, and no name in it is ever used as a path on this machine.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use zip::write::SimpleFileOptions;

use super::files::{self, ClientFiles, Problem};
use crate::domain::{ArticleContent, ArticleId, ClientProfile, ClientSlug};

/// Most entries an archive may hold (a knowledge base of this many articles is far past any real one).
const MAX_ENTRIES: usize = 20_000;

/// Longest file in an archive, uncompressed: an article is a few kilobytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Most bytes an archive may unpack to in all.
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// The folder every path in an archive starts with.
const ROOT: &str = "kb";

/// The archive of one client's profile and articles.
///
/// # Errors
/// Writing the archive failed (it is written in memory, so only on a bug in the zip writer).
pub fn write(
    slug: &ClientSlug,
    profile: &ClientProfile,
    articles: &[(ArticleId, ArticleContent)],
) -> std::io::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let base = format!("{ROOT}/{slug}");
    zip.start_file(format!("{base}/client.toml"), options).map_err(std::io::Error::other)?;
    zip.write_all(files::write_profile(profile)?.as_bytes())?;
    for (id, content) in articles {
        zip.start_file(format!("{base}/articles/{id}.md"), options).map_err(std::io::Error::other)?;
        zip.write_all(files::write_article(content).as_bytes())?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

/// Reads an archive meant for client `slug`: its profile (if the archive has one) and its articles. Paths
/// may start with `kb/` or directly with the client's folder.
///
/// # Errors
/// Every problem found: not a zip, too big, a file of another client or outside the layout, a broken file.
pub fn read(bytes: &[u8], slug: &ClientSlug) -> Result<ClientFiles, Vec<Problem>> {
    let whole = |message: String| vec![Problem { path: PathBuf::from("(archive)"), line: None, message }];
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|error| whole(format!("not a zip archive: {error}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(whole(format!("{} files; an archive may hold at most {MAX_ENTRIES}", archive.len())));
    }
    let mut problems = Vec::new();
    let mut profile = None;
    let mut articles = Vec::new();
    let mut files = 0;
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = match archive.by_index(index) {
            Ok(entry) => entry,
            Err(error) => {
                problems.push(Problem { path: PathBuf::from("(archive)"), line: None, message: error.to_string() });
                continue;
            }
        };
        let name = entry.name().map(|name| name.into_owned()).unwrap_or_default();
        let problem = |message: String| Problem { path: PathBuf::from(&name), line: None, message };
        if entry.is_dir() {
            continue;
        }
        let Some(place) = place_of(&name, slug) else {
            problems.push(problem(format!(
                "not part of this client's knowledge base: files go in {ROOT}/{slug}/client.toml and \
                 {ROOT}/{slug}/articles/<id>.md"
            )));
            continue;
        };
        // Read at most one byte past the limit: the header's size is the sender's claim, not a fact.
        let mut data = Vec::new();
        if let Err(error) = (&mut entry).take(MAX_FILE_BYTES + 1).read_to_end(&mut data) {
            problems.push(problem(format!("cannot read: {error}")));
            continue;
        }
        if data.len() as u64 > MAX_FILE_BYTES {
            problems.push(problem(format!("larger than {MAX_FILE_BYTES} bytes")));
            continue;
        }
        total += data.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(whole(format!("unpacks to more than {MAX_TOTAL_BYTES} bytes")));
        }
        let Ok(text) = String::from_utf8(data) else {
            problems.push(problem("not UTF-8 text".into()));
            continue;
        };
        files += 1;
        let parsed = match place {
            Place::Profile => files::parse_profile(&text).map(|found| profile = Some(found)),
            Place::Article(id) => files::parse_article(&text).map(|content| articles.push((id, content))),
        };
        if let Err((line, message)) = parsed {
            problems.push(Problem { path: PathBuf::from(&name), line, message });
        }
    }
    if problems.is_empty() { Ok(ClientFiles { slug: slug.clone(), profile, articles, files }) } else { Err(problems) }
}

/// What a file of the layout is.
enum Place {
    Profile,
    Article(ArticleId),
}

/// Where `name` belongs in `slug`'s knowledge base, if it does.
fn place_of(name: &str, slug: &ClientSlug) -> Option<Place> {
    let name = name.strip_prefix(&format!("{ROOT}/")).unwrap_or(name);
    let rest = name.strip_prefix(slug.as_str())?.strip_prefix('/')?;
    if rest == "client.toml" {
        return Some(Place::Profile);
    }
    let file = rest.strip_prefix("articles/")?.strip_suffix(".md")?;
    ArticleId::parse(file).ok().map(Place::Article)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            zip.start_file(*name, SimpleFileOptions::default()).expect("start");
            zip.write_all(data).expect("write");
        }
        zip.finish().expect("finish").into_inner()
    }

    fn slug(text: &str) -> ClientSlug {
        ClientSlug::parse(text).expect("slug")
    }

    const ARTICLE: &[u8] = b"+++\nlanguage = \"ca\"\ntitle = \"Horari\"\n+++\nObrim de 9 a 14.\n";

    #[test]
    fn what_is_written_reads_back() {
        let content = files::parse_article(std::str::from_utf8(ARTICLE).expect("utf-8")).expect("valid");
        let id = ArticleId::parse("horari").expect("id");
        let profile: ClientProfile =
            toml::from_str("name = \"Forn Vell\"\ntimezone = \"Europe/Madrid\"\nlanguages = [\"ca\"]\n").expect("toml");
        let bytes = write(&slug("forn"), &profile, &[(id.clone(), content.clone())]).expect("written");
        let read = read(&bytes, &slug("forn")).expect("valid");
        assert_eq!(read.articles, vec![(id, content)]);
        assert_eq!(read.profile.expect("profile").name, "Forn Vell");
        assert_eq!(read.files, 2);
    }

    #[test]
    fn paths_may_start_at_the_client_folder() {
        let read = read(&zip_of(&[("forn/articles/horari.md", ARTICLE)]), &slug("forn")).expect("valid");
        assert_eq!(read.articles.len(), 1);
        assert!(read.profile.is_none());
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_read() {
        let broken = b"+++\nlanguage = \"ca\"\ntitle = \"x\"\n+++\nHola {{ contact.phone }}\n";
        let problems = read(
            &zip_of(&[
                ("kb/forn/articles/horari.md", ARTICLE),
                ("kb/other/articles/secret.md", ARTICLE),
                ("kb/forn/../../etc/passwd", b"x"),
                ("kb/forn/articles/broken.md", broken),
                ("kb/forn/articles/latin1.md", b"\xe9"),
            ]),
            &slug("forn"),
        )
        .expect_err("broken");
        let described: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{described:?}");
        assert!(described[0].starts_with("kb/other/articles/secret.md: not part of"), "{described:?}");
        assert!(described[1].starts_with("kb/forn/../../etc/passwd: not part of"), "{described:?}");
        assert!(described[2].starts_with("kb/forn/articles/broken.md:5: body:"), "{described:?}");
        assert!(described[3].contains("not UTF-8"), "{described:?}");
    }

    #[test]
    fn a_file_bigger_than_it_claims_is_cut_off_and_refused() {
        let big = vec![b'a'; (MAX_FILE_BYTES + 10) as usize];
        let problems = read(&zip_of(&[("kb/forn/articles/big.md", &big)]), &slug("forn")).expect_err("too big");
        assert!(problems[0].message.contains("larger than"), "{problems:?}");
        let problems = read(b"not a zip", &slug("forn")).expect_err("not a zip");
        assert!(problems[0].message.starts_with("not a zip archive"), "{problems:?}");
    }
}
