//! The clients API: profiles, validation with field paths, conflicts, channel settings without secrets.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{profile, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_client_is_created_read_and_patched() {
    let app = spawn_app().await;
    let mut body = profile("Clínica Dental Gràcia");
    body["slug"] = json!("dental-gracia");
    body["business_hours"] = json!({ "mon": ["09:00-14:00", "16:00-20:00"], "holidays": ["2026-12-25"] });
    body["escalation_contact"] = json!({ "name": "Dra. Puig", "channel": "whatsapp", "handle": "+34600000101" });
    let (status, created) = app.post("/api/v1/clients", &app.admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["slug"], "dental-gracia");
    assert_eq!(created["business_hours"]["mon"], json!(["09:00-14:00", "16:00-20:00"]));

    let (status, patched) = app
        .call(
            Method::PATCH,
            "/api/v1/clients/dental-gracia",
            Some(&app.admin),
            Some(json!({ "instructions": "Tracte de tu.", "sla": { "first_response_minutes": 10 } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["instructions"], "Tracte de tu.");
    assert_eq!(patched["sla"]["first_response_minutes"], 10);
    assert_eq!(patched["name"], "Clínica Dental Gràcia", "fields not named are kept");
    assert_eq!(patched["escalation_contact"]["name"], "Dra. Puig");

    let (status, shown) = app.get("/api/v1/clients/dental-gracia", &app.assistant).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, patched);
    let (_, list) = app.get("/api/v1/clients", &app.assistant).await;
    assert_eq!(list["clients"].as_array().expect("list").len(), 1);
}

#[tokio::test]
async fn invalid_profiles_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "slug": "Bad Slug", "name": "x", "timezone": "Europe/Rome", "languages": ["it"] }), "slug"),
        (json!({ "slug": "ok", "name": "x", "timezone": "Mars/Base", "languages": ["it"] }), "timezone"),
        (json!({ "slug": "ok", "name": "x", "timezone": "Europe/Rome", "languages": [] }), "languages"),
        (
            json!({ "slug": "ok", "name": "x", "timezone": "Europe/Rome", "languages": ["it"], "business_hours": { "mon": ["14:00-09:00"] } }),
            "business_hours.mon",
        ),
        (
            json!({ "slug": "ok", "name": "x", "timezone": "Europe/Rome", "languages": ["it"], "colour": "red" }),
            "colour",
        ),
        (json!({ "slug": "ok", "timezone": "Europe/Rome", "languages": ["it"] }), "name"),
    ];
    for (body, field) in cases {
        let (status, error) = app.post("/api/v1/clients", &app.admin, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["error"]["code"], "invalid_request");
        assert!(error["error"]["message"].as_str().expect("message").contains(field), "{field} not named in {error}");
    }
    let (_, list) = app.get("/api/v1/clients", &app.admin).await;
    assert_eq!(list["clients"], json!([]), "nothing half-written");

    app.create_client("taken").await;
    let mut body = profile("Again");
    body["slug"] = json!("taken");
    let (status, error) = app.post("/api/v1/clients", &app.admin, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    let (status, error) =
        app.call(Method::PATCH, "/api/v1/clients/taken", Some(&app.admin), Some(json!({ "slug": "renamed" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, error) = app
        .call(Method::PATCH, "/api/v1/clients/taken", Some(&app.admin), Some(json!({ "timezone": "Nowhere/Land" })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (_, card) = app.get("/api/v1/clients/taken", &app.admin).await;
    assert_eq!(card["timezone"], "Europe/Madrid", "a refused patch changes nothing");
}

#[tokio::test]
async fn channel_secrets_are_stored_but_never_returned() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    let secrets = json!({ "app_secret": "APP-SECRET-XYZ-0123456789", "verify_token": "VERIFY-XYZ-0123456789", "phone_number_id": "1099", "access_token": "ACCESS-XYZ", "api_base_url": "http://127.0.0.1:9/v21.0" });
    let (status, answer) =
        app.call(Method::PUT, "/api/v1/clients/dental/channels/whatsapp", Some(&app.admin), Some(secrets)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    app.put_channel(
        "dental",
        "telegram",
        json!({ "bot_token": "BOT-XYZ", "secret_token": "TG-XYZ-0123456789", "api_base_url": "http://127.0.0.1:9" }),
    )
    .await;
    app.put_channel("dental", "webhook", json!({ "url": "http://127.0.0.1:9/hook", "secret": "WEBHOOK-SECRET-XYZ" }))
        .await;

    let (_, card) = app.get("/api/v1/clients/dental", &app.admin).await;
    let (_, list) = app.get("/api/v1/clients", &app.admin).await;
    for text in [answer.to_string(), card.to_string(), list.to_string()] {
        assert!(!text.contains("XYZ"), "a secret leaked: {text}");
    }
    assert_eq!(card["channels"]["whatsapp"]["phone_number_id"], "1099");
    assert_eq!(card["channels"]["webhook"]["url"], "http://127.0.0.1:9/hook");

    let (status, _) =
        app.call(Method::PUT, "/api/v1/clients/dental/channels/pigeon", Some(&app.admin), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = app
        .call(
            Method::PUT,
            "/api/v1/clients/dental/channels/webhook",
            Some(&app.admin),
            Some(json!({ "url": "https://example.com/h" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"]["message"].as_str().expect("message").contains("secret"), "{error}");
}

#[tokio::test]
async fn channel_urls_on_internal_networks_are_refused_unless_the_operator_allows_them() {
    let app = spawn_app_with(|settings| settings.outbox.allow_private_targets = false).await;
    app.create_client("dental").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest",
        "http://10.0.0.5/x",
        "http://localhost/x",
        // See: issue #8, finding 8.
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[::127.0.0.1]/hook",
        "http://metadata/computeMetadata/v1/",
        "http://kubernetes.default.svc/api",
    ] {
        let (status, error) = app
            .call(
                Method::PUT,
                "/api/v1/clients/dental/channels/webhook",
                Some(&app.admin),
                Some(json!({ "url": url, "secret": "0123456789abcdef" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {error}");
    }
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/clients/dental/channels/webhook",
            Some(&app.admin),
            Some(json!({ "url": "https://hooks.example.com/recado", "secret": "0123456789abcdef" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
