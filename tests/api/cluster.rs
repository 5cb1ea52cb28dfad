//! Several nodes of the real binary on PostgreSQL, through the failures a deployment meets.
//!
//! Three nodes on one database under steady load, one of them killed (`SIGKILL`) and started again twenty
//! times; and two nodes on a primary with a synchronous standby, the primary lost under load and the standby
//! promoted. Either way every acknowledged message is stored once and decided once, each customer has one
//! conversation, and every reply reaches the client's endpoint, a repeat only with the first attempt's
//! idempotency key (the endpoint drops it). Senders behave as providers behind a load balancer do: a request
//! that fails or gets no answer is sent again, to another node.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::json;
use tokio::sync::Semaphore;

use recado::channels::webhook::WebhookConfig;
use recado::domain::{ChannelKind, ClientSlug, Role};
use recado::store::Db;

use crate::database::{Cluster, Database, open_store, postgres_only, url_encode, url_for};
use crate::helpers::{Binary, FakeProvider, acknowledging_profile};

const KILLS: usize = 20;
const CLIENTS: [&str; 3] = ["node-a", "node-b", "node-c"];
/// A new message is sent every this long while the kills go on (about 70 a second).
const PACE: Duration = Duration::from_millis(14);
const IN_FLIGHT: usize = 32;

/// The clients, each with a webhook channel to `provider` for its replies, and their tokens.
async fn seed(db: Db, provider: &FakeProvider) -> Vec<String> {
    let mut tokens = Vec::new();
    for slug in CLIENTS {
        let slug = ClientSlug::parse(slug).expect("slug");
        db.create_client(slug.clone(), acknowledging_profile(slug.as_str()), "test".into()).await.expect("client");
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
    count: usize,
    dirs: Vec<tempfile::TempDir>,
    env: Vec<(String, String)>,
    running: Vec<tokio::sync::Mutex<Option<Binary>>>,
    /// The base URL of each node while it is up (`None` between its kill and its restart).
    bases: Arc<Mutex<Vec<Option<String>>>>,
    starts: AtomicUsize,
}

impl Nodes {
    /// `count` nodes on the database `url`, sealing with the key in `secrets_key`.
    fn new(count: usize, url: String, secrets_key: &Path) -> Self {
        let env = [
            ("RUST_LOG", "error".to_owned()),
            ("RECADO__DATABASE__URL", url),
            ("RECADO__STORAGE__SECRETS_KEY_FILE", secrets_key.display().to_string()),
            ("RECADO__OUTBOX__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            ("RECADO__OUTBOX__POLL_INTERVAL_MS", "100".to_owned()),
            // A delivery in flight when its node dies is sent again once its lease (2 x this + 5 s) runs out.
            ("RECADO__OUTBOX__REQUEST_TIMEOUT_MS", "2000".to_owned()),
        ];
        Self {
            count,
            dirs: (0..count).map(|_| tempfile::tempdir().expect("temp dir")).collect(),
            env: env.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
            running: (0..count).map(|_| tokio::sync::Mutex::new(None)).collect(),
            bases: Arc::new(Mutex::new(vec![None; count])),
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
        (0..self.count).map(|offset| (turn + offset) % self.count).find_map(|n| bases[n].clone())
    }
}

/// One acknowledged message.
struct Acknowledged {
    /// The index of its client in [`CLIENTS`].
    client: usize,
    external_id: String,
    /// The customer's handle.
    handle: String,
    /// When it was first sent.
    sent: Instant,
    /// When the attempt that was acknowledged began.
    last_attempt: Instant,
    /// When it was acknowledged.
    at: Instant,
}

/// What the senders did.
#[derive(Default)]
struct Sent {
    acknowledged: Mutex<Vec<Acknowledged>>,
    /// Told after each acknowledgement.
    more: tokio::sync::Notify,
    /// Attempts that failed (no answer, refused, or 5xx) and were sent again.
    retries: AtomicUsize,
}

/// Sends message `index` until a node acknowledges it, to the next node each time.
async fn send_until_acknowledged(nodes: &Nodes, http: &reqwest::Client, tokens: &[String], index: usize, sent: &Sent) {
    let client = index % CLIENTS.len();
    // Two messages per customer, sent one after the other to different nodes.
    let (external_id, handle) = (format!("m{index}"), format!("+3460{:06}", index / (2 * CLIENTS.len())));
    let body = json!({ "external_id": external_id, "from": { "handle": handle }, "text": format!("mensaje {index}") });
    let sent_at = Instant::now();
    for attempt in 0.. {
        assert!(sent_at.elapsed() < Duration::from_secs(120), "message {index} was never acknowledged");
        // A customer's two messages are a client's consecutive ones: each goes to another node.
        let Some(base) = nodes.pick(index / CLIENTS.len() + attempt) else {
            // Every node down at once: wait for one (a restart takes about a second).
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let last_attempt = Instant::now();
        let request = http
            .post(format!("{base}/api/v1/clients/{}/messages", CLIENTS[client]))
            .bearer_auth(&tokens[client])
            .json(&body);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let at = Instant::now();
                let acknowledged = Acknowledged { client, external_id, handle, sent: sent_at, last_attempt, at };
                sent.acknowledged.lock().expect("lock").push(acknowledged);
                sent.more.notify_waiters();
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

/// Sends a new message every [`PACE`], at most [`IN_FLIGHT`] at once, until `until` is cleared; the task ends
/// once every message sent is acknowledged, with their number.
fn load(
    nodes: &Arc<Nodes>,
    tokens: &[String],
    sent: &Arc<Sent>,
    until: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let (nodes, sent, until, tokens) = (Arc::clone(nodes), Arc::clone(sent), Arc::clone(until), tokens.to_vec());
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = Vec::new();
        let mut ticks = tokio::time::interval(PACE);
        let mut index = 0;
        while until.load(Ordering::Relaxed) {
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
}

/// Waits until every stored message is decided and every reply sent (or given up on).
async fn wait_until_settled(database: &Database) {
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
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} messages undecided or replies unsent");
        // The database gives no signal when the nodes' work is done; it is looked at again.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that each of the `messages` sent, all `acknowledged`, is stored and decided once, that each customer
/// has one conversation acknowledged once, and that every reply reached `provider` (a repeat only under its
/// first attempt's key, with the same body). Returns the number of conversations and of repeated deliveries.
async fn check_once_each(
    database: &Database,
    provider: &FakeProvider,
    acknowledged: &[Acknowledged],
    messages: usize,
) -> (usize, usize) {
    assert_eq!(acknowledged.len(), messages, "every message sent was acknowledged in the end");
    let stored: HashMap<(String, String), i64> = database
        .query("SELECT client_id, external_id, COUNT(*) FROM messages WHERE direction = 'in' GROUP BY 1, 2", &[])
        .await
        .into_iter()
        .map(|row| ((row[0].text().to_owned(), row[1].text().to_owned()), row[2].integer()))
        .collect();
    let missing = acknowledged
        .iter()
        .filter(|message| !stored.contains_key(&(CLIENTS[message.client].to_owned(), message.external_id.clone())))
        .count();
    let duplicated: i64 = stored.values().map(|count| count - 1).sum();
    assert_eq!((missing, duplicated), (0, 0), "acknowledged but missing, stored twice");
    assert_eq!(stored.len(), messages, "nothing stored that was not sent");

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

    let customers: HashSet<(usize, &str)> =
        acknowledged.iter().map(|message| (message.client, message.handle.as_str())).collect();
    assert_eq!(database.counts(&["conversations"]).await, [customers.len() as i64], "one per customer");
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
    (customers.len(), bodies.values().map(|sent| sent.len() - 1).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_killed_twenty_times_under_load_lose_and_repeat_nothing() {
    if postgres_only("several nodes share a PostgreSQL database; SQLite's crash test is `crash`") {
        return;
    }
    let provider = FakeProvider::start(Vec::new()).await;
    let database_dir = tempfile::tempdir().expect("temp dir");
    let tokens = seed(open_store(database_dir.path()).await, &provider).await;
    let nodes = Arc::new(Nodes::new(3, url_for(database_dir.path()), &database_dir.path().join("secrets.key")));
    for n in 0..nodes.count {
        nodes.start(n).await;
    }
    let (sent, sending) = (Arc::new(Sent::default()), Arc::new(AtomicBool::new(true)));
    let load = load(&nodes, &tokens, &sent, &sending);
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..1_500))).await;
        let n = kill % nodes.count;
        nodes.kill(n).await;
        nodes.start(n).await;
    }
    sending.store(false, Ordering::Relaxed);
    let messages = load.await.expect("load");
    // The test has teeth only if kills landed while requests were in flight or nodes were down.
    let retries = sent.retries.load(Ordering::Relaxed);
    assert!(retries >= KILLS, "only {retries} requests failed over {KILLS} kills");

    // Everything is decided and every reply sent, by the nodes left running.
    let database = Database::of(database_dir.path());
    wait_until_settled(&database).await;
    nodes.stop().await;
    let acknowledged = std::mem::take(&mut *sent.acknowledged.lock().expect("lock"));
    let (conversations, repeats) = check_once_each(&database, &provider, &acknowledged, messages).await;
    eprintln!(
        "{messages} messages, {conversations} conversations, {KILLS} kills: {retries} requests sent again, \
         {repeats} replies delivered twice (same key)"
    );
}

/// The name the primary knows its synchronous standby by.
const STANDBY: &str = "standby1";

/// A primary with a synchronous streaming standby (two clusters of this machine), and two nodes on a
/// multi-host URL that only takes a read-write server. Under load the standby falls behind, the primary is
/// stopped at once (immediate shutdown: every process ends, nothing more is flushed, as when its machine is
/// lost) and the standby promoted, as a failover manager would. Every message acknowledged before, during and
/// after is in the new primary, once; the nodes carry on there by themselves. The failover time as the
/// senders saw it is printed. (With `synchronous_standby_names` empty, this fails: messages acknowledged
/// while the standby lagged are lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_lost_under_load_fails_over_to_its_synchronous_standby_and_no_acknowledged_message_is_lost() {
    if postgres_only("failing over is PostgreSQL's replication") {
        return;
    }
    let root = crate::database::cluster().dir.join(format!("failover-{}", rand::rng().random::<u32>()));
    let primary = Cluster::create(root.join("primary"), &[]).expect("the primary starts");
    primary.psql("postgres", "CREATE ROLE recado LOGIN").expect("role");
    primary.psql("postgres", "CREATE DATABASE recado OWNER recado").expect("database");
    let standby = primary.standby(root.join("standby"), STANDBY).expect("the standby starts");
    // From here on, a commit returns once the standby has it too.
    primary
        .psql("postgres", &format!("ALTER SYSTEM SET synchronous_standby_names = '{STANDBY}'"))
        .expect("synchronous standby named");
    primary.psql("postgres", "SELECT pg_reload_conf()").expect("reloaded");
    let deadline = Instant::now() + Duration::from_secs(30);
    let sync = format!(
        "SELECT COUNT(*) FROM pg_stat_replication WHERE application_name = '{STANDBY}' AND sync_state = 'sync'"
    );
    while primary.psql("postgres", &sync).expect("replication state") != "1" {
        assert!(Instant::now() < deadline, "the standby never became synchronous");
        // The primary gives no signal when the standby is caught up; it is asked again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let hosts = [&primary, &standby].map(|cluster| url_encode(&cluster.socket_dir.to_string_lossy())).join(",");
    let url = format!("postgres://recado@{hosts}/recado?target_session_attrs=read-write");
    let database_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = recado::config::Settings::for_tests(database_dir.path());
    settings.database.url = Some(url.clone().into());
    let db = Db::connect(&settings.storage, &settings.database).await.expect("the store opens on the primary");
    let provider = FakeProvider::start(Vec::new()).await;
    let tokens = seed(db, &provider).await;
    let nodes = Arc::new(Nodes::new(2, url, &settings.storage.secrets_key_path()));
    for n in 0..nodes.count {
        nodes.start(n).await;
    }

    let (sent, sending) = (Arc::new(Sent::default()), Arc::new(AtomicBool::new(true)));
    let load = load(&nodes, &tokens, &sent, &sending);
    let before = wait_for_acknowledgements(&sent, 100).await;
    // The standby falls behind (its WAL receiver paused, as by a network hiccup) and the primary is lost half
    // a second later. Asynchronous replication would have acknowledged messages the standby never got; with
    // a synchronous standby, commits wait for it, so nothing is acknowledged that it lacks.
    // psql and pg_ctl are waited for off the runtime's threads, which the senders keep using.
    let receiver: i32 =
        tokio::task::block_in_place(|| standby.psql("postgres", "SELECT pid FROM pg_stat_wal_receiver"))
            .expect("the standby's receiver")
            .parse()
            .expect("a pid");
    let receiver = nix::unistd::Pid::from_raw(receiver);
    nix::sys::signal::kill(receiver, nix::sys::signal::Signal::SIGSTOP).expect("receiver paused");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lost_at = Instant::now();
    tokio::task::block_in_place(|| primary.pg_ctl(&["stop", "-m", "immediate", "-w"])).expect("the primary stops");
    // From here on, a commit can only be the new primary's.
    let stopped_at = Instant::now();
    nix::sys::signal::kill(receiver, nix::sys::signal::Signal::SIGCONT).expect("receiver resumed");
    tokio::task::block_in_place(|| standby.pg_ctl(&["promote", "-w"])).expect("the standby is promoted");
    let promoted_in = lost_at.elapsed();
    // Load on the new primary as long again as before the loss.
    wait_for_acknowledgements(&sent, 2 * before).await;
    sending.store(false, Ordering::Relaxed);
    let messages = load.await.expect("load");

    let database = Database::at(standby.url("recado", "postgres"));
    wait_until_settled(&database).await;
    nodes.stop().await;
    let acknowledged = std::mem::take(&mut *sent.acknowledged.lock().expect("lock"));
    let (conversations, repeats) = check_once_each(&database, &provider, &acknowledged, messages).await;
    // Failover time as the senders saw it: from the loss to the first acknowledgement of a request sent once
    // the old primary was gone; and the longest any message took from its first sending to its acknowledgement.
    let back_in = acknowledged
        .iter()
        .filter(|message| message.last_attempt >= stopped_at)
        .map(|message| message.at.duration_since(lost_at))
        .min()
        .expect("messages acknowledged by the new primary");
    let longest = acknowledged.iter().map(|message| message.at.duration_since(message.sent)).max().expect("messages");
    let retries = sent.retries.load(Ordering::Relaxed);
    assert!(retries > 0, "the loss was seen by no sender");
    eprintln!(
        "{messages} messages, {conversations} conversations: the standby promoted {promoted_in:?} after the loss; \
         acknowledgements again {back_in:?} after it; the longest a message waited {longest:?}; {retries} requests \
         sent again; {repeats} replies delivered twice (same key)"
    );
    primary.pg_ctl(&["status"]).expect_err("the old primary stays down");
    standby.pg_ctl(&["stop", "-m", "fast", "-w"]).expect("the new primary stops");
    let _ = std::fs::remove_dir_all(&root);
}

/// Waits until at least `count` messages are acknowledged; returns how many are.
async fn wait_for_acknowledgements(sent: &Sent, count: usize) -> usize {
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            // Registered before counting, so an acknowledgement in between still wakes it.
            let more = sent.more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            let acknowledged = sent.acknowledged.lock().expect("lock").len();
            if acknowledged >= count {
                return acknowledged;
            }
            more.await;
        }
    });
    let acknowledged = waited.await;
    acknowledged.unwrap_or_else(|_| {
        panic!("{} of {count} messages acknowledged", sent.acknowledged.lock().expect("lock").len())
    })
}
