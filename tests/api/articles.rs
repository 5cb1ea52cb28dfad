//! The knowledge-base API: articles with versions, template checks, search and paging, roles.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn article(title: &str, body: &str) -> Value {
    json!({ "language": "ca", "title": title, "questions": ["A quina hora obriu?", "Quin horari feu?"], "body": body, "tags": ["horaris"] })
}

async fn create(app: &TestApp, slug: &str, body: Value) -> Value {
    let (status, created) = app.post(&format!("/api/v1/clients/{slug}/kb/articles"), &app.admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

#[tokio::test]
async fn an_article_is_created_with_a_derived_id_and_read_back() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    let created = create(
        &app,
        "dental",
        article("Horari de la clínica", "Obrim de 9 a 14, {{ contact.first_name | default(\"\") }}."),
    )
    .await;
    assert_eq!(created["id"], "horari-de-la-clinica");
    assert_eq!(created["version"], 1);
    assert_eq!(
        created["updated_by"].as_str().map(|s| s.starts_with("token:")),
        Some(true),
        "an integration token is named by its id"
    );
    let again = create(&app, "dental", article("Horari de la clínica", "Una altra versió.")).await;
    assert_eq!(again["id"], "horari-de-la-clinica-2", "a taken derived id gets a suffix");

    let (status, headers, shown) = app
        .call_full(Method::GET, "/api/v1/clients/dental/kb/articles/horari-de-la-clinica", Some(&app.assistant), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("etag").expect("etag").to_str().expect("ascii"), "\"1\"");
    assert_eq!(shown, created);

    let mut given = article("Preus", "Una neteja costa 60 €.");
    given["id"] = json!("preus");
    given["shortcut"] = json!("/preus");
    let created = create(&app, "dental", given.clone()).await;
    assert_eq!((created["id"].as_str(), created["shortcut"].as_str()), (Some("preus"), Some("preus")));
    let (status, error) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, given).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let mut other = article("Altres preus", "...");
    other["shortcut"] = json!("preus");
    let (status, error) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, other).await;
    assert_eq!(status, StatusCode::CONFLICT, "a shortcut is unique per client: {error}");
}

#[tokio::test]
async fn template_errors_are_refused_with_the_line() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    let (status, error) = app
        .post(
            "/api/v1/clients/dental/kb/articles",
            &app.admin,
            article("Telèfon", "Hola,\n\nel teu telèfon és {{ contact.phone }}."),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("body") && message.contains("line 3") && message.contains("contact.phone"), "{message}");
    let (status, error) =
        app.post("/api/v1/clients/dental/kb/articles", &app.admin, article("Trencat", "Hola {{ contact.name")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().expect("message").contains("line 1"), "{error}");
    let (_, list) = app.get("/api/v1/clients/dental/kb/articles", &app.admin).await;
    assert_eq!(list["articles"], json!([]), "nothing stored");
}

#[tokio::test]
async fn edits_must_name_the_current_version_and_stale_ones_get_the_current_article() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    let created = create(&app, "dental", article("Horari", "Obrim a les 9.")).await;
    let path = "/api/v1/clients/dental/kb/articles/horari";

    let (status, error) =
        app.call(Method::PUT, path, Some(&app.admin), Some(article("Horari", "Obrim a les 10."))).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{error}");

    // Admin A edits version 1 through If-Match.
    let response = app
        .http
        .put(format!("{}{path}", app.base))
        .bearer_auth(&app.admin)
        .header("if-match", "\"1\"")
        .json(&article("Horari", "Obrim a les 10."))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.expect("json");
    assert_eq!(updated["version"], 2);

    // Admin B still holds version 1, in the body this time.
    let mut stale = article("Horari", "Obrim a les 8.");
    stale["version"] = json!(1);
    let (status, conflict) = app.call(Method::PUT, path, Some(&app.admin), Some(stale)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], "version_conflict");
    assert_eq!(conflict["current"]["version"], 2);
    assert_eq!(conflict["current"]["body"], "Obrim a les 10.");

    let (status, _) = app.call(Method::DELETE, &format!("{path}?version=1"), Some(&app.admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.call(Method::DELETE, &format!("{path}?version=2"), Some(&app.admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(path, &app.admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = app.get("/api/v1/audit?client=dental&limit=3", &app.admin).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["article.delete", "article.update", "article.create"], "every change is audited");
    assert_eq!(created["version"], 1);
}

#[tokio::test]
async fn the_list_searches_filters_by_language_and_pages() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    for n in 0..5 {
        create(&app, "dental", json!({ "language": "ca", "title": format!("Article {n}"), "body": "Cos" })).await;
    }
    create(&app, "dental", json!({ "language": "es", "title": "Cancelar una cita", "questions": ["¿Puedo anular mi cita?"], "body": "Sí, hasta 24 h antes." })).await;

    let (_, found) = app.get("/api/v1/clients/dental/kb/articles?q=ANULAR", &app.assistant).await;
    let ids: Vec<_> = found["articles"].as_array().expect("list").iter().map(|a| a["id"].clone()).collect();
    assert_eq!(ids, [json!("cancelar-una-cita")], "matches questions, case-insensitively");
    let (_, spanish) = app.get("/api/v1/clients/dental/kb/articles?language=es", &app.assistant).await;
    assert_eq!(spanish["articles"].as_array().expect("list").len(), 1);
    let (_, wild) = app.get("/api/v1/clients/dental/kb/articles?q=%25", &app.assistant).await;
    assert_eq!(wild["articles"], json!([]), "LIKE wildcards in q are literal");

    let mut seen = Vec::new();
    let mut path = "/api/v1/clients/dental/kb/articles?limit=4".to_owned();
    loop {
        let (_, page) = app.get(&path, &app.assistant).await;
        seen.extend(
            page["articles"].as_array().expect("list").iter().map(|a| a["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/clients/dental/kb/articles?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
}

#[tokio::test]
async fn assistants_and_clients_read_but_only_admins_write() {
    let app = spawn_app().await;
    let dental = app.create_client("dental").await;
    let other = app.create_client("other").await;
    create(&app, "dental", article("Horari", "Obrim a les 9.")).await;
    let path = "/api/v1/clients/dental/kb/articles";

    let (status, _) = app.get(path, &dental).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get(&format!("{path}/horari"), &app.assistant).await;
    assert_eq!(status, StatusCode::OK);
    for token in [&app.assistant, &dental] {
        let (status, _) = app.post(path, token, article("Nou", "x")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.call(Method::DELETE, &format!("{path}/horari?version=1"), Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for (method, route) in [
        (Method::GET, path.to_owned()),
        (Method::GET, format!("{path}/horari")),
        (Method::DELETE, format!("{path}/horari?version=1")),
    ] {
        let (status, body) = app.call(method.clone(), &route, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {route} with another client's token: {body}");
    }
    let (status, _) =
        app.call(Method::PUT, &format!("{path}/horari"), Some(&other), Some(article("Horari", "hijack"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, still) = app.get(&format!("{path}/horari"), &app.admin).await;
    assert_eq!((still["version"].as_i64(), still["body"].as_str()), (Some(1), Some("Obrim a les 9.")));
}

#[tokio::test]
async fn the_editor_previews_a_body_filled_in_or_its_problem_with_the_line() {
    let app = spawn_app().await;
    let dental = app.create_client("dental").await;
    let other = app.create_client("other").await;
    let path = "/api/v1/clients/dental/kb/preview";
    let body = "Hola {{ contact.first_name }}, sóc {{ assistant.name }} de {{ client.name }} 🦷.";
    let (status, preview) = app.post(path, &app.assistant, json!({ "body": body, "contact_name": "Jordi Puig" })).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview, json!({ "text": "Hola Jordi, sóc Ana de Client dental 🦷.", "problem": null }));
    let (_, preview) = app.post(path, &dental, json!({ "body": "Hola {{ contact.name }}" })).await;
    assert_eq!(preview["text"], "Hola Núria Vila", "a sample contact when none is named");
    let (_, preview) =
        app.post(path, &dental, json!({ "body": "Ref. {{ conversation.id }}", "conversation_id": "cnv_0123" })).await;
    assert_eq!(preview["text"], "Ref. cnv_0123", "the composer fills an article in for its conversation");

    let (status, preview) =
        app.post(path, &app.admin, json!({ "body": "Hola,\n\nel teu telèfon és {{ contact.phone }}." })).await;
    assert_eq!(status, StatusCode::OK, "a broken template is an answer, not a refused request");
    assert_eq!(preview["text"], Value::Null);
    assert_eq!(preview["problem"]["line"], 3, "{preview}");
    assert!(preview["problem"]["message"].as_str().expect("message").contains("contact.phone"), "{preview}");
    let (_, preview) = app.post(path, &app.admin, json!({ "body": "Hola\n{% if contact.name %}sí" })).await;
    assert!(preview["problem"]["message"].as_str().is_some(), "an unclosed block: {preview}");
    let (_, preview) = app.post(path, &app.admin, json!({ "body": "x".repeat(20_001) })).await;
    assert!(preview["problem"]["message"].as_str().expect("message").contains("longer than"), "{preview}");

    let (status, _) = app.post(path, &other, json!({ "body": "Hola" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client's token");
}

/// A zip of `files` (name, text), as an admin would make by hand.
fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).expect("start");
        zip.write_all(text.as_bytes()).expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

/// Unpacks a zip into (name, text) pairs, sorted.
fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut files = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).expect("entry");
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("text");
        files.push((entry.name().expect("name").into_owned(), text));
    }
    files.sort();
    files
}

async fn import(app: &TestApp, slug: &str, token: &str, archive: Vec<u8>) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}/api/v1/clients/{slug}/kb/import", app.base))
        .bearer_auth(token)
        .header("content-type", "application/zip")
        .body(archive)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_knowledge_base_goes_out_and_back_in_as_a_zip_of_the_file_layout() {
    let app = spawn_app().await;
    let dental = app.create_client("dental").await;
    let other = app.create_client("other").await;
    create(&app, "dental", article("Horari", "Obrim a les 9, {{ contact.first_name | default(\"\") }}.")).await;
    create(&app, "dental", json!({ "language": "ru", "title": "Цены", "body": "Чистка стоит 60 € 🦷." })).await;

    let response = app
        .http
        .get(format!("{}/api/v1/clients/dental/kb/export", app.base))
        .bearer_auth(&app.assistant)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"dental-kb.zip\"");
    let files = unzip(&response.bytes().await.expect("bytes"));
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["kb/dental/articles/horari.md", "kb/dental/articles/tseny.md", "kb/dental/client.toml"]);
    assert_eq!(files[1].1, "+++\nlanguage = \"ru\"\ntitle = \"Цены\"\n+++\nЧистка стоит 60 € 🦷.\n");
    assert!(files[2].1.contains("name = \"Client dental\""), "{}", files[2].1);

    // The same files back: nothing changes.
    let as_exported: Vec<(&str, &str)> = files.iter().map(|(name, text)| (name.as_str(), text.as_str())).collect();
    let (status, summary) = import(&app, "dental", &app.admin, zip_of(&as_exported)).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary, json!({ "profile_updated": false, "created": 0, "updated": 0, "unchanged": 2 }));

    // An edited article and a new one, rooted at the client's folder (as a zip of `kb/dental` would be).
    let edited = files[0].1.replace("a les 9", "a les 10");
    let new = "+++\nlanguage = \"ca\"\ntitle = \"Urgències\"\nshortcut = \"urgent\"\n+++\nTruqueu al 112.\n";
    let (status, summary) = import(
        &app,
        "dental",
        &app.admin,
        zip_of(&[("dental/articles/horari.md", &edited), ("dental/articles/urgencies.md", new)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary, json!({ "profile_updated": false, "created": 1, "updated": 1, "unchanged": 0 }));
    let (_, horari) = app.get("/api/v1/clients/dental/kb/articles/horari", &app.admin).await;
    assert_eq!(
        (horari["version"].as_i64(), horari["body"].as_str()),
        (Some(2), Some("Obrim a les 10, {{ contact.first_name | default(\"\") }}."))
    );
    let (_, found) = app.get("/api/v1/clients/dental/kb/articles/urgencies", &app.admin).await;
    assert_eq!((found["title"].as_str(), found["shortcut"].as_str()), (Some("Urgències"), Some("urgent")), "{found}");

    // A broken archive: every problem with its file and line, and nothing stored.
    let before = app.table_contents(&["articles"]).await;
    let broken = "+++\nlanguage = \"ca\"\ntitle = \"x\"\n+++\nHola\n{{ contact.phone }}\n";
    let (status, error) = import(
        &app,
        "dental",
        &app.admin,
        zip_of(&[
            ("kb/dental/articles/horari.md", &edited.replace("a les 10", "a les 11")),
            ("kb/dental/articles/broken.md", broken),
            ("kb/other/articles/smuggled.md", new),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["code"], "invalid_archive");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("2 problem(s); nothing was imported"), "{message}");
    assert!(message.contains("kb/dental/articles/broken.md:6: body:"), "{message}");
    assert!(message.contains("kb/other/articles/smuggled.md: not part of this client's"), "{message}");
    let (status, error) = import(&app, "dental", &app.admin, b"PK not really".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(app.table_contents(&["articles"]).await, before, "nothing of a refused archive is stored");

    // Only admins import, into a client they can see, as a zip.
    let archive = zip_of(&[("kb/dental/articles/urgencies.md", new)]);
    for token in [&app.assistant, &dental] {
        let (status, _) = import(&app, "dental", token, archive.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = import(&app, "dental", &other, archive.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = app.post("/api/v1/clients/dental/kb/import", &app.admin, json!({ "files": [] })).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");
    let (status, _) = app.get("/api/v1/clients/dental/kb/export", &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
