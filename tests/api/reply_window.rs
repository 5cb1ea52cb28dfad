//! WhatsApp's 24-hour customer service window: the conversation says whether it is open and until when; a
//! free-form reply after it is refused at once with an error that says a template is needed (nothing is
//! queued); an approved template from the client's profile goes out, parameters filled in.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{FakeProvider, TestApp, profile, spawn_app};
use recado::domain::{ChannelName, ClientProfile, ClientSlug, Context, InboundMessage, Timestamp};
use recado::store::InboundBatch;

/// A WhatsApp client whose sends go to `graph`, with one approved template.
async fn client(app: &TestApp, slug: &str, graph: &FakeProvider) {
    let mut body = profile("Clínica Dental Sol");
    body["whatsapp_templates"] = json!([
        { "name": "appointment_reminder", "language": "es", "body": "Hola {{1}}, le recordamos su cita del {{2}}.", "parameters": 2 },
        { "name": "hello_world", "language": "en_US" }
    ]);
    let profile: ClientProfile = serde_json::from_value(body).expect("a valid profile");
    app.create_client_with(slug, profile).await;
    let settings = json!({ "app_secret": "window-app-secret-0123456789", "verify_token": "window-verify-0123456789",
        "phone_number_id": "1099", "access_token": "EAAG-window", "api_base_url": format!("{}/v21.0", graph.url) });
    app.put_channel(slug, "whatsapp", settings).await;
}

/// Stores a customer's WhatsApp message received `ago` (straight through the store, as if it had
/// arrived then) and returns its conversation.
async fn customer_wrote(app: &TestApp, slug: &str, handle: &str, external_id: &str, ago: Duration) -> String {
    let message = InboundMessage {
        client: ClientSlug::parse(slug).expect("slug"),
        channel: ChannelName::known(ChannelName::WHATSAPP),
        external_id: external_id.into(),
        handle: handle.into(),
        name: Some("Núria".into()),
        text: "Hola, tinc hora dimarts?".into(),
        parts: Vec::new(),
        context: Context::default(),
        user_id: None,
        username: None,
        received_at: Timestamp(Timestamp::now().millis() - i64::try_from(ago.as_millis()).expect("millis")),
    };
    let batch = InboundBatch { messages: vec![message.clone()], ..Default::default() };
    let report = app.db.ingest(message.client, message.channel, batch).await.expect("stored");
    report.messages[0].conversation_id.to_string()
}

/// The first template the fake Graph API received (automatic acknowledgements may arrive around it).
async fn template_sent(graph: &FakeProvider) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let template = graph.received().iter().map(|request| request.json()).find(|body| body["type"] == "template");
        if let Some(template) = template {
            return template;
        }
        assert!(std::time::Instant::now() < deadline, "no template was sent: {:?}", graph.received());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn outbox_rows(app: &TestApp) -> i64 {
    app.table_counts(&["outbox"]).await[0]
}

#[tokio::test]
async fn a_free_form_reply_after_the_window_is_refused_at_once_and_a_template_goes_out() {
    let graph = FakeProvider::start(Vec::new()).await;
    let app = spawn_app().await;
    client(&app, "dental", &graph).await;

    // Inside the window: the reply is queued and the conversation says until when it may be sent.
    let fresh = customer_wrote(&app, "dental", "34600111222", "wamid.fresh", Duration::from_secs(3600)).await;
    let detail = app.conversation(&fresh).await;
    assert_eq!(detail["reply_window"]["open"], true, "{detail}");
    let closes_at = detail["reply_window"]["closes_at"].as_str().expect("closes_at");
    assert!(closes_at > Timestamp::now().plus(Duration::from_secs(22 * 3600)).to_rfc3339().as_str(), "{closes_at}");
    let (status, body) =
        app.post(&format!("/api/v1/conversations/{fresh}/replies"), &app.assistant, json!({ "text": "Sí!" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Another customer, who last wrote 25 hours ago: closed. The reply is refused before anything is stored.
    let other = customer_wrote(&app, "dental", "34600999888", "wamid.stale", Duration::from_secs(25 * 3600)).await;
    // Decided first (an acknowledgement, if any, queued by then), so the count below can change only by what
    // the refused reply would queue.
    let decided = |c: &Value| {
        c["messages"].as_array().is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["state"] != "received"))
    };
    let detail = app.wait_for_conversation(&other, "the customer's message decided", decided).await;
    assert_eq!(detail["reply_window"]["open"], false, "{detail}");
    let before = outbox_rows(&app).await;
    let (status, body) = app
        .post(&format!("/api/v1/conversations/{other}/replies"), &app.assistant, json!({ "text": "Bon dia!" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "reply_window_closed");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("24 hours") && message.contains("template"), "{message}");
    assert_eq!(outbox_rows(&app).await, before, "nothing is queued for a refused reply");

    // A template from the profile goes out, parameters filled in, shown in the conversation as sent.
    let (status, body) = app
        .post(
            &format!("/api/v1/conversations/{other}/templates"),
            &app.assistant,
            json!({ "name": "appointment_reminder", "parameters": ["Núria", "dimarts 10:30"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"]["text"], "Hola Núria, le recordamos su cita del dimarts 10:30.");
    let sent = template_sent(&graph).await;
    assert_eq!(sent["to"], "34600999888");
    assert_eq!(sent["template"]["name"], "appointment_reminder");
    assert_eq!(sent["template"]["language"]["code"], "es");
    assert_eq!(sent["template"]["components"][0]["parameters"][1]["text"], "dimarts 10:30");

    // Templates the profile does not list, or with the wrong parameters, are refused.
    for (body, needle) in [
        (json!({ "name": "made_up" }), "no approved template"),
        (json!({ "name": "appointment_reminder", "parameters": ["only one"] }), "takes 2 parameters"),
        (json!({ "name": "hello_world", "language": "pt_BR" }), "in pt_BR"),
    ] {
        let (status, error) = app.post(&format!("/api/v1/conversations/{other}/templates"), &app.assistant, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert!(error["error"]["message"].as_str().expect("message").contains(needle), "{error}");
    }
    // A template needs no parameters when it takes none.
    let (status, body) = app
        .post(&format!("/api/v1/conversations/{other}/templates"), &app.assistant, json!({ "name": "hello_world" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn templates_are_a_whatsapp_thing_and_other_channels_have_no_window() {
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let (_, inbound) = app.ingest("shop", &token, "m1", "+7900", "Здравствуйте").await;
    let conversation = inbound["conversation_id"].as_str().expect("id");
    let detail = app.conversation(conversation).await;
    assert!(detail.get("reply_window").is_none(), "{detail}");
    let (status, body) = app
        .post(&format!("/api/v1/conversations/{conversation}/templates"), &app.assistant, json!({ "name": "x" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // An invalid template in a profile is refused with its path.
    let mut body = profile("Shop");
    body["whatsapp_templates"] = json!([{ "name": "Bad Name", "language": "es" }]);
    let (status, error) = app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/clients/shop",
            Some(&app.admin),
            Some(json!({ "whatsapp_templates": body["whatsapp_templates"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"]["message"].as_str().expect("message").contains("whatsapp_templates[0].name"), "{error}");
    app.stop().await;
}
