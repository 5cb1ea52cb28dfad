//! Several nodes on one database: what PostgreSQL's row locks and unique keys must make safe when the same work
//! reaches two nodes at once. Each test also runs on SQLite, where the two stores are two processes' worth of
//! handles on one database file.

use recado::domain::{ChannelName, ClientProfile, ClientSlug, InboundMessage, Timestamp};
use recado::store::{Db, InboundBatch, IngestReport};

use crate::database::{Database, open_store};

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
