//! Outbound delivery against a local fake provider: adapters, signatures, retries, dead letters, restarts.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Behaviour, FakeProvider, TestApp, spawn_app, spawn_app_with, spawn_in, whatsapp_signature};

const WEBHOOK_SECRET: &str = "client-webhook-secret-0001";

/// A client whose replies go to `provider` through the generic webhook; returns a conversation id.
async fn conversation_with_webhook(app: &TestApp, slug: &str, secret: &str, provider: &FakeProvider) -> String {
    let token = app.create_client(slug).await;
    app.put_channel(slug, "webhook", json!({ "url": format!("{}/hook", provider.url), "secret": secret })).await;
    let (_, inbound) = app.ingest(slug, &token, "m1", "+34600111222", "Hola").await;
    inbound["conversation_id"].as_str().expect("id").to_owned()
}

/// Posts a body to the `dental` client's WhatsApp webhook, signed, and expects it acknowledged.
async fn post_signed(app: &TestApp, body: &Value) {
    let body = body.to_string();
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp/dental", app.base))
        .header("x-hub-signature-256", whatsapp_signature("s3-meta-app-secret", body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn reply(app: &TestApp, conversation: &str, text: &str) -> String {
    let (status, body) = app
        .post(&format!("/api/v1/conversations/{conversation}/replies"), &app.assistant, json!({ "text": text }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["message"]["id"].as_str().expect("id").to_owned()
}

fn delivery_of<'a>(conversation: &'a Value, message_id: &str) -> &'a Value {
    let message = conversation["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == message_id)
        .expect("message present");
    &message["delivery"]
}

async fn wait_for_state(app: &TestApp, conversation: &str, message_id: &str, state: &str) -> Value {
    let conversation = app
        .wait_for_conversation(conversation, &format!("delivery {state}"), |c| {
            delivery_of(c, message_id)["state"] == state
        })
        .await;
    delivery_of(&conversation, message_id).clone()
}

/// Replies of the assistant, not the automatic acknowledgements that the test profile also sends.
fn replies_received(provider: &FakeProvider) -> Vec<crate::helpers::Received> {
    provider.received().into_iter().filter(|r| r.json()["kind"] == "assistant").collect()
}

#[tokio::test]
async fn webhook_deliveries_are_signed_with_the_clients_own_secret() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(vec![]).await;
    let a = conversation_with_webhook(&app, "client-a", WEBHOOK_SECRET, &provider).await;
    let b = conversation_with_webhook(&app, "client-b", "another-secret-of-client-b", &provider).await;
    let message_a = reply(&app, &a, "Per a A").await;
    let message_b = reply(&app, &b, "Per a B").await;
    wait_for_state(&app, &a, &message_a, "sent").await;
    wait_for_state(&app, &b, &message_b, "sent").await;

    for received in replies_received(&provider) {
        let body = received.json();
        let secret = if body["client"] == "client-a" { WEBHOOK_SECRET } else { "another-secret-of-client-b" };
        let signature = received.headers.get("x-recado-signature-256").expect("signed").to_str().expect("ascii");
        assert_eq!(signature, whatsapp_signature(secret, &received.body), "signed with {}'s secret", body["client"]);
        assert_eq!(
            received.headers.get("idempotency-key").expect("key").to_str().expect("ascii"),
            body["outbox_id"].as_str().expect("id")
        );
        assert_eq!(body["to"], "+34600111222");
    }
    assert_eq!(replies_received(&provider).len(), 2, "each reply sent exactly once");
}

#[tokio::test]
async fn whatsapp_replies_carry_the_outbox_id_and_statuses_move_the_delivery_forward() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(vec![]).await;
    app.create_client("dental").await;
    app.put_channel(
        "dental",
        "whatsapp",
        json!({ "app_secret": "s3-meta-app-secret", "verify_token": "verify-token-0123456789", "phone_number_id": "1099", "access_token": "EAAG", "api_base_url": format!("{}/v21.0", provider.url) }),
    )
    .await;
    let inbound = json!({ "entry": [{ "changes": [{ "field": "messages", "value": {
        "messages": [{ "id": "wamid.in", "from": "34600111222", "type": "text", "text": { "body": "Hola" } }] } }] }] });
    post_signed(&app, &inbound).await;
    let (_, list) = app.get("/api/v1/conversations?client=dental", &app.admin).await;
    let conversation = list["conversations"][0]["id"].as_str().expect("id").to_owned();
    let message = reply(&app, &conversation, "Bon dia! Sí, tenim hora.").await;
    let delivery = wait_for_state(&app, &conversation, &message, "sent").await;
    let outbox_id = delivery["outbox_id"].as_str().expect("outbox id");

    let sent = provider
        .received()
        .into_iter()
        .find(|r| r.json()["text"]["body"] == "Bon dia! Sí, tenim hora.")
        .expect("sent to WhatsApp");
    assert_eq!(sent.path, "/v21.0/1099/messages");
    assert_eq!(sent.headers.get("authorization").expect("auth").to_str().expect("ascii"), "Bearer EAAG");
    assert_eq!(sent.json()["biz_opaque_callback_data"], outbox_id);
    assert_eq!(sent.json()["to"], "34600111222");

    // Meta reports "read", then a late "delivered": the state stays at read.
    for status in ["read", "delivered"] {
        let callback = json!({ "entry": [{ "changes": [{ "field": "messages", "value": {
            "statuses": [{ "id": "wamid.whatever", "status": status, "biz_opaque_callback_data": outbox_id }] } }] }] });
        post_signed(&app, &callback).await;
    }
    assert_eq!(delivery_of(&app.conversation(&conversation).await, &message)["state"], "read");

    // A failure Meta reports later names its code and title (the shape of Meta's failed-status example).
    let second = reply(&app, &conversation, "Li confirmem dimarts.").await;
    let delivery = wait_for_state(&app, &conversation, &second, "sent").await;
    let callback = json!({ "entry": [{ "changes": [{ "field": "messages", "value": { "statuses": [{
        "id": "wamid.failed", "status": "failed", "timestamp": "1700000000", "recipient_id": "34600111222",
        "biz_opaque_callback_data": delivery["outbox_id"],
        "errors": [{ "code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
            "error_data": { "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number." },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/" }] }] } }] }] });
    post_signed(&app, &callback).await;
    let failed = delivery_of(&app.conversation(&conversation).await, &second).clone();
    assert_eq!(failed["state"], "failed");
    let error = failed["last_error"].as_str().expect("the error");
    assert!(error.starts_with("131047 Re-engagement message: Message failed to send"), "{error}");
}

#[tokio::test]
async fn telegram_replies_use_send_message_with_the_chat_id() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(vec![]).await;
    app.create_client("studio").await;
    app.put_channel(
        "studio",
        "telegram",
        json!({ "bot_token": "123:ABC", "secret_token": "tg-secret-0123456789", "api_base_url": provider.url }),
    )
    .await;
    let update = json!({ "update_id": 1, "message": { "message_id": 9, "chat": { "id": 4242 }, "text": "Ciao" } });
    let response = app
        .http
        .post(format!("{}/webhooks/telegram/studio", app.base))
        .header("x-telegram-bot-api-secret-token", "tg-secret-0123456789")
        .json(&update)
        .send()
        .await
        .expect("sent");
    let conversation =
        response.json::<Value>().await.expect("json")["conversation_id"].as_str().expect("id").to_owned();
    let message = reply(&app, &conversation, "Buongiorno!").await;
    wait_for_state(&app, &conversation, &message, "sent").await;
    let sent = provider.received().into_iter().find(|r| r.json()["text"] == "Buongiorno!").expect("sent");
    assert_eq!(sent.path, "/bot123:ABC/sendMessage");
    assert_eq!(sent.json()["chat_id"], 4242);
}

#[tokio::test]
async fn failures_are_retried_until_the_provider_accepts() {
    let app = spawn_app().await;
    // The acknowledgement goes first and takes the first answer; then the reply gets two failures.
    let provider = FakeProvider::start(vec![Behaviour::Ok, Behaviour::Status(500), Behaviour::Status(503)]).await;
    let conversation = conversation_with_webhook(&app, "client-a", WEBHOOK_SECRET, &provider).await;
    provider.wait_for(1, Duration::from_secs(10)).await;
    let message = reply(&app, &conversation, "retry me").await;
    let delivery = wait_for_state(&app, &conversation, &message, "sent").await;
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    assert!(delivery["last_error"].is_null(), "a success clears the error: {delivery}");
    assert_eq!(replies_received(&provider).len(), 3);
}

#[tokio::test]
async fn retry_after_from_the_provider_is_honoured() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(vec![Behaviour::Ok, Behaviour::TooMany(2)]).await;
    let conversation = conversation_with_webhook(&app, "client-a", WEBHOOK_SECRET, &provider).await;
    provider.wait_for(1, Duration::from_secs(10)).await;
    let message = reply(&app, &conversation, "slowly").await;
    wait_for_state(&app, &conversation, &message, "sent").await;
    let attempts = replies_received(&provider);
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1].at.duration_since(attempts[0].at);
    assert!(waited >= Duration::from_millis(1_900), "waited only {waited:?} despite Retry-After: 2");
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_the_delivery_is_retried() {
    let app = spawn_app_with(|settings| settings.outbox.request_timeout_ms = 300).await;
    let provider = FakeProvider::start(vec![Behaviour::Ok, Behaviour::Hang]).await;
    let conversation = conversation_with_webhook(&app, "client-a", WEBHOOK_SECRET, &provider).await;
    provider.wait_for(1, Duration::from_secs(10)).await;
    let message = reply(&app, &conversation, "are you there?").await;
    let delivery = wait_for_state(&app, &conversation, &message, "sent").await;
    assert_eq!(delivery["attempts"], 2, "{delivery}");
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_at_once_with_the_reason() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(vec![Behaviour::Ok, Behaviour::Status(400)]).await;
    let conversation = conversation_with_webhook(&app, "client-a", WEBHOOK_SECRET, &provider).await;
    provider.wait_for(1, Duration::from_secs(10)).await;
    let message = reply(&app, &conversation, "bad recipient").await;
    let delivery = wait_for_state(&app, &conversation, &message, "dead").await;
    assert_eq!(delivery["attempts"], 1);
    assert!(delivery["last_error"].as_str().expect("error").contains("400"), "{delivery}");

    // Once the cause is fixed, a person sends it again: one more request reaches the provider, and it is sent.
    let retry = format!("/api/v1/messages/{message}/retry");
    let other = app.create_client("client-b").await;
    let (status, _) = app.post(&retry, &other, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client's token");
    let (status, retried) = app.post(&retry, &app.admin, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried, json!({ "message_id": message, "state": "pending" }));
    let delivery = wait_for_state(&app, &conversation, &message, "sent").await;
    assert_eq!(delivery["attempts"], 1, "a fresh count: {delivery}");
    assert_eq!(replies_received(&provider).len(), 2);
    let (status, error) = app.post(&retry, &app.admin, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a sent reply is not sent again: {error}");
    let (_, audit) = app.get("/api/v1/audit?client=client-a&limit=1", &app.admin).await;
    assert_eq!(audit["entries"][0]["action"], "delivery.retry", "{audit}");
}

#[tokio::test]
async fn deliveries_give_up_after_the_allowed_attempts() {
    let app = spawn_app_with(|settings| settings.outbox.max_attempts = 3).await;
    let provider = FakeProvider::start(vec![
        Behaviour::Ok,
        Behaviour::Status(503),
        Behaviour::Status(503),
        Behaviour::Status(503),
    ])
    .await;
    let conversation = conversation_with_webhook(&app, "client-a", WEBHOOK_SECRET, &provider).await;
    provider.wait_for(1, Duration::from_secs(10)).await;
    let message = reply(&app, &conversation, "never").await;
    let delivery = wait_for_state(&app, &conversation, &message, "dead").await;
    assert_eq!(delivery["attempts"], 3);
    assert!(delivery["last_error"].as_str().expect("error").contains("gave up after 3 attempts"), "{delivery}");
    assert_eq!(replies_received(&provider).len(), 3);
}

#[tokio::test]
async fn a_client_without_a_delivery_channel_ends_dead_with_a_clear_reason() {
    let app = spawn_app_with(|settings| settings.outbox.max_attempts = 2).await;
    let token = app.create_client("client-a").await;
    let (_, inbound) = app.ingest("client-a", &token, "m1", "+1", "hi").await;
    let conversation = inbound["conversation_id"].as_str().expect("id");
    let message = reply(&app, conversation, "hello").await;
    let delivery = wait_for_state(&app, conversation, &message, "dead").await;
    assert!(delivery["last_error"].as_str().expect("error").contains("no webhook channel configured"), "{delivery}");
}

#[tokio::test]
async fn deliveries_queued_before_a_restart_are_sent_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port with nothing behind it yet: the provider is down during the first run.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let first = spawn_in(dir.path(), |settings| settings.outbox.base_backoff_ms = 200).await;
    let token = first.create_client("client-a").await;
    first
        .put_channel("client-a", "webhook", json!({ "url": format!("http://{port}/hook"), "secret": WEBHOOK_SECRET }))
        .await;
    let (_, inbound) = first.ingest("client-a", &token, "m1", "+1", "hi").await;
    let conversation = inbound["conversation_id"].as_str().expect("id").to_owned();
    let message = reply(&first, &conversation, "after the restart").await;
    first
        .wait_for_conversation(&conversation, "a failed attempt", |c| {
            delivery_of(c, &message)["attempts"].as_i64() >= Some(1) && delivery_of(c, &message)["state"] == "pending"
        })
        .await;
    first.stop().await;

    let provider = FakeProvider::start_on(port, vec![]).await;
    let second = spawn_in(dir.path(), |_| {}).await;
    wait_for_state(&second, &conversation, &message, "sent").await;
    assert_eq!(replies_received(&provider).len(), 1);
    second.stop().await;
}
