//! WhatsApp and Telegram webhooks: authenticity checks before anything is stored, batching, statuses.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, whatsapp_signature};

const APP_SECRET: &str = "meta-app-secret-0123456789";

async fn with_whatsapp(app: &TestApp, slug: &str) {
    app.create_client(slug).await;
    app.put_channel(
        slug,
        "whatsapp",
        json!({
            "app_secret": APP_SECRET,
            "verify_token": "verify-me-0123456789",
            "phone_number_id": "1099",
            "access_token": "EAAG-token",
            "api_base_url": "http://127.0.0.1:9/v21.0"
        }),
    )
    .await;
}

fn whatsapp_payload(messages: &[(&str, &str, &str)]) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(id, from, text)| json!({ "id": id, "from": from, "timestamp": "1700000000", "type": "text", "text": { "body": text } }))
        .collect();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "34930000000", "phone_number_id": "1099" },
            "contacts": [{ "wa_id": "34600111222", "profile": { "name": "Jordi" } }],
            "messages": messages
        }}]}]
    })
}

async fn post_whatsapp(app: &TestApp, slug: &str, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
    let mut request = app.http.post(format!("{}/webhooks/whatsapp/{slug}", app.base)).body(body.to_vec());
    request = request.header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.expect("sent");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn conversation_count(app: &TestApp, slug: &str) -> usize {
    let (_, list) = app.get(&format!("/api/v1/conversations?client={slug}"), &app.admin).await;
    list["conversations"].as_array().expect("list").len()
}

#[tokio::test]
async fn the_whatsapp_handshake_echoes_the_challenge_only_for_the_right_token() {
    let app = spawn_app().await;
    with_whatsapp(&app, "dental").await;
    let url = |token: &str| {
        format!(
            "{}/webhooks/whatsapp/dental?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            app.base
        )
    };
    let response = app.http.get(url("verify-me-0123456789")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "1158201444");
    let response = app.http.get(url("wrong")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response =
        app.http.get(format!("{}/webhooks/whatsapp/unknown?hub.mode=subscribe", app.base)).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_signed_whatsapp_batch_stores_every_message_once() {
    let app = spawn_app().await;
    with_whatsapp(&app, "dental").await;
    let body =
        whatsapp_payload(&[("wamid.A", "34600111222", "Bon dia"), ("wamid.B", "34600111222", "Tinc hora demà?")])
            .to_string();

    let (status, answer) =
        post_whatsapp(&app, "dental", body.as_bytes(), Some(whatsapp_signature(APP_SECRET, body.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["messages"], 2);
    assert_eq!(answer["duplicates"], 0);
    // Meta redelivers: nothing new.
    let (status, answer) =
        post_whatsapp(&app, "dental", body.as_bytes(), Some(whatsapp_signature(APP_SECRET, body.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["duplicates"], 2);

    let (_, list) = app.get("/api/v1/conversations?client=dental", &app.admin).await;
    let conversation = app.conversation(list["conversations"][0]["id"].as_str().expect("id")).await;
    let texts: Vec<_> = conversation["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("Bon dia"), json!("Tinc hora demà?")]);
    assert_eq!(conversation["contact"]["name"], "Jordi");
    assert_eq!(conversation["channel"], "whatsapp");
}

#[tokio::test]
async fn a_missing_or_wrong_whatsapp_signature_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    with_whatsapp(&app, "dental").await;
    let body = whatsapp_payload(&[("wamid.X", "34600111222", "Hola")]).to_string();

    let (status, error) = post_whatsapp(&app, "dental", body.as_bytes(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"]["code"], "invalid_signature");
    let (status, _) =
        post_whatsapp(&app, "dental", body.as_bytes(), Some(whatsapp_signature("other-secret", body.as_bytes()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A valid signature of a different body.
    let (status, _) = post_whatsapp(&app, "dental", body.as_bytes(), Some(whatsapp_signature(APP_SECRET, b"{}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(conversation_count(&app, "dental").await, 0);

    // Signed garbage is a 400, also with nothing stored.
    let (status, error) =
        post_whatsapp(&app, "dental", b"{not json", Some(whatsapp_signature(APP_SECRET, b"{not json"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "invalid_json");
    assert_eq!(conversation_count(&app, "dental").await, 0);
}

#[tokio::test]
async fn a_client_without_whatsapp_settings_has_no_webhook() {
    let app = spawn_app().await;
    app.create_client("no-whatsapp").await;
    let body = whatsapp_payload(&[("wamid.X", "1", "Hola")]).to_string();
    let (status, _) =
        post_whatsapp(&app, "no-whatsapp", body.as_bytes(), Some(whatsapp_signature(APP_SECRET, body.as_bytes())))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn post_telegram(app: &TestApp, slug: &str, secret: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = app.http.post(format!("{}/webhooks/telegram/{slug}", app.base)).json(body);
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    let response = request.send().await.expect("sent");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn telegram_updates_need_the_secret_token_and_are_deduplicated() {
    let app = spawn_app().await;
    app.create_client("studio").await;
    app.put_channel(
        "studio",
        "telegram",
        json!({ "bot_token": "123:ABC", "secret_token": "tg-secret_1-0123456789", "api_base_url": "http://127.0.0.1:9" }),
    )
    .await;
    let update = json!({ "update_id": 10, "message": { "message_id": 5, "date": 1, "chat": { "id": 4242, "type": "private" },
        "from": { "id": 4242, "is_bot": false, "first_name": "Giulia" }, "text": "Buongiorno, avete posto giovedì?" } });

    let (status, error) = post_telegram(&app, "studio", None, &update).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"]["code"], "invalid_secret");
    let (status, _) = post_telegram(&app, "studio", Some("tg-secret_2"), &update).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(conversation_count(&app, "studio").await, 0);

    let (status, first) = post_telegram(&app, "studio", Some("tg-secret_1-0123456789"), &update).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["duplicate"], false);
    let (_, again) = post_telegram(&app, "studio", Some("tg-secret_1-0123456789"), &update).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], first["message_id"]);

    let (status, ignored) = post_telegram(
        &app,
        "studio",
        Some("tg-secret_1-0123456789"),
        &json!({ "update_id": 11, "edited_message": {} }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ignored["ignored"], 1, "acknowledged and counted");
    assert_eq!(ignored["messages"], 0);
    let conversation = app.conversation(first["conversation_id"].as_str().expect("id")).await;
    assert_eq!(conversation["contact"]["handle"], "4242");
    assert_eq!(conversation["contact"]["name"], "Giulia");
}
