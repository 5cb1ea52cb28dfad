//! Property tests of the channel parsers and webhooks: arbitrary JSON shaped like provider updates (known
//! and unknown kinds, fields of every JSON type in every place) is never a panic and never a 5xx, and a
//! well-formed text message in the same call is always stored with its text, whatever came with it.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::helpers::{TestApp, spawn_app, whatsapp_signature};

const WHATSAPP_SECRET: &str = "property-app-secret-0123456789";
const TELEGRAM_SECRET: &str = "property-secret_0123456789";

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |number| number.is_finite()).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// An object with some of `keys` (known field names) and some made-up ones, each holding any JSON.
fn object_with(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let known = prop::collection::vec((prop::sample::select(keys), any_json()), 0..6);
    let made_up = prop::collection::vec(("[a-z_]{1,10}", any_json()), 0..3);
    (known, made_up).prop_map(|(known, made_up)| {
        let mut object = Map::new();
        for (key, value) in known {
            object.insert(key.to_owned(), value);
        }
        for (key, value) in made_up {
            object.insert(key, value);
        }
        Value::Object(object)
    })
}

const WHATSAPP_MESSAGE_FIELDS: &[&str] = &[
    "id",
    "from",
    "from_user_id",
    "type",
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "order",
    "reaction",
    "edit",
    "revoke",
    "system",
    "context",
    "referral",
    "errors",
    "timestamp",
];
const WHATSAPP_KINDS: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "order",
    "reaction",
    "edit",
    "revoke",
    "system",
    "request_welcome",
    "unsupported",
    "unknown",
    "gif",
];

/// A WhatsApp message entry with a real kind and arbitrary fields.
fn mangled_whatsapp_message() -> impl Strategy<Value = Value> {
    (object_with(WHATSAPP_MESSAGE_FIELDS), prop::sample::select(WHATSAPP_KINDS), any::<bool>()).prop_map(
        |(mut message, kind, typed)| {
            if typed {
                message["type"] = kind.into();
            }
            message
        },
    )
}

/// A whole webhook body: a few changes with mangled messages, contacts, statuses and other fields, plus the
/// well-formed text messages `texts` (id, sender, text) somewhere among them.
fn whatsapp_body(texts: Vec<(String, String, String)>) -> impl Strategy<Value = Value> {
    let change = (
        prop::collection::vec(mangled_whatsapp_message(), 0..3),
        prop::collection::vec(object_with(&["wa_id", "user_id", "profile"]), 0..2),
        prop::collection::vec(object_with(&["id", "status", "errors", "biz_opaque_callback_data"]), 0..2),
        prop::sample::select(&["messages", "messages", "account_update", "made_up"][..]),
    );
    prop::collection::vec(change, 1..3).prop_map(move |changes| {
        let mut changes: Vec<Value> = changes
            .into_iter()
            .map(|(messages, contacts, statuses, field)| {
                json!({ "field": field, "value": { "messages": messages, "contacts": contacts, "statuses": statuses } })
            })
            .collect();
        let good: Vec<Value> = texts
            .iter()
            .map(|(id, from, text)| json!({ "id": id, "from": from, "type": "text", "text": { "body": text } }))
            .collect();
        changes.push(json!({ "field": "messages", "value": { "messages": good } }));
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": changes }] })
    })
}

const TELEGRAM_MESSAGE_FIELDS: &[&str] = &[
    "message_id",
    "chat",
    "from",
    "text",
    "caption",
    "photo",
    "video",
    "voice",
    "audio",
    "document",
    "sticker",
    "animation",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
    "reply_to_message",
    "forward_origin",
    "new_chat_members",
    "pinned_message",
    "business_connection_id",
    "sender_business_bot",
    "date",
];
const TELEGRAM_KINDS: &[&str] = &[
    "message",
    "edited_message",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "business_connection",
    "callback_query",
    "poll",
    "made_up",
];

fn mangled_telegram_update() -> impl Strategy<Value = Value> {
    (prop::sample::select(TELEGRAM_KINDS), object_with(TELEGRAM_MESSAGE_FIELDS), any_json())
        .prop_map(|(kind, payload, update_id)| json!({ "update_id": update_id, kind: payload }))
}

/// A text of any Unicode without control characters (a customer's message).
fn customer_text() -> impl Strategy<Value = String> {
    "\\PC{1,300}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn whatsapp_parsing_never_panics_and_keeps_every_well_formed_text(
        body in prop::collection::vec(customer_text(), 0..3).prop_flat_map(|texts| {
            let texts: Vec<(String, String, String)> = texts
                .into_iter()
                .enumerate()
                .map(|(n, text)| (format!("wamid.ok{n}"), format!("3460000000{n}"), text))
                .collect();
            whatsapp_body(texts.clone()).prop_map(move |body| (texts.clone(), body))
        })
    ) {
        let (texts, body) = body;
        let parsed = recado::channels::whatsapp::parse(&serde_json::to_vec(&body).expect("body")).expect("valid JSON");
        for (id, from, text) in texts {
            let found = parsed.messages.iter().find(|message| message.external_id == id);
            let found = found.unwrap_or_else(|| panic!("{id} lost"));
            prop_assert_eq!(&found.text, &text);
            prop_assert_eq!(&found.handle, &from);
        }
    }

    #[test]
    fn telegram_parsing_never_panics_and_keeps_a_well_formed_text(
        update in mangled_telegram_update(),
        text in customer_text(),
        chat in any::<i64>(),
    ) {
        let _ = recado::channels::telegram::parse(&serde_json::to_vec(&update).expect("body")).expect("valid JSON");
        let good = json!({ "update_id": 1, "message": { "message_id": 5, "chat": { "id": chat, "type": "private" }, "text": text } });
        let parsed = recado::channels::telegram::parse(&serde_json::to_vec(&good).expect("body")).expect("valid JSON");
        prop_assert_eq!(parsed.messages.len(), 1);
        prop_assert_eq!(&parsed.messages[0].text, &text);
    }
}

/// Posts `body` to the webhook and returns the status.
async fn post(app: &TestApp, channel: &str, body: &Value) -> u16 {
    let bytes = serde_json::to_vec(body).expect("body");
    let mut request = app.http.post(format!("{}/webhooks/{channel}/props", app.base));
    request = match channel {
        "whatsapp" => request.header("x-hub-signature-256", whatsapp_signature(WHATSAPP_SECRET, &bytes)),
        _ => request.header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
    };
    request.header("content-type", "application/json").body(bytes).send().await.expect("sent").status().as_u16()
}

/// The stored text of the message with `external_id`, read from the database by a connection of the test's own.
async fn stored_text(app: &TestApp, external_id: &str) -> Option<String> {
    let rows = app.database().query("SELECT text FROM messages WHERE external_id = ?1", &[external_id.into()]).await;
    rows.first().map(|row| row[0].text().to_owned())
}

#[test]
fn arbitrary_updates_through_the_webhooks_never_answer_5xx_and_lose_no_text() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app = runtime.block_on(async {
        let app = spawn_app().await;
        app.create_client("props").await;
        let whatsapp = json!({ "app_secret": WHATSAPP_SECRET, "verify_token": "property-verify-0123456789",
            "phone_number_id": "1", "access_token": "EAAG", "api_base_url": "http://127.0.0.1:9/v21.0" });
        app.put_channel("props", "whatsapp", whatsapp).await;
        let telegram =
            json!({ "bot_token": "1:props", "secret_token": TELEGRAM_SECRET, "api_base_url": "http://127.0.0.1:9" });
        app.put_channel("props", "telegram", telegram).await;
        app
    });
    let counter = AtomicUsize::new(0);
    let config = ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (customer_text(), any::<bool>()).prop_flat_map(|(text, whatsapp)| {
        // The id is replaced in each case: ids must be unique across cases, which share one client.
        let texts = vec![("wamid.placeholder".to_owned(), "34600000001".to_owned(), text.clone())];
        (Just(text), Just(whatsapp), whatsapp_body(texts), mangled_telegram_update())
    });
    runner
        .run(&strategy, |(text, whatsapp, whatsapp_update, telegram_update)| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(async {
                if whatsapp {
                    // Give this case's well-formed message an id of its own.
                    let mut body = whatsapp_update;
                    let changes = body["entry"][0]["changes"].as_array_mut().expect("changes");
                    let good = changes.last_mut().expect("the well-formed change");
                    good["value"]["messages"][0]["id"] = format!("wamid.prop{n}").into();
                    let status = post(&app, "whatsapp", &body).await;
                    prop_assert!(status < 500, "{status} for {body}");
                    prop_assert_eq!(status, 200, "a signed webhook is acknowledged: {}", body);
                    prop_assert_eq!(stored_text(&app, &format!("wamid.prop{n}")).await, Some(text.clone()));
                } else {
                    let status = post(&app, "telegram", &telegram_update).await;
                    prop_assert!(status < 500, "{status} for {telegram_update}");
                    let good = json!({ "update_id": n, "message": {
                        "message_id": n, "chat": { "id": 4242, "type": "private" }, "text": text } });
                    prop_assert_eq!(post(&app, "telegram", &good).await, 200);
                    prop_assert_eq!(stored_text(&app, &format!("4242:{n}")).await, Some(text.clone()));
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    runtime.block_on(app.stop());
}
