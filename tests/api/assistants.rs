//! Assistants see only the clients they serve: their inbox, conversations, messages, suggestions, decisions
//! and client cards; anything else answers 404 as for another client's token. Admins assign them, on the
//! client or on the person, and a change takes effect at once. Every change names who made it in the audit log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn slugs(list: &Value, key: &str, field: &str) -> Vec<String> {
    let mut slugs: Vec<String> = list[key]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|item| item[field].as_str().map(str::to_owned))
        .collect();
    slugs.sort();
    slugs.dedup();
    slugs
}

#[tokio::test]
async fn an_assistant_sees_only_the_clients_she_serves_and_a_new_assignment_shows_at_once() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let b = app.create_client("client-b").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    let berta = app.person("berta@example.com", "assistant", None).await;
    app.assign("client-a", &["ana@example.com"]).await;
    app.assign("client-b", &["berta@example.com"]).await;
    let (_, in_a) = app.ingest("client-a", &a, "1", "+34600111222", "CANARY-A quin horari teniu?").await;
    let (_, in_b) = app.ingest("client-b", &b, "1", "+34600333444", "CANARY-B hours please").await;
    let conversation_b = in_b["conversation_id"].as_str().expect("id").to_owned();
    let message_b = in_b["message_id"].as_str().expect("id").to_owned();
    app.wait_for_conversation(&conversation_b, "processing", |c| c["messages"][0]["state"] == "processed").await;
    let contact_b = app.conversation(&conversation_b).await["contact"]["id"].as_str().expect("contact").to_owned();

    let (_, inbox) = app.get("/api/v1/conversations", &ana.token).await;
    assert_eq!(slugs(&inbox, "conversations", "client"), ["client-a"], "{inbox}");
    let (_, clients) = app.get("/api/v1/clients", &ana.token).await;
    assert_eq!(slugs(&clients, "clients", "slug"), ["client-a"]);
    let (_, inbox) = app.get("/api/v1/conversations?client=client-b", &ana.token).await;
    assert!(inbox["conversations"].as_array().expect("list").is_empty(), "asking for B does not show B: {inbox}");

    let foreign: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/conversations/{conversation_b}"), None),
        (Method::POST, format!("/api/v1/conversations/{conversation_b}/replies"), Some(json!({ "text": "hijack" }))),
        (Method::POST, format!("/api/v1/conversations/{conversation_b}/close"), Some(json!({}))),
        (
            Method::POST,
            format!("/api/v1/conversations/{conversation_b}/assign"),
            Some(json!({ "assignee": "ana@example.com" })),
        ),
        (Method::GET, format!("/api/v1/messages/{message_b}/decisions"), None),
        (Method::GET, format!("/api/v1/messages/{message_b}/suggestions"), None),
        (Method::PUT, format!("/api/v1/contacts/{contact_b}/tags"), Some(json!({ "tags": ["x"] }))),
        (Method::GET, "/api/v1/clients/client-b".to_owned(), None),
        (Method::GET, "/api/v1/clients/client-b/decisions".to_owned(), None),
        (Method::GET, "/api/v1/clients/client-b/kb/articles".to_owned(), None),
        (Method::GET, "/api/v1/clients/client-b/suggestions?q=hours".to_owned(), None),
    ];
    for (method, path, body) in &foreign {
        let (status, response) = app.call(method.clone(), path, Some(&ana.token), body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} as Ana: {response}");
        assert!(!response.to_string().contains("CANARY-B"), "{method} {path} leaked");
    }
    assert_eq!(app.conversation(&conversation_b).await["status"], "open", "nothing changed");
    // Her own client works.
    let conversation_a = in_a["conversation_id"].as_str().expect("id");
    let (status, reply) = app
        .post(
            &format!("/api/v1/conversations/{conversation_a}/replies"),
            &ana.token,
            json!({ "text": "Obrim a les 9." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");

    // Assigned to B too (on the person this time): she sees it with the next request, on the same token.
    let (status, person) = app
        .call(
            Method::PUT,
            &format!("/api/v1/people/{}/clients", ana.id),
            Some(&app.admin),
            Some(json!({ "clients": ["client-a", "client-b"] })),
        )
        .await;
    assert_eq!((status, person["clients"].clone()), (StatusCode::OK, json!(["client-a", "client-b"])), "{person}");
    let (status, _) = app.get(&format!("/api/v1/conversations/{conversation_b}"), &ana.token).await;
    assert_eq!(status, StatusCode::OK);
    let (_, assistants) = app.get("/api/v1/clients/client-b/assistants", &app.admin).await;
    assert_eq!(slugs(&assistants, "assistants", "email"), ["ana@example.com", "berta@example.com"]);
    // Taken away again: gone at once.
    app.assign("client-b", &["berta@example.com"]).await;
    let (status, _) = app.get(&format!("/api/v1/conversations/{conversation_b}"), &ana.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, inbox) = app.get("/api/v1/conversations", &berta.token).await;
    assert_eq!(slugs(&inbox, "conversations", "client"), ["client-b"]);
}

#[tokio::test]
async fn only_admins_assign_and_only_assistants_can_be_assigned() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    app.person("boss@example.com", "admin", None).await;
    async fn put(app: &crate::helpers::TestApp, token: &str, body: Value) -> (StatusCode, Value) {
        app.call(Method::PUT, "/api/v1/clients/client-a/assistants", Some(token), Some(body)).await
    }
    let (status, _) = put(&app, &ana.token, json!({ "assistants": ["ana@example.com"] })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = put(&app, &a, json!({ "assistants": ["ana@example.com"] })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (body, why) in [
        (json!({ "assistants": ["boss@example.com"] }), "an admin is not assigned"),
        (json!({ "assistants": ["nobody@example.com"] }), "no such person"),
        (json!({ "assistants": ["not an address"] }), "not an address"),
    ] {
        let (status, error) = put(&app, &app.admin, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {error}");
    }
    let (status, _) = app
        .call(Method::PUT, "/api/v1/clients/nowhere/assistants", Some(&app.admin), Some(json!({ "assistants": [] })))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/people/{}/clients", ana.id),
            Some(&app.admin),
            Some(json!({ "clients": ["nowhere"] })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown client");
}

#[tokio::test]
async fn every_change_names_who_made_it_and_each_client_reads_only_its_own_audit_log() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    app.create_client("client-b").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    let owner = app.person("owner@example.com", "client", Some("client-a")).await;
    app.assign("client-a", &["ana@example.com"]).await;
    let (_, inbound) = app.ingest("client-a", &a, "1", "+1", "hola").await;
    let conversation = inbound["conversation_id"].as_str().expect("id");
    let (status, _) = app.post(&format!("/api/v1/conversations/{conversation}/close"), &ana.token, json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, audit) = app.get("/api/v1/audit?client=client-a", &owner.token).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    let close = entries.iter().find(|entry| entry["action"] == "conversation.close").expect("the close is audited");
    assert_eq!(
        (close["actor"].as_str(), close["actor_name"].as_str()),
        (Some(ana.id.as_str()), Some("ana")),
        "{close}"
    );
    assert!(entries.iter().all(|entry| entry["client"] == "client-a"), "{audit}");
    // The client's person cannot read another client's log, nor the agency's.
    let (status, _) = app.get("/api/v1/audit?client=client-b", &owner.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, own) = app.get("/api/v1/audit", &owner.token).await;
    assert!(own["entries"].as_array().expect("entries").iter().all(|entry| entry["client"] == "client-a"), "{own}");
    let (status, _) = app.get("/api/v1/audit", &ana.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "assistants do not read the audit log");

    // Admins page through all of it.
    let (_, first) = app.get("/api/v1/audit?limit=2", &app.admin).await;
    assert_eq!(first["entries"].as_array().expect("entries").len(), 2);
    let cursor = first["next_cursor"].as_str().expect("more entries follow");
    let (_, second) = app.get(&format!("/api/v1/audit?limit=200&cursor={cursor}"), &app.admin).await;
    let all: Vec<&Value> =
        first["entries"].as_array().into_iter().chain(second["entries"].as_array()).flatten().collect();
    assert!(all.iter().any(|entry| entry["action"] == "client.assistants"), "assignments are audited");
    assert!(all.iter().any(|entry| entry["action"] == "person.create" && entry["client"].is_null()));
    let mut ids: Vec<&str> = all.iter().filter_map(|entry| entry["id"].as_str()).collect();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "pages do not overlap");
}
