//! The OpenAPI document: served at `/api/v1/openapi.json`, OpenAPI 3.1, and it lists exactly the routes the
//! server answers (the router registers every route from the document's operations; `http.rs` checks that
//! nothing is routed around them).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// Every `(method, path template)` the document lists.
pub async fn documented_operations(app: &crate::helpers::TestApp) -> Vec<(Method, String)> {
    let document = crate::helpers::json_answer(app.http.get(format!("{}/api/v1/openapi.json", app.base))).await;
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

/// Answers that are not JSON, or have no body: each with why.
const NOT_JSON: &[(&str, &str)] = &[
    ("get", "/api/v1/events"),                             // server-sent events
    ("get", "/api/v1/media/{id}"),                         // the file itself
    ("get", "/metrics"),                                   // Prometheus text
    ("get", "/webhooks/whatsapp/{slug}"),                  // Meta's challenge, echoed as text
    ("get", "/api/v1/openapi.json"),                       // this document
    ("delete", "/api/v1/session"),                         // 204
    ("put", "/api/v1/me/password"),                        // 204
    ("delete", "/api/v1/clients/{slug}/kb/articles/{id}"), // 204
    ("get", "/api/v1/clients/{slug}/kb/export"),           // a zip archive
];

/// Request bodies that are another party's format rather than ours: described in words.
const FOREIGN_BODIES: &[&str] =
    &["/webhooks/whatsapp/{slug}", "/webhooks/telegram/{slug}", "/api/v1/clients/{slug}/channels/{kind}"];

/// `schema` with every `$ref` it starts with resolved.
fn resolved<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/schemas/").expect("a schema reference");
            let target = &document["components"]["schemas"][name];
            assert!(target.is_object(), "{reference} is in the document");
            resolved(document, target)
        }
        None => schema,
    }
}

/// Why `value` does not conform to `schema`: a field the schema does not have, a required one missing, or a
/// value of another type. Enough of JSON Schema for what utoipa writes: `$ref`, `allOf`, `oneOf`/`anyOf`,
/// `type` (one or several), `properties`/`required`, `additionalProperties`, `items`, `enum`.
fn mismatch(document: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    let schema = resolved(document, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        // Parts of one object (flattened fields): known fields are those of any part.
        let mut merged = serde_json::Map::new();
        let mut required = Vec::new();
        for part in parts {
            let part = resolved(document, part);
            merged.extend(part["properties"].as_object().cloned().unwrap_or_default());
            required.extend(part["required"].as_array().cloned().unwrap_or_default());
        }
        let object = serde_json::json!({ "type": "object", "properties": merged, "required": required });
        return mismatch(document, &object, value, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema[key].as_array() {
            let reasons: Vec<String> =
                choices.iter().filter_map(|choice| mismatch(document, choice, value, at)).collect();
            return (reasons.len() == choices.len()).then(|| format!("{at}: none of {key}: {reasons:?}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {allowed:?}"));
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(several) => several.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(), // any value
    };
    let allowed = types.is_empty() || types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
    if !allowed {
        return Some(format!("{at}: a {kind} where the document says {types:?}"));
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().expect("a field name");
                if !fields.contains_key(name) {
                    return Some(format!("{at}: required field `{name}` is missing"));
                }
            }
            for (name, field) in fields {
                let path = format!("{at}.{name}");
                let field_schema = match properties.and_then(|properties| properties.get(name)) {
                    Some(field_schema) => field_schema,
                    None if schema["additionalProperties"].is_object() => &schema["additionalProperties"],
                    None if properties.is_none() && schema["additionalProperties"] != false => continue,
                    None => return Some(format!("{path}: not in the document")),
                };
                if let Some(reason) = mismatch(document, field_schema, field, &path) {
                    return Some(reason);
                }
            }
            None
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| mismatch(document, &schema["items"], item, &format!("{at}[{index}]"))),
        _ => None,
    }
}

#[tokio::test]
async fn bodies_are_described_by_named_schemas_that_the_answers_conform_to() {
    let app = spawn_app().await;
    let (_, document) = app.get("/api/v1/openapi.json", &app.admin).await;
    let schemas = document["components"]["schemas"].as_object().expect("schemas");
    assert!(schemas.len() > 40, "{} schemas", schemas.len());

    // Every operation's JSON answer and JSON body is a named schema of the document.
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if !status.starts_with('2') || NOT_JSON.contains(&(method.as_str(), path.as_str())) {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let named = schema["$ref"].as_str().or_else(|| schema["items"]["$ref"].as_str());
                assert!(named.is_some(), "{method} {path} {status} names its answer's schema: {response}");
                resolved(&document, schema);
            }
            let body = &operation["requestBody"];
            if let Some(json) = body["content"]["application/json"].as_object() {
                if FOREIGN_BODIES.contains(&path.as_str()) {
                    assert!(body["description"].is_string(), "{method} {path} says what its body is");
                } else {
                    assert!(json["schema"]["$ref"].is_string(), "{method} {path} names its body's schema: {body}");
                    resolved(&document, &json["schema"]);
                }
            }
        }
    }

    // What the server answers conforms to what the document says it answers.
    let answer_schema = |method: &str, path: &str, status: &str| {
        document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"].clone()
    };
    let conforms = |method: &str, path: &str, status: &str, answer: &Value| {
        let schema = answer_schema(method, path, status);
        if let Some(reason) = mismatch(&document, &schema, answer, "answer") {
            panic!("{method} {path}: {reason}\n{answer:#}");
        }
    };
    let token = app.create_client("acme").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    app.assign("acme", &["ana@example.com"]).await;
    let (status, ingested) = app.ingest("acme", &token, "wamid.1", "+34600000001", "¿Abrís mañana? 🦷").await;
    assert_eq!(status, StatusCode::CREATED, "{ingested}");
    conforms("post", "/api/v1/clients/{slug}/messages", "201", &ingested);
    let conversation = ingested["conversation_id"].as_str().expect("conversation").to_owned();
    let (status, article) = app
        .post(
            "/api/v1/clients/acme/kb/articles",
            &app.admin,
            serde_json::json!({ "language": "es", "title": "Horario", "body": "Abrimos de 9 a 17, {{ contact.name }}." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{article}");
    conforms("post", "/api/v1/clients/{slug}/kb/articles", "201", &article);
    let (status, replied) = app
        .post(&format!("/api/v1/conversations/{conversation}/replies"), &ana.token, serde_json::json!({ "text": "Sí" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{replied}");
    conforms("post", "/api/v1/conversations/{id}/replies", "201", &replied);
    for (path, template, token) in [
        ("/api/v1/me".to_owned(), "/api/v1/me", &ana.token),
        ("/api/v1/clients".to_owned(), "/api/v1/clients", &app.admin),
        ("/api/v1/clients/acme".to_owned(), "/api/v1/clients/{slug}", &app.admin),
        ("/api/v1/conversations".to_owned(), "/api/v1/conversations", &ana.token),
        (format!("/api/v1/conversations/{conversation}"), "/api/v1/conversations/{id}", &ana.token),
        ("/api/v1/clients/acme/kb/articles".to_owned(), "/api/v1/clients/{slug}/kb/articles", &app.admin),
        ("/api/v1/clients/acme/suggestions?q=horario".to_owned(), "/api/v1/clients/{slug}/suggestions", &ana.token),
        ("/api/v1/people".to_owned(), "/api/v1/people", &app.admin),
        ("/api/v1/tokens".to_owned(), "/api/v1/tokens", &app.admin),
        ("/api/v1/audit".to_owned(), "/api/v1/audit", &app.admin),
        ("/api/v1/reports/summary".to_owned(), "/api/v1/reports/summary", &app.admin),
        ("/api/v1/clients/acme/decisions".to_owned(), "/api/v1/clients/{slug}/decisions", &app.admin),
        ("/healthz".to_owned(), "/healthz", &app.admin),
    ] {
        let (status, answer) = app.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        conforms("get", template, "200", &answer);
    }

    // And the checker itself refuses what does not conform.
    let me = answer_schema("get", "/api/v1/me", "200");
    let (_, mut answer) = app.get("/api/v1/me", &ana.token).await;
    answer["surprise"] = Value::Bool(true);
    assert!(mismatch(&document, &me, &answer, "answer").is_some_and(|reason| reason.contains("surprise")));
}
