//! The security suite of issue 8: each finding of the outside security test, reproduced against the server on
//! loopback (the real binary where the fault is at the network level), bounded in count and time.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 and up), as they would from other hosts, so the
//! per-address limits apply to them and not to the legitimate caller on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{Behaviour, Binary, FakeProvider, profile, spawn_app, whatsapp_signature};

/// A token made by `recado token create` against the data directory of a running server.
fn cli_token(data_dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(["token", "create"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("recado runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// The `n`th attacker address: 127.0.0.2, 127.0.0.3, ...
fn attacker(n: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + u8::try_from(n).expect("few attackers")])
}

async fn connect_from(source: IpAddr, target: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind a loopback source address");
    socket.connect(target).await.expect("connect")
}

fn address_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().expect("a socket address")
}

/// Lets this test process hold a thousand sockets and more.
fn raise_own_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// Reads until `needle` appears in what the server sent, or the connection ends, within 10 s.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    seen.extend_from_slice(&buffer[..read]);
                    if String::from_utf8_lossy(&seen).contains(needle) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// Returns true if and only if the server closed `stream` within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

struct Server {
    binary: Binary,
    base: String,
    http: reqwest::Client,
    admin: String,
    data_dir: tempfile::TempDir,
}

impl Server {
    async fn start(env: &[(&str, &str)], log: Option<&Path>) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (binary, base) = Binary::serve_with(data_dir.path(), env, log).await;
        let admin = cli_token(data_dir.path(), &["--role", "admin"]);
        Self { binary, base, http: reqwest::Client::new(), admin, data_dir }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    async fn create_client(&self, slug: &str) {
        let mut body = profile(&format!("Client {slug}"));
        body["slug"] = json!(slug);
        let (status, text) = self.call(Method::POST, "/api/v1/clients", &self.admin, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
    }

    async fn put_channel(&self, slug: &str, kind: &str, body: Value) {
        let path = format!("/api/v1/clients/{slug}/channels/{kind}");
        let (status, text) = self.call(Method::PUT, &path, &self.admin, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }

    async fn stop(mut self) {
        self.binary.signal(nix::sys::signal::Signal::SIGTERM);
        tokio::time::timeout(Duration::from_secs(20), self.binary.child.wait())
            .await
            .expect("stopped in time")
            .expect("exit status");
    }
}

fn whatsapp_message(id: &str, from: &str, text: &str) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "34600000000", "phone_number_id": "1099" },
            "contacts": [{ "profile": { "name": "Laia" }, "wa_id": from }],
            "messages": [{ "from": from, "id": id, "timestamp": "1700000000", "type": "text", "text": { "body": text } }]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

fn telegram_update(update_id: i64, chat: i64, text: &str) -> Vec<u8> {
    json!({ "update_id": update_id, "message": { "message_id": update_id, "date": 1_700_000_000,
        "chat": { "id": chat, "type": "private" }, "from": { "id": chat, "is_bot": false, "first_name": "Oleg" },
        "text": text } })
    .to_string()
    .into_bytes()
}

/// How a channel's provider fails in [`no_secret_appears_in_any_response_or_log_line_after_every_channel_fails`].
#[derive(Clone, Copy)]
enum Failure {
    /// Nothing listens: the connection is refused.
    Refused,
    /// The provider never answers: the call times out.
    Hangs,
    /// The provider answers 400 quoting the request's path and headers (the bot token, the access token).
    Echoes,
}

#[tokio::test]
async fn no_secret_appears_in_any_response_or_log_line_after_every_channel_fails() {
    // See: issue #8, finding 1.
    let logs = tempfile::tempdir().expect("temp dir");
    let log = logs.path().join("recado.log");
    let server = Server::start(
        &[
            ("RUST_LOG", "trace"),
            ("RECADO__OUTBOX__ALLOW_PRIVATE_TARGETS", "true"),
            ("RECADO__OUTBOX__REQUEST_TIMEOUT_MS", "300"),
            ("RECADO__OUTBOX__BASE_BACKOFF_MS", "20"),
            ("RECADO__OUTBOX__MAX_BACKOFF_MS", "50"),
            ("RECADO__OUTBOX__MAX_ATTEMPTS", "2"),
            ("RECADO__OUTBOX__POLL_INTERVAL_MS", "50"),
        ],
        Some(&log),
    )
    .await;
    let assistant = cli_token(server.data_dir.path(), &["--role", "assistant"]);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let hanging = FakeProvider::start(vec![Behaviour::Hang; 20]).await;
    let echoing = FakeProvider::start(vec![Behaviour::Echo(400); 20]).await;
    let nonce = std::process::id();

    let mut secrets = Vec::new();
    let mut responses = Vec::new();
    let mut conversations = Vec::new();
    for (kind, failure) in [
        ("whatsapp", Failure::Refused),
        ("whatsapp", Failure::Hangs),
        ("whatsapp", Failure::Echoes),
        ("telegram", Failure::Refused),
        ("telegram", Failure::Hangs),
        ("telegram", Failure::Echoes),
        ("webhook", Failure::Refused),
        ("webhook", Failure::Hangs),
        ("webhook", Failure::Echoes),
    ] {
        let slug = format!("{}-{}", &kind[..2], conversations.len());
        let provider = match failure {
            Failure::Refused => closed.clone(),
            Failure::Hangs => hanging.url.clone(),
            Failure::Echoes => echoing.url.clone(),
        };
        server.create_client(&slug).await;
        let client_token = cli_token(server.data_dir.path(), &["--role", "client", "--client", &slug]);
        let response = match kind {
            "whatsapp" => {
                let (app_secret, verify_token, access_token) = (
                    format!("app-secret-{slug}-{nonce}"),
                    format!("verify-token-{slug}-{nonce}"),
                    format!("EAAG-access-{slug}-{nonce}"),
                );
                server
                    .put_channel(&slug, "whatsapp", json!({ "app_secret": app_secret, "verify_token": verify_token,
                        "phone_number_id": "1099", "access_token": access_token, "api_base_url": format!("{provider}/v21.0") }))
                    .await;
                // The handshake, right and wrong: the token travels in the query string.
                let url = |token: &str| {
                    format!(
                        "{}/webhooks/whatsapp/{slug}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
                        server.base
                    )
                };
                let echo = server.http.get(url(&verify_token)).send().await.expect("sent");
                assert_eq!(echo.status(), StatusCode::OK);
                let headers = echo.headers().clone();
                assert_eq!(headers.get("content-type").expect("type"), "text/plain; charset=utf-8");
                assert_eq!(headers.get("x-content-type-options").expect("nosniff"), "nosniff");
                assert_eq!(echo.text().await.expect("body"), "1158201444");
                let refused = server.http.get(url("wrong-token-0123456789")).send().await.expect("sent");
                assert_eq!(refused.status(), StatusCode::FORBIDDEN);
                responses.push(refused.text().await.expect("body"));

                let body = whatsapp_message(&format!("wamid.{slug}"), "34611111111", "Hola, ¿abrís mañana?");
                let sent = server
                    .http
                    .post(format!("{}/webhooks/whatsapp/{slug}", server.base))
                    .header("x-hub-signature-256", whatsapp_signature(&app_secret, &body))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(sent.status(), StatusCode::OK);
                secrets.extend([app_secret, verify_token, access_token]);
                sent.text().await.expect("body")
            }
            "telegram" => {
                let (bot_token, secret_token) =
                    (format!("7100{nonce}:AAbot-{slug}-{nonce}"), format!("tg-secret-{slug}-{nonce}"));
                server
                    .put_channel(
                        &slug,
                        "telegram",
                        json!({ "bot_token": bot_token, "secret_token": secret_token, "api_base_url": provider }),
                    )
                    .await;
                let post = |secret: String| {
                    server
                        .http
                        .post(format!("{}/webhooks/telegram/{slug}", server.base))
                        .header("x-telegram-bot-api-secret-token", secret)
                        .header("content-type", "application/json")
                        .body(telegram_update(41, 555, "Здравствуйте, есть ли улун?"))
                        .send()
                };
                let refused = post("wrong-secret-0123456789".into()).await.expect("sent");
                assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
                responses.push(refused.text().await.expect("body"));
                let sent = post(secret_token.clone()).await.expect("sent");
                assert_eq!(sent.status(), StatusCode::OK);
                secrets.extend([bot_token, secret_token]);
                sent.text().await.expect("body")
            }
            _ => {
                let secret = format!("webhook-secret-{slug}-{nonce}");
                server
                    .put_channel(&slug, "webhook", json!({ "url": format!("{provider}/hook"), "secret": secret }))
                    .await;
                let body =
                    json!({ "external_id": "m1", "from": { "handle": "+44700900", "name": "Sam" }, "text": "Hello?" });
                let (status, text) = server
                    .call(Method::POST, &format!("/api/v1/clients/{slug}/messages"), &client_token, Some(body))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{text}");
                secrets.push(secret);
                text
            }
        };
        let conversation = serde_json::from_str::<Value>(&response)
            .ok()
            .and_then(|value| value["conversation_id"].as_str().map(str::to_owned));
        let conversation = match conversation {
            Some(id) => id,
            None => {
                // The WhatsApp webhook answers with counts: find the conversation in the client's inbox.
                let (_, inbox) = server
                    .call(Method::GET, &format!("/api/v1/conversations?client={slug}"), &server.admin, None)
                    .await;
                let inbox: Value = serde_json::from_str(&inbox).expect("json");
                inbox["conversations"][0]["id"].as_str().expect("a conversation").to_owned()
            }
        };
        responses.push(response);
        let (status, text) = server
            .call(
                Method::POST,
                &format!("/api/v1/conversations/{conversation}/replies"),
                &assistant,
                Some(json!({ "text": "On it" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        responses.push(text);
        conversations.push((conversation, client_token, failure));
    }

    // Every delivery (the acknowledgement and the reply) fails, is retried, and is dead-lettered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (conversation, client_token, failure) in &conversations {
        let view = loop {
            let (status, text) =
                server.call(Method::GET, &format!("/api/v1/conversations/{conversation}"), &server.admin, None).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            let view: Value = serde_json::from_str(&text).expect("json");
            let deliveries: Vec<&Value> =
                view["messages"].as_array().expect("messages").iter().filter(|m| !m["delivery"].is_null()).collect();
            if deliveries.len() >= 2 && deliveries.iter().all(|m| m["delivery"]["state"] == "dead") {
                responses.push(text);
                break view;
            }
            assert!(tokio::time::Instant::now() < deadline, "deliveries not dead-lettered in time: {view:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let errors: Vec<&str> = view["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["delivery"]["last_error"].as_str())
            .collect();
        let expected = match failure {
            Failure::Refused => "request failed",
            Failure::Hangs => "timed out",
            // The generic webhook sends no secret (only a signature), so there is nothing to redact.
            Failure::Echoes if view["channel"] == "api" => "answered 400",
            Failure::Echoes => "[redacted]",
        };
        assert!(!errors.is_empty(), "the failed deliveries carry their errors");
        assert!(errors.iter().all(|error| error.contains(expected)), "{errors:?} should say {expected:?}");
        for token in [&server.admin, &assistant, client_token] {
            let (_, text) =
                server.call(Method::GET, &format!("/api/v1/conversations/{conversation}"), token, None).await;
            responses.push(text);
        }
    }
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.expect("sent");
    responses.push(metrics.text().await.expect("body"));
    let mut bearer_tokens: Vec<String> = conversations.iter().map(|(_, token, _)| token.clone()).collect();
    bearer_tokens.extend([server.admin.clone(), assistant.clone()]);
    server.stop().await;

    let log = std::fs::read_to_string(&log).expect("the log");
    for token in &bearer_tokens {
        // The bearer tokens that made every call above are secrets too.
        assert!(!log.contains(token.as_str()), "a bearer token is in the log");
    }
    assert!(log.matches("dead-lettered").count() >= 18, "every delivery's failure is logged");
    assert!(log.contains("TRACE") && log.contains("DEBUG"), "the log was written at every level");
    assert_eq!(secrets.len(), 18);
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret} is in the log");
        for response in &responses {
            assert!(!response.contains(secret.as_str()), "{secret} is in a response: {response}");
        }
    }
    assert!(
        echoing.received().iter().any(|request| secrets.iter().any(|secret| request.path.contains(secret.as_str()))),
        "the echoing provider was sent a secret, so the redaction had something to remove"
    );
}

/// Sends a request's head with `Expect: 100-continue` and one byte of its body once the server asks for it,
/// then holds the connection: a body that is still arriving. Returns once the server is reading the body.
async fn slow_body(source: IpAddr, target: SocketAddr, path: &str, headers: &str) -> TcpStream {
    let mut stream = connect_from(source, target).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {target}\r\ncontent-type: application/json\r\ncontent-length: 900\r\nexpect: 100-continue\r\n{headers}\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write the head");
    let answer = read_until(&mut stream, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 100"), "the server reads the body: {answer:?}");
    stream.write_all(b"{").await.expect("one byte");
    stream
}

#[tokio::test]
async fn six_hundred_slow_bodies_without_the_secret_or_with_one_clients_token_leave_intake_and_the_api_to_everyone_else()
 {
    // See: issue #8, findings 2 and 5.
    raise_own_open_file_limit();
    // Bodies get a long grace here, so the attack is still in progress when the legitimate calls are made.
    let server = Server::start(&[("RUST_LOG", "warn"), ("RECADO__HTTP__BODY_GRACE_MS", "60000")], None).await;
    let target = address_of(&server.base);
    for slug in ["victim", "victim-api", "attacked"] {
        server.create_client(slug).await;
    }
    let app_secret = "victim-app-secret-0123456789";
    let channel = |secret: &str| {
        json!({ "app_secret": secret, "verify_token": "verify-token-0123456789", "phone_number_id": "1099",
            "access_token": "EAAG-access" })
    };
    server.put_channel("victim", "whatsapp", channel(app_secret)).await;
    server.put_channel("attacked", "whatsapp", channel("attacked-app-secret-0123456789")).await;
    server
        .put_channel(
            "attacked",
            "telegram",
            json!({ "bot_token": "1:AA", "secret_token": "attacked-tg-secret-0123456789" }),
        )
        .await;
    let victim_api = cli_token(server.data_dir.path(), &["--role", "client", "--client", "victim-api"]);
    let hostile_client = cli_token(server.data_dir.path(), &["--role", "client", "--client", "attacked"]);

    // Without the secret, nothing waits for a body: unknown slugs and a missing Telegram secret are refused
    // from the head alone.
    for n in 0..100 {
        let mut stream = connect_from(attacker(n % 2), target).await;
        let head = "POST /webhooks/telegram/any-slug HTTP/1.1\r\nhost: x\r\ncontent-length: 900\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.expect("write");
        let answer = read_until(&mut stream, "\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    }
    let mut stream = connect_from(attacker(0), target).await;
    let head = "POST /webhooks/telegram/attacked HTTP/1.1\r\nhost: x\r\ncontent-length: 900\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.expect("write");
    assert!(read_until(&mut stream, "\r\n\r\n").await.starts_with("HTTP/1.1 401"));

    // 600 bodies still arriving, each being read by the server: 200 to a known WhatsApp number with a made-up
    // signature, 200 to the message API and 200 to the API with one client's own token. There are 512 intake
    // and 256 API slots.
    let mut held = Vec::new();
    for n in 0..200 {
        let headers = "x-hub-signature-256: sha256=00\r\n";
        held.push(slow_body(attacker(2 + n % 2), target, "/webhooks/whatsapp/attacked", headers).await);
    }
    let bearer = format!("authorization: Bearer {hostile_client}\r\n");
    for n in 0..200 {
        held.push(slow_body(attacker(4 + n % 2), target, "/api/v1/clients/attacked/messages", &bearer).await);
    }
    for n in 0..200 {
        held.push(slow_body(attacker(6 + n % 2), target, "/api/v1/suggestions/feedback", &bearer).await);
    }

    // Meanwhile: a signed WhatsApp webhook of another client, the message API of another client, an assistant's
    // inbox and the attacking client's own reads are all served.
    let body = whatsapp_message("wamid.legit", "34611111111", "¿Tenéis cita el lunes?");
    let response = server
        .http
        .post(format!("{}/webhooks/whatsapp/victim", server.base))
        .header("x-hub-signature-256", whatsapp_signature(app_secret, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json")["messages"], 1);
    let message = json!({ "external_id": "legit", "from": { "handle": "+39333" }, "text": "Buongiorno" });
    let (status, text) =
        server.call(Method::POST, "/api/v1/clients/victim-api/messages", &victim_api, Some(message)).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, text) = server.call(Method::GET, "/api/v1/conversations", &server.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = server.call(Method::GET, "/api/v1/clients/attacked", &hostile_client, None).await;
    assert_eq!(status, StatusCode::OK, "a caller's bodies in flight hold none of its own slots: {text}");
    assert_eq!(held.len(), 600);
    server.stop().await;
}

#[tokio::test]
async fn healthz_answers_while_1100_silent_sockets_are_open_and_the_server_closes_them() {
    // See: issue #8, finding 3.
    raise_own_open_file_limit();
    let logs = tempfile::tempdir().expect("temp dir");
    let log = logs.path().join("recado.log");
    let server = Server::start(
        &[
            ("RUST_LOG", "warn"),
            ("RECADO__HTTP__MAX_CONNECTIONS", "500"),
            ("RECADO__HTTP__FIRST_BYTE_TIMEOUT_MS", "3000"),
        ],
        Some(&log),
    )
    .await;
    let target = address_of(&server.base);
    let mut silent = Vec::new();
    for n in 0..1_100 {
        silent.push(connect_from(attacker(n % 11), target).await);
    }
    let health = server.http.get(format!("{}/healthz", server.base)).send().await.expect("healthz reachable");
    assert_eq!(health.status(), StatusCode::OK);

    // Each silent socket is closed: evicted to make room, or at the first-byte timeout.
    for stream in &mut silent {
        assert!(closed_by_server(stream, Duration::from_secs(15)).await, "a silent socket was left open");
    }
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.expect("sent");
    let metrics = metrics.text().await.expect("body");
    assert!(metrics.contains("recado_connections_shed_total{reason=\"evicted_silent\"}"), "{metrics}");
    server.stop().await;
    let log = std::fs::read_to_string(&log).expect("the log");
    let lines = log.lines().filter(|line| line.contains("connection")).count();
    assert!((1..=30).contains(&lines), "shed connections are logged at a bounded rate, not once each: {lines} lines");
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_it_may_carry_only_a_few_streams_at_once() {
    // See: issue #8, findings 2 and 3.
    let server = Server::start(
        &[
            ("RUST_LOG", "warn"),
            ("RECADO__HTTP__REQUEST_TIMEOUT_MS", "1000"),
            ("RECADO__HTTP__IDLE_TIMEOUT_MS", "1500"),
            ("RECADO__HTTP__HTTP2_MAX_CONCURRENT_STREAMS", "8"),
        ],
        None,
    )
    .await;
    let mut stream = TcpStream::connect(address_of(&server.base)).await.expect("connect");
    stream.write_all(H2_PREFACE).await.expect("preface");
    // The server's first frame is its SETTINGS: 9 bytes of header, then 6 bytes per setting.
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.expect("a frame header");
    assert_eq!(header[3], 0x4, "a SETTINGS frame");
    let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.expect("the settings");
    let max_streams = payload
        .chunks(6)
        .find(|setting| setting[..2] == [0x0, 0x3])
        .map(|setting| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
    assert_eq!(max_streams, Some(8), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert!(closed_by_server(&mut stream, Duration::from_secs(10)).await, "the idle HTTP/2 connection was left open");
    server.stop().await;
}

#[tokio::test]
async fn made_up_method_names_leave_the_metrics_bounded() {
    // See: issue #8, finding 4.
    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    for n in 0..30 {
        let method: String = std::iter::repeat_n(char::from(b'A' + (n % 26) as u8), 60_000).collect();
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let request = format!("{method}{n} /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_until(&mut stream, "\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{}", &answer[..answer.len().min(200)]);
    }
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.len() < 64 * 1024, "/metrics grew to {} bytes", metrics.len());
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(!metrics.contains("AAAAAAAA"));
}

#[tokio::test]
async fn guessing_tokens_and_verify_tokens_is_throttled_per_address() {
    // See: issue #8, finding 10.
    let app = spawn_app().await;
    app.create_client("dental").await;
    // A verify token short enough to guess cannot be set.
    let channel = |verify_token: &str| {
        json!({ "app_secret": "app-secret-0123456789", "verify_token": verify_token, "phone_number_id": "1099",
            "access_token": "EAAG" })
    };
    let path = "/api/v1/clients/dental/channels/whatsapp";
    let (status, error) = app.call(Method::PUT, path, Some(&app.admin), Some(channel("x"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().expect("message").contains("verify_token"), "{error}");
    app.put_channel("dental", "whatsapp", channel("verify-token-0123456789")).await;

    let mut statuses = Vec::new();
    for n in 0..30 {
        let (status, headers, _) =
            app.call_full(Method::GET, "/api/v1/conversations", Some(&format!("rcd_guess{n}_x")), None).await;
        statuses.push(status);
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.get("retry-after").is_some(), "429 says when to retry");
        }
    }
    assert_eq!(statuses.iter().filter(|status| **status == StatusCode::UNAUTHORIZED).count(), 20, "{statuses:?}");
    assert!(statuses[20..].iter().all(|status| *status == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let (status, body) = app.get("/api/v1/conversations", &app.admin).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "while throttled, even a right token is not checked: {body}");

    let elsewhere = reqwest::Client::builder().local_address(attacker(0)).build().expect("client");
    let response =
        elsewhere.get(format!("{}/api/v1/conversations", app.base)).bearer_auth(&app.admin).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK, "another address is not affected");

    // The WhatsApp verify token is guessed over the same budget.
    let guesser = reqwest::Client::builder().local_address(attacker(1)).build().expect("client");
    let mut statuses = Vec::new();
    for n in 0..25 {
        let url = format!(
            "{}/webhooks/whatsapp/dental?hub.mode=subscribe&hub.verify_token=guess{n}&hub.challenge=1",
            app.base
        );
        statuses.push(guesser.get(url).send().await.expect("sent").status());
    }
    assert_eq!(statuses.iter().filter(|status| **status == StatusCode::FORBIDDEN).count(), 20, "{statuses:?}");
    assert!(statuses[20..].iter().all(|status| *status == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    // See: issue #8, finding 11.
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "POST /api/v1/clients/client-a/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until(&mut stream, "payload_too_large").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Resident memory of process `pid`, from `/proc/<pid>/status`.
fn resident_bytes_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test]
async fn templates_that_would_allocate_without_bound_are_refused_and_the_server_stays_up_with_flat_memory() {
    // See: issue #8, finding 6.
    let server = Server::start(&[("RUST_LOG", "warn")], None).await;
    server.create_client("dental").await;
    let pid = server.binary.child.id().expect("running");
    let hostile = [
        "{{ contact.name|indent(1000000000000) }}",
        "{% set s = contact.name ~ 'xxxxxxxxxxxxxxxx' %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s }}",
        "{{ ('x' * 99999999) ~ ('x' * 99999999) ~ ('x' * 99999999) }}",
        "{{ contact.name|replace('', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')|replace('', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb') }}",
        "{% for i in range(100000) %}{{ contact.name|center(100000) }}{% endfor %}",
    ];
    let article = |n: usize, body: &str| json!({ "language": "es", "title": format!("Respuesta {n}"), "questions": ["¿Cuándo abrís?"], "body": body });
    // One round first, so the baseline includes whatever a refusal warms up.
    for (n, body) in hostile.iter().enumerate() {
        let (status, text) = server
            .call(Method::POST, "/api/v1/clients/dental/kb/articles", &server.admin, Some(article(n, body)))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
    }
    let baseline = resident_bytes_of(pid);
    for round in 0..20 {
        for (n, body) in hostile.iter().enumerate() {
            let (status, _) = server
                .call(
                    Method::POST,
                    "/api/v1/clients/dental/kb/articles",
                    &server.admin,
                    Some(article(round * 10 + n, body)),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
    let after = resident_bytes_of(pid);
    assert!(after < baseline + 32 * 1024 * 1024, "memory grew from {baseline} to {after} bytes");
    let health = server.http.get(format!("{}/healthz", server.base)).send().await.expect("the server is up");
    assert_eq!(health.status(), StatusCode::OK);
    let (status, text) = server
        .call(
            Method::POST,
            "/api/v1/clients/dental/kb/articles",
            &server.admin,
            Some(article(999, "Hola {{ contact.first_name|default('') }}")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "an ordinary answer is still accepted: {text}");
    server.stop().await;
}

#[tokio::test]
async fn outbound_urls_are_checked_by_their_spelling_when_saved_and_by_the_address_connected_to_when_called() {
    // See: issue #8, finding 8.
    let app = crate::helpers::spawn_app_with(|settings| settings.outbox.allow_private_targets = false).await;
    let token = app.create_client("dental").await;
    // Spellings refused when saved: `clients::channel_urls_on_internal_networks_are_refused_unless_the_operator_allows_them`.

    // Settings that got in before these rules (written straight to the store): a name the hosts file sends to
    // loopback, and a loopback literal. The provider listening there is never called.
    let provider = FakeProvider::start(Vec::new()).await;
    let port = provider.url.rsplit(':').next().expect("a port").to_owned();
    for (n, host) in ["localhost", "127.0.0.1"].into_iter().enumerate() {
        let config = recado::channels::webhook::WebhookConfig {
            url: format!("http://{host}:{port}/hook"),
            secret: "0123456789abcdef".into(),
        };
        let slug = recado::domain::ClientSlug::parse("dental").expect("slug");
        app.db.put_channel(slug, recado::domain::ChannelKind::Webhook, config, "test".into()).await.expect("stored");
        let (status, created) =
            app.ingest("dental", &token, &format!("m{n}"), &format!("+3460000000{n}"), "Hola").await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let conversation = created["conversation_id"].as_str().expect("id");
        let view = app
            .wait_for_conversation(conversation, "the acknowledgement dead-lettered", |view| {
                view["messages"]
                    .as_array()
                    .is_some_and(|messages| messages.iter().any(|message| message["delivery"]["state"] == "dead"))
            })
            .await;
        let error = view["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .find_map(|message| message["delivery"]["last_error"].as_str())
            .expect("an error");
        assert!(error.contains("internal address"), "{host}: {error}");
    }
    assert!(provider.received().is_empty(), "nothing reached the internal address");
}

async fn upload_ack(app: &crate::helpers::TestApp, slug: &str, token: &str, version: &str) -> (StatusCode, Value) {
    let wasm = crate::plugins::component("business_hours_ack");
    app.upload_plugin(slug, token, wasm, "ack", version, &crate::plugins::ack_config("¡Gracias!")).await
}

fn plugin_versions(list: &Value) -> Vec<String> {
    let mut versions: Vec<String> = list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|plugin| plugin["version"].as_str().expect("version").to_owned())
        .collect();
    versions.sort();
    versions
}

#[tokio::test]
async fn plugin_uploads_are_limited_per_client_old_versions_pruned_and_unused_code_released() {
    // See: issue #8, finding 7.
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.plugins.uploads_per_hour_per_client = 6;
        settings.plugins.keep_inactive_versions = 2;
    })
    .await;
    let client_a = app.create_client("client-a").await;
    let client_b = app.create_client("client-b").await;
    let config = crate::plugins::ack_config("¡Gracias!");
    let metric = |text: &str| {
        text.lines().find_map(|line| line.strip_prefix("recado_plugins_loaded ")).map(str::to_owned).expect("gauge")
    };

    let mut ids = Vec::new();
    for version in ["1", "2", "3", "4", "5"] {
        let (status, plugin) = upload_ack(&app, "client-a", &client_a, version).await;
        assert_eq!(status, StatusCode::CREATED, "{plugin}");
        ids.push(plugin["id"].as_str().expect("id").to_owned());
        if version <= "2" {
            let (status, body) = app
                .post(
                    &format!("/api/v1/clients/client-a/plugins/{}/activate", ids.last().expect("id")),
                    &client_a,
                    json!({}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    // Kept: the running version 2, version 1 (a rollback returns to it) and the newest two inactive ones.
    let (_, list) = app.get("/api/v1/clients/client-a/plugins", &client_a).await;
    assert_eq!(plugin_versions(&list), ["1", "2", "4", "5"], "{list}");

    let (status, _) = upload_ack(&app, "client-a", &client_a, "6").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, headers, error) = {
        let response = app
            .http
            .post(format!("{}/api/v1/clients/client-a/plugins", app.base))
            .bearer_auth(&client_a)
            .multipart(
                reqwest::multipart::Form::new()
                    .part("component", reqwest::multipart::Part::bytes(crate::plugins::component("business_hours_ack")))
                    .text("name", "ack")
                    .text("version", "7")
                    .text("config", config.clone()),
            )
            .send()
            .await
            .expect("sent");
        (response.status(), response.headers().clone(), response.text().await.expect("body"))
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the seventh upload of the hour: {error}");
    let retry_after: u64 =
        headers.get("retry-after").expect("Retry-After").to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let (status, plugin) = upload_ack(&app, "client-b", &client_b, "1").await;
    assert_eq!(status, StatusCode::CREATED, "another client's uploads are its own: {plugin}");

    // Only running code stays in memory.
    app.ingest_processed("client-a", &client_a, "m1", "+34600000001", "Hola").await;
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert_eq!(metric(&text), "1", "the active version is loaded");
    let (status, body) =
        app.post(&format!("/api/v1/clients/client-a/plugins/{}/deactivate", ids[1]), &client_a, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert_eq!(metric(&text), "0", "a version that stopped running is released");
}

#[tokio::test]
async fn a_client_has_one_upload_in_the_compile_queue_at_a_time() {
    // See: issue #8, finding 7 (all clients share one compile lock).
    let scripts = tempfile::tempdir().expect("temp dir");
    // Our own compiler, one second slower, saying when it starts: the second upload arrives while it works.
    let compiler = scripts.path().join("slow-recado");
    let started = scripts.path().join("started");
    std::fs::write(
        &compiler,
        format!("#!/bin/sh\ntouch {}\nsleep 1\nexec {} \"$@\"\n", started.display(), env!("CARGO_BIN_EXE_recado")),
    )
    .expect("script");
    std::fs::set_permissions(&compiler, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let app = crate::helpers::spawn_app_with(|settings| settings.plugins.compiler = Some(compiler.clone())).await;
    let client_a = app.create_client("client-a").await;
    let config = crate::plugins::ack_config("Gràcies!");
    let first = {
        let (http, base, token, config) = (app.http.clone(), app.base.clone(), client_a.clone(), config.clone());
        tokio::spawn(async move {
            let form = reqwest::multipart::Form::new()
                .part("component", reqwest::multipart::Part::bytes(crate::plugins::component("business_hours_ack")))
                .text("name", "ack")
                .text("version", "1")
                .text("config", config);
            http.post(format!("{base}/api/v1/clients/client-a/plugins")).bearer_auth(token).multipart(form).send().await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the compiler never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = app
        .upload_plugin("client-a", &client_a, crate::plugins::component("keyword_router"), "router", "1", "{}")
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("still being checked"), "{body}");
    assert!(!first.is_finished(), "refused while the first upload was being compiled");
    let first = first.await.expect("task").expect("answered");
    assert_eq!(first.status(), StatusCode::CREATED);
}

/// Everything the database holds (the SQLite file and its write-ahead log; every PostgreSQL row as text).
async fn database_bytes(data_dir: &Path) -> Vec<u8> {
    crate::database::Database::of(data_dir).everything().await
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn channel_secrets_are_sealed_in_the_database_file() {
    // See: issue #8, finding 11.
    let dir = tempfile::tempdir().expect("temp dir");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    app.create_client("studio").await;
    let (bot_token, secret) = ("7100:AAsealed-bot-token-0123456789", "sealed-secret-token-0123456789");
    app.put_channel("studio", "telegram", json!({ "bot_token": bot_token, "secret_token": secret })).await;
    let post = |app: &crate::helpers::TestApp, update_id: i64| {
        app.http
            .post(format!("{}/webhooks/telegram/studio", app.base))
            .header("x-telegram-bot-api-secret-token", secret)
            .header("content-type", "application/json")
            .body(telegram_update(update_id, 77, "Ciao"))
            .send()
    };
    assert_eq!(post(&app, 1).await.expect("sent").status(), StatusCode::OK, "the sealed secret is still checked");
    let bytes = database_bytes(dir.path()).await;
    assert!(!contains(&bytes, bot_token) && !contains(&bytes, secret), "a secret is readable in the database file");
    app.stop().await;

    // A row written before encryption existed is sealed when the store opens, and keeps working.
    let plain = json!({ "bot_token": bot_token, "secret_token": secret, "api_base_url": "https://api.telegram.org" });
    let database = crate::database::Database::of(dir.path());
    database
        .execute("UPDATE channels SET config = ?1 WHERE client_id = 'studio'", &[plain.to_string().as_str().into()])
        .await;
    database.batch("PRAGMA wal_checkpoint(TRUNCATE)", "CHECKPOINT").await;
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    assert_eq!(post(&app, 2).await.expect("sent").status(), StatusCode::OK);
    let stored = database.value("SELECT config FROM channels WHERE client_id = 'studio'", &[]).await;
    let stored = stored.text();
    assert!(stored.starts_with("enc:v1:") && !stored.contains(bot_token), "{stored}");

    // Without its key, the database does not give the secrets away: the webhook cannot be checked. A shared
    // database (PostgreSQL) refuses a node with another key before it starts.
    app.stop().await;
    std::fs::remove_file(dir.path().join("secrets.key")).expect("key removed");
    if crate::database::postgres() {
        let settings = crate::database::settings_for(dir.path());
        let error = recado::app::Application::build(settings).await.err().expect("another key is refused");
        assert!(
            format!("{error:#}").contains("is not the one the database's channel secrets are sealed with"),
            "{error:#}"
        );
        return;
    }
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    let status = post(&app, 3).await.expect("sent").status();
    assert!(status.is_server_error(), "{status}");
    app.stop().await;
}

#[tokio::test]
async fn refused_uploads_count_towards_the_hourly_limit() {
    // See: issue #8, finding 7: a refused upload costs checks and a compile as well.
    let app = crate::helpers::spawn_app_with(|settings| settings.plugins.uploads_per_hour_per_client = 2).await;
    let token = app.create_client("client-a").await;
    for version in ["1", "2"] {
        let (status, body) =
            app.upload_plugin("client-a", &token, b"not a component".to_vec(), "ack", version, "{}").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (status, body) = upload_ack(&app, "client-a", &token, "3").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test]
async fn tokens_are_kept_as_hashes_and_channel_secrets_reach_no_view_and_no_log_table() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    let client = app.create_client("studio").await;
    let (bot_token, secret_token) = ("7100:AAview-bot-token-0123456789", "view-secret-token-0123456789");
    let (app_secret, verify_token, access_token) =
        ("view-app-secret-0123456789", "view-verify-token-0123456789", "EAAGview-access-token-0123456789");
    app.put_channel("studio", "telegram", json!({ "bot_token": bot_token, "secret_token": secret_token })).await;
    let whatsapp = json!({ "app_secret": app_secret, "verify_token": verify_token, "phone_number_id": "1099",
                           "access_token": access_token });
    app.put_channel("studio", "whatsapp", whatsapp.clone()).await;
    // Changed once more: the audit log has two entries for it.
    app.put_channel("studio", "whatsapp", whatsapp).await;
    let (_, inbound) = app.ingest("studio", &client, "v1", "+39333", "Ciao").await;
    let conversation = inbound["conversation_id"].as_str().expect("id");
    app.wait_for_conversation(conversation, "the message decided", |c| c["messages"][0]["state"] == "processed").await;
    let secrets = [bot_token, secret_token, app_secret, verify_token, access_token];

    // Every view of the client, by every role that may see it.
    for token in [&app.admin, &app.assistant, &client] {
        for path in ["/api/v1/clients", "/api/v1/clients/studio", "/api/v1/clients/studio/decisions"] {
            let (status, body) = app.get(path, token).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            let text = body.to_string();
            assert!(secrets.iter().all(|secret| !text.contains(secret)), "{path} shows a secret: {text}");
        }
    }
    let (_, card) = app.get("/api/v1/clients/studio", &app.assistant).await;
    assert_eq!(card["channels"]["whatsapp"]["phone_number_id"], "1099", "the public part is shown: {card}");

    // The audit and decision logs, row by row.
    let database = crate::database::Database::of(dir.path());
    let rows = async |sql: &str| -> Vec<String> {
        database.query(sql, &[]).await.iter().map(|row| row[0].text().to_owned()).collect()
    };
    let audit = rows("SELECT action || ' ' || COALESCE(detail, '') FROM audit_log").await;
    assert!(audit.iter().filter(|entry| entry.starts_with("channel.")).count() >= 3, "{audit:?}");
    let decisions = rows("SELECT source || ' ' || decision || ' ' || COALESCE(logs, '') FROM decisions").await;
    assert!(!decisions.is_empty());
    for entry in audit.iter().chain(&decisions) {
        assert!(secrets.iter().all(|secret| !entry.contains(secret)), "a secret in a log table: {entry}");
    }

    // Tokens: only the SHA-256 of each secret part is stored, and the secret is nowhere in the file.
    let bytes = database_bytes(dir.path()).await;
    for token in [&app.admin, &app.assistant, &client] {
        let (id, secret) = token.strip_prefix("rcd_").and_then(|rest| rest.split_once('_')).expect("token shape");
        let stored = database.value("SELECT secret_hash FROM tokens WHERE id = ?1", &[id.into()]).await;
        assert_eq!(stored.blob(), sha2::Sha256::digest(secret.as_bytes()).as_slice());
        assert!(!contains(&bytes, secret), "a token's secret is readable in the database file");
    }
    app.stop().await;
}

/// `GET /api/v1/me` with a bad token, as if from `client` behind the proxy on loopback.
async fn bad_token_from(app: &crate::helpers::TestApp, client: &str) -> StatusCode {
    app.http
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth("rcd_not_a_real_token_at_all")
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("sent")
        .status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_guessing_budget_and_otherwise_the_header_is_ignored()
{
    let limits = |settings: &mut recado::config::Settings| {
        settings.http.auth_failures_burst = 3;
        settings.http.auth_failures_per_minute = 1;
    };
    let app = crate::helpers::spawn_app_with(|settings| {
        limits(settings);
        settings.http.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    for _ in 0..3 {
        assert_eq!(bad_token_from(&app, "203.0.113.7").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(bad_token_from(&app, "203.0.113.7").await, StatusCode::TOO_MANY_REQUESTS);
    // Another customer of the same proxy is not locked out by the first one's guesses...
    assert_eq!(bad_token_from(&app, "203.0.113.8").await, StatusCode::UNAUTHORIZED);
    // ...and a guesser cannot get a fresh budget by writing the header itself: the proxy appends the
    // address it saw, and that one counts.
    assert_eq!(bad_token_from(&app, "198.51.100.99, 203.0.113.7").await, StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;

    // Without trusted proxies the header is anyone's to write, and ignored: every guess counts against
    // the connection's address.
    let app = crate::helpers::spawn_app_with(limits).await;
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(bad_token_from(&app, client).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(bad_token_from(&app, "203.0.113.4").await, StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}
