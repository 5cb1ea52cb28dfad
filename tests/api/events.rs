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
                if sent.id > 0 && sent.kind.starts_with(prefix) {
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
        seen.push(dental_stream.next("message.").await.expect("the client's events arrive"));
    }
    let kinds: Vec<&str> = seen.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["message.created", "message.edited", "message.reaction", "message.deleted"]);
    assert!(seen.windows(2).all(|pair| pair[0].id < pair[1].id), "ids grow: {seen:?}");
    assert!(seen.iter().all(|event| event.data["client"] == "dental"));
    let message_id = &seen[0].data["message_id"];
    assert!(seen.iter().all(|event| event.data["message_id"] == *message_id), "all about the one message");
    assert_eq!(seen[2].data["data"]["emoji"], "🙏");

    // The other client's stream has its own message and nothing of the first client's.
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
        let event = resumed.next("message.").await.expect("resumed");
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
