//! The people who sign in, managed by admins over the API: passwords hashed, never returned, generated ones
//! shown once.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn admins_create_list_reset_and_disable_people_and_no_answer_carries_a_hash() {
    let app = spawn_app().await;
    app.create_client("dental").await;

    let (status, ana) = app
        .post("/api/v1/people", &app.admin, json!({ "email": "Ana@Example.com", "name": "Ana", "role": "assistant" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ana}");
    let generated = ana["generated_password"].as_str().expect("a generated password, shown once");
    assert_eq!(generated.len(), 24);
    let id = ana["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("prs_") && ana["disabled"] == false && ana["role"] == "assistant", "{ana}");

    let chosen = "una contrasenya prou llarga";
    let (status, marta) = app
        .post(
            "/api/v1/people",
            &app.admin,
            json!({ "email": "marta@example.com", "name": "Marta", "role": "client", "client": "dental", "password": chosen }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{marta}");
    assert!(marta.get("generated_password").is_none() && marta["client"] == "dental", "{marta}");

    // Refusals: the address taken (whatever its case), a client person without a client, a short password,
    // and anyone but an admin.
    let (status, _) = app
        .post("/api/v1/people", &app.admin, json!({ "email": "ANA@example.com", "name": "Ana", "role": "admin" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = app
        .post("/api/v1/people", &app.admin, json!({ "email": "c@example.com", "name": "C", "role": "client" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .post(
            "/api/v1/people",
            &app.admin,
            json!({ "email": "d@example.com", "name": "D", "role": "admin", "password": "short" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app.get("/api/v1/people", &app.assistant).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, list) = app.get("/api/v1/people", &app.admin).await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<&str> =
        list["people"].as_array().expect("people").iter().filter_map(|p| p["email"].as_str()).collect();
    assert_eq!(emails, ["Ana@Example.com", "marta@example.com"]);
    let text = list.to_string();
    assert!(!text.contains("argon2") && !text.contains(chosen) && !text.contains(generated), "{text}");

    let path = format!("/api/v1/people/{id}/password");
    let changed = "un altre passatge prou llarg";
    let (status, reset) = app.call(Method::PUT, &path, Some(&app.admin), Some(json!({ "password": changed }))).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert!(reset.get("generated_password").is_none());
    let stored = app.database().value("SELECT password_hash FROM people WHERE id = ?1", &[id.as_str().into()]).await;
    let stored = stored.text();
    assert!(recado::people::verify_password(changed, stored) && !recado::people::verify_password(generated, stored));

    let (status, disabled) = app.post(&format!("/api/v1/people/{id}/disable"), &app.admin, json!({})).await;
    assert_eq!((status, disabled["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{disabled}");
    let (status, _) = app.post("/api/v1/people/prs_nonsense/disable", &app.admin, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
