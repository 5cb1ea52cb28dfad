//! Replies with a file, through all three channels against fake providers on loopback: WhatsApp uploads the
//! file to the Graph API and sends it by media id; Telegram sends it with `sendPhoto`/`sendDocument`
//! (through the business connection for a Business chat); the client's webhook gets it inline. The file is
//! listed on the message and served like the customers' files.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use super::helpers::{Behaviour, FakeProvider, Received, TestApp, spawn_app, spawn_app_with};

fn png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    bytes.resize(4_000, 0x11);
    bytes
}

/// A conversation of `slug` on `channel` with `handle`, opened by a customer message through the API.
async fn conversation(app: &TestApp, slug: &str, token: &str, channel: &str, handle: &str) -> String {
    let body = json!({ "external_id": format!("m-{handle}"), "from": { "handle": handle }, "text": "Hola", "channel": channel });
    let (status, inbound) = app.post(&format!("/api/v1/clients/{slug}/messages"), token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{inbound}");
    inbound["conversation_id"].as_str().expect("id").to_owned()
}

async fn attach(app: &TestApp, conversation: &str, form: Form) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/api/v1/conversations/{conversation}/attachments", app.base))
        .bearer_auth(&app.assistant)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

fn file_form(bytes: Vec<u8>, name: &str, caption: &str) -> Form {
    let form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    if caption.is_empty() { form } else { form.text("text", caption.to_owned()) }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Waits for a request to the provider whose path ends with `suffix`.
async fn request_to(provider: &FakeProvider, suffix: &str) -> Received {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(request) = provider.received().into_iter().find(|request| request.path.ends_with(suffix)) {
            return request;
        }
        assert!(Instant::now() < deadline, "nothing reached {suffix}: {:?}", provider.received());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a webhook call carrying an attachment (the automatic acknowledgement comes first).
async fn with_attachment(hook: &FakeProvider) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = hook.received().iter().map(Received::json_or_null).find(|body| !body["attachment"].is_null());
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no attachment reached the webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delivered(app: &TestApp, conversation: &str, message_id: &str) -> Value {
    app.wait_for_conversation(conversation, "the attachment sent", |detail| {
        detail["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|message| message["id"] == message_id && message["delivery"]["state"] == "sent")
    })
    .await
}

#[tokio::test]
async fn whatsapp_uploads_the_file_then_sends_it_by_media_id_and_the_file_is_served() {
    let graph = FakeProvider::start(Vec::new()).await;
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    app.put_channel(
        "dental",
        "whatsapp",
        json!({ "app_secret": "attach-app-secret-0123456789",
        "verify_token": "attach-verify-0123456789", "phone_number_id": "1099", "access_token": "EAAG-attach",
        "api_base_url": format!("{}/v21.0", graph.url) }),
    )
    .await;
    graph.script_for("/v21.0/1099/media", vec![Behaviour::Json(200, json!({ "id": "4490709327384033" }))]);
    let conversation = conversation(&app, "dental", &token, "whatsapp", "34600111222").await;
    let image = png();
    let (status, body) =
        attach(&app, &conversation, file_form(image.clone(), "presupuesto.png", "Su presupuesto")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let message = &body["message"];
    assert_eq!(message["text"], "[photo: presupuesto.png] Su presupuesto");
    let message_id = message["id"].as_str().expect("id").to_owned();

    let upload = request_to(&graph, "/1099/media").await;
    assert_eq!(upload.headers["authorization"], "Bearer EAAG-attach");
    assert!(contains(&upload.body, &image), "the file's bytes were uploaded");
    assert!(contains(&upload.body, b"messaging_product") && contains(&upload.body, b"image/png"));
    delivered(&app, &conversation, &message_id).await;
    let send = graph
        .received()
        .into_iter()
        .map(|request| request.json_or_null())
        .find(|body| body["type"] == "image")
        .expect("the image was sent");
    assert_eq!(send["image"], json!({ "id": "4490709327384033", "caption": "Su presupuesto" }));
    assert_eq!(send["to"], "34600111222");

    // Listed on the message and served like a customer's file.
    let detail = app.conversation(&conversation).await;
    let sent =
        detail["messages"].as_array().expect("messages").iter().find(|m| m["id"] == message_id.as_str()).cloned();
    let media = &sent.expect("the message")["media"][0];
    assert_eq!(media["content_type"], "image/png");
    let url = format!("{}{}", app.base, media["url"].as_str().expect("url"));
    let served = app.http.get(url).bearer_auth(&token).send().await.expect("sent");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.expect("bytes").to_vec(), image);

    // Audio carries no caption on WhatsApp: refused rather than silently dropped.
    let mut ogg = b"OggS\x00\x02".to_vec();
    ogg.resize(500, 1);
    let (status, body) = attach(&app, &conversation, file_form(ogg, "nota.ogg", "escolti")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn telegram_sends_a_document_through_the_business_connection_and_the_webhook_gets_it_inline() {
    let bot_api = FakeProvider::start(Vec::new()).await;
    let hook = FakeProvider::start(Vec::new()).await;
    let app = spawn_app_with(|settings| settings.media.max_upload_bytes = 64 * 1024).await;
    let studio = app.create_client("studio").await;
    app.put_channel(
        "studio",
        "telegram",
        json!({ "bot_token": "4242:attach-bot", "secret_token": "attach-secret_0123456789",
        "api_base_url": bot_api.url }),
    )
    .await;
    let pdf = {
        let mut bytes = b"%PDF-1.7\n".to_vec();
        bytes.resize(3_000, b'x');
        bytes
    };
    let business = conversation(&app, "studio", &studio, "telegram", "business:AbCdConn:777000222").await;
    let (status, body) = attach(&app, &business, file_form(pdf.clone(), "../../factura.pdf", "")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"]["text"], "[document: factura.pdf]", "the name is reduced to its last segment");
    let send = request_to(&bot_api, "/sendDocument").await;
    assert_eq!(send.path, "/bot4242:attach-bot/sendDocument");
    for needle in [&b"777000222"[..], b"AbCdConn", b"business_connection_id", b"factura.pdf", &pdf] {
        assert!(contains(&send.body, needle), "{:?} missing from the form", String::from_utf8_lossy(needle));
    }

    // The generic webhook: the file inline, base64, with its hash.
    let shop = app.create_client("shop").await;
    app.put_channel(
        "shop",
        "webhook",
        json!({ "url": format!("{}/hook", hook.url), "secret": "attach-webhook-secret-01" }),
    )
    .await;
    let conversation = conversation(&app, "shop", &shop, "api", "+7900").await;
    let (status, body) = attach(&app, &conversation, file_form(png(), "foto.png", "Вот фото")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let delivered = with_attachment(&hook).await;
    assert_eq!(delivered["text"], "Вот фото");
    assert_eq!(delivered["attachment"]["content_type"], "image/png");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(delivered["attachment"]["data_base64"].as_str().expect("data"))
        .expect("base64");
    assert_eq!(bytes, png());

    // Too large, empty, or an unknown field: refused, nothing queued.
    let before = app.table_counts(&["outbox"]).await[0];
    let (status, body) = attach(&app, &conversation, file_form(vec![7; 70 * 1024], "big.bin", "")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = attach(&app, &conversation, file_form(Vec::new(), "empty.txt", "")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = attach(&app, &conversation, Form::new().text("colour", "blue")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(app.table_counts(&["outbox"]).await[0], before);
    app.stop().await;
}
