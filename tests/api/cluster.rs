//! Three nodes of the real binary on one PostgreSQL database, under steady load, one of them killed
//! (`SIGKILL`) and started again twenty times: every acknowledged message is stored once and decided once,
//! each customer has one conversation, and every reply reaches the client's endpoint, a repeat only with the
//! first attempt's idempotency key (the endpoint drops it). Senders behave as providers behind a load
//! balancer do: a request that fails or gets no answer is sent again, to another node.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::json;
use tokio::sync::Semaphore;

use recado::channels::webhook::WebhookConfig;
use recado::domain::{ChannelKind, ClientProfile, ClientSlug, Role};

use crate::database::{Database, open_store, postgres_only, url_for};
use crate::helpers::{Binary, FakeProvider};

const NODES: usize = 3;
const KILLS: usize = 20;
const CLIENTS: [&str; 3] = ["node-a", "node-b", "node-c"];
/// A new message is sent every this long while the kills go on (about 70 a second).
const PACE: Duration = Duration::from_millis(14);
const IN_FLIGHT: usize = 32;

/// The clients, each with a webhook channel to `provider` for its replies, and their tokens.
async fn seed(database_dir: &Path, provider: &FakeProvider) -> Vec<String> {
    let db = open_store(database_dir).await;
    let mut tokens = Vec::new();
    for slug in CLIENTS {
        let slug = ClientSlug::parse(slug).expect("slug");
        let profile: ClientProfile = serde_json::from_value(json!({
            "name": slug.as_str(), "timezone": "Europe/Madrid", "languages": ["es"],
            "defaults": { "auto_acknowledge": true, "acknowledgement": { "es": "Recibido" } }
        }))
        .expect("profile");
        db.create_client(slug.clone(), profile, "test".into()).await.expect("client");
        let webhook = WebhookConfig {
            url: format!("{}/hook/{}", provider.url, slug.as_str()),
            secret: "a-webhook-secret-0123456789".into(),
        };
        db.put_channel(slug.clone(), ChannelKind::Webhook, webhook, "test".into()).await.expect("channel");
        tokens.push(db.create_token(Role::Client, Some(slug), "cluster".into()).await.expect("token").token);
    }
    db.close().await;
    tokens
}

/// The nodes: each its own data directory, all on one database, sealing with one secrets key.
struct Nodes {
    dirs: Vec<tempfile::TempDir>,
    env: Vec<(String, String)>,
    running: Vec<tokio::sync::Mutex<Option<Binary>>>,
    /// The base URL of each node while it is up (`None` between its kill and its restart).
    bases: Arc<Mutex<Vec<Option<String>>>>,
    starts: AtomicUsize,
}

impl Nodes {
    fn new(database_dir: &Path) -> Self {
        let env = [
            ("RUST_LOG", "error".to_owned()),
            ("RECADO__DATABASE__URL", url_for(database_dir)),
            ("RECADO__STORAGE__SECRETS_KEY_FILE", database_dir.join("secrets.key").display().to_string()),
            ("RECADO__OUTBOX__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            ("RECADO__OUTBOX__POLL_INTERVAL_MS", "100".to_owned()),
            // A delivery in flight when its node dies is sent again once its lease (2 x this + 5 s) runs out.
            ("RECADO__OUTBOX__REQUEST_TIMEOUT_MS", "2000".to_owned()),
        ];
        Self {
            dirs: (0..NODES).map(|_| tempfile::tempdir().expect("temp dir")).collect(),
            env: env.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
            running: (0..NODES).map(|_| tokio::sync::Mutex::new(None)).collect(),
            bases: Arc::new(Mutex::new(vec![None; NODES])),
            starts: AtomicUsize::new(0),
        }
    }

    /// Starts node `n` on its data directory and waits until it listens.
    async fn start(&self, n: usize) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let log = self.log(n, self.starts.fetch_add(1, Ordering::Relaxed));
        let (binary, base) = Binary::serve_with(self.dirs[n].path(), &env, Some(&log)).await;
        *self.running[n].lock().await = Some(binary);
        self.bases.lock().expect("lock")[n] = Some(base);
    }

    fn log(&self, n: usize, start: usize) -> PathBuf {
        self.dirs[n].path().join(format!("run-{start}.log"))
    }

    /// `SIGKILL`s node `n` (no shutdown code runs, as in a machine's power cut) and reaps it.
    async fn kill(&self, n: usize) {
        self.bases.lock().expect("lock")[n] = None;
        let mut running = self.running[n].lock().await;
        let mut binary = running.take().expect("running");
        binary.signal(nix::sys::signal::Signal::SIGKILL);
        binary.child.wait().await.expect("killed node reaped");
    }

    /// Stops every node gracefully and checks that each exits cleanly.
    async fn stop(&self) {
        for running in &self.running {
            let mut binary = running.lock().await.take().expect("running");
            binary.signal(nix::sys::signal::Signal::SIGTERM);
            let status = tokio::time::timeout(Duration::from_secs(30), binary.child.wait())
                .await
                .expect("stops in time")
                .expect("exit status");
            assert!(status.success(), "graceful exit: {status}");
        }
    }

    /// A running node's base URL, taken round-robin from `turn`.
    fn pick(&self, turn: usize) -> Option<String> {
        let bases = self.bases.lock().expect("lock");
        (0..NODES).map(|offset| (turn + offset) % NODES).find_map(|n| bases[n].clone())
    }
}

/// What the senders did.
#[derive(Default)]
struct Sent {
    /// (client index, external id, customer handle) of every acknowledged message.
    acknowledged: Mutex<Vec<(usize, String, String)>>,
    /// Attempts that failed (no answer, refused, or 5xx) and were sent again.
    retries: AtomicUsize,
}

/// Sends message `index` until a node acknowledges it, to the next node each time.
async fn send_until_acknowledged(nodes: &Nodes, http: &reqwest::Client, tokens: &[String], index: usize, sent: &Sent) {
    let client = index % CLIENTS.len();
    // Two messages per customer, sent one after the other to different nodes.
    let (external_id, handle) = (format!("m{index}"), format!("+3460{:06}", index / (2 * CLIENTS.len())));
    let body = json!({ "external_id": external_id, "from": { "handle": handle }, "text": format!("mensaje {index}") });
    let started = Instant::now();
    for attempt in 0.. {
        assert!(started.elapsed() < Duration::from_secs(120), "message {index} was never acknowledged");
        // A customer's two messages are a client's consecutive ones: each goes to another node.
        let Some(base) = nodes.pick(index / CLIENTS.len() + attempt) else {
            // Every node down at once: wait for one (a restart takes about a second).
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = http
            .post(format!("{base}/api/v1/clients/{}/messages", CLIENTS[client]))
            .bearer_auth(&tokens[client])
            .json(&body);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                sent.acknowledged.lock().expect("lock").push((client, external_id, handle));
                return;
            }
            Ok(response) if response.status().is_server_error() || response.status().as_u16() == 429 => {}
            Ok(response) => {
                panic!("message {index} refused: {} {}", response.status(), response.text().await.unwrap_or_default())
            }
            Err(_) => {}
        }
        sent.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_killed_twenty_times_under_load_lose_and_repeat_nothing() {
    if postgres_only("several nodes share a PostgreSQL database; SQLite's crash test is `crash`") {
        return;
    }
    let provider = FakeProvider::start(Vec::new()).await;
    let database_dir = tempfile::tempdir().expect("temp dir");
    let tokens = seed(database_dir.path(), &provider).await;
    let nodes = Arc::new(Nodes::new(database_dir.path()));
    for n in 0..NODES {
        nodes.start(n).await;
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let sent = Arc::new(Sent::default());

    // The load: a new message every PACE, at most IN_FLIGHT at once, until the last kill's node is back.
    let killing = Arc::new(AtomicBool::new(true));
    let load = {
        let (nodes, sent, killing, tokens) =
            (Arc::clone(&nodes), Arc::clone(&sent), Arc::clone(&killing), tokens.clone());
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut tasks = Vec::new();
            let mut ticks = tokio::time::interval(PACE);
            let mut index = 0;
            while killing.load(Ordering::Relaxed) {
                ticks.tick().await;
                let permit = Arc::clone(&permits).acquire_owned().await.expect("semaphore open");
                let (nodes, http, tokens, sent) = (Arc::clone(&nodes), http.clone(), tokens.clone(), Arc::clone(&sent));
                tasks.push(tokio::spawn(async move {
                    send_until_acknowledged(&nodes, &http, &tokens, index, &sent).await;
                    drop(permit);
                }));
                index += 1;
            }
            for task in tasks {
                task.await.expect("sender");
            }
            index
        })
    };
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..1_500))).await;
        let n = kill % NODES;
        nodes.kill(n).await;
        nodes.start(n).await;
    }
    killing.store(false, Ordering::Relaxed);
    let messages = load.await.expect("load");
    let acknowledged = std::mem::take(&mut *sent.acknowledged.lock().expect("lock"));
    assert_eq!(acknowledged.len(), messages, "every message sent was acknowledged in the end");
    // The test has teeth only if kills landed while requests were in flight or nodes were down.
    let retries = sent.retries.load(Ordering::Relaxed);
    assert!(retries >= KILLS, "only {retries} requests failed over {KILLS} kills");

    // Everything is decided and every reply sent, by the nodes left running.
    let database = Database::of(database_dir.path());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting = database
            .value(
                "SELECT (SELECT COUNT(*) FROM messages WHERE state = 'received')
                      + (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending'))",
                &[],
            )
            .await
            .integer();
        if waiting == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} messages undecided or replies unsent");
        // The database gives no signal when the nodes' work is done; it is looked at again.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nodes.stop().await;

    // Stored once each, and nothing that was not sent.
    let stored: HashMap<(String, String), i64> = database
        .query("SELECT client_id, external_id, COUNT(*) FROM messages WHERE direction = 'in' GROUP BY 1, 2", &[])
        .await
        .into_iter()
        .map(|row| ((row[0].text().to_owned(), row[1].text().to_owned()), row[2].integer()))
        .collect();
    let missing = acknowledged
        .iter()
        .filter(|(client, external_id, _)| !stored.contains_key(&(CLIENTS[*client].to_owned(), external_id.clone())))
        .count();
    let duplicated: i64 = stored.values().map(|count| count - 1).sum();
    assert_eq!((missing, duplicated), (0, 0), "acknowledged but missing, stored twice");
    assert_eq!(stored.len(), messages, "nothing stored that was not sent");

    // Decided once each.
    let decisions: Vec<i64> = database
        .query(
            "SELECT COUNT(d.message_id) FROM messages m
             LEFT JOIN decisions d ON d.client_id = m.client_id AND d.message_id = m.id
             WHERE m.direction = 'in' GROUP BY m.client_id, m.id",
            &[],
        )
        .await
        .into_iter()
        .map(|row| row[0].integer())
        .collect();
    assert_eq!(decisions.len(), messages);
    let not_once: Vec<&i64> = decisions.iter().filter(|count| **count != 1).collect();
    assert!(not_once.is_empty(), "messages not decided exactly once: {not_once:?}");

    // One conversation per customer, acknowledged once.
    let customers: HashSet<(usize, &str)> =
        acknowledged.iter().map(|(client, _, handle)| (*client, handle.as_str())).collect();
    assert_eq!(database.counts(&["conversations"]).await, [customers.len() as i64]);
    let acks: Vec<i64> = database
        .query(
            "SELECT SUM(CASE WHEN kind = 'auto_ack' THEN 1 ELSE 0 END) FROM messages GROUP BY client_id, conversation_id",
            &[],
        )
        .await
        .into_iter()
        .map(|row| row[0].integer())
        .collect();
    assert!(acks.iter().all(|count| *count == 1), "one acknowledgement per conversation: {acks:?}");

    // Every reply reached the endpoint; a repeat (its sender killed mid-call) carries the first one's key.
    let outbox: Vec<(String, String)> = database
        .query("SELECT id, state FROM outbox", &[])
        .await
        .into_iter()
        .map(|row| (row[0].text().to_owned(), row[1].text().to_owned()))
        .collect();
    assert_eq!(outbox.len(), customers.len(), "one reply per conversation");
    assert!(outbox.iter().all(|(_, state)| state == "sent"), "every reply recorded as sent");
    let mut bodies: HashMap<String, Vec<axum::body::Bytes>> = HashMap::new();
    for request in provider.received() {
        let key = request.headers.get("idempotency-key").expect("a key").to_str().expect("ascii").to_owned();
        bodies.entry(key).or_default().push(request.body);
    }
    let expected: HashSet<&str> = outbox.iter().map(|(id, _)| id.as_str()).collect();
    let delivered: HashSet<&str> = bodies.keys().map(String::as_str).collect();
    assert_eq!(delivered, expected, "each reply delivered, under its own key");
    assert!(bodies.values().all(|sent| sent.iter().all(|body| body == &sent[0])), "a repeat is the same message");
    let repeats: usize = bodies.values().map(|sent| sent.len() - 1).sum();
    eprintln!(
        "{messages} messages, {} conversations, {KILLS} kills: {retries} requests sent again, {repeats} replies \
         delivered twice (same key)",
        customers.len()
    );
}
