//! Every route x every kind of caller x another client's ids, generated from the OpenAPI document (which is
//! the router's own list of routes): a route added without an entry here fails this test.
//!
//! Client A owns a conversation, a message, a contact, an article, a plugin version and a file. Callers on
//! A's side (its token, its person, the assistant who serves it, an admin) are let through (whatever the body
//! then gets: 2xx, or a 4xx about the request, never 401, 403 or 404); callers on B's side (B's token, B's
//! person, the assistant who serves only B) get 404 on A's objects, or 403 where their role may not act at
//! all, and never an answer that carries A's data. Nothing of A's changes while B's side tries.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::openapi::documented_operations;
use crate::plugins::component;

/// Who may use a route on client A's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Everyone who may see client A: admins, its assistants, its people and tokens.
    Scoped,
    /// A list everyone may ask for, filtered to what the caller may see.
    List,
    /// Admins and A's own people and tokens (not assistants): ingest, plugin management, A's audit log.
    AdminOrClient,
    /// Admins only.
    Admin,
    /// Any signed-in caller, about themselves; never about client A's data.
    Personal,
    /// Anonymous routes (webhooks check their own secrets; sign-in; health; metrics; the document).
    Public,
}

/// What a matrix entry sends.
enum Body {
    None,
    Json(Value),
    Attachment,
    Component,
    /// A knowledge-base archive with one article.
    Zip,
}

/// Client A's objects, named by the path parameters that take them.
struct Ids {
    conversation: String,
    message: String,
    contact: String,
    article: String,
    plugin: String,
    media: String,
    person: String,
    token: String,
}

/// The entry of one documented operation: how to call it on A's objects and who may.
fn entry(method: &Method, path: &str, ids: &Ids) -> Option<(String, Access, Body)> {
    use Access::*;
    let id = if path.starts_with("/api/v1/conversations/") {
        &ids.conversation
    } else if path.starts_with("/api/v1/messages/") {
        &ids.message
    } else if path.starts_with("/api/v1/contacts/") {
        &ids.contact
    } else if path.contains("/kb/articles/") {
        &ids.article
    } else if path.contains("/plugins/") {
        &ids.plugin
    } else if path.starts_with("/api/v1/media/") {
        &ids.media
    } else if path.starts_with("/api/v1/people/") {
        &ids.person
    } else {
        &ids.token
    };
    let concrete = match path {
        "/api/v1/audit" | "/api/v1/conversations" | "/api/v1/reports/summary" => format!("{path}?client=client-a"),
        "/api/v1/clients/{slug}/suggestions" => format!("{path}?q=opening+hours"),
        _ => path.to_owned(),
    };
    let concrete = concrete
        .replace("{slug}", "client-a")
        .replace("{id}", id)
        .replace("{kind}", "webhook")
        .replace("{action}", "shadow");
    let json = |value: Value| Body::Json(value);
    let (access, body) = match (method.as_str(), path) {
        ("GET", "/api/v1/clients") | ("GET", "/api/v1/conversations") => (List, Body::None),
        ("POST", "/api/v1/clients") => {
            (Admin, json(json!({ "slug": "client-z", "name": "Z", "timezone": "UTC", "languages": ["en"] })))
        }
        ("GET", "/api/v1/clients/{slug}") => (Scoped, Body::None),
        ("PATCH", "/api/v1/clients/{slug}") => (Admin, json(json!({ "name": "Client A" }))),
        ("PUT", "/api/v1/clients/{slug}/channels/{kind}") => {
            (Admin, json(json!({ "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef" })))
        }
        ("GET", "/api/v1/clients/{slug}/assistants") => (Admin, Body::None),
        ("PUT", "/api/v1/clients/{slug}/assistants") => (Admin, json(json!({ "assistants": ["ana@example.com"] }))),
        ("POST", "/api/v1/clients/{slug}/messages") => {
            (AdminOrClient, json(json!({ "external_id": "matrix", "from": { "handle": "+1" }, "text": "hi" })))
        }
        ("GET", "/api/v1/clients/{slug}/kb/articles") | ("GET", "/api/v1/clients/{slug}/kb/articles/{id}") => {
            (Scoped, Body::None)
        }
        ("POST", "/api/v1/clients/{slug}/kb/articles") => {
            (Admin, json(json!({ "language": "en", "title": "Matrix", "body": "Hello." })))
        }
        ("PUT", "/api/v1/clients/{slug}/kb/articles/{id}") => {
            (Admin, json(json!({ "version": 1, "language": "en", "title": "Opening hours", "body": "9 to 5." })))
        }
        ("DELETE", "/api/v1/clients/{slug}/kb/articles/{id}") => (Admin, Body::None),
        ("POST", "/api/v1/clients/{slug}/kb/preview") => (Scoped, json(json!({ "body": "Hello {{ contact.name }}" }))),
        ("GET", "/api/v1/clients/{slug}/kb/export") => (Scoped, Body::None),
        ("POST", "/api/v1/clients/{slug}/kb/import") => (Admin, Body::Zip),
        ("GET", "/api/v1/clients/{slug}/plugins") | ("GET", "/api/v1/clients/{slug}/plugins/{id}") => {
            (AdminOrClient, Body::None)
        }
        ("POST", "/api/v1/clients/{slug}/plugins") => (AdminOrClient, Body::Component),
        ("POST", "/api/v1/clients/{slug}/plugins/{id}/{action}") => (AdminOrClient, json(json!({}))),
        ("POST", "/api/v1/clients/{slug}/plugins/{id}/replay") => (AdminOrClient, json(json!({ "messages": 1 }))),
        ("GET", "/api/v1/clients/{slug}/decisions") => (Scoped, Body::None),
        ("GET", "/api/v1/clients/{slug}/suggestions") => (Scoped, Body::None),
        ("GET", "/api/v1/conversations/{id}") => (Scoped, Body::None),
        ("POST", "/api/v1/conversations/{id}/replies") => (Scoped, json(json!({ "text": "reply" }))),
        ("POST", "/api/v1/conversations/{id}/attachments") => (Scoped, Body::Attachment),
        ("POST", "/api/v1/conversations/{id}/templates") => (Scoped, json(json!({ "name": "none", "parameters": [] }))),
        ("POST", "/api/v1/conversations/{id}/close") | ("POST", "/api/v1/conversations/{id}/reopen") => {
            (Scoped, json(json!({})))
        }
        ("POST", "/api/v1/conversations/{id}/assign") => (Scoped, json(json!({ "queue": "matrix" }))),
        ("GET", "/api/v1/messages/{id}/decisions") | ("GET", "/api/v1/messages/{id}/suggestions") => {
            (Scoped, Body::None)
        }
        ("POST", "/api/v1/messages/{id}/retry") => (Scoped, json(json!({}))),
        ("PUT", "/api/v1/contacts/{id}/tags") => (Scoped, json(json!({ "tags": ["matrix"] }))),
        ("GET", "/api/v1/media/{id}") => (Scoped, Body::None),
        ("POST", "/api/v1/media/{id}/retry") => (Scoped, json(json!({}))),
        ("POST", "/api/v1/suggestions/feedback") => (
            Scoped,
            json(json!({ "message_id": ids.message, "shown": [ids.article], "picked": null, "edited": false })),
        ),
        ("GET", "/api/v1/people") => (Admin, Body::None),
        ("POST", "/api/v1/people") => {
            (Admin, json(json!({ "email": "new@example.com", "name": "New", "role": "assistant" })))
        }
        ("PUT", "/api/v1/people/{id}/password") => (Admin, json(json!({}))),
        ("POST", "/api/v1/people/{id}/disable") => (Admin, json(json!({}))),
        ("PUT", "/api/v1/people/{id}/clients") => (Admin, json(json!({ "clients": ["client-a"] }))),
        ("GET", "/api/v1/audit") => (AdminOrClient, Body::None),
        ("GET", "/api/v1/reports/summary") => (Scoped, Body::None),
        ("GET", "/api/v1/me") | ("GET", "/api/v1/tokens") => (Personal, Body::None),
        ("POST", "/api/v1/tokens") => (Personal, json(json!({ "name": "matrix" }))),
        // Revoking A's person's token: only they (and admins) find it.
        ("DELETE", "/api/v1/tokens/{id}") => (Personal, Body::None),
        ("PUT", "/api/v1/me/password") => {
            (Personal, json(json!({ "current_password": "wrong wrong wrong", "new_password": "whatever long enough" })))
        }
        ("DELETE", "/api/v1/session") => (Personal, Body::None),
        ("GET", "/api/v1/events") => (Personal, Body::None),
        ("POST", "/api/v1/session")
        | ("GET", "/webhooks/whatsapp/{slug}")
        | ("POST", "/webhooks/whatsapp/{slug}")
        | ("POST", "/webhooks/telegram/{slug}")
        | ("GET", "/healthz")
        | ("GET", "/readyz")
        | ("GET", "/metrics")
        | ("GET", "/api/v1/openapi.json") => (Public, Body::None),
        _ => return None,
    };
    Some((concrete, access, body))
}

async fn send(app: &TestApp, method: &Method, path: &str, token: &str, body: &Body) -> (StatusCode, String) {
    let mut request = app.http.request(method.clone(), format!("{}{path}", app.base)).bearer_auth(token);
    request = match body {
        Body::None => request,
        Body::Json(value) => request.json(value),
        Body::Attachment => request.multipart(
            reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("note.txt"))
                .text("text", "caption"),
        ),
        Body::Zip => {
            use std::io::Write;
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            zip.start_file("kb/client-a/articles/matrix.md", zip::write::SimpleFileOptions::default()).expect("zip");
            zip.write_all(b"+++\nlanguage = \"en\"\ntitle = \"Matrix\"\n+++\nHello.\n").expect("zip");
            request.header("content-type", "application/zip").body(zip.finish().expect("zip").into_inner())
        }
        Body::Component => request.multipart(
            reqwest::multipart::Form::new()
                .part("component", reqwest::multipart::Part::bytes(component("business_hours_ack")).file_name("p.wasm"))
                .text("name", "matrix")
                .text("version", "9")
                .text("config", r#"{"open":{"es":"Hola"},"closed":{"es":"Hola"}}"#),
        ),
    };
    let response = request.send().await.expect("sent");
    let status = response.status();
    // An event stream never ends by itself: its status is enough.
    if response.headers().get("content-type").is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream")) {
        return (status, String::new());
    }
    (status, response.text().await.unwrap_or_default())
}

/// What of client A's a change by B's side would show.
async fn snapshot(app: &TestApp, ids: &Ids) -> Value {
    let (_, conversation) = app.get(&format!("/api/v1/conversations/{}", ids.conversation), &app.admin).await;
    let (_, article) = app.get(&format!("/api/v1/clients/client-a/kb/articles/{}", ids.article), &app.admin).await;
    let (_, plugin) = app.get(&format!("/api/v1/clients/client-a/plugins/{}", ids.plugin), &app.admin).await;
    let (_, card) = app.get("/api/v1/clients/client-a", &app.admin).await;
    let (_, assistants) = app.get("/api/v1/clients/client-a/assistants", &app.admin).await;
    let messages = conversation["messages"].as_array().map_or(0, Vec::len);
    json!([
        conversation["status"],
        conversation["assignee"],
        conversation["queue"],
        conversation["tags"],
        conversation["contact"]["tags"],
        messages,
        article["version"],
        plugin["state"],
        card,
        assistants
    ])
}

#[tokio::test]
async fn every_route_refuses_the_other_side_and_serves_its_own() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let b = app.create_client("client-b").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    let berta = app.person("berta@example.com", "assistant", None).await;
    let a_person = app.person("owner-a@example.com", "client", Some("client-a")).await;
    let b_person = app.person("owner-b@example.com", "client", Some("client-b")).await;
    app.assign("client-a", &["ana@example.com"]).await;
    app.assign("client-b", &["berta@example.com"]).await;

    let (_, conversation) =
        app.ingest_processed("client-a", &a, "a1", "+34600111222", "CANARY-A what are your opening hours?").await;
    let message = conversation["messages"][0]["id"].as_str().expect("message").to_owned();
    let conversation_id = conversation["id"].as_str().expect("id").to_owned();
    let contact = conversation["contact"]["id"].as_str().expect("contact").to_owned();
    let (status, article) = app
        .post(
            "/api/v1/clients/client-a/kb/articles",
            &app.admin,
            json!({ "language": "en", "title": "Opening hours", "body": "CANARY-A 9 to 5." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{article}");
    let (status, plugin) = app
        .upload_plugin(
            "client-a",
            &a,
            component("business_hours_ack"),
            "ack",
            "1",
            r#"{"open":{"es":"Hola"},"closed":{"es":"Hola"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let (status, _) = send(
        &app,
        &Method::POST,
        &format!("/api/v1/conversations/{conversation_id}/attachments"),
        &app.admin,
        &Body::Attachment,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let thread = app.conversation(&conversation_id).await;
    let media = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find_map(|message| message["media"][0]["url"].as_str())
        .and_then(|url| url.rsplit('/').next())
        .expect("the attachment's file")
        .to_owned();
    // A spare person for the people routes (one of them disables), and a spare token of A's person to revoke.
    let spare = app.person("spare@example.com", "assistant", None).await;
    let spare_token = app
        .db
        .create_person_token(
            recado::store::PersonRef::Id(a_person.id.parse().expect("id")),
            "spare".into(),
            "test".into(),
        )
        .await
        .expect("token")
        .token;
    let person_token_id = spare_token.split('_').nth(1).expect("token id").to_owned();
    let ids = Ids {
        conversation: conversation_id.clone(),
        message,
        contact,
        article: article["id"].as_str().expect("article").to_owned(),
        plugin: plugin["id"].as_str().expect("plugin").to_owned(),
        media,
        person: spare.id.clone(),
        token: person_token_id,
    };

    let operations = documented_operations(&app).await;
    let missing: Vec<String> = operations
        .iter()
        .filter(|(method, path)| entry(method, path, &ids).is_none())
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(missing.is_empty(), "routes without an entry in the matrix: {missing:?}");

    // B's side first, and nothing of A's may change.
    let before = snapshot(&app, &ids).await;
    let outsiders = [
        ("client B's token", b.as_str()),
        ("client B's person", b_person.token.as_str()),
        ("B's assistant", berta.token.as_str()),
    ];
    let mut checked = 0;
    for (method, path) in &operations {
        let (concrete, access, body) = entry(method, path, &ids).expect("an entry");
        if access == Access::Public {
            continue;
        }
        for (who, token) in outsiders {
            let (status, text) = send(&app, method, &concrete, token, &body).await;
            assert!(!text.contains("CANARY-A"), "{method} {concrete} as {who} leaked A's data: {text}");
            match access {
                Access::Scoped | Access::AdminOrClient => assert!(
                    status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN && access != Access::Scoped,
                    "{method} {concrete} as {who}: {status} {text}"
                ),
                Access::Admin => assert!(
                    status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                    "{method} {concrete} as {who}: {status} {text}"
                ),
                Access::List => assert!(
                    status.is_success() && !text.contains("client-a"),
                    "{method} {concrete} as {who}: {status} {text}"
                ),
                Access::Personal => {
                    // About themselves: A's person's token is not theirs to find.
                    if path == "/api/v1/tokens/{id}" {
                        // Not found by a person; an integration's token (no one) may not revoke at all.
                        let expected =
                            if who.contains("token") { StatusCode::FORBIDDEN } else { StatusCode::NOT_FOUND };
                        assert_eq!(status, expected, "{who} revoking A's token: {text}");
                    }
                    assert!(!text.contains("client-a") || path == "/api/v1/me", "{method} {concrete} as {who}: {text}");
                }
                Access::Public => {}
            }
            checked += 1;
        }
    }
    assert_eq!(snapshot(&app, &ids).await, before, "B's side changed nothing of A's");
    assert!(checked > 100, "{checked} refusals checked");

    // A's side is let through (reads before writes, and the deletions last).
    let insiders = [
        ("an admin", app.admin.as_str(), true),
        ("client A's token", a.as_str(), false),
        ("client A's person", a_person.token.as_str(), false),
        ("A's assistant", ana.token.as_str(), false),
    ];
    let mut ordered: Vec<&(Method, String)> = operations.iter().collect();
    ordered.sort_by_key(|(method, path)| {
        (
            *method == Method::DELETE || path.ends_with("/disable") || path == "/api/v1/me/password",
            *method != Method::GET,
        )
    });
    for (method, path) in ordered {
        let (concrete, access, body) = entry(method, path, &ids).expect("an entry");
        for (who, token, admin) in insiders {
            let (status, text) = send(&app, method, &concrete, token, &body).await;
            let context = format!("{method} {concrete} as {who}: {status} {text}");
            let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&status);
            match access {
                Access::Scoped | Access::List => assert!(!refused, "{context}"),
                Access::AdminOrClient if admin || who.starts_with("client A") => assert!(!refused, "{context}"),
                Access::AdminOrClient | Access::Admin if !admin => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{context}")
                }
                Access::Admin => assert!(!refused, "{context}"),
                // About themselves: an integration's token is no one (403 where a person is needed), a wrong
                // current password is a 403, and only A's person (or an admin) finds A's person's token.
                Access::Personal => {
                    assert_ne!(status, StatusCode::UNAUTHORIZED, "{context}");
                    if path == "/api/v1/tokens/{id}" {
                        let finds = admin || who == "client A's person";
                        assert!(
                            finds != (status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN),
                            "{context}"
                        );
                    }
                }
                Access::AdminOrClient | Access::Public => {}
            }
        }
    }
}
