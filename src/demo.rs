//! The demo: clients read from `kb/<slug>/client.toml`, and tokens to try the API with.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::domain::{ClientProfile, ClientSlug, Role};
use crate::store::Db;

/// Reads every `kb/<slug>/client.toml` under `kb_dir`, sorted by slug. The directory name is the slug.
///
/// # Errors
/// The directory cannot be read, a directory name is not a valid slug, or a file is not a valid profile
/// (the error names the file and the problem, with its line for TOML errors).
pub fn load_clients(kb_dir: &Path) -> anyhow::Result<Vec<(ClientSlug, ClientProfile)>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(kb_dir)
        .with_context(|| format!("reading {}", kb_dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("client.toml").is_file())
        .collect();
    dirs.sort();
    let mut clients = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let file = dir.join("client.toml");
        let name = dir.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let slug =
            ClientSlug::parse(name).with_context(|| format!("{}: the directory name is the slug", dir.display()))?;
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let profile: ClientProfile = toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
        profile.validate().with_context(|| format!("{}", file.display()))?;
        clients.push((slug, profile));
    }
    Ok(clients)
}

/// Tokens created for the demo.
#[derive(Debug)]
pub struct DemoTokens {
    /// An admin token.
    pub admin: String,
    /// An assistant token (named "Demo Assistant").
    pub assistant: String,
    /// A client token for the first client, with its slug.
    pub client: Option<(ClientSlug, String)>,
}

/// Creates or updates the demo clients and creates one token of each role.
///
/// # Errors
/// Loading the files or writing the store fails.
pub async fn seed(db: &Db, kb_dir: &Path) -> anyhow::Result<(Vec<ClientSlug>, DemoTokens)> {
    let clients = load_clients(kb_dir)?;
    let mut slugs = Vec::with_capacity(clients.len());
    for (slug, profile) in clients {
        db.upsert_client(slug.clone(), profile, "demo".into()).await?;
        slugs.push(slug);
    }
    let admin = db.create_token(Role::Admin, None, "Demo Admin".into()).await?.token;
    let assistant = db.create_token(Role::Assistant, None, "Demo Assistant".into()).await?.token;
    let client = match slugs.first() {
        Some(slug) => {
            let token = db.create_token(Role::Client, Some(slug.clone()), format!("{slug} owner")).await?.token;
            Some((slug.clone(), token))
        }
        None => None,
    };
    Ok((slugs, DemoTokens { admin, assistant, client }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_demo_clients_all_load() {
        let clients = load_clients(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kb")).expect("demo clients load");
        let slugs: Vec<_> = clients.iter().map(|(slug, _)| slug.as_str()).collect();
        assert_eq!(
            slugs,
            ["dental-gracia", "lavka-moskva", "northbridge-consulting", "panaderia-palermo", "studio-legale-brera"]
        );
        let languages: std::collections::BTreeSet<_> =
            clients.iter().flat_map(|(_, profile)| profile.languages.iter().cloned()).collect();
        assert_eq!(languages.into_iter().collect::<Vec<_>>(), ["ca", "en", "es", "it", "ru"]);
    }

    #[test]
    fn a_broken_client_file_is_reported_with_its_path_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("bakery")).expect("mkdir");
        std::fs::write(
            dir.path().join("bakery/client.toml"),
            "name = \"Bakery\"\ntimezone = \"Europe/Rome\"\nlanguages = [\"it\"\n",
        )
        .expect("write");
        let error = format!("{:#}", load_clients(dir.path()).expect_err("broken file"));
        assert!(error.contains("bakery/client.toml"), "{error}");
        assert!(error.contains("line 3"), "{error}");

        std::fs::write(
            dir.path().join("bakery/client.toml"),
            "name = \"Bakery\"\ntimezone = \"Mars/Base\"\nlanguages = [\"it\"]\n",
        )
        .expect("write");
        let error = format!("{:#}", load_clients(dir.path()).expect_err("invalid profile"));
        assert!(error.contains("bakery/client.toml") && error.contains("timezone"), "{error}");
    }
}
