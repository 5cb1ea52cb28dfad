//! Test harness: the app on 127.0.0.1:0 with its own temp dir, typed request helpers, and a fake external
//! provider (standing in for WhatsApp's, Telegram's or a client's servers) whose answers tests script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use recado::app::Application;
use recado::config::Settings;
use recado::domain::{ClientProfile, ClientSlug, Role};
use recado::store::Db;

/// A running server and tokens to call it with.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub admin: String,
    pub assistant: String,
    pub data_dir: std::path::PathBuf,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// The plugins' wall-clock deadline in the servers the tests start (see [`spawn_in_at`]).
pub const TEST_DEADLINE_MS: u64 = 500;

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = spawn_in(dir.path(), configure).await;
    app._dir = Some(dir);
    app
}

/// Spawns the app on an existing data directory (to test restarts); the caller keeps the directory.
pub async fn spawn_in(data_dir: &std::path::Path, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_in_at(data_dir, configure, recado::domain::Clock::system()).await
}

/// [`spawn_in`] with the first-response clocks stepped at `clock`'s time (set ahead: time has passed).
pub async fn spawn_in_at(
    data_dir: &std::path::Path,
    configure: impl FnOnce(&mut Settings),
    clock: recado::domain::Clock,
) -> TestApp {
    recado::telemetry::init("warn");
    let mut settings = crate::database::settings_for(data_dir);
    // The test binary is not recado: uploads are compiled by the real one.
    settings.plugins.compiler = Some(env!("CARGO_BIN_EXE_recado").into());
    // The 50 ms default is a wall-clock backstop sized for a release build; this debug build shares two cores
    // with the rest of the suite (and, in the PostgreSQL run, the database), where a descheduled call can
    // pass 50 ms and fail on time instead of on what its test is about. Fuel stays the default.
    settings.plugins.deadline_ms = TEST_DEADLINE_MS;
    configure(&mut settings);
    let app = Application::build_with_clock(settings, clock).await.expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let db = app.db();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let admin = db.create_token(Role::Admin, None, "Test Admin".into()).await.expect("admin token").token;
    let assistant = db.create_token(Role::Assistant, None, "Ana".into()).await.expect("assistant token").token;
    TestApp {
        base,
        http: reqwest::Client::new(),
        db,
        admin,
        assistant,
        data_dir: data_dir.to_owned(),
        shutdown,
        server: Some(server),
        _dir: None,
    }
}

/// The password of every person [`TestApp::person`] creates.
#[allow(dead_code)]
pub const PASSWORD: &str = "a passphrase long enough";

/// A person and a token that acts as them.
#[allow(dead_code)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// Sends `request` and reads its answer as JSON.
pub async fn json_answer(request: reqwest::RequestBuilder) -> Value {
    request.send().await.expect("sent").json().await.expect("a JSON answer")
}

/// A valid profile for tests.
/// The profile of a client named `name` that writes Spanish, acknowledges each new conversation with
/// "Recibido" and keeps no first-response clock: what the tests of the real binary under load seed.
pub fn acknowledging_profile(name: &str) -> recado::domain::ClientProfile {
    serde_json::from_value(json!({
        "name": name, "timezone": "Europe/Madrid", "languages": ["es"],
        "defaults": { "auto_acknowledge": true, "acknowledgement": { "es": "Recibido" } }
    }))
    .expect("profile")
}

pub fn profile(name: &str) -> Value {
    json!({
        "name": name,
        "timezone": "Europe/Madrid",
        "languages": ["es", "ca"],
        "sla": { "first_response_minutes": 15 },
        "defaults": {
            "auto_acknowledge": true,
            "acknowledgement": { "es": "¡Gracias! Te respondemos enseguida.", "ca": "Gràcies! Et responem de seguida." }
        }
    })
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body; returns status, headers and JSON body
    /// (`Value::Null` when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.call_full(method, path, token, body).await;
        (status, body)
    }

    pub async fn call_full(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("valid status");
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates a client through the API and returns a client token for it.
    pub async fn create_client(&self, slug: &str) -> String {
        let mut body = profile(&format!("Client {slug}"));
        body["slug"] = json!(slug);
        let (status, response) = self.post("/api/v1/clients", &self.admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{response}");
        let slug = ClientSlug::parse(slug).expect("valid slug");
        self.db.create_token(Role::Client, Some(slug), "owner".into()).await.expect("client token").token
    }

    /// A new token of an existing client.
    pub async fn client_token(&self, slug: &str) -> String {
        let slug = ClientSlug::parse(slug).expect("valid slug");
        self.db.create_token(Role::Client, Some(slug), "owner".into()).await.expect("client token").token
    }

    /// Creates a person through the admin API with the password [`PASSWORD`], and a token that acts as them.
    #[allow(dead_code)]
    pub async fn person(&self, email: &str, role: &str, client: Option<&str>) -> Person {
        let name = email.split('@').next().expect("local part").to_owned();
        let body = json!({ "email": email, "name": name, "role": role, "client": client, "password": PASSWORD });
        let (status, person) = self.post("/api/v1/people", &self.admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{person}");
        let id = person["id"].as_str().expect("id").to_owned();
        let who = recado::store::PersonRef::Id(id.parse().expect("a person id"));
        let token = self.db.create_person_token(who, "tests".into(), "test".into()).await.expect("token").token;
        Person { id, email: email.to_owned(), token }
    }

    /// Makes `assistants` (emails) the assistants who serve `slug`.
    #[allow(dead_code)]
    pub async fn assign(&self, slug: &str, assistants: &[&str]) {
        let path = format!("/api/v1/clients/{slug}/assistants");
        let (status, body) =
            self.call(Method::PUT, &path, Some(&self.admin), Some(json!({ "assistants": assistants }))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Creates a client with a given profile directly in the store.
    #[allow(dead_code)]
    pub async fn create_client_with(&self, slug: &str, profile: ClientProfile) {
        let slug = ClientSlug::parse(slug).expect("valid slug");
        self.db.create_client(slug, profile, "test".into()).await.expect("client created");
    }

    /// Sends a customer message through the generic API.
    pub async fn ingest(
        &self,
        slug: &str,
        token: &str,
        external_id: &str,
        handle: &str,
        text: &str,
    ) -> (StatusCode, Value) {
        let body = json!({ "external_id": external_id, "from": { "handle": handle, "name": "Núria" }, "text": text });
        self.post(&format!("/api/v1/clients/{slug}/messages"), token, body).await
    }

    pub async fn put_channel(&self, slug: &str, kind: &str, body: Value) {
        let (status, response) = self
            .call(Method::PUT, &format!("/api/v1/clients/{slug}/channels/{kind}"), Some(&self.admin), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{response}");
    }

    /// The conversation as the admin sees it.
    pub async fn conversation(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/conversations/{id}"), &self.admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until `check` holds on the conversation, or fails after 10 s.
    pub async fn wait_for_conversation(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let conversation = self.conversation(id).await;
            if check(&conversation) {
                return conversation;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {conversation:#}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The value of one metric series (`name{labels}` as `/metrics` prints it), 0 when it is not there yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let text =
            self.http.get(format!("{}/metrics", self.base)).send().await.expect("sent").text().await.expect("text");
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    /// Waits until the metric `series` reaches `at_least`, or fails after 10 s: the signal tests wait on
    /// instead of sleeping (a worker's completed steps, a request in flight).
    pub async fn wait_for_metric(&self, series: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(series).await;
            if value >= at_least {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {series} >= {at_least} (it is {value})");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The server's database, reached from outside as another program would.
    pub fn database(&self) -> crate::database::Database {
        crate::database::Database::of(&self.data_dir)
    }

    /// Row counts of `tables`, read by a connection of the test's own.
    pub async fn table_counts(&self, tables: &[&str]) -> Vec<i64> {
        self.database().counts(tables).await
    }

    /// Every row of each of `tables`, every column, in a stable order: compared before and after an action,
    /// an update shows as well as an insert or a delete.
    pub async fn table_contents(&self, tables: &[&str]) -> Vec<Vec<Vec<crate::database::Cell>>> {
        self.database().contents(tables).await
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the server task to finish, failing after `within`.
    pub async fn wait_stopped(mut self, within: Duration) {
        let server = self.server.take().expect("server running");
        tokio::time::timeout(within, server).await.expect("stopped in time").expect("server task").expect("clean stop");
    }

    /// Stops the server the way SIGTERM does and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How the fake provider answers one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with a provider-shaped success body.
    Ok,
    /// This status with a small body.
    Status(u16),
    /// 429 with `Retry-After: seconds`.
    TooMany(u64),
    /// Never answers within the client's timeout.
    Hang,
    /// This status with a body quoting the request's path and headers, as a careless provider might.
    Echo(u16),
    /// This status with this JSON body.
    Json(u16, Value),
    /// 200 with these bytes as the body (a file download).
    Bytes(Vec<u8>),
}

/// One request the fake provider received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("provider got JSON")
    }

    /// The body as JSON, or null for another kind of body (a multipart upload).
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Scripts for requests whose path starts with a prefix, looked at before the shared script.
type RouteScripts = Vec<(String, VecDeque<Behaviour>)>;

#[derive(Clone, Default)]
struct ProviderState {
    script: Arc<Mutex<VecDeque<Behaviour>>>,
    routes: Arc<Mutex<RouteScripts>>,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<tokio::sync::Notify>,
}

/// A local HTTP server standing in for an external provider.
pub struct FakeProvider {
    pub url: String,
    state: ProviderState,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts the provider; it answers `Ok` once the script is used up.
    pub async fn start(script: Vec<Behaviour>) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), script).await
    }

    /// Starts the provider on a given address.
    pub async fn start_on(addr: SocketAddr, script: Vec<Behaviour>) -> Self {
        let state = ProviderState { script: Arc::new(Mutex::new(script.into())), ..ProviderState::default() };
        let router = axum::Router::new().fallback(provider_handler).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind provider");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("provider serves");
        });
        Self { url: format!("http://{addr}"), state, _server: server }
    }

    /// Appends behaviours for requests whose path starts with `prefix` (other requests, such as the
    /// automatic acknowledgements the pipeline sends, keep to the shared script).
    pub fn script_for(&self, prefix: &str, behaviours: Vec<Behaviour>) {
        let mut routes = self.state.routes.lock().expect("lock");
        match routes.iter_mut().find(|(known, _)| known == prefix) {
            Some((_, queue)) => queue.extend(behaviours),
            None => routes.push((prefix.to_owned(), behaviours.into())),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits (at most 10 s) until a request that is `wanted` arrives, and returns it.
    #[allow(dead_code)]
    pub async fn wait_until(&self, wanted: impl Fn(&Received) -> bool) -> Received {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                // Registered before looking, so a request that lands in between still wakes it.
                let arrived = self.state.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(found) = self.received().into_iter().find(|request| wanted(request)) {
                    return found;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no such request among the provider's {}", self.received().len()))
    }

    /// Waits until at least `count` requests arrived, or fails after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(Instant::now() < deadline, "provider got {} of {count} requests", received.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn provider_handler(
    State(state): State<ProviderState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    state.received.lock().expect("lock").push(Received {
        path: uri.path_and_query().map_or_else(|| uri.path().to_owned(), ToString::to_string),
        headers,
        body,
        at: Instant::now(),
    });
    state.arrived.notify_waiters();
    let routed = state
        .routes
        .lock()
        .expect("lock")
        .iter_mut()
        .find(|(prefix, queue)| uri.path().starts_with(prefix.as_str()) && !queue.is_empty())
        .and_then(|(_, queue)| queue.pop_front());
    let behaviour = routed.or_else(|| state.script.lock().expect("lock").pop_front()).unwrap_or(Behaviour::Ok);
    match behaviour {
        Behaviour::Ok => {
            let n = state.received.lock().expect("lock").len();
            let body =
                json!({ "messages": [{ "id": format!("wamid.{n}") }], "ok": true, "result": { "message_id": n } });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Behaviour::Status(code) => {
            (StatusCode::from_u16(code).expect("status"), axum::Json(json!({ "error": "scripted" }))).into_response()
        }
        Behaviour::TooMany(seconds) => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", seconds.to_string())], "slow down").into_response()
        }
        Behaviour::Echo(code) => {
            let received = state.received.lock().expect("lock").last().cloned().expect("just recorded");
            let headers: Vec<String> = received
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
                .collect();
            let body = json!({ "error": { "message": format!("bad request to {} with {headers:?}", received.path) } });
            (StatusCode::from_u16(code).expect("status"), axum::Json(body)).into_response()
        }
        Behaviour::Json(code, body) => (StatusCode::from_u16(code).expect("status"), axum::Json(body)).into_response(),
        Behaviour::Bytes(bytes) => {
            (StatusCode::OK, [("content-type", "application/octet-stream")], bytes).into_response()
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// HMAC-SHA256 signature header value as WhatsApp sends it.
pub fn whatsapp_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", recado::channels::hmac_sha256_hex(secret, body))
}

/// The real `recado` binary started with `args`, and its stdout lines.
pub struct Binary {
    pub child: tokio::process::Child,
    pub stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Binary {
    pub fn start(args: &[&str], data_dir: &std::path::Path) -> Self {
        Self::start_with(args, data_dir, &[("RUST_LOG", "error")], None)
    }

    /// Starts the binary with extra environment variables (`RECADO__...` settings, `RUST_LOG`), its log written
    /// to `log` (or dropped).
    pub fn start_with(
        args: &[&str],
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let stderr = match log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).expect("log file")),
            None => std::process::Stdio::null(),
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_recado"))
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("the recado binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        Self { child, stdout: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)) }
    }

    /// The next line of output, within 30 s.
    pub async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .expect("output in time")
            .expect("stdout readable")
            .expect("another line")
    }

    /// Starts `recado serve` on loopback and returns it with its base URL.
    pub async fn serve(data_dir: &std::path::Path) -> (Self, String) {
        Self::serve_with(data_dir, &[("RUST_LOG", "error")], None).await
    }

    /// [`Binary::serve`] with extra environment variables and a log file.
    pub async fn serve_with(
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> (Self, String) {
        let mut binary = Self::start_with(&["serve", "--listen", "127.0.0.1:0"], data_dir, env, log);
        let line = binary.line().await;
        let base = line.strip_prefix("listening on ").expect("the first line names the address").to_owned();
        (binary, base)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal sent");
    }
}

/// The example plugins' directory, with every component built (by `scripts/test`, or once here if missing).
pub fn example_plugins() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example-plugins");
    BUILT.get_or_init(|| {
        let built = ["business_hours_ack", "keyword_router", "escalation", "hostile"]
            .iter()
            .all(|name| root.join(format!("target/wasm32-wasip2/release/{name}.wasm")).exists());
        if !built {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(root.join("Cargo.toml"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the example plugins failed (is the wasm32-wasip2 target installed?)");
        }
    });
    root
}

/// `GET url` with a bearer token, answered with JSON (for servers started as the real binary).
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url).bearer_auth(token).send().await.expect("sent").json().await.expect("json")
}

/// The value printed after `prefix` in a binary's output lines.
/// A customer message of `client` on the API channel, as a channel would hand it to the store.
pub fn inbound(
    client: &ClientSlug,
    external_id: String,
    handle: String,
    received_at: recado::domain::Timestamp,
) -> recado::domain::InboundMessage {
    recado::domain::InboundMessage {
        client: client.clone(),
        channel: recado::domain::ChannelName::known(recado::domain::ChannelName::API),
        external_id,
        handle,
        name: None,
        text: "Hola, teniu hora dijous?".into(),
        parts: Vec::new(),
        context: recado::domain::Context::default(),
        user_id: None,
        username: None,
        received_at,
    }
}

pub fn printed(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(prefix))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"))
}

/// Waits until no message in the database of `data_dir` waits for processing (read from the file, as any
/// reader may), or fails after 60 s.
pub async fn wait_until_processed(data_dir: &std::path::Path) {
    let connection =
        rusqlite::Connection::open_with_flags(data_dir.join("recado.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = connection
            .query_row("SELECT COUNT(*) FROM messages WHERE state = 'received'", [], |row| row.get(0))
            .expect("count");
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} messages still unprocessed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the real `recado` binary with `args` to the end (its log at `error` only).
#[allow(dead_code)]
pub async fn run_recado(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("recado runs")
}

/// A process's output as text.
#[allow(dead_code)]
pub fn output_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `recado demo` with the example plugin chain active for the first demo client, started with the real
/// binary on `data_dir`, and a Telegram channel of `client` whose secret token is `telegram_secret` (sealed
/// with the data directory's key).
#[allow(dead_code)]
pub struct Demo {
    pub server: Binary,
    pub base: String,
    pub admin: String,
    /// `client`'s token.
    pub token: String,
}

impl Demo {
    #[allow(dead_code)]
    pub async fn start(data_dir: &std::path::Path, client: &str, telegram_secret: &str) -> Self {
        let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/kb");
        let plugins = example_plugins();
        let plugins = plugins.to_str().expect("utf-8 path");
        let mut server =
            Binary::start(&["demo", "--listen", "127.0.0.1:0", "--kb", kb, "--plugins", plugins], data_dir);
        let mut lines = Vec::new();
        while !lines.iter().any(|line: &String| line.starts_with("client token")) {
            lines.push(server.line().await);
        }
        let base = printed(&lines, "listening on");
        let admin = printed(&lines, "admin token:");
        let token = printed(&lines, &format!("client token ({client}):"));
        let channel = reqwest::Client::new()
            .put(format!("{base}/api/v1/clients/{client}/channels/telegram"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "bot_token": "123:DEMO", "secret_token": telegram_secret }))
            .send()
            .await
            .expect("sent");
        assert_eq!(channel.status(), reqwest::StatusCode::OK);
        Self { server, base, admin, token }
    }
}
