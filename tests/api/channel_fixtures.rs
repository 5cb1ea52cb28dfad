//! Real provider payloads, collected from public client libraries' test suites and the providers'
//! documentation (`tests/fixtures/channels/*.json`, each case with its source), run through the parsers and
//! through the real webhook routes: what is stored (text, parts, context, contact identity, edits, reactions,
//! deletions) and what is not (no customer message for statuses, reactions, edits, service updates).

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::{TestApp, spawn_app, whatsapp_signature};

const WHATSAPP_SECRET: &str = "fixture-app-secret-0123456789";
const TELEGRAM_SECRET: &str = "fixture-secret_0123456789";

fn cases(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/channels").join(file);
    let text = std::fs::read_to_string(&path).expect("fixture file");
    let fixtures: Value = serde_json::from_str(&text).expect("fixture JSON");
    let cases = fixtures["cases"].as_array().expect("cases").clone();
    for case in &cases {
        assert!(case["source"].as_str().is_some_and(|source| !source.is_empty()), "every case names its source");
    }
    cases
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(|item| item.as_str().expect("a string").to_owned()).collect())
        .unwrap_or_default()
}

/// What a parser found, in the fixtures' terms.
struct Found {
    messages: usize,
    changes: Vec<String>,
    ignored: Vec<String>,
    statuses: Vec<String>,
    status_errors: Vec<String>,
}

fn check_parse(name: &str, expect: &Value, found: &Found) {
    assert_eq!(found.messages as u64, expect["messages"].as_u64().unwrap_or(0), "{name}: messages");
    assert_eq!(found.changes, strings(&expect["changes"]), "{name}: changes");
    assert_eq!(found.ignored, strings(&expect["ignored"]), "{name}: ignored");
    assert_eq!(found.statuses, strings(&expect["statuses"]), "{name}: statuses");
    if let Some(needle) = expect["status_error_contains"].as_str() {
        assert!(found.status_errors.iter().any(|error| error.contains(needle)), "{name}: {:?}", found.status_errors);
    }
}

#[test]
fn every_whatsapp_fixture_parses_as_expected() {
    let cases = cases("whatsapp.json");
    assert!(cases.len() >= 40, "at least 40 WhatsApp payloads, got {}", cases.len());
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let body = serde_json::to_vec(&case["body"]).expect("body");
        let parsed = recado::channels::whatsapp::parse(&body).unwrap_or_else(|error| panic!("{name}: {error}"));
        let found = Found {
            messages: parsed.messages.len(),
            changes: parsed.changes.iter().map(|change| change.kind().to_owned()).collect(),
            ignored: parsed.ignored.iter().map(|kind| (*kind).to_owned()).collect(),
            statuses: parsed.statuses.iter().map(|status| status.state.to_string()).collect(),
            status_errors: parsed.statuses.iter().filter_map(|status| status.error.clone()).collect(),
        };
        check_parse(name, &case["expect"]["parse"], &found);
    }
}

#[test]
fn every_telegram_fixture_parses_as_expected() {
    let cases = cases("telegram.json");
    assert!(cases.len() >= 25, "at least 25 Telegram updates, got {}", cases.len());
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let body = serde_json::to_vec(&case["body"]).expect("body");
        let parsed = recado::channels::telegram::parse(&body).unwrap_or_else(|error| panic!("{name}: {error}"));
        let found = Found {
            messages: parsed.messages.len(),
            changes: parsed.changes.iter().map(|change| change.kind().to_owned()).collect(),
            ignored: parsed.ignored.iter().map(|kind| (*kind).to_owned()).collect(),
            statuses: Vec::new(),
            status_errors: Vec::new(),
        };
        check_parse(name, &case["expect"]["parse"], &found);
    }
}

/// A client of its own for one case (fixtures reuse provider ids, which are only unique per client).
async fn fixture_client(app: &TestApp, slug: &str, channel: &str) {
    app.create_client(slug).await;
    let settings = match channel {
        "whatsapp" => json!({
            "app_secret": WHATSAPP_SECRET, "verify_token": "fixture-verify-0123456789",
            "phone_number_id": "1122334455667", "access_token": "EAAG-fixture", "api_base_url": "http://127.0.0.1:9/v21.0"
        }),
        _ => json!({ "bot_token": "1:fixture", "secret_token": TELEGRAM_SECRET, "api_base_url": "http://127.0.0.1:9" }),
    };
    app.put_channel(slug, channel, settings).await;
}

async fn post(app: &TestApp, slug: &str, channel: &str, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).expect("body");
    let mut request =
        app.http.post(format!("{}/webhooks/{channel}/{slug}", app.base)).header("content-type", "application/json");
    request = match channel {
        "whatsapp" => request.header("x-hub-signature-256", whatsapp_signature(WHATSAPP_SECRET, &bytes)),
        _ => request.header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
    };
    let response = request.body(bytes).send().await.expect("sent");
    let status = response.status();
    let answer: Value = response.json().await.expect("a JSON answer");
    assert_eq!(status, StatusCode::OK, "every update is acknowledged: {answer}");
    answer
}

/// The client's customer messages (with their conversation's contact), system notes and contacts.
async fn stored(app: &TestApp, slug: &str) -> (Vec<(Value, Value)>, usize, usize) {
    let (status, list) = app.get(&format!("/api/v1/conversations?client={slug}&limit=200"), &app.admin).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let mut customer = Vec::new();
    let mut notes = 0;
    let mut contacts = std::collections::HashSet::new();
    for summary in list["conversations"].as_array().expect("conversations") {
        let conversation = app.conversation(summary["id"].as_str().expect("id")).await;
        contacts.insert(conversation["contact"]["id"].as_str().expect("contact").to_owned());
        for message in conversation["messages"].as_array().expect("messages") {
            match message["kind"].as_str() {
                Some("customer") => customer.push((message.clone(), conversation["contact"].clone())),
                Some("system") => notes += 1,
                _ => {}
            }
        }
    }
    (customer, notes, contacts.len())
}

/// Returns a mismatch between one expected message and one stored message, if any.
fn mismatch(expected: &Value, message: &Value, contact: &Value) -> Option<String> {
    let text = message["text"].as_str().unwrap_or_default();
    if let Some(want) = expected["text"].as_str()
        && want != text
    {
        return Some(format!("text {text:?} is not {want:?}"));
    }
    for needle in strings(&expected["text_contains"]) {
        if !text.contains(&needle) {
            return Some(format!("text {text:?} lacks {needle:?}"));
        }
    }
    if expected.get("parts").is_some() {
        let parts: Vec<String> = message["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|part| match part["kind"].as_str() {
                Some(kind) if part["type"] == "media" => format!("media/{kind}"),
                _ => part["type"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        if parts != strings(&expected["parts"]) {
            return Some(format!("parts {parts:?}"));
        }
    }
    if let Some(fields) = expected["part0"].as_object() {
        for (field, want) in fields {
            if message["parts"][0][field] != *want {
                return Some(format!("parts[0].{field} is {}", message["parts"][0][field]));
            }
        }
    }
    if let Some(fields) = expected["context"].as_object() {
        for (field, want) in fields {
            let got = &message["context"][field];
            let matches = match (want, got) {
                (Value::Object(want), Value::Object(got)) => {
                    want.iter().all(|(key, value)| got.get(key) == Some(value))
                }
                _ => got == want,
            };
            if !matches {
                return Some(format!("context.{field} is {got}"));
            }
        }
    }
    for (field, value) in [
        ("handle", &contact["handle"]),
        ("name", &contact["name"]),
        ("user_id", &contact["user_id"]),
        ("username", &contact["username"]),
    ] {
        if let Some(want) = expected.get(field)
            && want != value
        {
            return Some(format!("contact {field} is {value}"));
        }
    }
    if let Some(want) = expected.get("reactions") {
        let got: Vec<Value> =
            message["reactions"].as_array().into_iter().flatten().map(|reaction| reaction["emoji"].clone()).collect();
        if Value::Array(got.clone()) != *want {
            return Some(format!("reactions {got:?}"));
        }
    }
    let edited = !message["edited_at"].is_null();
    if expected["edited"].as_bool().unwrap_or(false) != edited {
        return Some(format!("edited is {edited}"));
    }
    if let Some(want) = expected.get("edits") {
        let got: Vec<Value> =
            message["edits"].as_array().into_iter().flatten().map(|edit| edit["text"].clone()).collect();
        if Value::Array(got.clone()) != *want {
            return Some(format!("earlier versions {got:?}"));
        }
    }
    let deleted = !message["deleted_at"].is_null();
    if expected["deleted"].as_bool().unwrap_or(false) != deleted {
        return Some(format!("deleted is {deleted}"));
    }
    None
}

async fn run_through_the_webhooks(channel: &str, file: &str) {
    let app = spawn_app().await;
    for (n, case) in cases(file).iter().enumerate() {
        let name = case["name"].as_str().expect("name");
        let slug = format!("{}-{n}", &channel[..2]);
        fixture_client(&app, &slug, channel).await;
        for body in case["before"].as_array().into_iter().flatten() {
            post(&app, &slug, channel, body).await;
        }
        let first = post(&app, &slug, channel, &case["body"]).await;
        // A provider retry changes nothing: each change is found applied before (a connection's state is
        // simply set again).
        let retry = post(&app, &slug, channel, &case["body"]).await;
        let changes = case["expect"]["parse"]["changes"].as_array().map_or(0, Vec::len) as u64;
        let count = |answer: &Value, field: &str| answer[field].as_u64().expect("a count");
        assert_eq!(count(&first, "changes") + count(&first, "changes_unmatched"), changes, "{name}: {first}");
        assert_eq!(count(&retry, "changes") + count(&retry, "changes_repeated"), changes, "{name}: {retry}");
        assert_eq!(count(&retry, "changes_unmatched"), 0, "{name}: {retry}");

        let expect = &case["expect"];
        let (customer, notes, contacts) = stored(&app, &slug).await;
        let wanted = expect["stored"].as_array().expect("stored");
        assert_eq!(customer.len(), wanted.len(), "{name}: customer messages stored: {customer:#?}");
        // Messages of one call share a timestamp: match them in any order.
        let mut left: Vec<&(Value, Value)> = customer.iter().collect();
        for expected in wanted {
            let position = left.iter().position(|(message, contact)| mismatch(expected, message, contact).is_none());
            match position {
                Some(position) => {
                    left.remove(position);
                }
                None => {
                    let reasons: Vec<String> =
                        left.iter().filter_map(|(message, contact)| mismatch(expected, message, contact)).collect();
                    panic!("{name}: nothing stored matches {expected}: {reasons:?}");
                }
            }
        }
        assert_eq!(notes as u64, expect["notes"].as_u64().unwrap_or(0), "{name}: system notes");
        if let Some(want) = expect["contacts"].as_u64() {
            assert_eq!(contacts as u64, want, "{name}: contacts");
        }
    }
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains(&format!("recado_channel_updates_ignored_total{{channel=\"{channel}\"")), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn every_whatsapp_fixture_is_stored_as_expected_through_the_webhook() {
    run_through_the_webhooks("whatsapp", "whatsapp.json").await;
}

#[tokio::test]
async fn every_telegram_fixture_is_stored_as_expected_through_the_webhook() {
    run_through_the_webhooks("telegram", "telegram.json").await;
}
