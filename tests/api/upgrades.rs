//! Upgrades from every earlier schema, with data the real binary wrote: each `tests/fixtures/schemas/vNN.sql`
//! is a database at schema version NN. The server opens it (running the migrations since), and everything
//! in it is still there and works: conversations and their messages, reports counted from them, knowledge
//! bases (the index rebuilt), the plugin chain deciding new messages. A database from a newer recado is
//! refused with a clear error instead of being misread.
//!
//! How the fixtures are made (`make_schema_fixtures` below, run by hand when a migration is added; it only
//! writes versions that have no fixture yet, so older ones stay as they were made): the demo runs with the
//! example plugin chain and plays customers writing over WhatsApp webhooks to a simulated provider; an
//! assistant replies, sends a file, uses a suggestion and tags a contact. That database, at the current
//! schema, is then projected onto each version: the migrations up to it build an empty schema, and every
//! column that version has is copied from the real one. Two parts are kept beside the dumps rather than in
//! them: plugin components (a few hundred KB each, the same in every version: `components/<sha256>.wasm`,
//! put back by the loader) and media files (`blobs/`). `secrets.key` is the fixtures' own key (it seals
//! the simulated provider's channel secrets and nothing else).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

use crate::helpers::{Binary, get_json, printed, spawn_in, wait_until_processed};

const CHAIN_CLIENT: &str = "dental-gracia";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemas")
}

/// The fixture files, by schema version.
fn fixture_files() -> BTreeMap<i64, PathBuf> {
    std::fs::read_dir(fixtures())
        .expect("tests/fixtures/schemas")
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix('v')?.strip_suffix(".sql")?.parse().ok()?;
            Some((version, entry.path()))
        })
        .collect()
}

/// Builds the data directory `dir` from the fixture `sql`: the database, its plugin components and media
/// put back, the fixtures' key.
fn load_fixture(sql: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("data dir");
    let connection = Connection::open(dir.join("recado.db")).expect("open");
    connection.execute_batch(&std::fs::read_to_string(sql).expect("fixture")).expect("the fixture loads");
    let has_plugins: bool = connection
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'plugins'", [], |row| row.get(0))
        .expect("schema");
    if has_plugins {
        let hashes: Vec<String> = connection
            .prepare("SELECT DISTINCT sha256 FROM plugins")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for hash in hashes {
            let bytes = std::fs::read(fixtures().join(format!("components/{hash}.wasm"))).expect("component");
            assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)), hash, "component {hash}");
            connection
                .execute("UPDATE plugins SET component = ?1 WHERE sha256 = ?2", (&bytes, &hash))
                .expect("put back");
        }
    }
    drop(connection);
    copy_tree(&fixtures().join("blobs"), &dir.join("blobs"));
    std::fs::copy(fixtures().join("secrets.key"), dir.join("secrets.key")).expect("key");
}

fn copy_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else { return };
    std::fs::create_dir_all(to).expect("dir");
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Row counts of the tables that hold the installation's history, where the schema has them.
fn history_counts(connection: &Connection) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in
        ["clients", "contacts", "conversations", "messages", "articles", "plugins", "decisions", "media", "people"]
    {
        let exists: bool = connection
            .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |row| {
                row.get(0)
            })
            .expect("schema");
        if exists {
            let count: i64 =
                connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)).expect("count");
            counts.insert(table, count);
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_earlier_schema_upgrades_with_its_data_and_works() {
    if crate::database::sqlite_only("PostgreSQL's schema starts at version 12, with none earlier to upgrade from") {
        return;
    }
    let files = fixture_files();
    let current = recado::store::snapshot::schema_version();
    // One fixture per schema version since the first, the current one included (it is the next one's
    // earlier schema): a migration added without its fixture fails here.
    assert_eq!(
        files.keys().copied().collect::<Vec<_>>(),
        (1..=current).collect::<Vec<_>>(),
        "run make_schema_fixtures"
    );
    for (version, sql) in files {
        let dir = tempfile::tempdir().expect("temp dir");
        load_fixture(&sql, dir.path());
        let before = {
            let connection = Connection::open(dir.path().join("recado.db")).expect("open");
            let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).expect("version");
            assert_eq!(found, version, "{}", sql.display());
            history_counts(&connection)
        };
        assert!(before["messages"] > 20 && before["conversations"] > 5, "v{version}: {before:?}");

        let app = spawn_in(dir.path(), |_| {}).await;
        let connection = Connection::open(dir.path().join("recado.db")).expect("open");
        let migrated: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).expect("version");
        assert_eq!(migrated, current);
        let integrity: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("check");
        assert_eq!(integrity, "ok", "v{version}");
        let dangling: i64 =
            connection.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| row.get(0)).expect("fk");
        assert_eq!(dangling, 0, "v{version}: rows pointing at nothing");
        let after = history_counts(&connection);
        for (table, count) in &before {
            assert_eq!(after[table], *count, "v{version}: {table} changed in the upgrade");
        }

        // The history reads back: every conversation lists, one opens with its messages.
        let (status, list) = app.get("/api/v1/conversations?limit=200", &app.admin).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {list}");
        let listed = list["conversations"].as_array().expect("conversations");
        assert_eq!(listed.len() as i64, before["conversations"], "v{version}");
        let first = listed[0]["id"].as_str().expect("id");
        let (status, detail) = app.get(&format!("/api/v1/conversations/{first}"), &app.admin).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {detail}");
        assert!(
            detail["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["text"].as_str().is_some_and(|t| !t.is_empty()))),
            "v{version}: {detail}"
        );

        // Reports count what the history holds (from v10 on from counts the upgrade derived).
        let (inbound, outbound, first_day, last_day): (i64, i64, i64, i64) = connection
            .query_row(
                "SELECT sum(direction = 'in'), sum(direction = 'out'), min(created_at) / 86400000, max(created_at) / 86400000 FROM messages",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .expect("totals");
        let day = |days: i64| jiff::Timestamp::from_second(days * 86_400).expect("day").to_string();
        let range = format!("from={}&to={}", day(first_day), day(last_day + 1));
        let (status, report) = app.get(&format!("/api/v1/reports/summary?{range}"), &app.admin).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {report}");
        assert_eq!(report["total"]["messages"], json!({ "inbound": inbound, "outbound": outbound }), "v{version}");

        // Media: the file the assistant sent is served from the blobs (media are kept since v6).
        if version >= 6 {
            let media: String = connection
                .query_row("SELECT id FROM media WHERE sha256 IS NOT NULL", [], |row| row.get(0))
                .expect("media");
            let served =
                app.http.get(format!("{}/api/v1/media/{media}", app.base)).bearer_auth(&app.admin).send().await;
            let served = served.expect("sent");
            assert_eq!(served.status(), StatusCode::OK, "v{version}");
            assert!(served.bytes().await.expect("bytes").starts_with(b"%PDF-1.4 pressupost"), "v{version}");
        }

        // Knowledge bases (kept since v2): the index is rebuilt from the articles the fixture holds.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut suggested = version < 2;
        while !suggested {
            let (_, answer) = app
                .get(&format!("/api/v1/clients/{CHAIN_CLIENT}/suggestions?q=quant%20costa%20una%20neteja"), &app.admin)
                .await;
            suggested = answer["suggestions"].as_array().is_some_and(|list| !list.is_empty());
            assert!(suggested || Instant::now() < deadline, "v{version}: no suggestions: {answer}");
            if !suggested {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // A new message is processed; where the schema had plugins, by the chain the fixture activated.
        let token = app.client_token(CHAIN_CLIENT).await;
        let (status, sent) = app
            .ingest(CHAIN_CLIENT, &token, "after-upgrade", "+34600123123", "És urgent: em podeu enviar la factura?")
            .await;
        assert_eq!(status, StatusCode::CREATED, "v{version}: {sent}");
        let message = sent["message_id"].as_str().expect("id");
        let deadline = Instant::now() + Duration::from_secs(30);
        let wanted = if version >= 4 { "chain" } else { "defaults" };
        loop {
            let (_, decisions) = app.get(&format!("/api/v1/messages/{message}/decisions"), &token).await;
            let sources: Vec<&str> =
                decisions["decisions"].as_array().into_iter().flatten().filter_map(|d| d["source"].as_str()).collect();
            if sources.contains(&wanted) {
                break;
            }
            assert!(Instant::now() < deadline, "v{version}: no {wanted} decision: {decisions}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(connection);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_database_from_a_newer_recado_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let newer = recado::store::snapshot::schema_version() + 1;
    if crate::database::postgres() {
        // A PostgreSQL database a newer recado migrated: refused by the flag's URL, the schema left as it was.
        let url = crate::database::url_for(dir.path());
        let database = crate::database::Database::of(dir.path());
        let create = format!(
            "SET ROLE recado; CREATE TABLE recado_schema (id BIGINT PRIMARY KEY, version BIGINT NOT NULL);
             INSERT INTO recado_schema VALUES (1, {newer}); CREATE TABLE future (x BIGINT);"
        );
        database.batch("", &create).await;
        let error = refused_start(&["--database-url", &url], dir.path(), newer).await;
        assert!(!error.contains(&url), "the URL is not repeated: {error}");
        let tables = database.value("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'", &[]).await;
        assert_eq!(tables.integer(), 2, "not touched");
        return;
    }
    {
        let connection = Connection::open(dir.path().join("recado.db")).expect("open");
        connection.execute_batch(&format!("CREATE TABLE future (x); PRAGMA user_version = {newer};")).expect("newer");
    }
    let digest = |path: &Path| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(path).expect("read")));
    let before = digest(&dir.path().join("recado.db"));
    let error = refused_start(&[], dir.path(), newer).await;
    assert!(error.contains("upgrade recado"), "{error}");
    assert_eq!(digest(&dir.path().join("recado.db")), before, "not touched");
}

/// Starts `recado serve` on `data_dir` with `args`, which must refuse the database of schema version `newer`
/// (exit 2, saying so); returns what it printed.
async fn refused_start(args: &[&str], data_dir: &Path, newer: i64) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(error.contains(&format!("schema version {newer} is newer than this recado supports")), "{error}");
    error
}

/// Writes the fixtures of the schema versions that have none (see the module's docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/schemas; run by hand when a migration is added"]
async fn make_schema_fixtures() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::create_dir_all(fixtures().join("components")).expect("fixtures");
    // The same key for every generation, so older and newer fixtures' sealed secrets open alike.
    if fixtures().join("secrets.key").exists() {
        std::fs::copy(fixtures().join("secrets.key"), data.join("secrets.key")).expect("key");
    }
    // Two businesses of the demo: the one with the plugin chain, and one writing in another script.
    let kb = root.path().join("kb");
    for client in [CHAIN_CLIENT, "lavka-moskva"] {
        copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kb").join(client), &kb.join(client));
    }
    let plugins = crate::helpers::example_plugins();
    let args = [
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--kb",
        kb.to_str().expect("utf-8"),
        "--plugins",
        plugins.to_str().expect("utf-8"),
        "--play",
        "--play-interval-ms",
        "40",
    ];
    let mut demo = Binary::start(&args, &data);
    let mut lines = Vec::new();
    while !lines.iter().any(|line: &String| line.starts_with("played ")) {
        lines.push(demo.line().await);
    }
    let base = printed(&lines, "listening on");
    let admin = printed(&lines, "admin token:");
    let http = reqwest::Client::new();
    wait_until_processed(&data).await;

    // An assistant's day: replies (one from a suggestion), a file, a tag, a closed conversation.
    let list = get_json(&http, &format!("{base}/api/v1/conversations?limit=50"), &admin).await;
    let conversations = list["conversations"].as_array().expect("conversations").clone();
    for (index, conversation) in conversations.iter().take(4).enumerate() {
        let id = conversation["id"].as_str().expect("id");
        let detail = get_json(&http, &format!("{base}/api/v1/conversations/{id}"), &admin).await;
        let inbound = detail["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .rev()
            .find(|m| m["direction"] == "in")
            .expect("a customer message")
            .clone();
        let message = inbound["id"].as_str().expect("id");
        let suggested = get_json(&http, &format!("{base}/api/v1/messages/{message}/suggestions?k=3"), &admin).await;
        let reply =
            suggested["suggestions"][0]["text"].as_str().unwrap_or("Gracias, lo miramos ahora mismo.").to_owned();
        let replied = http
            .post(format!("{base}/api/v1/conversations/{id}/replies"))
            .bearer_auth(&admin)
            .json(&json!({ "text": reply }))
            .send()
            .await;
        assert!(replied.expect("sent").status().is_success());
        if let Some(picked) = suggested["suggestions"][0]["article_id"].as_str() {
            let shown: Vec<&Value> =
                suggested["suggestions"].as_array().expect("list").iter().map(|s| &s["article_id"]).collect();
            let feedback = json!({ "message_id": message, "shown": shown, "picked": picked });
            let answer = http
                .post(format!("{base}/api/v1/suggestions/feedback"))
                .bearer_auth(&admin)
                .json(&feedback)
                .send()
                .await;
            assert!(answer.expect("sent").status().is_success());
        }
        match index {
            0 => {
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"%PDF-1.4 pressupost: neteja 60 EUR".repeat(20))
                        .file_name("pressupost.pdf"),
                );
                let sent = http
                    .post(format!("{base}/api/v1/conversations/{id}/attachments"))
                    .bearer_auth(&admin)
                    .multipart(form)
                    .send()
                    .await;
                assert!(sent.expect("sent").status().is_success());
            }
            1 => {
                let contact = detail["contact"]["id"].as_str().expect("contact");
                let tagged = http
                    .put(format!("{base}/api/v1/contacts/{contact}/tags"))
                    .bearer_auth(&admin)
                    .json(&json!({ "tags": ["vip"] }))
                    .send()
                    .await;
                assert!(tagged.expect("sent").status().is_success());
            }
            2 => {
                let closed =
                    http.post(format!("{base}/api/v1/conversations/{id}/close")).bearer_auth(&admin).send().await;
                assert!(closed.expect("sent").status().is_success());
            }
            _ => {}
        }
    }
    wait_until_processed(&data).await;
    demo.signal(nix::sys::signal::Signal::SIGTERM);
    demo.child.wait().await.expect("stopped");

    if !fixtures().join("secrets.key").exists() {
        std::fs::copy(data.join("secrets.key"), fixtures().join("secrets.key")).expect("key");
    }
    copy_tree(&data.join("blobs"), &fixtures().join("blobs"));
    let _ = std::fs::remove_dir_all(fixtures().join("blobs/tmp"));
    let real = data.join("recado.db");
    let existing = fixture_files();
    for version in 1..=recado::store::snapshot::schema_version() {
        if !existing.contains_key(&version) {
            let sql = project(&real, version);
            std::fs::write(fixtures().join(format!("v{version:02}.sql")), sql).expect("fixture written");
        }
    }
}

/// The database at `real` as schema `version` would hold it, as SQL that rebuilds it.
fn project(real: &Path, version: i64) -> String {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&migrations).expect("migrations").flatten().map(|e| e.path()).collect();
    files.sort();
    let old = Connection::open_in_memory().expect("memory");
    for file in files.iter().take(usize::try_from(version).expect("version")) {
        old.execute_batch(&std::fs::read_to_string(file).expect("migration")).expect("migration applies");
    }
    // Triggers would count rows twice while they are copied; they are part of the dump all the same.
    let triggers: Vec<String> = strings(&old, "SELECT name FROM sqlite_master WHERE type = 'trigger'");
    let trigger_sql: Vec<String> = strings(&old, "SELECT sql FROM sqlite_master WHERE type = 'trigger'");
    for trigger in &triggers {
        old.execute_batch(&format!("DROP TRIGGER {trigger}")).expect("drop trigger");
    }
    old.execute("ATTACH DATABASE ?1 AS real", [real.to_str().expect("utf-8")]).expect("attach");
    let tables = strings(
        &old,
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    );
    for table in &tables {
        let columns = strings(&old, &format!("SELECT name FROM pragma_table_info('{table}')")).join(", ");
        old.execute_batch(&format!("INSERT INTO main.{table} ({columns}) SELECT {columns} FROM real.{table}"))
            .unwrap_or_else(|e| panic!("v{version}: copying {table}: {e}"));
    }
    // The components are kept beside the dumps, once.
    if tables.iter().any(|table| table == "plugins") {
        let components: Vec<(String, Vec<u8>)> = old
            .prepare("SELECT DISTINCT sha256, component FROM plugins")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for (hash, bytes) in components {
            std::fs::write(fixtures().join(format!("components/{hash}.wasm")), bytes).expect("component");
        }
        old.execute_batch("UPDATE plugins SET component = X''").expect("components out");
    }
    old.execute_batch("DETACH DATABASE real").expect("detach");

    let mut sql = format!(
        "-- recado database at schema version {version}, made by make_schema_fixtures (tests/api/upgrades.rs).\n\
         -- Plugin components are in components/<sha256>.wasm and media in blobs/: the loader puts them back.\n\
         PRAGMA foreign_keys = OFF;\nBEGIN;\n"
    );
    for (name, create) in pairs(
        &old,
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    ) {
        sql.push_str(&create);
        sql.push_str(";\n");
        let mut statement = old.prepare(&format!("SELECT * FROM {name}")).expect("select");
        let width = statement.column_count();
        let mut rows = statement.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            let values: Vec<String> = (0..width).map(|index| literal(row.get_ref(index).expect("value"))).collect();
            sql.push_str(&format!("INSERT INTO {name} VALUES ({});\n", values.join(", ")));
        }
    }
    for (_, create) in
        pairs(&old, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY rowid")
    {
        sql.push_str(&create);
        sql.push_str(";\n");
    }
    for create in trigger_sql {
        sql.push_str(&create);
        sql.push_str(";\n");
    }
    sql.push_str(&format!("PRAGMA user_version = {version};\nCOMMIT;\n"));
    sql
}

fn strings(connection: &Connection, query: &str) -> Vec<String> {
    connection
        .prepare(query)
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn pairs(connection: &Connection, query: &str) -> Vec<(String, String)> {
    connection
        .prepare(query)
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// A value as an SQL literal.
fn literal(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(integer) => integer.to_string(),
        ValueRef::Real(real) => format!("{real:?}"),
        ValueRef::Text(text) => format!("'{}'", String::from_utf8_lossy(text).replace('\'', "''")),
        ValueRef::Blob(blob) => format!("X'{}'", hex::encode(blob)),
    }
}
