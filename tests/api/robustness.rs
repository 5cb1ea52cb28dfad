//! Bad input and hostile clients get clear, fast errors in one JSON shape; overload is shed, not queued.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

async fn raw_post(app: &TestApp, path: &str, token: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_bodies_get_the_error_shape_with_the_right_status() {
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    let path = "/api/v1/clients/client-a/messages";

    let (status, error) = raw_post(&app, path, &token, "application/json", b"{\"external_id\": ".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["code"], "invalid_json");

    let unknown = json!({ "external_id": "1", "from": { "handle": "+1" }, "text": "hi", "priority": "vip" });
    let (status, error) = raw_post(&app, path, &token, "application/json", unknown.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"]["message"].as_str().expect("message").contains("priority"), "{error}");

    let (status, error) = raw_post(&app, path, &token, "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");

    let missing = json!({ "external_id": "1", "text": "hi" });
    let (status, error) = raw_post(&app, path, &token, "application/json", missing.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().expect("message").contains("from"), "{error}");

    // A typed body refuses deep nesting at the first level...
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, error) = raw_post(&app, path, &token, "application/json", deep.clone().into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    // ...and a free-form one stops at the parser's depth limit.
    let nested = format!("{{\"instructions\": {deep}}}");
    let response = app
        .http
        .patch(format!("{}/api/v1/clients/client-a", app.base))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "invalid_json", "{error}");

    let empty_id = json!({ "external_id": "", "from": { "handle": "+1" }, "text": "hi" });
    let (status, error) = raw_post(&app, path, &token, "application/json", empty_id.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().expect("message").contains("external_id"), "{error}");

    let (_, list) = app.get("/api/v1/conversations", &app.admin).await;
    assert_eq!(list["conversations"], json!([]), "nothing stored from bad requests");
}

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let app = spawn_app_with(|settings| {
        settings.http.ingest_body_limit_bytes = 64 * 1024;
        settings.http.api_body_limit_bytes = 8 * 1024;
    })
    .await;
    let token = app.create_client("client-a").await;
    let big = json!({ "external_id": "1", "from": { "handle": "+1" }, "text": "x".repeat(64 * 1024) });
    let (status, error) =
        raw_post(&app, "/api/v1/clients/client-a/messages", &token, "application/json", big.to_string().into_bytes())
            .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert_eq!(error["error"]["code"], "payload_too_large");

    let (_, inbound) = app.ingest("client-a", &token, "1", "+1", "hi").await;
    let id = inbound["conversation_id"].as_str().expect("id");
    let reply = json!({ "text": "y".repeat(9 * 1024) });
    let (status, _) = raw_post(
        &app,
        &format!("/api/v1/conversations/{id}/replies"),
        &app.assistant,
        "application/json",
        reply.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "the API routes have their own, smaller limit");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let (status, error) = app.call(Method::GET, "/api/v1/nothing-here", Some(&app.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["code"], "not_found");
    let (status, error) = app.call(Method::DELETE, "/api/v1/conversations", Some(&app.admin), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error["error"]["code"], "method_not_allowed");
    let (status, error) = app.call(Method::GET, "/api/v1/conversations", Some("Basic abc"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
}

/// Opens a request whose body never finishes.
async fn stalled_request(app: &TestApp, token: &str) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/clients/client-a/messages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

/// Holds the server's writes from another connection (SQLite's write lock, which they wait on up to the busy
/// timeout of 5 s; PostgreSQL's lock on the messages table): requests that write stay in progress, holding their
/// slots, as they would on a stalled disk.
async fn hold_the_write_lock(app: &TestApp) -> crate::database::WritesHeld {
    app.database().hold_writes().await
}

fn message(external_id: &str) -> Value {
    json!({ "external_id": external_id, "from": { "handle": "+1" }, "text": "hi" })
}

#[tokio::test]
async fn past_its_budget_ingest_answers_503_with_retry_after_at_once_while_the_api_keeps_working() {
    let app = spawn_app_with(|settings| {
        settings.http.max_concurrent_ingest = 2;
        settings.http.request_timeout_ms = 20_000;
    })
    .await;
    let token = app.create_client("client-a").await;
    let lock = hold_the_write_lock(&app).await;
    let mut held = Vec::new();
    for n in 0..2 {
        let (http, url, token) =
            (app.http.clone(), format!("{}/api/v1/clients/client-a/messages", app.base), token.clone());
        held.push(tokio::spawn(async move {
            // Retried like a provider would, in case a probe below held a slot for an instant.
            loop {
                let response = http.post(&url).bearer_auth(&token).json(&message(&format!("held-{n}"))).send().await;
                if response
                    .as_ref()
                    .map_or(true, |response| response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE)
                {
                    return response;
                }
            }
        }));
    }
    // Probe with a message refused after admission but before any write (empty external id: 422) until the two held
    // requests have both slots.
    let deadline = Instant::now() + Duration::from_secs(4);
    let invalid = json!({ "external_id": "", "from": { "handle": "+1" }, "text": "probe" });
    let (headers, error) = loop {
        let started = Instant::now();
        let (status, headers, error) =
            app.call_full(Method::POST, "/api/v1/clients/client-a/messages", Some(&token), Some(invalid.clone())).await;
        if status == StatusCode::SERVICE_UNAVAILABLE && error["error"]["code"] == "overloaded" {
            assert!(started.elapsed() < Duration::from_secs(1), "shed at once, not queued");
            break (headers, error);
        }
        assert!(Instant::now() < deadline, "the budget was never exhausted: {status} {error}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(headers.get("retry-after").expect("Retry-After").to_str().expect("ascii"), "1", "{error}");
    // The bulkhead: the inbox API has its own budget.
    let (status, _) = app.get("/api/v1/conversations", &app.assistant).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    drop(lock);
    for request in held {
        let status = request.await.expect("task").expect("answered").status();
        assert_eq!(status, reqwest::StatusCode::CREATED, "held requests complete once the disk is back");
    }
}

#[tokio::test]
async fn bodies_still_arriving_hold_no_slot_and_a_body_slower_than_the_minimum_rate_gets_408() {
    let app = spawn_app_with(|settings| {
        settings.http.max_concurrent_ingest = 2;
        settings.http.body_grace_ms = 500;
    })
    .await;
    let token = app.create_client("client-a").await;
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(stalled_request(&app, &token).await);
    }
    let (status, body) = app.post("/api/v1/clients/client-a/messages", &token, message("through")).await;
    assert_eq!(status, StatusCode::CREATED, "five stalled bodies hold none of the two slots: {body}");

    let mut response = vec![0u8; 2048];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled[0].read(&mut response))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response[..read]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
}

#[tokio::test]
async fn a_request_that_takes_too_long_gets_504() {
    let app = spawn_app_with(|settings| settings.http.request_timeout_ms = 300).await;
    let token = app.create_client("client-a").await;
    let _lock = hold_the_write_lock(&app).await;
    let started = Instant::now();
    let (status, error) = app.post("/api/v1/clients/client-a/messages", &token, message("slow")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{error}");
    assert_eq!(error["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(4), "answered at the timeout, not after the disk came back");
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let app = spawn_app_with(|settings| settings.http.header_read_timeout_ms = 300).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    // Meanwhile normal requests are served.
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut buffer = vec![0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                // hyper may answer 408 before closing.
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the slow connection was not closed");
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served_without_a_token() {
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    app.ingest("client-a", &token, "1", "+1", "hi").await;
    app.ingest("client-a", &token, "1", "+1", "hi").await;
    let (status, health) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, ready) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, ready["status"].as_str()), (StatusCode::OK, Some("ready")));

    let text = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(text.contains("recado_ingested_messages_total{channel=\"api\",outcome=\"new\"} 1"), "{text}");
    assert!(text.contains("recado_ingested_messages_total{channel=\"api\",outcome=\"duplicate\"} 1"), "{text}");
    assert!(text.contains("recado_http_requests_total{"), "{text}");
    assert!(text.contains("recado_http_request_duration_seconds_bucket{"), "{text}");
    assert!(text.contains("recado_outbox_backlog{state=\"pending\"}"), "{text}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_then_stops() {
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let body = json!({ "external_id": "in-flight", "from": { "handle": "+1" }, "text": "made it" }).to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/clients/client-a/messages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // The server has read the headers: the request is in flight when shutdown begins.
    app.wait_for_metric("recado_http_requests_in_flight{route=\"/api/v1/clients/{slug}/messages\"}", 1.0).await;

    app.begin_shutdown();
    let refused = async {
        while TcpStream::connect(&addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused).await.expect("no new connections once shutdown began");
    stream.write_all(rest.as_bytes()).await.expect("write the rest");
    let mut response = vec![0u8; 2048];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&response[..read]);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");

    app.wait_stopped(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn readiness_is_red_while_the_store_cannot_commit_and_green_again_after_the_next_commit() {
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    // SQLite: the write waits out the busy timeout, then its commit fails. PostgreSQL: the database cannot be
    // reached. Either way the store cannot take writes.
    let lock = if crate::database::postgres() {
        crate::database::refuse_connections(&app.data_dir);
        None
    } else {
        Some(hold_the_write_lock(&app).await)
    };
    let write = {
        let (http, url, token) =
            (app.http.clone(), format!("{}/api/v1/clients/client-a/messages", app.base), token.clone());
        tokio::spawn(async move { http.post(url).bearer_auth(token).json(&message("while-locked")).send().await })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["error"]["code"], "not_ready", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "readiness never turned red: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Answered while the store still cannot take it: on PostgreSQL readiness may turn red first (another
    // worker's failed connection), and a write still waiting for a connection would then commit once the
    // database is back, and rightly be acknowledged.
    let answered = write.await.expect("task").expect("answered").status();
    assert!(!answered.is_success(), "the write that could not commit was not acknowledged: {answered}");
    drop(lock);
    if crate::database::postgres() {
        crate::database::allow_connections(&app.data_dir);
    }
    let (status, body) = app.ingest("client-a", &token, "after", "+1", "hi").await;
    assert!(status.is_success(), "{body}");
    let (status, ready) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, ready["status"].as_str()), (StatusCode::OK, Some("ready")));
}
