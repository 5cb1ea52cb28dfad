//! Live events: edits, reactions and deletions (and new messages, downloads, deliveries) appear on
//! `GET /api/v1/events` in commit order, each client's only to those who may see it, and a reconnect with
//! `Last-Event-ID` resumes without a gap.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, spawn_app, whatsapp_signature};

const SECRET: &str = "events-app-secret-0123456789";

/// An open event stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sent {
    id: i64,
    kind: String,
    data: Value,
}

impl Stream {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<i64>) -> Self {
        let mut request = app.http.get(format!("{}/api/v1/events", app.base)).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream"));
        Self { response, buffer: String::new() }
    }

    /// The next event whose kind starts with `prefix`, or `None` if none comes within a second.
    async fn next(&mut self, prefix: &str) -> Option<Sent> {
        self.next_where(|sent| sent.kind.starts_with(prefix)).await
    }

    /// The next event about what a customer did (their messages, edits, reactions, deletions), skipping what
    /// was sent to them.
    async fn next_from_customer(&mut self) -> Option<Sent> {
        self.next_where(|sent| sent.kind.starts_with("message.") && sent.data["data"]["direction"] != "out").await
    }

    /// The next event `wanted` accepts, or `None` if none comes within a second.
    async fn next_where(&mut self, wanted: impl Fn(&Sent) -> bool) -> Option<Sent> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sent = Sent { id: 0, kind: String::new(), data: Value::Null };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                        sent.id = id.trim().parse().expect("a numeric id");
                    } else if let Some(kind) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                        sent.kind = kind.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                        sent.data = serde_json::from_str(data).expect("JSON data");
                    }
                }
                if sent.id > 0 && wanted(&sent) {
                    return Some(sent);
                }
            }
            match tokio::time::timeout(Duration::from_secs(1), self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

async fn post_whatsapp(app: &TestApp, message: Value) {
    let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "messages",
        "value": { "messaging_product": "whatsapp", "contacts": [{ "profile": { "name": "Núria" }, "wa_id": "34600111222" }],
            "messages": [message] } }] }] });
    let bytes = serde_json::to_vec(&body).expect("body");
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp/dental", app.base))
        .header("x-hub-signature-256", whatsapp_signature(SECRET, &bytes))
        .body(bytes)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn edits_reactions_and_deletions_stream_live_to_those_who_may_see_them_and_resume_without_gaps() {
    let app = spawn_app().await;
    let dental = app.create_client("dental").await;
    app.put_channel(
        "dental",
        "whatsapp",
        json!({ "app_secret": SECRET, "verify_token": "events-verify-0123456789",
        "phone_number_id": "1099", "access_token": "EAAG", "api_base_url": "http://127.0.0.1:9/v21.0" }),
    )
    .await;
    let bakery = app.create_client("bakery").await;

    let mut dental_stream = Stream::open(&app, &dental, None).await;
    let mut bakery_stream = Stream::open(&app, &bakery, None).await;
    let mut admin_stream = Stream::open(&app, &app.admin, None).await;

    let from = "34600111222";
    post_whatsapp(
        &app,
        json!({ "from": from, "id": "wamid.1", "type": "text", "text": { "body": "Tinc hora dimarts?" } }),
    )
    .await;
    post_whatsapp(
        &app,
        json!({ "from": from, "id": "wamid.2", "type": "edit", "edit": { "original_message_id": "wamid.1",
        "message": { "type": "text", "text": { "body": "Tinc hora dimecres?" } } } }),
    )
    .await;
    post_whatsapp(&app, json!({ "from": from, "id": "wamid.3", "type": "reaction", "reaction": { "message_id": "wamid.1", "emoji": "🙏" } })).await;
    post_whatsapp(
        &app,
        json!({ "from": from, "id": "wamid.4", "type": "revoke", "revoke": { "original_message_id": "wamid.1" } }),
    )
    .await;
    let (status, _) = app
        .post(
            "/api/v1/clients/bakery/messages",
            &bakery,
            json!({ "external_id": "b1", "from": { "handle": "+7900" }, "text": "Хлеб есть?" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(dental_stream.next_from_customer().await.expect("the client's events arrive"));
    }
    let kinds: Vec<&str> = seen.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["message.created", "message.edited", "message.reaction", "message.deleted"]);
    assert!(seen.windows(2).all(|pair| pair[0].id < pair[1].id), "ids grow: {seen:?}");
    assert!(seen.iter().all(|event| event.data["client"] == "dental"));
    let message_id = &seen[0].data["message_id"];
    assert!(seen.iter().all(|event| event.data["message_id"] == *message_id), "all about the one message");
    assert_eq!(seen[2].data["data"]["emoji"], "🙏");

    // The other client's stream has its own message and nothing of the first client's.
    let theirs = bakery_stream.next("").await.expect("the bakery's first event");
    assert_eq!(theirs.kind, "conversation.created", "a new conversation, then its first message");
    let theirs = bakery_stream.next("").await.expect("the bakery's message");
    assert_eq!(theirs.kind, "message.created");
    assert_eq!(theirs.data["client"], "bakery");
    while let Some(event) = bakery_stream.next("").await {
        assert_eq!(event.data["client"], "bakery", "{event:?}");
    }
    // The admin sees both.
    let mut clients = std::collections::HashSet::new();
    while let Some(event) = admin_stream.next("message.").await {
        clients.insert(event.data["client"].as_str().expect("client").to_owned());
    }
    assert_eq!(clients.len(), 2, "{clients:?}");

    // A reconnect after the first event resumes with the second, in order.
    drop(dental_stream);
    let mut resumed = Stream::open(&app, &dental, Some(seen[0].id)).await;
    for expected in &seen[1..] {
        let event = resumed.next_from_customer().await.expect("resumed");
        assert_eq!((event.id, event.kind.as_str()), (expected.id, expected.kind.as_str()));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_token_may_hold_only_a_few_streams() {
    let app = spawn_app().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(Stream::open(&app, &app.assistant, None).await);
    }
    let response =
        app.http.get(format!("{}/api/v1/events", app.base)).bearer_auth(&app.assistant).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "the fifth stream of one token");
    let other = Stream::open(&app, &app.admin, None).await;
    drop(open.pop());
    // A stream the caller closes gives its slot back.
    let mut reopened = false;
    for _ in 0..50 {
        let response =
            app.http.get(format!("{}/api/v1/events", app.base)).bearer_auth(&app.assistant).send().await.expect("sent");
        if response.status() == StatusCode::OK {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(other);
    assert!(reopened, "a closed stream gives its slot back");
    app.stop().await;
}

impl Stream {
    /// Every event that arrives until none comes for a second.
    async fn drain(&mut self) -> Vec<Sent> {
        let mut events = Vec::new();
        while let Some(event) = self.next("").await {
            events.push(event);
        }
        events
    }

    /// Events until (and with) the first `kind`, which must come.
    async fn until(&mut self, kind: &str) -> Vec<Sent> {
        let mut events = Vec::new();
        loop {
            let event = self.next("").await.unwrap_or_else(|| panic!("no {kind} among {events:#?}"));
            let done = event.kind == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

fn kinds(events: &[Sent]) -> Vec<&str> {
    events.iter().map(|event| event.kind.as_str()).collect()
}

/// Ids grow and every event is `client`'s.
fn all_of(client: &str, events: &[Sent]) {
    assert!(!events.is_empty());
    assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id), "in order: {events:#?}");
    assert!(events.iter().all(|event| event.data["client"] == client), "only {client}'s: {events:#?}");
}

#[tokio::test]
async fn two_assistants_each_see_only_their_clients_events_in_order_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    let dental = app.create_client("dental").await;
    let bakery = app.create_client("bakery").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    let berta = app.person("berta@example.com", "assistant", None).await;
    app.assign("dental", &["ana@example.com"]).await;
    app.assign("bakery", &["berta@example.com"]).await;
    let mut ana_stream = Stream::open(&app, &ana.token, None).await;
    let mut berta_stream = Stream::open(&app, &berta.token, None).await;

    // A customer of each; each assistant takes hers; Berta answers and closes, Ana leaves hers waiting.
    let (_, dental_conversation) = app.ingest_processed("dental", &dental, "d1", "+34600111222", "Bon dia").await;
    let (_, bakery_conversation) = app.ingest_processed("bakery", &bakery, "b1", "+79001112233", "Хлеб есть?").await;
    let dental_id = dental_conversation["id"].as_str().expect("id").to_owned();
    let bakery_id = bakery_conversation["id"].as_str().expect("id").to_owned();
    async fn assign(app: &TestApp, id: &str, who: &str, token: &str) -> StatusCode {
        app.post(&format!("/api/v1/conversations/{id}/assign"), token, json!({ "assignee": who })).await.0
    }
    assert_eq!(assign(&app, &dental_id, "ana@example.com", &ana.token).await, StatusCode::OK);
    assert_eq!(assign(&app, &bakery_id, "berta@example.com", &berta.token).await, StatusCode::OK);
    let (status, _) =
        app.post(&format!("/api/v1/conversations/{bakery_id}/replies"), &berta.token, json!({ "text": "Да!" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        app.post(&format!("/api/v1/conversations/{bakery_id}/close"), &berta.token, json!({})).await.0,
        StatusCode::OK
    );

    let ana_before = ana_stream.until("conversation.updated").await;
    all_of("dental", &ana_before);
    let ana_kinds = kinds(&ana_before);
    for kind in ["conversation.created", "message.created", "decision.recorded"] {
        assert!(ana_kinds.contains(&kind), "{kind} in {ana_kinds:?}");
    }
    assert_eq!(ana_before.last().expect("last").data["data"]["assignee"], "ana@example.com");
    let acknowledgement = ana_before
        .iter()
        .find(|event| event.kind == "message.created" && event.data["data"]["kind"] == "auto_ack")
        .expect("the automatic acknowledgement, as it was queued");
    assert_eq!(acknowledgement.data["data"]["direction"], "out");
    let mut berta_before = berta_stream.until("conversation.updated").await;
    berta_before.extend(berta_stream.until("conversation.updated").await);
    all_of("bakery", &berta_before);
    let reply = berta_before
        .iter()
        .find(|event| event.kind == "message.created" && event.data["data"]["kind"] == "assistant")
        .expect("Berta's reply");
    assert_eq!(reply.data["data"]["author"], "berta");
    assert_eq!(berta_before.last().expect("last").data["data"]["status"], "closed");
    let (ana_last, berta_last) = (ana_stream.drain().await, berta_stream.drain().await);
    let ana_resume = ana_last.last().map_or(ana_before.last().expect("seen").id, |event| event.id);
    let berta_resume = berta_last.last().map_or(berta_before.last().expect("seen").id, |event| event.id);
    drop((ana_stream, berta_stream));
    app.stop().await;

    // Back up with its clock past Ana's first-response target: the clock runs out while she is reconnecting.
    let due: jiff::Timestamp = dental_conversation["sla"]["due_at"].as_str().expect("due").parse().expect("time");
    let ahead = u64::try_from(due.as_millisecond() + 1_000 - jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    let app =
        crate::helpers::spawn_in_at(dir.path(), |_| {}, recado::domain::Clock::ahead(Duration::from_millis(ahead)))
            .await;
    let mut ana_stream = Stream::open(&app, &ana.token, Some(ana_resume)).await;
    let mut berta_stream = Stream::open(&app, &berta.token, Some(berta_resume)).await;
    app.ingest_processed("bakery", &bakery, "b2", "+79001112233", "И торт?").await;
    let (status, _) = app
        .post(
            "/api/v1/clients/dental/kb/articles",
            &app.admin,
            json!({ "language": "ca", "title": "Horari", "body": "Obrim de 9 a 14." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let ana_after = ana_stream.until("article.changed").await;
    all_of("dental", &ana_after);
    assert!(ana_after[0].id > ana_resume, "nothing seen twice");
    let ana_kinds = kinds(&ana_after);
    for kind in ["sla.overdue", "escalation.raised", "conversation.updated", "article.changed"] {
        assert!(ana_kinds.contains(&kind), "{kind} in {ana_kinds:?}");
    }
    let berta_after = berta_stream.until("decision.recorded").await;
    all_of("bakery", &berta_after);
    assert!(berta_after[0].id > berta_resume && kinds(&berta_after).contains(&"message.created"), "{berta_after:#?}");
    for event in berta_stream.drain().await {
        assert_eq!(event.data["client"], "bakery", "{event:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stream_too_far_behind_is_told_to_resync_and_goes_on_from_there() {
    let app = crate::helpers::spawn_app_with(|settings| settings.events.max_replay = 3).await;
    let token = app.create_client("dental").await;
    for n in 0..3 {
        app.ingest("dental", &token, &format!("m{n}"), &format!("+3460000000{n}"), "Hola").await;
    }
    let (_, page) = app.get("/api/v1/conversations", &app.admin).await;
    assert_eq!(page["conversations"].as_array().expect("list").len(), 3);
    // Six events at least (a conversation and a message each): resuming from the start is too far behind.
    let mut stream = Stream::open(&app, &token, Some(0)).await;
    let first = stream.next("").await.expect("an event");
    assert_eq!(first.kind, "resync", "{first:?}");
    assert!(first.data["latest"].as_i64().expect("latest") >= 6);
    assert_eq!(first.id, first.data["latest"].as_i64().expect("latest"), "the stream goes on from the newest");
    app.ingest("dental", &token, "m9", "+34600000009", "Hola").await;
    let next = stream.next("message.created").await.expect("new events follow");
    assert!(next.id > first.id);
}

#[tokio::test]
async fn trimmed_events_cannot_be_replayed_and_the_reader_is_told_to_resync() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let mut ticks = app.db.event_ticks();
    app.ingest("dental", &token, "m1", "+34600000001", "Hola").await;
    // Events are readable once the log has numbered them: at once on SQLite, moments after the commit on
    // PostgreSQL (which ticks when it did).
    let before = loop {
        let latest = app.db.latest_event().await.expect("latest");
        if latest > 0 {
            break latest;
        }
        ticks.changed().await.expect("ticks");
    };
    // Everything recorded up to now is past the retention.
    let trimmed = app.db.trim_events(recado::domain::Timestamp::now().plus(Duration::from_secs(1)), 100_000).await;
    assert!(trimmed.expect("trimmed") > 0);
    let mut stream = Stream::open(&app, &token, Some(1)).await;
    let first = stream.next("").await.expect("an event");
    assert_eq!(first.kind, "resync", "{first:?}");
    assert!(first.id >= before && first.data["latest"] == first.id, "{first:?}");
    // A reader that is up to date loses nothing: what follows its id was not trimmed.
    let mut current = Stream::open(&app, &token, Some(first.id)).await;
    app.ingest("dental", &token, "m2", "+34600000002", "Hola").await;
    let next = current.next("conversation.created").await.expect("the new conversation");
    assert!(next.id > first.id);
}

#[tokio::test]
async fn a_stream_ends_when_its_session_or_token_does() {
    let app = crate::helpers::spawn_app_with(|settings| settings.events.recheck_ms = 100).await;
    let ana = app.person("ana@example.com", "admin", None).await;
    let mut stream = Stream::open(&app, &ana.token, None).await;
    let id = ana.token.split('_').nth(1).expect("the token's id");
    let (status, _) = app.call(reqwest::Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&ana.token), None).await;
    assert_eq!(status, StatusCode::OK);
    // The stream ends: the body is finished (or the connection closed) instead of waiting for events.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.response.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the revoked token's stream was not closed");
}

/// Two nodes on one PostgreSQL database: a person connected to one sees, live, a message the other received;
/// and an article written through the other is suggested by this one, whose index is woken by the
/// notification (its own poll is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_on_one_node_sees_live_what_another_node_received_and_searches_its_articles() {
    if crate::database::postgres_only("servers share a database only on PostgreSQL") {
        return;
    }
    let (first_dir, second_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let hour = 3_600_000;
    let first = super::helpers::spawn_in(first_dir.path(), |settings| settings.search.poll_interval_ms = hour).await;
    let (url, key) = (crate::database::url_for(first_dir.path()), first_dir.path().join("secrets.key"));
    let second = super::helpers::spawn_in(second_dir.path(), move |settings| {
        settings.database.url = Some(url.into());
        settings.storage.secrets_key_file = Some(key);
        settings.search.poll_interval_ms = hour;
    })
    .await;
    let token = first.create_client("dental").await;
    let mut stream = Stream::open(&first, &first.admin, None).await;

    let (status, stored) = second.ingest("dental", &token, "x1", "+34600111222", "Teniu hora dimarts?").await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let event = stream.next_from_customer().await.expect("the other node's message arrives");
    assert_eq!((event.kind.as_str(), &event.data["message_id"]), ("message.created", &stored["message_id"]));

    let article = json!({ "language": "ca", "title": "Preus", "body": "Una neteja costa 60 €." });
    let (status, created) = second.post("/api/v1/clients/dental/kb/articles", &second.admin, article).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, suggested) =
            first.get("/api/v1/clients/dental/suggestions?q=quant%20costa%20una%20neteja", &first.admin).await;
        assert_eq!(status, StatusCode::OK, "{suggested}");
        if suggested["suggestions"].as_array().is_some_and(|list| list.iter().any(|s| s["article_id"] == created["id"]))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not suggested by the other node: {suggested}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.stop().await;
    first.stop().await;
}
