//! The generic message API: durable ingest, dedupe, conversations found or opened, processing.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_in};

#[tokio::test]
async fn a_new_message_is_created_and_a_repeat_returns_the_same_ids_as_duplicate() {
    let app = spawn_app().await;
    let token = app.create_client("dental-gracia").await;

    let (status, first) = app.ingest("dental-gracia", &token, "m-1", "+34600111222", "Hola!").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["duplicate"], false);

    let (status, again) = app.ingest("dental-gracia", &token, "m-1", "+34600111222", "Hola!").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(again["conversation_id"], first["conversation_id"]);

    let conversation = app.conversation(first["conversation_id"].as_str().expect("id")).await;
    let inbound: Vec<_> =
        conversation["messages"].as_array().expect("messages").iter().filter(|m| m["direction"] == "in").collect();
    assert_eq!(inbound.len(), 1, "{conversation:#}");
    assert_eq!(conversation["contact"]["handle"], "+34600111222");
    assert_eq!(conversation["contact"]["name"], "Núria");
}

#[tokio::test]
async fn concurrent_retries_of_one_message_store_it_once() {
    let app = spawn_app().await;
    let token = app.create_client("bakery").await;

    let requests = (0..40).map(|_| app.ingest("bakery", &token, "same-id", "+5491100000001", "¿Tienen medialunas?"));
    let results = futures::future::join_all(requests).await;

    let created = results.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    let duplicates =
        results.iter().filter(|(status, body)| *status == StatusCode::OK && body["duplicate"] == true).count();
    assert_eq!((created, duplicates), (1, 39), "{results:?}");
    let ids: HashSet<_> = results.iter().map(|(_, body)| body["message_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "every answer names the same message");
}

#[tokio::test]
async fn the_same_external_id_on_another_channel_or_client_is_a_different_message() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let b = app.create_client("client-b").await;
    let (_, first) = app.ingest("client-a", &a, "x-1", "+1", "hi").await;
    let (status, other_client) = app.ingest("client-b", &b, "x-1", "+1", "hi").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other_client["message_id"], first["message_id"]);
    let body = json!({ "external_id": "x-1", "from": { "handle": "+1" }, "text": "hi", "channel": "sms" });
    let (status, other_channel) = app.post("/api/v1/clients/client-a/messages", &a, body).await;
    assert_eq!(status, StatusCode::CREATED, "{other_channel}");
    assert_ne!(other_channel["message_id"], first["message_id"]);
}

#[tokio::test]
async fn messages_from_one_contact_share_an_open_conversation_and_a_closed_one_is_not_reused() {
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let (_, first) = app.ingest("shop", &token, "1", "+7900", "Здравствуйте").await;
    let (_, second) = app.ingest("shop", &token, "2", "+7900", "Где мой заказ?").await;
    assert_eq!(first["conversation_id"], second["conversation_id"]);

    let id = first["conversation_id"].as_str().expect("id");
    let (status, _) = app.post(&format!("/api/v1/conversations/{id}/close"), &app.assistant, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, third) = app.ingest("shop", &token, "3", "+7900", "Алло?").await;
    assert_ne!(third["conversation_id"], first["conversation_id"], "a new conversation after close");
}

#[tokio::test]
async fn ingest_needs_a_token_of_that_client_or_an_admin() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    app.create_client("client-b").await;
    let body = json!({ "external_id": "1", "from": { "handle": "+1" }, "text": "hi" });

    let (status, error) = app.call(Method::POST, "/api/v1/clients/client-b/messages", None, Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"]["code"], "unauthorized");
    let (status, _) =
        app.call(Method::POST, "/api/v1/clients/client-b/messages", Some("rcd_bogus_token"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.post("/api/v1/clients/client-b/messages", &a, body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client's slug is not found, not forbidden");
    let (status, _) = app.post("/api/v1/clients/client-b/messages", &app.assistant, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post("/api/v1/clients/client-b/messages", &app.admin, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.post("/api/v1/clients/nobody/messages", &app.admin, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    let (status, _) = app.ingest("client-a", &token, "1", "+1", "hi").await;
    assert_eq!(status, StatusCode::CREATED);
    app.db.revoke_token(token.clone()).await.expect("revoked");
    let (status, body) = app.ingest("client-a", &token, "2", "+1", "hi").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn the_first_message_gets_one_automatic_acknowledgement_that_is_not_a_human_reply() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let (_, first) = app.ingest("dental", &token, "1", "+34600", "Hola, tinc mal de queixal").await;
    app.ingest("dental", &token, "2", "+34600", "És urgent").await;
    let id = first["conversation_id"].as_str().expect("id");

    let conversation = app
        .wait_for_conversation(id, "both messages processed", |c| {
            c["messages"].as_array().is_some_and(|m| m.iter().filter(|m| m["state"] == "processed").count() == 2)
        })
        .await;
    let acks: Vec<_> =
        conversation["messages"].as_array().expect("messages").iter().filter(|m| m["kind"] == "auto_ack").collect();
    assert_eq!(acks.len(), 1, "{conversation:#}");
    // The customer wrote in Catalan: the acknowledgement follows, although the client's first language is "es".
    assert_eq!(acks[0]["text"], "Gràcies! Et responem de seguida.");
    assert_eq!(acks[0]["direction"], "out");
    assert!(conversation["first_inbound_at"].is_string());
    assert!(conversation["first_human_reply_at"].is_null(), "an acknowledgement is not a human reply");

    let message_id = first["message_id"].as_str().expect("id");
    let (status, decisions) = app.get(&format!("/api/v1/messages/{message_id}/decisions"), &app.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decisions["decisions"].as_array().expect("list").len(), 1, "{decisions}");
    assert_eq!(decisions["decisions"][0]["source"], "defaults");
}

#[tokio::test]
async fn messages_left_unprocessed_are_processed_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Store a message straight through the store while no server runs: the state a crash leaves between
    // the ingest commit and processing.
    let first = spawn_in(dir.path(), |_| {}).await;
    first.create_client("client-a").await;
    let message = recado::domain::InboundMessage {
        client: recado::domain::ClientSlug::parse("client-a").expect("slug"),
        channel: recado::domain::ChannelName::known("api"),
        external_id: "left-behind".into(),
        handle: "+1".into(),
        name: None,
        text: "hello?".into(),
        parts: Vec::new(),
        context: recado::domain::Context::default(),
        user_id: None,
        username: None,
        received_at: recado::domain::Timestamp::now(),
    };
    let client = message.client.clone();
    first.stop().await;
    let db = crate::database::open_store(dir.path()).await;
    let channel = message.channel.clone();
    let batch = recado::store::InboundBatch { messages: vec![message], ..Default::default() };
    let outcome = db.ingest(client, channel, batch).await.expect("stored").messages.remove(0);
    db.close().await;

    let second = spawn_in(dir.path(), |_| {}).await;
    let conversation = second
        .wait_for_conversation(outcome.conversation_id.as_str(), "the message processed after restart", |c| {
            c["messages"][0]["state"] == "processed"
        })
        .await;
    assert_eq!(conversation["messages"][0]["id"], outcome.message_id.as_str());
    second.stop().await;
}

#[tokio::test]
async fn the_message_api_takes_parts_and_attachments_by_url_or_inline() {
    use base64::Engine as _;

    let files = crate::helpers::FakeProvider::start(Vec::new()).await;
    let jpeg = {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];
        bytes.resize(2_000, 3);
        bytes
    };
    files.script_for("/uploads/", vec![crate::helpers::Behaviour::Bytes(jpeg.clone())]);
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n".to_vec();
    let body = json!({
        "external_id": "web-1",
        "from": { "handle": "visitor-9", "name": "Marta" },
        "text": "Mireu la foto i la factura",
        "parts": [{ "type": "location", "latitude": 41.3874, "longitude": 2.1686, "name": "Botiga" }],
        "attachments": [
            { "url": format!("{}/uploads/crown.jpg", files.url), "caption": "la corona" },
            { "data_base64": base64::engine::general_purpose::STANDARD.encode(&pdf), "filename": "factura.pdf" }
        ],
        "context": { "reply_to": "msg-earlier", "forwarded": true }
    });
    let (status, created) = app.post("/api/v1/clients/shop/messages", &token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let conversation = created["conversation_id"].as_str().expect("id");
    let detail = app
        .wait_for_conversation(conversation, "both files stored", |detail| {
            let media = detail["messages"][0]["media"].as_array().cloned().unwrap_or_default();
            media.len() == 2 && media.iter().all(|file| file["state"] == "stored")
        })
        .await;
    let message = &detail["messages"][0];
    let text = message["text"].as_str().expect("text");
    for needle in ["Mireu la foto", "[location: Botiga", "[photo] la corona", "[document: factura.pdf]"] {
        assert!(text.contains(needle), "{needle:?} missing from {text:?}");
    }
    assert_eq!(message["context"]["reply_to"], "msg-earlier");
    let types: Vec<&str> =
        message["media"].as_array().expect("media").iter().map(|m| m["content_type"].as_str().expect("type")).collect();
    assert_eq!(types, ["image/jpeg", "application/pdf"]);

    // A URL into the operator's network is refused when private targets are not allowed; so are bad forms.
    let strict = crate::helpers::spawn_app_with(|settings| settings.outbox.allow_private_targets = false).await;
    let token = strict.create_client("shop").await;
    for (attachments, needle) in [
        (json!([{ "url": "http://169.254.169.254/latest/meta-data" }]), "attachments[0].url"),
        (json!([{ "url": "https://example.com/a.jpg", "data_base64": "AAAA" }]), "exactly one"),
        (json!([{ "data_base64": "not base64!" }]), "data_base64"),
    ] {
        let body = json!({ "external_id": "x", "from": { "handle": "h" }, "attachments": attachments });
        let (status, error) = strict.post("/api/v1/clients/shop/messages", &token, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert!(error["error"]["message"].as_str().expect("message").contains(needle), "{error}");
    }
    let (status, error) = strict
        .post("/api/v1/clients/shop/messages", &token, json!({ "external_id": "y", "from": { "handle": "h" } }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a message needs some content: {error}");
    assert_eq!(strict.table_counts(&["messages"]).await[0], 0, "nothing half-written");
    strict.stop().await;
    app.stop().await;
}
