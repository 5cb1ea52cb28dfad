//! The demo: clients read from `kb/<slug>/client.toml`, people to sign in as, and tokens to try the API
//! with.

use std::path::Path;

use crate::domain::{ClientSlug, Email, Role};
use crate::store::{Db, NewPerson, PersonRef};

/// Tokens created for the demo.
#[derive(Debug)]
pub struct DemoTokens {
    /// An admin token.
    pub admin: String,
    /// An assistant token (named "Demo Assistant").
    pub assistant: String,
    /// A client token for the first client, with its slug.
    pub client: Option<(ClientSlug, String)>,
    /// People to sign in as: who, what they see, and their password (generated at each start).
    pub people: Vec<DemoPerson>,
}

/// A demo person and how to sign in as them.
#[derive(Debug, Clone)]
pub struct DemoPerson {
    /// Their email address.
    pub email: String,
    /// Their role and what they see, in words.
    pub sees: String,
    /// Their password.
    pub password: String,
}

/// What `recado demo` prints once it listens at `url`: the clients, the tokens, and requests to try.
pub fn banner(url: &str, clients: &[ClientSlug], tokens: &DemoTokens) -> String {
    let names: Vec<&str> = clients.iter().map(ClientSlug::as_str).collect();
    let mut text = format!(
        "demo clients: {}\nadmin token:     {}\nassistant token: {}\n",
        names.join(", "),
        tokens.admin,
        tokens.assistant
    );
    if let Some((slug, token)) = &tokens.client {
        text.push_str(&format!("client token ({slug}): {token}\n\ntry:\n"));
        text.push_str(&format!(
            "  curl -s -X POST {url}/api/v1/clients/{slug}/messages -H 'Authorization: Bearer {token}' \\\n    \
             -H 'Content-Type: application/json' -d '{{\"external_id\":\"m1\",\"from\":{{\"handle\":\"+34600111222\",\
             \"name\":\"Núria\"}},\"text\":\"Hola!\"}}'\n"
        ));
        text.push_str(&format!(
            "  curl -s {url}/api/v1/conversations -H 'Authorization: Bearer {}'\n",
            tokens.assistant
        ));
    }
    if !tokens.people.is_empty() {
        text.push_str(&format!("\nsign in to the console at {url}/ (or POST /api/v1/session) as:\n"));
        for person in &tokens.people {
            text.push_str(&format!("  {:<28} {:<26} {}\n", person.email, person.password, person.sees));
        }
    }
    text
}

/// Creates (or, on a later start, gives a new password to) a demo person.
async fn demo_person(
    db: &Db,
    email: &str,
    name: &str,
    role: Role,
    client: Option<ClientSlug>,
    sees: String,
) -> anyhow::Result<DemoPerson> {
    let password = crate::people::generate_password();
    let hashing = password.clone();
    let hash = tokio::task::spawn_blocking(move || crate::people::hash_password(&hashing)).await??;
    let address = Email::parse(email)?;
    let person = NewPerson { email: address.clone(), name: name.into(), role, client, password_hash: hash.clone() };
    match db.create_person(person, "demo".into()).await {
        Ok(_) => {}
        Err(crate::store::Error::Conflict(_)) => {
            db.set_password(PersonRef::Email(address), hash, "demo".into(), None).await?;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(DemoPerson { email: email.into(), sees, password })
}

/// The demo's people: an admin, two assistants serving different clients (the first client and every other
/// one; the second client and every other one), and someone of the first client.
async fn seed_people(db: &Db, slugs: &[ClientSlug]) -> anyhow::Result<Vec<DemoPerson>> {
    let mut people = vec![
        demo_person(db, "admin@demo.recado.dev", "Alba (admin)", Role::Admin, None, "admin: everything".into()).await?,
    ];
    for (index, (email, name)) in
        [("ana@demo.recado.dev", "Ana"), ("bruno@demo.recado.dev", "Bruno")].into_iter().enumerate()
    {
        let served: Vec<ClientSlug> = slugs.iter().skip(index).step_by(2).cloned().collect();
        let names: Vec<&str> = served.iter().map(ClientSlug::as_str).collect();
        let person =
            demo_person(db, email, name, Role::Assistant, None, format!("assistant: {}", names.join(", "))).await?;
        let id = db.person(PersonRef::Email(Email::parse(email)?)).await?.id;
        db.set_served_clients(id, served, "demo".into()).await?;
        people.push(person);
    }
    if let Some(first) = slugs.first() {
        let email = format!("owner@{first}.demo.recado.dev");
        people.push(
            demo_person(db, &email, "Owner", Role::Client, Some(first.clone()), format!("client: {first}")).await?,
        );
    }
    Ok(people)
}

/// Imports the demo clients and their knowledge bases from `kb_dir`, creates one token of each role and the
/// demo's people (new passwords at each start).
///
/// # Errors
/// Loading the files or writing the store fails.
pub async fn seed(db: &Db, kb_dir: &Path) -> anyhow::Result<(Vec<ClientSlug>, DemoTokens)> {
    let imported = crate::kb::import_dir(db, kb_dir, "demo", |_, _| {}).await?;
    let slugs: Vec<ClientSlug> = imported.into_iter().map(|(slug, _)| slug).collect();
    let admin = db.create_token(Role::Admin, None, "Demo Admin".into()).await?.token;
    let assistant = db.create_token(Role::Assistant, None, "Demo Assistant".into()).await?.token;
    let client = match slugs.first() {
        Some(slug) => {
            let token = db.create_token(Role::Client, Some(slug.clone()), format!("{slug} owner")).await?.token;
            Some((slug.clone(), token))
        }
        None => None,
    };
    let people = seed_people(db, &slugs).await?;
    Ok((slugs, DemoTokens { admin, assistant, client, people }))
}

/// The example chain, in order: `(name, component file stem)`, each configured with its `config.json`.
pub const EXAMPLE_CHAIN: [(&str, &str); 3] =
    [("business-hours-ack", "business_hours_ack"), ("keyword-router", "keyword_router"), ("escalation", "escalation")];

/// Admits and activates the example chain of `dir` (an `example-plugins` directory with the components
/// built) for `client`, as uploads through the API would. Versions already installed are left as they are.
///
/// # Errors
/// A component or configuration cannot be read, is refused, or the store fails.
pub async fn install_example_chain(
    rules: &crate::plugins::rules::Rules,
    db: &Db,
    client: &ClientSlug,
    dir: &Path,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    for (name, stem) in EXAMPLE_CHAIN {
        let path = dir.join(format!("target/wasm32-wasip2/release/{stem}.wasm"));
        let component = std::fs::read(&path)
            .with_context(|| format!("reading {} (build the example plugins first)", path.display()))?;
        let config = std::fs::read_to_string(dir.join(name).join("config.json"))?;
        let admitted = rules
            .admit(&component, rules.settings().max_component_bytes)
            .await
            .with_context(|| path.display().to_string())?;
        let plugin = crate::store::NewPlugin {
            name: name.to_owned(),
            version: "1".into(),
            contract: admitted.plugin.contract().to_owned(),
            sha256: admitted.sha256,
            component,
            config: serde_json::from_str::<serde_json::Value>(&config)?.to_string(),
        };
        let record = match db.insert_plugin(client.clone(), plugin, "demo".into()).await {
            Ok(record) => record,
            Err(crate::store::Error::Conflict(_)) => continue,
            Err(error) => return Err(error.into()),
        };
        db.set_plugin_state(client.clone(), record.id, crate::domain::PluginState::Active, "demo".into()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ClientSlug, DemoTokens, banner};

    #[test]
    fn the_banner_names_the_tokens_and_a_request_that_can_be_pasted() {
        let slug = ClientSlug::parse("dental-gracia").expect("slug");
        let tokens = DemoTokens {
            admin: "rcd_a".into(),
            assistant: "rcd_b".into(),
            client: Some((slug.clone(), "rcd_c".into())),
            people: vec![super::DemoPerson {
                email: "ana@demo.recado.dev".into(),
                sees: "assistant: dental-gracia".into(),
                password: "pw".into(),
            }],
        };
        let banner = banner("http://127.0.0.1:8080", &[slug], &tokens);
        let lines: Vec<&str> = banner.lines().collect();
        assert_eq!(lines[..3], ["demo clients: dental-gracia", "admin token:     rcd_a", "assistant token: rcd_b"]);
        assert_eq!(lines[3], "client token (dental-gracia): rcd_c");
        assert_eq!(
            lines[6..8],
            [
                "  curl -s -X POST http://127.0.0.1:8080/api/v1/clients/dental-gracia/messages -H 'Authorization: Bearer rcd_c' \\",
                "    -H 'Content-Type: application/json' -d '{\"external_id\":\"m1\",\"from\":{\"handle\":\"+34600111222\",\"name\":\"Núria\"},\"text\":\"Hola!\"}'",
            ]
        );
        let sign_in = lines.iter().position(|line| line.starts_with("sign in")).expect("the people");
        let ana: Vec<&str> = lines[sign_in + 1].split_whitespace().collect();
        assert_eq!(ana, ["ana@demo.recado.dev", "pw", "assistant:", "dental-gracia"]);
    }

    use std::path::Path;

    use crate::kb::files::read_tree;

    #[test]
    fn the_shipped_demo_knowledge_bases_all_read_without_problems() {
        let clients = read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kb")).expect("demo files are valid");
        let slugs: Vec<_> = clients.iter().map(|client| client.slug.as_str()).collect();
        assert_eq!(
            slugs,
            ["dental-gracia", "lavka-moskva", "northbridge-consulting", "panaderia-palermo", "studio-legale-brera"]
        );
        let languages: std::collections::BTreeSet<_> = clients
            .iter()
            .flat_map(|client| client.profile.as_ref().expect("client.toml").languages.iter().cloned())
            .collect();
        assert_eq!(languages.into_iter().collect::<Vec<_>>(), ["ca", "en", "es", "it", "ru"]);
    }

    #[test]
    fn every_demo_article_is_in_canonical_form_and_each_client_has_twenty() {
        let kb = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
        for client in read_tree(&kb).expect("demo files are valid") {
            assert!(client.articles.len() >= 20, "{} has {} articles", client.slug, client.articles.len());
            for (id, content) in &client.articles {
                let path = kb.join(client.slug.as_str()).join("articles").join(format!("{id}.md"));
                let text = std::fs::read_to_string(&path).expect("readable");
                assert_eq!(crate::kb::files::write_article(content), text, "{} is not canonical", path.display());
            }
        }
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
        let problems = read_tree(dir.path()).expect_err("broken file");
        let text = problems[0].to_string();
        assert!(text.contains("bakery/client.toml:3:") || text.contains("bakery/client.toml:4:"), "{text}");

        std::fs::write(
            dir.path().join("bakery/client.toml"),
            "name = \"Bakery\"\ntimezone = \"Mars/Base\"\nlanguages = [\"it\"]\n",
        )
        .expect("write");
        let text = read_tree(dir.path()).expect_err("invalid profile")[0].to_string();
        assert!(text.contains("bakery/client.toml") && text.contains("timezone"), "{text}");
    }
}
