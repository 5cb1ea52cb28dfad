//! Several nodes on one database: what PostgreSQL's row locks, unique keys and claims must make safe when the
//! same work reaches two nodes at once. Each test also runs on SQLite, where the two stores are two processes'
//! worth of handles on one database file. Where a race needs a node caught mid-transaction, a transaction of
//! the test's own plays it ([`Database::begin_holding`]).

use std::time::Duration;

use recado::domain::{
    ChannelName, ClientProfile, ClientSlug, ConversationStatus, Decision, DecisionSource, InboundMessage, MessageId,
    Timestamp,
};
use recado::store::{Db, InboundBatch, IngestReport, ProcessedDecision, RoutingChange, Scope};

use crate::database::{Cell, Database, open_store};

fn message(client: &ClientSlug, external_id: String, handle: String) -> InboundMessage {
    crate::helpers::inbound(client, external_id, handle, Timestamp::now())
}

/// Two stores on the database of `data_dir` (two nodes), and the client `shop`, named `name`.
async fn two_nodes(data_dir: &std::path::Path, name: &str) -> (Db, Db, ClientSlug) {
    let (first, second) = (open_store(data_dir).await, open_store(data_dir).await);
    let client = ClientSlug::parse("shop").expect("slug");
    let profile: ClientProfile = serde_json::from_value(crate::helpers::profile(name)).expect("profile");
    first.create_client(client.clone(), profile, "test".into()).await.expect("client");
    (first, second, client)
}

async fn ingest(db: &Db, client: &ClientSlug, messages: Vec<InboundMessage>) -> IngestReport {
    let batch = InboundBatch { messages, ..Default::default() };
    db.ingest(client.clone(), ChannelName::known(ChannelName::API), batch).await.expect("stored")
}

/// A provider retry reaching another node while the first still stores the message, and a new customer's
/// first two messages arriving at two nodes at once: every message is stored once, each customer has one
/// conversation, and both nodes answer with the same ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_storing_the_same_customers_at_once_store_each_message_once_in_one_conversation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second, client) = two_nodes(dir.path(), "Shop").await;

    const CUSTOMERS: usize = 30;
    for n in 0..CUSTOMERS {
        let handle = format!("+34600{n:06}");
        // The same message (a retry) at both nodes, and one message of its own at each.
        let retried = message(&client, format!("retried-{n}"), handle.clone());
        let (at_first, at_second) = tokio::join!(
            ingest(&first, &client, vec![retried.clone(), message(&client, format!("first-{n}"), handle.clone())]),
            ingest(&second, &client, vec![retried, message(&client, format!("second-{n}"), handle.clone())]),
        );
        let (a, b) = (&at_first.messages, &at_second.messages);
        assert_eq!(a[0].message_id, b[0].message_id, "one message for both nodes");
        assert!(a[0].duplicate != b[0].duplicate, "stored by one node, a duplicate at the other: {a:?} {b:?}");
        let conversations = [&a[0], &a[1], &b[0], &b[1]].map(|outcome| outcome.conversation_id.clone());
        assert!(conversations.iter().all(|id| *id == conversations[0]), "one conversation: {conversations:?}");
    }

    let database = Database::of(dir.path());
    let counts = database.counts(&["contacts", "conversations", "messages"]).await;
    assert_eq!(counts, [CUSTOMERS as i64, CUSTOMERS as i64, 3 * CUSTOMERS as i64]);

    // The customers come back after their conversations were closed: the first message at either node opens
    // a new conversation, and the other node's message, stored at the same moment, joins it.
    for n in 0..CUSTOMERS {
        let handle = format!("+34600{n:06}");
        let id = database
            .value(
                "SELECT id FROM conversations WHERE contact_id = (SELECT id FROM contacts WHERE handle = ?1)",
                &[handle.as_str().into()],
            )
            .await;
        let id = recado::domain::ConversationId::parse(id.text()).expect("an id");
        first
            .set_status(recado::store::Scope::All, id, recado::domain::ConversationStatus::Closed, "test".into())
            .await
            .expect("closed");
        let (at_first, at_second) = tokio::join!(
            ingest(&first, &client, vec![message(&client, format!("back-first-{n}"), handle.clone())]),
            ingest(&second, &client, vec![message(&client, format!("back-second-{n}"), handle.clone())]),
        );
        assert_eq!(
            at_first.messages[0].conversation_id, at_second.messages[0].conversation_id,
            "one new conversation for both messages"
        );
    }
    let open = database.value("SELECT COUNT(*) FROM conversations WHERE status = 'open'", &[]).await;
    assert_eq!(open.integer(), CUSTOMERS as i64);
    first.close().await;
    second.close().await;
}

/// Two nodes changing one client's settings at once (each change reads the settings, changes them and writes
/// them back): no change is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_changing_one_clients_settings_at_once_lose_no_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second, client) = two_nodes(dir.path(), "0").await;

    // Each change counts one up in the name, as a person's edit builds on what they read.
    let count_up = |db: Db, client: ClientSlug| async move {
        for _ in 0..20 {
            db.update_client(client.clone(), "test".into(), |mut profile| {
                let n: u32 = profile.name.parse().expect("a number");
                profile.name = (n + 1).to_string();
                Ok(profile)
            })
            .await
            .expect("changed");
        }
    };
    tokio::join!(count_up(first.clone(), client.clone()), count_up(second.clone(), client.clone()));
    let name = Database::of(dir.path()).value("SELECT name FROM clients WHERE id = 'shop'", &[]).await;
    assert_eq!(name.text(), "40", "every change built on the one before");
    first.close().await;
    second.close().await;
}

/// Two nodes claiming due deliveries at once: each delivery is claimed by one of them, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claiming_deliveries_at_once_never_claim_the_same_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second, client) = two_nodes(dir.path(), "Shop").await;
    let stored = ingest(&first, &client, vec![message(&client, "m1".into(), "+34600000001".into())]).await;
    let conversation = stored.messages[0].conversation_id.clone();
    const REPLIES: usize = 60;
    for n in 0..REPLIES {
        let author = recado::store::Author { name: "Ana".into(), id: "prs_test".into() };
        first
            .reply(recado::store::Scope::All, conversation.clone(), author, format!("reply {n}"), None)
            .await
            .expect("queued");
    }

    let lease = std::time::Duration::from_secs(60);
    let claim_all = |db: Db| async move {
        let mut claimed = Vec::new();
        loop {
            let batch = db.claim_deliveries(4, lease).await.expect("claimed");
            if batch.is_empty() {
                return claimed;
            }
            claimed.extend(batch.into_iter().map(|delivery| delivery.outbox_id));
        }
    };
    let (a, b) = tokio::join!(claim_all(first.clone()), claim_all(second.clone()));
    let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(a.len() + b.len(), REPLIES, "each delivery claimed once: {} and {}", a.len(), b.len());
    assert_eq!(all.len(), REPLIES);
    first.close().await;
    second.close().await;
}

/// The decision the client's defaults would make, ready to apply to `message_id`, starting a first-response
/// clock whose target passed a moment ago when `clock` is set.
fn decided(client: &ClientSlug, message_id: &MessageId, clock: bool) -> ProcessedDecision {
    let now = Timestamp::now();
    ProcessedDecision {
        client: client.clone(),
        message_id: message_id.clone(),
        source: DecisionSource::Defaults,
        decision: Decision { reason: "test".into(), ..Decision::default() },
        language: None,
        runs: Vec::new(),
        sla: clock.then(|| (Timestamp(now.millis() - 2), Timestamp(now.millis() - 1), now)),
        queue_timeout: None,
    }
}

const BREAKER: recado::plugins::Breaker = recado::plugins::Breaker { failures: 5 };

/// Two nodes claiming one client's waiting messages at once: one of them gets the client, the other only
/// once it is given back or the claim runs out; and a turn whose claim was taken over applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claiming_one_clients_messages_take_turns_and_a_turn_taken_over_applies_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second, client) = two_nodes(dir.path(), "Shop").await;
    let stored = ingest(&first, &client, vec![message(&client, "m1".into(), "+34600000001".into())]).await;
    let message_id = stored.messages[0].message_id.clone();
    let lease = Duration::from_secs(60);

    for _ in 0..20 {
        let (a, b) =
            tokio::join!(first.claim_processing(client.clone(), lease), second.claim_processing(client.clone(), lease));
        let (a, b) = (a.expect("claim"), b.expect("claim"));
        assert!(a.is_some() != b.is_some(), "one node gets the client: {a:?} {b:?}");
        assert_eq!(first.claim_processing(client.clone(), lease).await.expect("claim"), None, "held meanwhile");
        first.release_processing(a.or(b).expect("one claim")).await.expect("given back");
    }

    // A claim that ran out is taken over; the decisions made under it are then refused, all of them.
    let stale = first.claim_processing(client.clone(), Duration::ZERO).await.expect("claim").expect("free");
    let current = second.claim_processing(client.clone(), lease).await.expect("claim").expect("ran out");
    let refused = first.apply_decisions(stale, vec![decided(&client, &message_id, false)], BREAKER).await;
    assert!(matches!(refused, Err(recado::store::Error::LeaseLost)), "{refused:?}");
    let database = Database::of(dir.path());
    assert_eq!(database.counts(&["decisions"]).await, [0]);
    let state = database.value("SELECT state FROM messages WHERE id = ?1", &[message_id.as_str().into()]).await;
    assert_eq!(state.text(), "received", "still waiting for the node that holds the client now");
    let applied = second.apply_decisions(current, vec![decided(&client, &message_id, false)], BREAKER).await;
    assert_eq!(applied.expect("applied"), 1);
    assert_eq!(database.counts(&["decisions"]).await, [1]);
    // Applying ended the claim: the client is free for the next turn.
    assert!(first.claim_processing(client.clone(), lease).await.expect("claim").is_some());
    first.close().await;
    second.close().await;
}

/// A node restarted after a crash gives back, at once, the processing claims it left behind (its id is kept in
/// its data directory), and leaves alone the ones another node holds; without it, the clients it was serving
/// would wait for the claims to run out (`pipeline.lease_ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_after_a_crash_gives_back_its_own_claims_and_no_other_nodes() {
    if crate::database::postgres_only("one server processes a SQLite database: it forgets every claim at start") {
        return;
    }
    let (dir, other_dir) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let (first, _, client) = two_nodes(dir.path(), "Shop").await;
    // Another data directory on the same database, sealing channel secrets with the same key, as deployed.
    let (mut settings, shared) =
        (crate::database::settings_for(other_dir.path()), crate::database::settings_for(dir.path()));
    settings.database.url = shared.database.url;
    settings.storage.secrets_key_file = Some(shared.storage.secrets_key_path());
    let second = Db::connect(&settings.storage, &settings.database).await.expect("the second node's store opens");
    let neighbour = ClientSlug::parse("neighbour").expect("slug");
    let profile: ClientProfile = serde_json::from_value(crate::helpers::profile("Neighbour")).expect("profile");
    first.create_client(neighbour.clone(), profile, "test".into()).await.expect("client");

    let hour = Duration::from_secs(3_600);
    first.claim_processing(client.clone(), hour).await.expect("claim").expect("free");
    second.claim_processing(neighbour.clone(), hour).await.expect("claim").expect("free");
    let id = std::fs::read_to_string(dir.path().join("node-id")).expect("the node's id is kept");
    // The first node dies holding its claim (nothing given back), and starts again on its data directory.
    first.close().await;
    let first = open_store(dir.path()).await;
    assert_eq!(std::fs::read_to_string(dir.path().join("node-id")).expect("kept"), id, "the same node");
    assert_eq!(first.forget_stale_processing_claims().await.expect("forgotten"), 1);
    assert!(second.claim_processing(client.clone(), hour).await.expect("claim").is_some(), "given back");
    assert_eq!(first.claim_processing(neighbour, hour).await.expect("claim"), None, "still the other node's");
    first.close().await;
    second.close().await;
}

/// Two nodes claiming due first-response clocks at once: each clock is claimed by one of them, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claiming_due_clocks_at_once_never_claim_the_same_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second, client) = two_nodes(dir.path(), "Shop").await;
    const CONVERSATIONS: usize = 40;
    let messages = (0..CONVERSATIONS).map(|n| message(&client, format!("m{n}"), format!("+34600{n:06}"))).collect();
    let stored = ingest(&first, &client, messages).await;
    let lease = Duration::from_secs(60);
    let turn = first.claim_processing(client.clone(), lease).await.expect("claim").expect("free");
    let decisions = stored.messages.iter().map(|outcome| decided(&client, &outcome.message_id, true)).collect();
    assert_eq!(first.apply_decisions(turn, decisions, BREAKER).await.expect("applied"), CONVERSATIONS);

    let now = Timestamp::now();
    let claim_all = |db: Db| async move {
        let mut claimed = Vec::new();
        loop {
            let batch = db.claim_due_clocks(now, lease, 4).await.expect("claimed");
            if batch.is_empty() {
                return claimed;
            }
            claimed.extend(batch.into_iter().map(|clock| clock.conversation_id));
        }
    };
    let (a, b) = tokio::join!(claim_all(first.clone()), claim_all(second.clone()));
    let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(a.len() + b.len(), CONVERSATIONS, "each clock claimed once: {} and {}", a.len(), b.len());
    assert_eq!(all.len(), CONVERSATIONS);
    first.close().await;
    second.close().await;
}

/// A person changing a conversation's queue on one node while another node's transaction changes its
/// priority: the queue change waits for the other to commit and keeps its priority (the fields a change leaves
/// alone are not written back as they were read before).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routing_change_keeps_what_another_node_changed_meanwhile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, _second, client) = two_nodes(dir.path(), "Shop").await;
    let stored = ingest(&first, &client, vec![message(&client, "m1".into(), "+34600000001".into())]).await;
    let conversation = stored.messages[0].conversation_id.clone();
    let id = [Cell::from(conversation.as_str())];

    let database = Database::of(dir.path());
    let other = database.begin_holding("SELECT 1 FROM conversations WHERE id = ?1 FOR UPDATE", &id).await;
    let change = RoutingChange { queue: Some(Some("billing".into())), ..RoutingChange::default() };
    let routing = tokio::spawn({
        let first = first.clone();
        let conversation = conversation.clone();
        async move { first.route(Scope::All, conversation, change, "test".into()).await }
    });
    assert!(other.someone_waits(Duration::from_secs(30)).await, "the change waits for the row");
    other.execute("UPDATE conversations SET priority = 'urgent' WHERE id = ?1", &id).await;
    other.commit().await;
    let routed = routing.await.expect("joined").expect("routed");
    assert_eq!((routed.queue.as_deref(), routed.priority.as_str()), (Some("billing"), "urgent"));
    let row = database.query("SELECT queue, priority FROM conversations WHERE id = ?1", &id).await;
    assert_eq!((row[0][0].text(), row[0][1].text()), ("billing", "urgent"));
    first.close().await;
}

/// A closed conversation reopened on one node while another node stores the same customer's new message,
/// which opens a new conversation: the reopening waits for that message's transaction and then refuses, so
/// the customer never has two open conversations.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopening_a_conversation_while_another_node_opens_one_for_the_customer_leaves_one_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, _second, client) = two_nodes(dir.path(), "Shop").await;
    let stored = ingest(&first, &client, vec![message(&client, "m1".into(), "+34600000001".into())]).await;
    let conversation = stored.messages[0].conversation_id.clone();
    first
        .set_status(Scope::All, conversation.clone(), ConversationStatus::Closed, "test".into())
        .await
        .expect("closed");
    let id = [Cell::from(conversation.as_str())];

    // The other node's ingest, caught between opening the new conversation and committing: it holds the
    // contact (as ingest does) and has written the conversation.
    let database = Database::of(dir.path());
    let other = database
        .begin_holding(
            "SELECT 1 FROM contacts WHERE id = (SELECT contact_id FROM conversations WHERE id = ?1) FOR UPDATE",
            &id,
        )
        .await;
    // No parameter: PostgreSQL takes none in `CREATE TABLE AS`. The id is one the store generated.
    let copy = format!("CREATE TEMP TABLE opened AS SELECT * FROM conversations WHERE id = '{}'", id[0].text());
    other.execute(&copy, &[]).await;
    other.execute("UPDATE opened SET id = 'cnv_opened_elsewhere', status = 'open', closed_at = NULL", &[]).await;
    other.execute("INSERT INTO conversations SELECT * FROM opened", &[]).await;
    let reopening = tokio::spawn({
        let first = first.clone();
        async move { first.set_status(Scope::All, conversation, ConversationStatus::Open, "test".into()).await }
    });
    assert!(other.someone_waits(Duration::from_secs(30)).await, "the reopening waits for the contact");
    other.commit().await;
    let refused = reopening.await.expect("joined");
    assert!(matches!(refused, Err(recado::store::Error::Conflict(_))), "{refused:?}");
    let open = database.value("SELECT COUNT(*) FROM conversations WHERE status = 'open'", &[]).await;
    assert_eq!(open.integer(), 1, "one open conversation");
    first.close().await;
}

/// An article edited on one node from version 1 while another node's transaction saves its own edit of
/// version 1: the first edit waits for the second to commit, then finds itself stale instead of overwriting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_article_edit_from_an_old_version_is_stale_even_when_another_node_saves_meanwhile() {
    use recado::domain::ArticleContent;
    use recado::store::Edit;
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, _second, client) = two_nodes(dir.path(), "Shop").await;
    let content = |title: &str| ArticleContent {
        language: "es".into(),
        title: title.into(),
        questions: Vec::new(),
        body: "De 9 a 18h.".into(),
        tags: Vec::new(),
        shortcut: None,
    };
    let article = first.create_article(client.clone(), None, content("Horario"), "test".into()).await.expect("created");
    assert_eq!(article.version, 1);

    let database = Database::of(dir.path());
    let id = [Cell::from(article.id.as_str())];
    let lock = "SELECT 1 FROM articles WHERE client_id = 'shop' AND id = ?1 FOR UPDATE";
    let other = database.begin_holding(lock, &id).await;
    let editing = tokio::spawn({
        let (first, client, article) = (first.clone(), client.clone(), article.id.clone());
        async move { first.update_article(client, article, 1, content("Horario de apertura"), "test".into()).await }
    });
    assert!(other.someone_waits(Duration::from_secs(30)).await, "the edit waits for the article");
    let saved = "UPDATE articles SET title = 'Horas', version = version + 1 WHERE client_id = 'shop' AND id = ?1";
    other.execute(saved, &id).await;
    other.commit().await;
    match editing.await.expect("joined").expect("answered") {
        Edit::Stale(current) => assert_eq!((current.version, current.content.title.as_str()), (2, "Horas")),
        Edit::Applied(overwrote) => panic!("an edit of version 1 overwrote version 2: {overwrote:?}"),
    }
    first.close().await;
}

/// A transaction that recorded an event and commits after other transactions committed theirs: a reader
/// following the log on another node, which has already passed the others' events, still gets it (a position
/// is given when a row is committed, not when it is written). The article-change log that each node's search
/// index follows is numbered the same way. The other node's reader is woken by the notification, not by any
/// commit of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_of_the_logs_on_another_node_gets_an_event_committed_after_later_ones() {
    if crate::database::postgres_only("SQLite's one writer at a time numbers events in the order they commit") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second, client) = two_nodes(dir.path(), "Shop").await;
    let database = Database::of(dir.path());
    let mut events = second.event_ticks();
    let mut kb = second.kb_ticks();
    // Everything so far numbered: the reader starts after it.
    let unnumbered =
        "SELECT (SELECT COUNT(*) FROM events WHERE seq IS NULL) + (SELECT COUNT(*) FROM kb_changes WHERE seq IS NULL)";
    while database.value(unnumbered, &[]).await.integer() > 0 {
        tokio::select! {
            changed = events.changed() => changed.expect("ticks"),
            changed = kb.changed() => changed.expect("ticks"),
        }
    }
    let mut after = second.latest_event().await.expect("latest");
    let (_, kb_start) = second.kb_changes_after(0, 1_000).await.expect("changes");

    // A transaction writes an event and an article change, and has not committed yet.
    let slow = database
        .begin_holding("INSERT INTO events (client_id, kind, data, at) VALUES ('shop', 'test.slow', '{}', 0)", &[])
        .await;
    slow.execute("INSERT INTO kb_changes (client_id, article_id, at) VALUES ('shop', 'slow-article', 0)", &[]).await;
    // Meanwhile the first node stores a message and an article: their rows are written after the slow ones.
    ingest(&first, &client, vec![message(&client, "m1".into(), "+34600000001".into())]).await;
    let content = recado::domain::ArticleContent {
        language: "es".into(),
        title: "Horario".into(),
        questions: Vec::new(),
        body: "De 9 a 18h.".into(),
        tags: Vec::new(),
        shortcut: None,
    };
    first.create_article(client.clone(), None, content, "test".into()).await.expect("created");

    // The second node's reader passes the message's events, then gets the slow one once it commits.
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut committed = Some(slow);
    loop {
        events.borrow_and_update();
        let page = second.events_after(Scope::All, after, 100).await.expect("events");
        assert_eq!(page.resync, None);
        for record in page.records {
            assert!(record.seq > after, "positions only grow: {} after {after}", record.seq);
            after = record.seq;
            seen.push((record.seq, record.kind));
        }
        let kinds: Vec<&str> = seen.iter().map(|(_, kind)| kind.as_str()).collect();
        if kinds.contains(&"test.slow") {
            break;
        }
        if kinds.contains(&"message.created")
            && let Some(slow) = committed.take()
        {
            slow.commit().await;
        }
        let woken = tokio::time::timeout(Duration::from_secs(30), events.changed()).await;
        woken.unwrap_or_else(|_| panic!("the slow transaction's event never came: {seen:?}")).expect("ticks");
    }
    let position = |kind: &str| seen.iter().find(|(_, seen)| seen == kind).map(|(seq, _)| *seq);
    assert!(position("message.created") < position("test.slow"), "{seen:?}");

    // The search index's log: both article changes come, the slow one too, whatever order they commit in.
    let mut articles = Vec::new();
    let mut kb_after = kb_start;
    while articles.len() < 2 {
        kb.borrow_and_update();
        let (changes, last) = second.kb_changes_after(kb_after, 100).await.expect("changes");
        kb_after = last;
        articles.extend(changes.into_iter().map(|(_, id, _)| id.as_str().to_owned()));
        if articles.len() < 2 {
            let woken = tokio::time::timeout(Duration::from_secs(30), kb.changed()).await;
            woken.unwrap_or_else(|_| panic!("an article change never came: {articles:?}")).expect("ticks");
        }
    }
    articles.sort();
    assert_eq!(articles, ["horario", "slow-article"]);
    second.close().await;
    first.close().await;
}
