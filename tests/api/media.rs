//! Media end to end against a fake Graph API and a fake Bot API on loopback: looked up, downloaded,
//! stored, served to people who may see the conversation (404 to others); an expired link retried; an
//! oversized file refused and noted on its message, then retried by hand.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{Behaviour, FakeProvider, TestApp, spawn_app_with, whatsapp_signature};

const APP_SECRET: &str = "media-app-secret-0123456789";
const TG_SECRET: &str = "media-secret_0123456789";
const ACCESS_TOKEN: &str = "EAAG-media-access-token";
const BOT_TOKEN: &str = "4242:media-bot-token";

/// The first bytes of a JPEG file, padded: what a phone camera sends, as far as sniffing goes.
fn jpeg(size: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01];
    bytes.resize(size, 0x42);
    bytes
}

async fn whatsapp_client(app: &TestApp, slug: &str, provider: &FakeProvider) -> String {
    app.create_client(slug).await;
    let settings = json!({ "app_secret": APP_SECRET, "verify_token": "media-verify-0123456789",
        "phone_number_id": "1122334455667", "access_token": ACCESS_TOKEN, "api_base_url": format!("{}/v21.0", provider.url) });
    app.put_channel(slug, "whatsapp", settings).await;
    app.client_token(slug).await
}

/// Posts a WhatsApp image message (the shape of pywa's `message.json#image`) and returns its conversation.
async fn post_image(app: &TestApp, slug: &str, message_id: &str, media_id: &str) -> String {
    let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1234567890987654321", "changes": [{
        "field": "messages", "value": { "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "972123456789", "phone_number_id": "1122334455667" },
            "contacts": [{ "profile": { "name": "Test Name" }, "wa_id": "972987654321" }],
            "messages": [{ "from": "972987654321", "id": message_id, "timestamp": "1697043379", "type": "image",
                "image": { "caption": "the crown broke", "mime_type": "image/jpeg", "sha256": "4654+8g=", "id": media_id } }] } }] }] });
    let bytes = serde_json::to_vec(&body).expect("body");
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp/{slug}", app.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", whatsapp_signature(APP_SECRET, &bytes))
        .body(bytes)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, list) = app.get(&format!("/api/v1/conversations?client={slug}"), &app.admin).await;
    list["conversations"][0]["id"].as_str().expect("a conversation").to_owned()
}

/// Waits until the conversation's message `external_text` has its first media file in `state`.
async fn media_in_state(app: &TestApp, conversation: &str, index: usize, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail = app.conversation(conversation).await;
        let customer: Vec<&Value> =
            detail["messages"].as_array().expect("messages").iter().filter(|m| m["kind"] == "customer").collect();
        if let Some(media) = customer.get(index).map(|message| &message["media"][0])
            && media["state"] == state
        {
            return media.clone();
        }
        assert!(Instant::now() < deadline, "media never reached {state}: {detail:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_whatsapp_photo_is_downloaded_stored_and_shown_only_to_those_who_may_see_it() {
    let graph = FakeProvider::start(Vec::new()).await;
    let app = spawn_app_with(|_| {}).await;
    let dental = whatsapp_client(&app, "dental", &graph).await;
    app.create_client("bakery").await;
    let bakery = app.client_token("bakery").await;
    let photo = jpeg(30_000);
    graph.script_for(
        "/v21.0/65463453",
        vec![Behaviour::Json(
            200,
            json!({ "messaging_product": "whatsapp",
        "url": format!("{}/media-files/65463453?ext=1", graph.url), "mime_type": "image/jpeg", "sha256": "x",
        "file_size": photo.len(), "id": "65463453" }),
        )],
    );
    graph.script_for("/media-files/", vec![Behaviour::Bytes(photo.clone())]);
    let conversation = post_image(&app, "dental", "wamid.photo1", "65463453").await;
    let media = media_in_state(&app, &conversation, 0, "stored").await;
    assert_eq!(media["content_type"], "image/jpeg");
    assert_eq!(media["size"], photo.len());
    let detail = app.conversation(&conversation).await;
    assert_eq!(detail["messages"][0]["text"], "[photo] the crown broke", "the caption is kept beside the file");

    // The lookup and the download both carried the access token; the lookup asked for our media id.
    let received: Vec<_> =
        graph.received().into_iter().filter(|request| !request.path.ends_with("/messages")).collect();
    assert_eq!(received[0].path, "/v21.0/65463453");
    assert_eq!(received[1].path, "/media-files/65463453?ext=1");
    for request in &received[..2] {
        assert_eq!(request.headers["authorization"], format!("Bearer {ACCESS_TOKEN}"));
    }

    let url = format!("{}{}", app.base, media["url"].as_str().expect("a url once stored"));
    for token in [&app.assistant, &app.admin, &dental] {
        let response = app.http.get(&url).bearer_auth(token).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(response.headers()["content-disposition"].to_str().expect("ascii").starts_with("inline"));
        assert_eq!(response.bytes().await.expect("bytes").to_vec(), photo);
    }
    let response = app.http.get(&url).bearer_auth(&bakery).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "another client's token learns nothing");
    let response = app.http.get(&url).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The same photo sent again is stored once.
    graph.script_for(
        "/v21.0/77777777",
        vec![Behaviour::Json(200, json!({ "url": format!("{}/media-files/2", graph.url), "file_size": photo.len() }))],
    );
    graph.script_for("/media-files/", vec![Behaviour::Bytes(photo.clone())]);
    post_image(&app, "dental", "wamid.photo2", "77777777").await;
    media_in_state(&app, &conversation, 1, "stored").await;
    let blobs = walk_files(&app.data_dir.join("blobs"));
    assert_eq!(blobs, 1, "content-addressed: one file for the same bytes");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains("recado_media_downloads_total{outcome=\"stored\"} 2"), "{metrics}");
    app.stop().await;
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| entry.expect("entry").path())
        .map(|path| if path.is_dir() { walk_files(&path) } else { 1 })
        .sum()
}

#[tokio::test]
async fn an_expired_link_is_looked_up_again_and_an_oversized_file_is_refused_then_retried_by_hand() {
    let graph = FakeProvider::start(Vec::new()).await;
    let app = spawn_app_with(|settings| settings.media.max_bytes = 64 * 1024).await;
    let dental = whatsapp_client(&app, "dental", &graph).await;
    let photo = jpeg(10_000);
    // First attempt: the link has expired by the time it is fetched (WhatsApp's last five minutes).
    graph.script_for(
        "/v21.0/111",
        vec![
            Behaviour::Json(200, json!({ "url": format!("{}/media-files/old", graph.url), "file_size": photo.len() })),
            Behaviour::Json(200, json!({ "url": format!("{}/media-files/new", graph.url), "file_size": photo.len() })),
        ],
    );
    graph.script_for("/media-files/", vec![Behaviour::Status(404), Behaviour::Bytes(photo.clone())]);
    let conversation = post_image(&app, "dental", "wamid.expiring", "111").await;
    let media = media_in_state(&app, &conversation, 0, "stored").await;
    assert_eq!(media["attempts"], 2, "{media}");
    let paths: Vec<String> = graph
        .received()
        .iter()
        .map(|request| request.path.clone())
        .filter(|path| !path.ends_with("/messages"))
        .collect();
    assert_eq!(paths, ["/v21.0/111", "/media-files/old", "/v21.0/111", "/media-files/new"]);

    // Over the cap by the provider's own word: refused without downloading it.
    graph.script_for(
        "/v21.0/222",
        vec![Behaviour::Json(
            200,
            json!({ "url": format!("{}/media-files/huge", graph.url), "file_size": 50_000_000 }),
        )],
    );
    post_image(&app, "dental", "wamid.huge", "222").await;
    let media = media_in_state(&app, &conversation, 1, "failed").await;
    assert!(media["last_error"].as_str().expect("why").contains("media.max_bytes"), "{media}");
    assert!(!graph.received().iter().any(|request| request.path.contains("huge")), "not downloaded");
    // Over the cap without saying so: the download stops at the cap.
    graph.script_for(
        "/v21.0/333",
        vec![Behaviour::Json(200, json!({ "url": format!("{}/media-files/quiet", graph.url) }))],
    );
    graph.script_for("/media-files/", vec![Behaviour::Bytes(jpeg(200_000))]);
    post_image(&app, "dental", "wamid.quiet", "333").await;
    let quiet = media_in_state(&app, &conversation, 2, "failed").await;
    assert!(quiet["last_error"].as_str().expect("why").contains("over the limit"), "{quiet}");
    assert!(quiet["url"].is_null());
    let response = app
        .http
        .get(format!("{}/api/v1/media/{}", app.base, quiet["id"].as_str().expect("id")))
        .bearer_auth(&dental)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "media_not_stored");

    // The provider now has a smaller file under that id (say, an admin raised the cap): retried by hand.
    graph.script_for(
        "/v21.0/222",
        vec![Behaviour::Json(200, json!({ "url": format!("{}/media-files/ok", graph.url), "file_size": photo.len() }))],
    );
    graph.script_for("/media-files/", vec![Behaviour::Bytes(photo.clone())]);
    let (status, retried) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/media/{}/retry", media["id"].as_str().expect("id")),
            Some(&dental),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    let media = media_in_state(&app, &conversation, 1, "stored").await;
    assert_eq!(media["size"], photo.len());
    // A stored file cannot be "retried".
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/media/{}/retry", media["id"].as_str().expect("id")),
            Some(&dental),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_telegram_voice_note_is_fetched_with_get_file_and_the_token_never_shows() {
    let bot_api = FakeProvider::start(Vec::new()).await;
    let app = spawn_app_with(|settings| settings.media.max_attempts = 2).await;
    app.create_client("studio").await;
    let settings = json!({ "bot_token": BOT_TOKEN, "secret_token": TG_SECRET, "api_base_url": bot_api.url });
    app.put_channel("studio", "telegram", settings).await;
    let ogg = {
        let mut bytes = b"OggS\x00\x02".to_vec();
        bytes.resize(5_000, 7);
        bytes
    };
    bot_api.script_for(
        &format!("/bot{BOT_TOKEN}/getFile"),
        vec![
            Behaviour::Json(
                200,
                json!({ "ok": true, "result": { "file_id": "AwACAgQAAxkBAAIBdGdJ", "file_unique_id": "u",
            "file_size": ogg.len(), "file_path": "voice/file_7.oga" } }),
            ),
            // The second note: Telegram refuses, quoting the request (a careless answer), twice.
            Behaviour::Echo(500),
            Behaviour::Echo(500),
        ],
    );
    bot_api.script_for("/file/", vec![Behaviour::Bytes(ogg.clone())]);
    let post = |update: Value| {
        let app = &app;
        async move {
            let response = app
                .http
                .post(format!("{}/webhooks/telegram/studio", app.base))
                .header("x-telegram-bot-api-secret-token", TG_SECRET)
                .json(&update)
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.expect("json")
        }
    };
    let voice = |n: i64, file_id: &str| {
        json!({ "update_id": n, "message": { "message_id": n, "date": 1732870400,
            "from": { "id": 4242, "is_bot": false, "first_name": "Giulia" }, "chat": { "id": 4242, "type": "private" },
            "voice": { "file_id": file_id, "file_unique_id": "AgADZxcAAlk0SFI", "duration": 14, "mime_type": "audio/ogg", "file_size": 5000 } } })
    };
    let first = post(voice(1, "AwACAgQAAxkBAAIBdGdJ")).await;
    let conversation = first["conversation_id"].as_str().expect("conversation").to_owned();
    let media = media_in_state(&app, &conversation, 0, "stored").await;
    assert_eq!(media["content_type"], "audio/ogg");
    let paths: Vec<String> = bot_api
        .received()
        .iter()
        .map(|request| request.path.clone())
        .filter(|path| !path.ends_with("/sendMessage"))
        .collect();
    assert_eq!(paths[0], format!("/bot{BOT_TOKEN}/getFile?file_id=AwACAgQAAxkBAAIBdGdJ"));
    assert_eq!(paths[1], format!("/file/bot{BOT_TOKEN}/voice/file_7.oga"));

    post(voice(2, "AwACAgQAAxkBAAIBdWdK")).await;
    let failed = media_in_state(&app, &conversation, 1, "failed").await;
    let error = failed["last_error"].as_str().expect("why");
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    assert!(!error.contains(BOT_TOKEN) && !error.contains("media-bot-token"), "the bot token leaked: {error}");
    let detail = app.conversation(&conversation).await;
    assert!(!detail.to_string().contains("media-bot-token"));
    app.stop().await;
}
