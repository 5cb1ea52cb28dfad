//! Moving an installation from the embedded SQLite database to PostgreSQL with the real binary (`recado
//! export`, then `recado import` into a new database): every row of every table arrives, and the server on
//! PostgreSQL serves the same installation (its tokens, conversations, decisions, reports, articles, channel
//! secrets and plugin chain). A file cut short, or an import into a database that holds data, changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::database::{Database, postgres_only, url_for};
use crate::helpers::{Binary, Demo, get_json, json_answer, output_text as text, run_recado as recado};

const CLIENT: &str = "dental-gracia";
const TELEGRAM_SECRET: &str = "tg-move-secret-0123456789";

/// Every table of the SQLite database at `data_dir` with its number of rows.
fn sqlite_counts(data_dir: &Path) -> Vec<(String, i64)> {
    let connection = rusqlite::Connection::open(data_dir.join("recado.db")).expect("open");
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("tables")
        .query_map([], |row| row.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    tables
        .into_iter()
        .map(|table| {
            let count =
                connection.query_row(&format!("SELECT COUNT(*) FROM {}", counted(&table)), [], |row| row.get(0));
            (table, count.expect("count"))
        })
        .collect()
}

/// What is counted of `table`: its rows, but for the message counts the combinations with a message (SQLite
/// keeps a zero where a message moved from one combination to another; counted again from the messages, that
/// combination is simply absent).
fn counted(table: &str) -> String {
    match table {
        "message_counts" => "message_counts WHERE count > 0".to_owned(),
        table => table.to_owned(),
    }
}

/// A chain decision for `message`, once the server has made it.
async fn chain_decision(http: &reqwest::Client, base: &str, token: &str, message: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let decisions = get_json(http, &format!("{base}/api/v1/messages/{message}/decisions"), token).await;
        if let Some(chain) = decisions["decisions"].as_array().and_then(|d| d.iter().find(|d| d["source"] == "chain")) {
            return chain.clone();
        }
        assert!(Instant::now() < deadline, "no chain decision: {decisions}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_moves_from_sqlite_to_postgresql_with_everything_it_holds() {
    if postgres_only("the move goes to PostgreSQL") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    // The installation on SQLite: the demo's clients and knowledge bases, the example chain deciding, a
    // channel with sealed secrets, customers' messages, an assistant's reply.
    let Demo { mut server, base, admin, token } = Demo::start(&data, CLIENT, TELEGRAM_SECRET).await;
    let http = reqwest::Client::new();
    let (mut last, mut last_conversation) = (String::new(), String::new());
    for n in 0..20 {
        let stored: Value = json_answer(
            http.post(format!("{base}/api/v1/clients/{CLIENT}/messages")).bearer_auth(&token).json(&json!({
                "external_id": format!("before-{n}"), "from": { "handle": format!("+3460000{n:04}") },
                "text": "És urgent: em podeu enviar la factura?"
            })),
        )
        .await;
        last = stored["message_id"].as_str().expect("id").to_owned();
        last_conversation = stored["conversation_id"].as_str().expect("id").to_owned();
    }
    chain_decision(&http, &base, &token, &last).await;
    let replied = http
        .post(format!("{base}/api/v1/conversations/{last_conversation}/replies"))
        .bearer_auth(&admin)
        .json(&json!({ "text": "Us l'enviem ara mateix." }))
        .send()
        .await
        .expect("sent");
    assert_eq!(replied.status(), reqwest::StatusCode::CREATED);
    let range = "from=2020-01-01&to=2040-01-01";
    let report_before = get_json(&http, &format!("{base}/api/v1/reports/summary?{range}"), &admin).await;
    let inbox_before = get_json(&http, &format!("{base}/api/v1/conversations?limit=100"), &token).await;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.child.wait().await.expect("stopped");
    let before = sqlite_counts(&data);

    // Export: a file only its owner can read.
    let file = root.path().join("recado.export");
    let (file_arg, data_arg) = (file.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let exported = recado(&["export", "--out", file_arg, "--data-dir", data_arg]).await;
    assert!(exported.status.success(), "export failed: {}", text(&exported.stderr));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o600);
    let again = recado(&["export", "--out", file_arg, "--data-dir", data_arg]).await;
    assert!(!again.status.success(), "an existing file is not overwritten");

    // A file cut short is refused, and the database it was going into keeps nothing of it.
    let whole = std::fs::read_to_string(&file).expect("export");
    let cut = root.path().join("cut.export");
    let lines_kept = whole.lines().count() - 1;
    std::fs::write(&cut, whole.lines().take(lines_kept).map(|line| format!("{line}\n")).collect::<String>())
        .expect("cut");
    let target = url_for(&root.path().join("pg"));
    let imported =
        recado(&["import", cut.to_str().expect("utf-8"), "--data-dir", data_arg, "--database-url", &target]).await;
    assert!(!imported.status.success(), "a file cut short is refused");
    assert!(text(&imported.stderr).contains("cut short"), "{}", text(&imported.stderr));
    let postgres = Database::of(&root.path().join("pg"));
    assert_eq!(postgres.counts(&["clients", "messages"]).await, [0, 0], "nothing of it was kept");

    // The whole file goes in; a second import into the same database is refused.
    let imported = recado(&["import", file_arg, "--data-dir", data_arg, "--database-url", &target]).await;
    assert!(imported.status.success(), "import failed: {}", text(&imported.stderr));
    assert!(text(&imported.stdout).contains("imported"), "{}", text(&imported.stdout));
    let twice = recado(&["import", file_arg, "--data-dir", data_arg, "--database-url", &target]).await;
    assert!(!twice.status.success());
    assert!(text(&twice.stderr).contains("already holds data"), "{}", text(&twice.stderr));

    // Every table's rows arrived (the claims on work in progress excepted; the message counts were counted
    // again from the messages, to the same numbers).
    for (table, rows) in &before {
        if table == "processing_leases" {
            continue;
        }
        let moved = postgres.value(&format!("SELECT COUNT(*) FROM {}", counted(table)), &[]).await.integer();
        assert_eq!(moved, *rows, "{table}: {rows} rows in SQLite, {moved} in PostgreSQL");
    }
    assert!(before.iter().any(|(table, rows)| table == "decisions" && *rows >= 20), "{before:?}");
    let total = "SELECT CAST(SUM(count) AS BIGINT) FROM message_counts";
    let sqlite_total: i64 = rusqlite::Connection::open(data.join("recado.db"))
        .expect("open")
        .query_row(total, [], |row| row.get(0))
        .expect("sum");
    assert_eq!(postgres.value(total, &[]).await.integer(), sqlite_total, "the same message counts");

    // The server on PostgreSQL serves the same installation.
    let env = [("RUST_LOG", "error"), ("RECADO__DATABASE__URL", target.as_str())];
    let (mut server, base) = Binary::serve_with(&data, &env, None).await;
    let ids = |inbox: &Value| -> Vec<Value> {
        inbox["conversations"].as_array().expect("list").iter().map(|c| c["id"].clone()).collect()
    };
    let inbox_after = get_json(&http, &format!("{base}/api/v1/conversations?limit=100"), &token).await;
    assert!(!ids(&inbox_before).is_empty());
    assert_eq!(ids(&inbox_after), ids(&inbox_before), "the client's token opens the same inbox");
    let report_after = get_json(&http, &format!("{base}/api/v1/reports/summary?{range}"), &admin).await;
    assert_eq!(report_after["total"], report_before["total"], "the same report");
    let old = get_json(&http, &format!("{base}/api/v1/messages/{last}/decisions"), &token).await;
    assert!(old["decisions"].as_array().is_some_and(|d| d.iter().any(|d| d["source"] == "chain")), "{old}");
    // The plugin chain, compiled again from the stored components, decides a new message.
    let stored: Value =
        json_answer(http.post(format!("{base}/api/v1/clients/{CLIENT}/messages")).bearer_auth(&token).json(&json!({
            "external_id": "after-the-move", "from": { "handle": "+34600111222" },
            "text": "És urgent: em podeu enviar la factura?"
        })))
        .await;
    let chain = chain_decision(&http, &base, &token, stored["message_id"].as_str().expect("id")).await;
    assert_eq!(chain["decision"]["queue"], "billing", "{chain}");
    // Suggestions from the moved articles.
    let url = format!("{base}/api/v1/clients/{CLIENT}/suggestions?q=quant%20costa%20una%20neteja");
    let suggested = get_json(&http, &url, &admin).await;
    assert!(suggested["suggestions"].as_array().is_some_and(|list| !list.is_empty()), "{suggested}");
    // The channel's sealed secret opens with the same key.
    let update = json!({ "update_id": 78, "message": { "message_id": 9, "date": 1, "chat": { "id": 4242, "type": "private" },
        "from": { "id": 4242, "is_bot": false, "first_name": "Giulia" }, "text": "Bon dia" } });
    let webhook = format!("{base}/webhooks/telegram/{CLIENT}");
    let wrong = http.post(&webhook).header("x-telegram-bot-api-secret-token", "not-it").json(&update).send().await;
    assert_eq!(wrong.expect("sent").status(), reqwest::StatusCode::UNAUTHORIZED);
    let right =
        http.post(&webhook).header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET).json(&update).send().await;
    assert_eq!(right.expect("sent").status(), reqwest::StatusCode::OK);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.child.wait().await.expect("stopped");
}
