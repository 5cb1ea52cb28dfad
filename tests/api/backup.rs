//! Backups that restore, with the real binary: a backup taken while customers keep writing, the machine
//! lost, the backup restored into a new data directory. Everything acknowledged before the backup is there,
//! and the restored server suggests replies (its index rebuilt), runs the client's plugins (compiled again
//! from the stored components), opens its channel secrets (with the key kept apart) and serves its media.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Binary, Demo, get_json, json_answer, output_text as text, run_recado as recado};

const CLIENT: &str = "dental-gracia";
const TELEGRAM_SECRET: &str = "tg-backup-secret-0123456789";

/// Each acknowledged message's number, with when its acknowledgement arrived.
type Acknowledged = Arc<Mutex<Vec<(usize, Instant)>>>;

/// Customers writing to the client, four at a time, until `stop`; each acknowledged message with when its
/// acknowledgement arrived.
fn customers_writing(
    base: String,
    token: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Acknowledged, tokio::task::JoinHandle<()>) {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&acknowledged);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    let task = tokio::spawn(async move {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writers = Vec::new();
        for _ in 0..4 {
            let (http, base, token, stop, next, record) =
                (http.clone(), base.clone(), token.clone(), Arc::clone(&stop), Arc::clone(&next), Arc::clone(&record));
            writers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let body = json!({
                        "external_id": format!("load-{index}"),
                        "from": { "handle": format!("+3460000{:04}", index % 50) },
                        "text": format!("Hola, tenéis hora para una limpieza? ({index})"),
                    });
                    let sent = http
                        .post(format!("{base}/api/v1/clients/{CLIENT}/messages"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    if sent.is_ok_and(|response| response.status().is_success()) {
                        record.lock().expect("lock").push((index, Instant::now()));
                    }
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
    });
    (acknowledged, task)
}

/// The external ids of the client's inbound messages in the database at `data_dir`.
fn stored_external_ids(data_dir: &Path) -> std::collections::HashSet<String> {
    let connection =
        rusqlite::Connection::open_with_flags(data_dir.join("recado.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    connection
        .prepare("SELECT external_id FROM messages WHERE client_id = ?1 AND direction = 'in'")
        .expect("prepare")
        .query_map([CLIENT], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_a_whole_working_installation() {
    if crate::database::sqlite_only(
        "`recado backup` copies the SQLite database; PostgreSQL is backed up with its own tools",
    ) {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let (data, backup, restored) = (root.path().join("data"), root.path().join("backup"), root.path().join("restored"));
    // The demo installation: five clients with their knowledge bases, the example chain active for the first,
    // a channel whose secrets are sealed with the data directory's key; and a file an assistant sent.
    let Demo { mut server, base, admin, token } = Demo::start(&data, CLIENT, TELEGRAM_SECRET).await;
    let http = reqwest::Client::new();
    let first: Value =
        json_answer(http.post(format!("{base}/api/v1/clients/{CLIENT}/messages")).bearer_auth(&token).json(&json!({
            "external_id": "with-file", "from": { "handle": "+34600999000" }, "text": "Me enviáis el presupuesto?"
        })))
        .await;
    let conversation = first["conversation_id"].as_str().expect("conversation").to_owned();
    let document = b"%PDF-1.4 presupuesto de la limpieza: 60 EUR".repeat(40);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(document.clone()).file_name("presupuesto.pdf"));
    let attached = http
        .post(format!("{base}/api/v1/conversations/{conversation}/attachments"))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(attached.status(), StatusCode::CREATED);
    let sent_file: Value = attached.json().await.expect("json");
    let sent_id = sent_file["message"]["id"].as_str().expect("id").to_owned();

    // Customers keep writing while the backup is taken, and after it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acknowledged, load) = customers_writing(base.clone(), token.clone(), Arc::clone(&stop));
    let wait_for_acks = |at_least: usize| {
        let acknowledged = Arc::clone(&acknowledged);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while acknowledged.lock().expect("lock").len() < at_least {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for_acks(200).await;
    let backup_started = Instant::now();
    let output =
        recado(&["backup", "--to", backup.to_str().expect("utf-8"), "--data-dir", data.to_str().expect("utf-8")]).await;
    let backup_ended = Instant::now();
    assert!(output.status.success(), "backup failed: {}", text(&output.stderr));
    let report = text(&output.stdout);
    assert!(report.contains("backup written to"), "{report}");
    assert!(report.contains("keep a copy of"), "the operator is told the key is not in the backup: {report}");
    let count_at_end = acknowledged.lock().expect("lock").len();
    wait_for_acks(count_at_end + 200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.expect("load");
    let acks = acknowledged.lock().expect("lock").clone();
    let before: Vec<String> =
        acks.iter().filter(|(_, at)| *at < backup_started).map(|(index, _)| format!("load-{index}")).collect();
    let after: Vec<String> =
        acks.iter().filter(|(_, at)| *at > backup_ended).map(|(index, _)| format!("load-{index}")).collect();
    assert!(before.len() >= 200 && after.len() >= 200, "load before and after the backup");

    // The backup on its own: it checks whole, its database is whole, its manifest says what it holds.
    let checked = recado(&["restore", "--from", backup.to_str().expect("utf-8"), "--check"]).await;
    assert!(checked.status.success(), "check failed: {}", text(&checked.stderr));
    assert!(text(&checked.stdout).contains("is whole"), "{}", text(&checked.stdout));
    let copy =
        rusqlite::Connection::open_with_flags(backup.join("recado.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the backup's database");
    let integrity: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity");
    assert_eq!(integrity, "ok");
    drop(copy);
    let manifest: Value = serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).expect("manifest"))
        .expect("manifest parses");
    assert_eq!(manifest["secrets"]["sealed_channels"], 1);
    assert_eq!(manifest["secrets"]["key_included"], false);
    assert!(!backup.join("secrets.key").exists(), "the key stays out unless asked for");
    assert!(!backup.join("index").exists() && !backup.join("plugin-cache").exists(), "nothing derived is copied");
    let blobs: Vec<&Value> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["path"].as_str().is_some_and(|p| p.starts_with("blobs/")))
        .collect();
    assert_eq!(blobs.len(), 1, "the file the assistant sent: {manifest:#}");

    // The machine is lost: the server dies and its data directory with it. The operator kept the key apart.
    server.signal(nix::sys::signal::Signal::SIGKILL);
    server.child.wait().await.expect("reaped");
    let kept_key = root.path().join("kept-secrets.key");
    std::fs::copy(data.join("secrets.key"), &kept_key).expect("key kept");
    std::fs::remove_dir_all(&data).expect("data lost");

    // Without the key, or with another one, nothing is restored and the error says what to do.
    let (from, into) = (backup.to_str().expect("utf-8"), restored.to_str().expect("utf-8"));
    let refused = recado(&["restore", "--from", from, "--data-dir", into]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--secrets-key"), "{}", text(&refused.stderr));
    assert!(!restored.exists(), "nothing written");
    let other_key = root.path().join("other.key");
    std::fs::write(&other_key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").expect("other key");
    let wrong =
        recado(&["restore", "--from", from, "--data-dir", into, "--secrets-key", other_key.to_str().expect("utf-8")])
            .await;
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong.stderr).contains("is not the key"), "{}", text(&wrong.stderr));
    assert!(!restored.exists(), "nothing written");

    let done =
        recado(&["restore", "--from", from, "--data-dir", into, "--secrets-key", kept_key.to_str().expect("utf-8")])
            .await;
    assert!(done.status.success(), "restore failed: {}", text(&done.stderr));
    let stored = stored_external_ids(&restored);
    let lost: Vec<&String> = before.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} messages acknowledged before the backup are missing: {lost:?}", lost.len());
    let later: Vec<&String> = after.iter().filter(|id| stored.contains(*id)).collect();
    assert!(later.is_empty(), "the restore is the backup, not something newer: {later:?}");

    // The restored installation works.
    let (mut server, base) = Binary::serve(&restored).await;
    // Suggestions: the index is rebuilt from the articles on start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("{base}/api/v1/clients/{CLIENT}/suggestions?q=quant%20costa%20una%20neteja");
        let suggested = get_json(&http, &url, &admin).await;
        if suggested["suggestions"].as_array().is_some_and(|list| !list.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no suggestions after the restore: {suggested}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plugins: compiled again from the stored components, they decide a new message.
    let urgent: Value = json_answer(
        http.post(format!("{base}/api/v1/clients/{CLIENT}/messages")).bearer_auth(&token).json(&json!({
            "external_id": "after-restore", "from": { "handle": "+34600111222" }, "text": "És urgent: em podeu enviar la factura?"
        })),
    )
    .await;
    let message = urgent["message_id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(30);
    let chain = loop {
        let decisions = get_json(&http, &format!("{base}/api/v1/messages/{message}/decisions"), &token).await;
        if let Some(chain) = decisions["decisions"].as_array().and_then(|d| d.iter().find(|d| d["source"] == "chain")) {
            break chain.clone();
        }
        assert!(Instant::now() < deadline, "no chain decision after the restore: {decisions}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(chain["decision"]["queue"], "billing", "{chain}");
    // Channel secrets: the webhook's secret is checked with the restored key.
    let update = json!({ "update_id": 77, "message": { "message_id": 9, "date": 1, "chat": { "id": 4242, "type": "private" },
        "from": { "id": 4242, "is_bot": false, "first_name": "Giulia" }, "text": "Bon dia" } });
    let webhook = format!("{base}/webhooks/telegram/{CLIENT}");
    let wrong_secret =
        http.post(&webhook).header("x-telegram-bot-api-secret-token", "not-the-secret").json(&update).send().await;
    assert_eq!(wrong_secret.expect("sent").status(), StatusCode::UNAUTHORIZED);
    let right_secret =
        http.post(&webhook).header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET).json(&update).send().await;
    assert_eq!(right_secret.expect("sent").status(), StatusCode::OK);
    // Media: the file the assistant sent is served from the restored blobs.
    let detail = get_json(&http, &format!("{base}/api/v1/conversations/{conversation}"), &admin).await;
    let sent = detail["messages"].as_array().expect("messages").iter().find(|m| m["id"] == sent_id.as_str()).cloned();
    let url = sent.expect("the message with the file")["media"][0]["url"].as_str().expect("url").to_owned();
    let served = http.get(format!("{base}{url}")).bearer_auth(&admin).send().await.expect("sent");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.expect("bytes").to_vec(), document);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.child.wait().await.expect("stopped");
}

#[tokio::test]
async fn scheduled_backups_are_taken_and_their_outcome_is_in_the_metrics() {
    let folder = tempfile::tempdir().expect("temp dir");
    if crate::database::postgres() {
        // Scheduled backups copy the SQLite database: with PostgreSQL the setting is refused, not ignored.
        let data = tempfile::tempdir().expect("temp dir");
        let mut settings = crate::database::settings_for(data.path());
        settings.backup.folder = Some(folder.path().to_owned());
        let error = recado::app::Application::build(settings).await.err().expect("refused");
        assert!(format!("{error:#}").contains("backup.folder"), "{error:#}");
        return;
    }
    let into = folder.path().to_owned();
    let app = crate::helpers::spawn_app_with(move |settings| {
        settings.backup.folder = Some(into);
        settings.backup.keep = 3;
    })
    .await;
    // The folder holds no backup yet: the first is due at once.
    app.wait_for_metric("recado_backups_total{outcome=\"ok\"}", 1.0).await;
    assert_eq!(app.metric("recado_backup_failing").await, 0.0);
    assert!(app.metric("recado_backup_last_size_bytes").await > 0.0);
    assert!(app.metric("recado_backup_last_success_timestamp_seconds").await > 1.7e9);
    let taken: Vec<_> = std::fs::read_dir(folder.path())
        .expect("list")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("recado-backup-"))
        .collect();
    assert_eq!(taken.len(), 1);
    assert!(taken[0].path().join("manifest.json").is_file() && taken[0].path().join("recado.db").is_file());
    app.stop().await;

    // A folder that cannot be written: the failure raises the alert metric, and the server keeps serving.
    let blocked = tempfile::NamedTempFile::new().expect("a file where the folder should be");
    let path = blocked.path().join("backups");
    let app = crate::helpers::spawn_app_with(move |settings| settings.backup.folder = Some(path)).await;
    app.wait_for_metric("recado_backups_total{outcome=\"failed\"}", 1.0).await;
    assert_eq!(app.metric("recado_backup_failing").await, 1.0);
    let (status, _) = app.get("/api/v1/clients", &app.admin).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
