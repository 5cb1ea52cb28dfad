//! Acknowledged means durable, and retries never duplicate (reliability.md, R1, at a size that fits CI):
//! the real binary takes thousands of messages with 64 in flight and is SIGKILLed several times at random
//! moments; after each restart every unacknowledged request is sent again, as providers do.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::json;
use tokio::sync::Semaphore;

use recado::channels::telegram::TelegramConfig;
use recado::config::Settings;
use recado::domain::{ChannelKind, ClientSlug, Role};
use recado::store::Db;

use crate::helpers::{Binary, acknowledging_profile, get_json, wait_until_processed};

const MESSAGES: usize = 4_000;
const IN_FLIGHT: usize = 64;
const KILLS: usize = 6;
const CLIENTS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];

/// One message to deliver, the way a provider would (re)send it.
#[derive(Clone)]
struct Send {
    client: usize,
    index: usize,
    telegram: bool,
}

impl Send {
    /// The dedupe key the server will store.
    fn key(&self) -> (String, String, String) {
        let client = CLIENTS[self.client].to_owned();
        if self.telegram {
            (client, "telegram".into(), format!("{}:{}", 1_000 + self.index % 40, self.index))
        } else {
            (client, "api".into(), format!("ext-{}", self.index))
        }
    }
}

/// Creates the clients, their channels and tokens before the server first starts.
async fn seed(data_dir: &Path) -> Vec<String> {
    let db = Db::open(&Settings::for_tests(data_dir).storage).expect("store opens");
    let mut tokens = Vec::new();
    for (index, slug) in CLIENTS.iter().enumerate() {
        let slug = ClientSlug::parse(slug).expect("slug");
        db.create_client(slug.clone(), acknowledging_profile(slug.as_str()), "test".into()).await.expect("client");
        let telegram = TelegramConfig {
            bot_token: "1:x".into(),
            secret_token: format!("secret{index}").into(),
            api_base_url: "http://127.0.0.1:9".into(),
        };
        db.put_channel(slug.clone(), ChannelKind::Telegram, telegram, "test".into()).await.expect("channel");
        tokens.push(db.create_token(Role::Client, Some(slug), "crash".into()).await.expect("token").token);
    }
    db.close().await;
    tokens
}

/// Sends every pending message once with `IN_FLIGHT` at a time; returns the ones acknowledged with 2xx.
async fn send_round(http: &reqwest::Client, base: &str, tokens: &[String], pending: &[Send]) -> Vec<usize> {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::with_capacity(pending.len());
    for send in pending.iter().cloned() {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("semaphore open");
        let (http, base, token, acknowledged) =
            (http.clone(), base.to_owned(), tokens[send.client].clone(), Arc::clone(&acknowledged));
        tasks.push(tokio::spawn(async move {
            let slug = CLIENTS[send.client];
            let request = if send.telegram {
                http.post(format!("{base}/webhooks/telegram/{slug}"))
                    .header("x-telegram-bot-api-secret-token", format!("secret{}", send.client))
                    .json(&json!({ "update_id": send.index, "message": {
                        "message_id": send.index, "chat": { "id": 1_000 + send.index % 40 }, "text": format!("telegram {}", send.index) } }))
            } else {
                http.post(format!("{base}/api/v1/clients/{slug}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({ "external_id": format!("ext-{}", send.index), "from": { "handle": format!("+34{}", send.index % 40) }, "text": format!("api {}", send.index) }))
            };
            if request.send().await.is_ok_and(|response| response.status().is_success()) {
                acknowledged.lock().expect("lock").push(send.index);
            }
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.expect("send task");
    }
    Arc::try_unwrap(acknowledged).expect("tasks done").into_inner().expect("lock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_without_duplicates_and_are_all_processed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = seed(dir.path()).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    let all: Vec<Send> =
        (0..MESSAGES).map(|index| Send { client: index % CLIENTS.len(), index, telegram: index % 2 == 1 }).collect();
    let mut pending: HashMap<usize, Send> = all.iter().cloned().map(|send| (send.index, send)).collect();
    let mut ever_acknowledged: HashSet<usize> = HashSet::new();
    let mut interrupted_rounds = 0;

    for round in 0..=KILLS {
        let (mut server, base) = Binary::serve(dir.path()).await;
        let work: Vec<Send> = pending.values().cloned().collect();
        let killer = if round < KILLS {
            let pid = server.child.id().expect("running");
            let delay = Duration::from_millis(rand::rng().random_range(150..900));
            Some(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // SIGKILL: no shutdown code runs, as in a power cut of the process.
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
                    .expect("kill");
            }))
        } else {
            None
        };
        let acknowledged = send_round(&http, &base, &tokens, &work).await;
        for index in acknowledged {
            pending.remove(&index);
            ever_acknowledged.insert(index);
        }
        match killer {
            Some(killer) => {
                killer.await.expect("killer");
                if !pending.is_empty() {
                    interrupted_rounds += 1;
                }
                server.child.wait().await.expect("killed server reaped");
            }
            None => {
                assert!(pending.is_empty(), "{} messages never acknowledged with the server up", pending.len());
                // Wait until the pipeline has processed everything, reading the file as any reader may.
                wait_until_processed(dir.path()).await;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(server.child.id().expect("running") as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .expect("term");
                let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
                    .await
                    .expect("stops in time")
                    .expect("exit status");
                assert!(status.success(), "graceful exit: {status}");
            }
        }
    }
    assert_eq!(ever_acknowledged.len(), MESSAGES);
    // The test has teeth only if kills landed while requests were in flight.
    assert!(interrupted_rounds >= KILLS / 2, "only {interrupted_rounds} of {KILLS} kills interrupted sending");

    let connection = rusqlite::Connection::open(dir.path().join("recado.db")).expect("open");
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity");
    assert_eq!(integrity, "ok");
    let stored: HashMap<(String, String, String), i64> = connection
        .prepare(
            "SELECT client_id, channel, external_id, COUNT(*) FROM messages WHERE direction = 'in' GROUP BY 1, 2, 3",
        )
        .expect("prepare")
        .query_map([], |row| Ok(((row.get(0)?, row.get(1)?, row.get(2)?), row.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let missing = all.iter().filter(|send| !stored.contains_key(&send.key())).count();
    let duplicates: i64 = stored.values().map(|count| count - 1).sum();
    assert_eq!((missing, duplicates), (0, 0), "acknowledged but missing, duplicated");
    assert_eq!(stored.len(), MESSAGES, "nothing stored that was not sent");

    let unprocessed: i64 = connection
        .query_row("SELECT COUNT(*) FROM messages WHERE state = 'received'", [], |row| row.get(0))
        .expect("count");
    assert_eq!(unprocessed, 0);
    let decisions: Vec<i64> = connection
        .prepare("SELECT COUNT(d.message_id) FROM messages m LEFT JOIN decisions d ON d.client_id = m.client_id AND d.message_id = m.id WHERE m.direction = 'in' GROUP BY m.client_id, m.id")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!decisions.is_empty(), "the messages are there");
    assert!(decisions.iter().all(|count| *count == 1), "exactly one decision per message");
    let acks_per_conversation: Vec<i64> = connection
        .prepare("SELECT SUM(CASE WHEN kind = 'auto_ack' THEN 1 ELSE 0 END) FROM messages GROUP BY client_id, conversation_id")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!acks_per_conversation.is_empty(), "the conversations are there");
    assert!(
        acks_per_conversation.iter().all(|count| *count == 1),
        "one acknowledgement per conversation: {acks_per_conversation:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_sender_died_mid_send_is_sent_again_once_with_the_same_idempotency_key() {
    use crate::helpers::{Behaviour, FakeProvider};
    use recado::channels::webhook::WebhookConfig;
    // The first attempt reaches the client's endpoint, which does not answer; the server is killed then.
    let provider = FakeProvider::start(vec![Behaviour::Hang]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = {
        let db = Db::open(&Settings::for_tests(dir.path()).storage).expect("store opens");
        let slug = ClientSlug::parse("resend").expect("slug");
        db.create_client(slug.clone(), acknowledging_profile("Resend"), "test".into()).await.expect("client");
        let webhook =
            WebhookConfig { url: format!("{}/hook", provider.url), secret: "a-webhook-secret-0123456789".into() };
        db.put_channel(slug.clone(), ChannelKind::Webhook, webhook, "test".into()).await.expect("channel");
        let token = db.create_token(Role::Client, Some(slug), "resend".into()).await.expect("token").token;
        db.close().await;
        token
    };
    // A lease of 2 x 2 s + 5 s: long enough that the hanging call is still in flight when the process dies.
    let env = [
        ("RUST_LOG", "error"),
        ("RECADO__OUTBOX__ALLOW_PRIVATE_TARGETS", "true"),
        ("RECADO__OUTBOX__REQUEST_TIMEOUT_MS", "2000"),
        ("RECADO__OUTBOX__POLL_INTERVAL_MS", "100"),
    ];
    let (mut server, base) = Binary::serve_with(dir.path(), &env, None).await;
    let message = json!({ "external_id": "resend-1", "from": { "handle": "+34600" }, "text": "Hola" });
    let http = reqwest::Client::new();
    let sent = http.post(format!("{base}/api/v1/clients/resend/messages")).bearer_auth(&token).json(&message);
    assert!(sent.send().await.expect("sent").status().is_success());
    provider.wait_for(1, Duration::from_secs(10)).await;
    // SIGKILL while the provider holds the call: the row stays `sending` under its lease.
    server.signal(nix::sys::signal::Signal::SIGKILL);
    server.child.wait().await.expect("killed server reaped");

    let (mut server, base) = Binary::serve_with(dir.path(), &env, None).await;
    let received = provider.wait_for(2, Duration::from_secs(30)).await;
    let key = |index: usize| received[index].headers.get("idempotency-key").expect("a key").to_str().expect("ascii");
    assert_eq!(key(0), key(1), "the repeat carries the first attempt's key, so the endpoint can drop it");
    assert_eq!(received[0].body, received[1].body, "the same message");
    // Once the resend is recorded as sent, nothing is sent again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = get_json(&http, &format!("{base}/api/v1/conversations"), &token).await;
        let id = list["conversations"][0]["id"].as_str().expect("the conversation").to_owned();
        let thread = get_json(&http, &format!("{base}/api/v1/conversations/{id}"), &token).await;
        let states: Vec<&str> = thread["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["delivery"]["state"].as_str())
            .collect();
        if states == ["sent"] {
            break;
        }
        assert!(Instant::now() < deadline, "the resend was never recorded: {thread:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(provider.received().len(), 2, "at most one repeat per crash");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.child.wait().await.expect("stopped");
}
