//! Clients' data is confidential: one client's token never reads or changes another client's data, and a
//! foreign id answers 404 (never 403), so a token cannot even learn that the id exists.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_client_token_gets_404_on_every_route_that_takes_another_clients_ids_and_changes_nothing() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let b = app.create_client("client-b").await;
    let (_, inbound) = app.ingest("client-a", &a, "secret-1", "+34600111222", "CANARY-A my secret message").await;
    let conversation = inbound["conversation_id"].as_str().expect("id").to_owned();
    let message = inbound["message_id"].as_str().expect("id").to_owned();
    app.wait_for_conversation(&conversation, "processing", |c| c["messages"][0]["state"] == "processed").await;
    let before = app.conversation(&conversation).await;
    let contact = before["contact"]["id"].as_str().expect("contact id").to_owned();

    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/api/v1/conversations/{conversation}"), None),
        (Method::POST, format!("/api/v1/conversations/{conversation}/replies"), Some(json!({ "text": "hijack" }))),
        (Method::POST, format!("/api/v1/conversations/{conversation}/close"), Some(json!({}))),
        (Method::POST, format!("/api/v1/conversations/{conversation}/reopen"), Some(json!({}))),
        (Method::POST, format!("/api/v1/conversations/{conversation}/assign"), Some(json!({ "assignee": "mallory" }))),
        (Method::GET, format!("/api/v1/messages/{message}/decisions"), None),
        (Method::PUT, format!("/api/v1/contacts/{contact}/tags"), Some(json!({ "tags": ["mallory"] }))),
        (Method::GET, "/api/v1/clients/client-a".to_owned(), None),
        (Method::PATCH, "/api/v1/clients/client-a".to_owned(), Some(json!({ "name": "Pwned" }))),
        (
            Method::PUT,
            "/api/v1/clients/client-a/channels/webhook".to_owned(),
            Some(json!({ "url": "http://127.0.0.1:1/x", "secret": "0123456789abcdef" })),
        ),
        (
            Method::POST,
            "/api/v1/clients/client-a/messages".to_owned(),
            Some(json!({ "external_id": "x", "from": { "handle": "+1" }, "text": "forged" })),
        ),
    ];
    for (method, path, body) in routes {
        let (status, response) = app.call(method.clone(), &path, Some(&b), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} with client B's token: {response}");
        assert_eq!(response["error"]["code"], "not_found", "{method} {path}");
        assert!(!response.to_string().contains("CANARY-A"), "{method} {path} leaked data");
    }

    // Lists are scoped: B sees only B, even when asking for A.
    for path in ["/api/v1/conversations", "/api/v1/conversations?client=client-a", "/api/v1/clients"] {
        let (status, response) = app.get(path, &b).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !response.to_string().contains("CANARY-A") && !response.to_string().contains("client-a"),
            "{path} leaked: {response}"
        );
    }

    // What a foreign token could have changed (delivery attempts of the acknowledgement move on by themselves).
    let changeable = |c: &serde_json::Value| {
        let messages: Vec<_> = c["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| (m["id"].clone(), m["kind"].clone(), m["text"].clone()))
            .collect();
        json!([
            c["status"],
            c["assignee"],
            c["queue"],
            c["priority"],
            c["tags"],
            c["closed_at"],
            c["first_human_reply_at"],
            c["contact"]["tags"],
            messages
        ])
    };
    let after = app.conversation(&conversation).await;
    assert_eq!(changeable(&before), changeable(&after), "nothing changed");
    let (_, card) = app.get("/api/v1/clients/client-a", &app.admin).await;
    assert_eq!(card["name"], "Client client-a");
    assert_eq!(card["channels"], json!({}));
}

#[tokio::test]
async fn a_client_token_works_on_its_own_conversations() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let (_, inbound) = app.ingest("client-a", &a, "1", "+1", "hi").await;
    let conversation = inbound["conversation_id"].as_str().expect("id");
    let (status, _) = app.get(&format!("/api/v1/conversations/{conversation}"), &a).await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) =
        app.post(&format!("/api/v1/conversations/{conversation}/replies"), &a, json!({ "text": "Owner here" })).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (_, list) = app.get("/api/v1/conversations", &a).await;
    assert_eq!(list["conversations"].as_array().expect("list").len(), 1);
}

#[tokio::test]
async fn roles_are_enforced_on_admin_routes() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let body = json!({ "slug": "new-client", "name": "New", "timezone": "Europe/Rome", "languages": ["it"] });
    let (status, _) = app.post("/api/v1/clients", &app.assistant, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post("/api/v1/clients", &a, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        app.call(Method::PATCH, "/api/v1/clients/client-a", Some(&app.assistant), Some(json!({ "name": "x" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The client may read its own card but not change it.
    let (status, _) = app.get("/api/v1/clients/client-a", &a).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::PATCH, "/api/v1/clients/client-a", Some(&a), Some(json!({ "name": "x" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/clients/client-a/channels/webhook",
            Some(&a),
            Some(json!({ "url": "https://example.com/h", "secret": "0123456789abcdef" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
