//! The OpenAPI document: served at `/api/v1/openapi.json`, OpenAPI 3.1, and it lists exactly the routes the
//! server answers (the router registers every route from the document's operations; `http.rs` checks that
//! nothing is routed around them).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// Every `(method, path template)` the document lists.
pub async fn documented_operations(app: &crate::helpers::TestApp) -> Vec<(Method, String)> {
    let document: Value = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            operations.push((method, path.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_operation_in_it_is_routed() {
    let app = spawn_app().await;
    let response = app.http.get(format!("{}/api/v1/openapi.json", app.base)).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.expect("json");
    assert!(document["openapi"].as_str().expect("version").starts_with("3.1"), "{}", document["openapi"]);
    assert_eq!(document["info"]["title"], "recado");
    let schemes = document["components"]["securitySchemes"].as_object().expect("security schemes");
    assert!(schemes.contains_key("token") && schemes.contains_key("session"));

    let operations = documented_operations(&app).await;
    assert!(operations.len() >= 55, "{} operations", operations.len());
    for expected in ["/api/v1/session", "/api/v1/me", "/api/v1/audit", "/api/v1/events", "/webhooks/telegram/{slug}"] {
        assert!(operations.iter().any(|(_, path)| path == expected), "{expected} is documented");
    }
    for (method, path) in &operations {
        let operation = &document["paths"][path][method.as_str().to_lowercase()];
        assert!(
            operation["description"].is_string() || operation["summary"].is_string(),
            "{method} {path} says what it does"
        );
        // Placeholders in the path; no credentials: every documented route must reach a handler or its
        // authentication, never the "no such route" or "method not allowed" answer.
        let concrete = path
            .replace("{slug}", "nobody")
            .replace("{id}", "x")
            .replace("{kind}", "webhook")
            .replace("{action}", "activate");
        let (status, body) = app.call(method.clone(), &concrete, None, None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "route not found"),
            "{method} {path} is documented but not routed"
        );
    }
}
