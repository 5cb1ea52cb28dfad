//! Rule plugins through the API: upload checks, the lifecycle, chains applied in the pipeline, shadow and
//! replay without side effects, the circuit breaker, and one client's plugins never touching another's data.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{FakeProvider, TestApp, spawn_app, spawn_app_with};

/// An example component (built by `scripts/test`, or here when missing).
pub fn component(name: &str) -> Vec<u8> {
    let path = crate::helpers::example_plugins().join(format!("target/wasm32-wasip2/release/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The acknowledgement plugin, configured to answer `text` in Spanish whether open or closed.
pub fn ack_config(text: &str) -> String {
    json!({ "open": { "es": text, "ca": text }, "closed": { "es": text, "ca": text } }).to_string()
}

impl TestApp {
    /// Uploads a component with multipart fields.
    pub async fn upload_plugin(
        &self,
        slug: &str,
        token: &str,
        wasm: Vec<u8>,
        name: &str,
        version: &str,
        config: &str,
    ) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new()
            .part("component", reqwest::multipart::Part::bytes(wasm).file_name("plugin.wasm"))
            .text("name", name.to_owned())
            .text("version", version.to_owned())
            .text("config", config.to_owned());
        let response = self
            .http
            .post(format!("{}/api/v1/clients/{slug}/plugins", self.base))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("request sent");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Uploads and moves a plugin to `state` (`activate`, `shadow`); returns its id.
    pub async fn install_plugin(
        &self,
        slug: &str,
        token: &str,
        (wasm, name, version): (&str, &str, &str),
        config: &str,
        action: &str,
    ) -> String {
        let (status, plugin) = self.upload_plugin(slug, token, component(wasm), name, version, config).await;
        assert_eq!(status, StatusCode::CREATED, "{plugin}");
        let id = plugin["id"].as_str().expect("id").to_owned();
        let (status, body) =
            self.post(&format!("/api/v1/clients/{slug}/plugins/{id}/{action}"), token, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    /// Sends a message and waits until it is processed; returns the conversation.
    pub async fn ingest_processed(
        &self,
        slug: &str,
        token: &str,
        external_id: &str,
        handle: &str,
        text: &str,
    ) -> (String, Value) {
        let (status, sent) = self.ingest(slug, token, external_id, handle, text).await;
        assert!(status.is_success(), "{sent}");
        let message_id = sent["message_id"].as_str().expect("message id").to_owned();
        let conversation_id = sent["conversation_id"].as_str().expect("conversation id");
        let conversation = self
            .wait_for_conversation(conversation_id, "the message processed", |c| {
                c["messages"].as_array().is_some_and(|messages| {
                    messages.iter().any(|m| m["id"] == message_id.as_str() && m["state"] == "processed")
                })
            })
            .await;
        (message_id, conversation)
    }

    pub async fn decisions_of(&self, message_id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/messages/{message_id}/decisions"), &self.admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["decisions"].as_array().expect("decisions").clone()
    }
}

fn acks(conversation: &Value) -> Vec<String> {
    conversation["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["kind"] == "auto_ack")
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect()
}

#[tokio::test]
async fn an_active_plugin_decides_and_its_run_is_recorded_with_logs_fuel_and_duration() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let id = app
        .install_plugin(
            "dental",
            &token,
            ("business_hours_ack", "ack", "1.0.0"),
            &ack_config("Hola des del plugin"),
            "activate",
        )
        .await;

    let logger =
        app.install_plugin("dental", &token, ("hostile", "logger", "1"), r#"{"behaviour": "logs"}"#, "activate").await;

    let (message_id, conversation) =
        app.ingest_processed("dental", &token, "1", "+34600", "Hola, tinc una pregunta").await;
    assert_eq!(acks(&conversation), ["Hola des del plugin"], "the plugin's text, not the defaults'");

    let decisions = app.decisions_of(&message_id).await;
    let chain = decisions.iter().find(|d| d["source"] == "chain").expect("the applied chain decision");
    assert_eq!(chain["applied"], true);
    let run = decisions.iter().find(|d| d["plugin"]["id"] == id.as_str()).expect("the plugin's run");
    assert_eq!(run["plugin"]["version"], "1.0.0");
    assert_eq!(run["applied"], true);
    assert!(run["fuel"].as_u64().expect("fuel") > 0, "{run}");
    assert!(run["duration_us"].as_u64().is_some(), "{run}");
    assert!(run["failure"].is_null());
    let logged = decisions.iter().find(|d| d["plugin"]["id"] == logger.as_str()).expect("the logger's run");
    assert_eq!(
        logged["logs"],
        json!([
            { "level": "debug", "message": "looking at the message" },
            { "level": "warn", "message": "23 characters" },
        ]),
        "each line with its level, in order: {logged}"
    );

    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    // Live traffic only: the upload's trial calls are not counted (one live call for each of the two plugins).
    assert!(metrics.contains("recado_plugin_calls_total{hook=\"on-message\",outcome=\"ok\"} 2"), "{metrics}");
    assert!(metrics.contains("recado_plugin_call_duration_seconds_bucket{"), "{metrics}");

    let (status, log) = app.get(&format!("/api/v1/clients/dental/decisions?plugin_id={id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert_eq!(log["decisions"].as_array().expect("list").len(), 1, "{log}");
    assert_eq!(log["decisions"][0]["message_id"], message_id.as_str());
}

#[tokio::test]
async fn uploads_that_are_not_rules_components_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let cases: [(Vec<u8>, &str); 4] = [
        (b"definitely not wasm".to_vec(), "not_a_component"),
        (vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], "not_a_component"),
        // Precompiled code is never accepted, whoever made it.
        (b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(), "not_a_component"),
        // A valid, empty component: compiles, but is not the rules world.
        (vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00], "wrong_contract"),
    ];
    for (bytes, code) in cases {
        let (status, body) = app.upload_plugin("dental", &token, bytes, "bad", "1", "{}").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let wasm = component("business_hours_ack");
    let (status, body) = app.upload_plugin("dental", &token, wasm.clone(), "ack", "1", "{not json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")),
        "{body}"
    );
    // The config does not parse in the plugin: the trial call returns an error, so the upload is refused.
    let (status, body) = app.upload_plugin("dental", &token, wasm.clone(), "ack", "1", r#"{"unknown": 1}"#).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("smoke_call_failed")),
        "{body}"
    );
    // A plugin that traps on every message never gets in.
    let (status, body) =
        app.upload_plugin("dental", &token, component("hostile"), "h", "1", r#"{"behaviour": "trap"}"#).await;
    assert_eq!(body["error"]["code"], "smoke_call_failed", "{status} {body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("panics on purpose"), "{body}");

    let (status, list) = app.get("/api/v1/clients/dental/plugins", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["plugins"].as_array().expect("list").len(), 0, "nothing refused was stored: {list}");
    // The same name and version twice is a conflict.
    let (status, _) = app.upload_plugin("dental", &token, wasm.clone(), "ack", "1", &ack_config("x")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app.upload_plugin("dental", &token, wasm, "ack", "1", &ack_config("x")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn size_function_size_and_compile_time_are_bounded() {
    let app = spawn_app_with(|settings| settings.plugins.max_component_bytes = 4096).await;
    let token = app.create_client("dental").await;
    let (status, body) = app.upload_plugin("dental", &token, component("business_hours_ack"), "ack", "1", "{}").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let app = spawn_app_with(|settings| settings.plugins.max_function_bytes = 1024).await;
    let token = app.create_client("dental").await;
    let (status, body) = app.upload_plugin("dental", &token, component("business_hours_ack"), "ack", "1", "{}").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("function_too_large")),
        "{body}"
    );

    // A millisecond: starting the compiler process alone takes longer, whatever the machine's speed.
    let app = spawn_app_with(|settings| settings.plugins.compile_timeout_ms = 1).await;
    let token = app.create_client("dental").await;
    let (status, body) = app.upload_plugin("dental", &token, component("business_hours_ack"), "ack", "1", "{}").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("compile_timeout")),
        "{body}"
    );
}

#[tokio::test]
async fn a_failing_plugin_leaves_the_message_to_the_defaults_and_the_breaker_disables_it() {
    let app = spawn_app_with(|settings| {
        settings.plugins.breaker_failures = 3;
        // The plugin fails by running out of memory; on a loaded machine (the PostgreSQL run shares it with
        // the database) growing that far can take longer than the default deadline, which would fail it first.
        settings.plugins.deadline_ms = 5_000;
    })
    .await;
    let token = app.create_client("dental").await;
    let config = json!({ "behaviour": "memory", "trigger": "boom" }).to_string();
    let id = app.install_plugin("dental", &token, ("hostile", "bomb", "1"), &config, "activate").await;

    // Three customers, three failures in a row: each still gets the defaults' acknowledgement.
    for n in 0..3 {
        let (message_id, conversation) =
            app.ingest_processed("dental", &token, &format!("m{n}"), &format!("+3460{n}"), "boom").await;
        assert_eq!(acks(&conversation), ["¡Gracias! Te respondemos enseguida."], "{conversation:#}");
        let decisions = app.decisions_of(&message_id).await;
        let run = decisions.iter().find(|d| d["plugin"]["id"] == id.as_str()).expect("run recorded");
        assert!(run["failure"].as_str().expect("failure").contains("memory"), "{run}");
        assert_eq!(decisions.iter().find(|d| d["source"] == "defaults").expect("defaults applied")["applied"], true);
    }
    let (_, plugin) = app.get(&format!("/api/v1/clients/dental/plugins/{id}"), &token).await;
    assert_eq!(plugin["state"], "disabled", "{plugin}");
    assert!(plugin["state_reason"].as_str().expect("reason").contains("circuit breaker"), "{plugin}");
    let (_, audit) = app.get("/api/v1/audit?client=dental&limit=5", &app.admin).await;
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|entry| entry["action"] == "plugin.disable" && entry["actor"] == "system:circuit-breaker"),
        "{audit}"
    );

    // Disabled: it no longer runs.
    let (message_id, _) = app.ingest_processed("dental", &token, "m9", "+34609", "boom").await;
    let decisions = app.decisions_of(&message_id).await;
    assert!(!decisions.is_empty(), "the message was decided");
    assert!(decisions.iter().all(|d| d["plugin"].is_null()), "{decisions:?}");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(
        metrics.contains("recado_plugin_calls_total{hook=\"on-message\",outcome=\"out_of_memory\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("recado_plugins_loaded 0\n"), "the disabled plugin's code is released: {metrics}");
}

#[tokio::test]
async fn a_success_resets_the_breakers_count() {
    let app = spawn_app_with(|settings| settings.plugins.breaker_failures = 2).await;
    let token = app.create_client("dental").await;
    let config = json!({ "behaviour": "trap", "trigger": "boom" }).to_string();
    let id = app.install_plugin("dental", &token, ("hostile", "trap", "1"), &config, "activate").await;
    for (n, text) in ["boom", "fine", "boom", "fine", "boom"].iter().enumerate() {
        app.ingest_processed("dental", &token, &format!("m{n}"), "+34600", text).await;
    }
    let (_, plugin) = app.get(&format!("/api/v1/clients/dental/plugins/{id}"), &token).await;
    assert_eq!(plugin["state"], "active", "failures were never consecutive: {plugin}");
    assert_eq!(plugin["consecutive_failures"], 1);
}

#[tokio::test]
async fn shadow_runs_are_recorded_not_applied_and_replay_changes_nothing() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    // The acknowledgements are delivered, so the outbox is at rest when the tables are compared.
    let provider = FakeProvider::start(vec![]).await;
    let secret = "a-webhook-secret-of-dental";
    app.put_channel("dental", "webhook", json!({ "url": format!("{}/hook", provider.url), "secret": secret })).await;
    let v1 = app
        .install_plugin("dental", &token, ("business_hours_ack", "ack", "1"), &ack_config("Versió u"), "activate")
        .await;
    let v2 = app
        .install_plugin("dental", &token, ("business_hours_ack", "ack", "2"), &ack_config("Versió dos"), "shadow")
        .await;

    let mut messages = Vec::new();
    for n in 0..3 {
        let (message_id, conversation) =
            app.ingest_processed("dental", &token, &format!("m{n}"), &format!("+3460{n}"), "Hola").await;
        assert_eq!(acks(&conversation), ["Versió u"], "only the active version is applied");
        let decisions = app.decisions_of(&message_id).await;
        let shadow = decisions.iter().find(|d| d["plugin"]["id"] == v2.as_str()).expect("shadow run recorded");
        assert_eq!(shadow["applied"], false);
        assert_eq!(shadow["decision"]["acknowledge"], "Versió dos");
        let conversation_id = conversation["id"].as_str().expect("id");
        app.wait_for_conversation(conversation_id, "the acknowledgement delivered", |c| {
            c["messages"].as_array().is_some_and(|all| all.iter().any(|m| m["delivery"]["state"] == "sent"))
        })
        .await;
        messages.push(message_id);
    }

    let tables = ["messages", "outbox", "decisions", "plugin_kv", "escalations", "audit_log", "plugins"];
    let before = app.table_contents(&tables).await;
    let (status, report) =
        app.post(&format!("/api/v1/clients/dental/plugins/{v2}/replay"), &token, json!({ "messages": 10 })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let replay = &report["replay"];
    assert_eq!(replay["messages"], 3, "{report}");
    assert_eq!(replay["differing"], 3);
    for item in replay["items"].as_array().expect("items") {
        assert_eq!(item["candidate"]["acknowledge"], "Versió dos");
        assert_eq!(item["active"]["acknowledge"], "Versió u");
        assert_eq!(item["recorded"]["acknowledge"], "Versió u");
    }
    let after = app.table_contents(&tables).await;
    for ((table, before), after) in tables.iter().zip(&before).zip(&after) {
        assert_eq!(after, before, "{table}: a replay stores, sends and changes nothing (every column)");
    }

    // Rollback: activate v2, then roll back to v1.
    let (status, _) = app.post(&format!("/api/v1/clients/dental/plugins/{v2}/activate"), &token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, conversation) = app.ingest_processed("dental", &token, "m10", "+34610", "Hola").await;
    assert_eq!(acks(&conversation), ["Versió dos"]);
    let (status, rolled) = app.post(&format!("/api/v1/clients/dental/plugins/{v2}/rollback"), &token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["id"], v1.as_str());
    assert_eq!(rolled["state"], "active");
    let (_, list) = app.get("/api/v1/clients/dental/plugins", &token).await;
    let states: Vec<(&str, &str)> = list["plugins"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| (p["version"].as_str().expect("v"), p["state"].as_str().expect("s")))
        .collect();
    assert_eq!(states, [("2", "inactive"), ("1", "active")]);
    let (_, conversation) = app.ingest_processed("dental", &token, "m11", "+34611", "Hola").await;
    assert_eq!(acks(&conversation), ["Versió u"]);
}

#[tokio::test]
async fn the_chain_merges_in_order_and_plugins_keep_state_in_their_own_store() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    app.install_plugin("dental", &token, ("business_hours_ack", "ack", "1"), &ack_config("Primer"), "activate").await;
    app.install_plugin("dental", &token, ("hostile", "counter", "1"), r#"{"behaviour": "kv-counter"}"#, "activate")
        .await;
    app.install_plugin("dental", &token, ("business_hours_ack", "ack-late", "1"), &ack_config("Segon"), "activate")
        .await;

    for n in 1..=3 {
        let (message_id, conversation) =
            app.ingest_processed("dental", &token, &format!("m{n}"), &format!("+3460{n}"), "Hola").await;
        assert_eq!(acks(&conversation), ["Primer"], "the first acknowledgement in chain order wins");
        let decisions = app.decisions_of(&message_id).await;
        let chain = decisions.iter().find(|d| d["source"] == "chain").expect("chain");
        assert!(
            chain["decision"]["reason"].as_str().expect("reason").contains(&format!("counter: count {n}")),
            "{chain}"
        );
    }
    let slug = recado::domain::ClientSlug::parse("dental").expect("slug");
    let kv = app.db.plugin_kv(slug, "counter".into()).await.expect("kv");
    assert_eq!(kv.get("count").map(String::as_str), Some("3"));
}

#[tokio::test]
async fn one_clients_plugins_never_see_or_change_another_clients_data() {
    let app = spawn_app().await;
    let alpha = app.create_client("alpha").await;
    let beta = app.create_client("beta").await;
    for (slug, title) in [("alpha", "Preus de neteja"), ("beta", "Preus de neteja beta")] {
        let article = json!({ "id": format!("{slug}-preus"), "language": "ca", "title": title, "body": "La neteja costa 60 euros." });
        let (status, body) = app.post(&format!("/api/v1/clients/{slug}/kb/articles"), &app.admin, article).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let alpha_plugin = app
        .install_plugin("alpha", &alpha, ("hostile", "probe", "1"), r#"{"behaviour": "kb-probe"}"#, "activate")
        .await;
    let counter = app
        .install_plugin("alpha", &alpha, ("hostile", "counter", "1"), r#"{"behaviour": "kv-counter"}"#, "activate")
        .await;
    app.install_plugin("beta", &beta, ("hostile", "counter", "1"), r#"{"behaviour": "kv-counter"}"#, "activate").await;

    // Give the index a moment to pick up both articles.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (message_id, _) = app
            .ingest_processed(
                "alpha",
                &alpha,
                &format!("q{}", deadline.elapsed().as_nanos()),
                "+34600",
                "Quant costa la neteja?",
            )
            .await;
        let decisions = app.decisions_of(&message_id).await;
        let probe = decisions.iter().find(|d| d["plugin"]["id"] == alpha_plugin.as_str()).expect("probe run");
        let reason = probe["decision"]["reason"].as_str().expect("reason").to_owned();
        assert!(!reason.contains("beta-preus"), "alpha's plugin saw beta's article: {reason}");
        if reason.contains("alpha-preus") {
            break;
        }
        assert!(Instant::now() < deadline, "alpha's article never found: {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each installation counts its own client's messages only.
    app.ingest_processed("beta", &beta, "b1", "+34600", "Hola").await;
    let beta_kv =
        app.db.plugin_kv(recado::domain::ClientSlug::parse("beta").expect("slug"), "counter".into()).await.expect("kv");
    assert_eq!(beta_kv.get("count").map(String::as_str), Some("1"), "beta's counter saw only beta's message");

    // Beta's token cannot see, change, replay or read the decisions of alpha's plugins.
    let paths = [
        ("GET", "/api/v1/clients/alpha/plugins".to_owned()),
        ("GET", format!("/api/v1/clients/alpha/plugins/{counter}")),
        ("POST", format!("/api/v1/clients/alpha/plugins/{counter}/disable")),
        ("POST", format!("/api/v1/clients/alpha/plugins/{counter}/replay")),
        ("GET", "/api/v1/clients/alpha/decisions".to_owned()),
        // Alpha's plugin id under beta's own slug is not found either.
        ("GET", format!("/api/v1/clients/beta/plugins/{counter}")),
        ("POST", format!("/api/v1/clients/beta/plugins/{counter}/activate")),
    ];
    for (method, path) in paths {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let body = (method == reqwest::Method::POST).then(|| json!({}));
        let (status, response) = app.call(method, &path, Some(&beta), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {response}");
    }
    let (status, _) =
        app.upload_plugin("alpha", &beta, component("hostile"), "x", "1", r#"{"behaviour": "kv-counter"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Assistants work the inbox; they do not manage plugins.
    let (status, _) = app.get("/api/v1/clients/alpha/plugins", &app.assistant).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, plugin) = app.get(&format!("/api/v1/clients/alpha/plugins/{counter}"), &alpha).await;
    assert_eq!(plugin["state"], "active", "nothing beta did changed it");
}

#[tokio::test]
async fn plugins_see_the_conversation_as_it_was_when_each_message_arrived() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let probe = app
        .install_plugin("dental", &token, ("hostile", "context", "1"), r#"{"behaviour": "context"}"#, "activate")
        .await;
    let reason = |decisions: Vec<Value>| {
        decisions
            .iter()
            .find(|d| d["plugin"]["id"] == probe.as_str())
            .and_then(|d| d["decision"]["reason"].as_str().map(str::to_owned))
            .expect("probe decided")
    };
    let (first, _) = app.ingest_processed("dental", &token, "1", "+34600", "Hola, bon dia, tinc mal de queixal").await;
    assert_eq!(
        reason(app.decisions_of(&first).await),
        "client=dental new=true unanswered=1 messages=1 acknowledged=false replied=false open=true language=ca"
    );
    let (second, conversation) =
        app.ingest_processed("dental", &token, "2", "+34600", "Hola? Encara hi sou? Necessito ajuda").await;
    assert_eq!(
        reason(app.decisions_of(&second).await),
        "client=dental new=false unanswered=2 messages=3 acknowledged=true replied=false open=true language=ca",
        "the first message and its acknowledgement came before"
    );
    let id = conversation["id"].as_str().expect("id");
    let (status, _) =
        app.post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "Digui'm" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (third, _) = app.ingest_processed("dental", &token, "3", "+34600", "Gràcies, ja em va bé demà").await;
    assert!(reason(app.decisions_of(&third).await).contains("unanswered=1 messages=5 acknowledged=true replied=true"));
}

#[tokio::test]
async fn compiled_plugins_are_cached_by_hash_and_recompiled_from_the_kept_original_when_the_cache_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    let token = app.create_client("dental").await;
    app.install_plugin(
        "dental",
        &token,
        ("business_hours_ack", "ack", "1"),
        &ack_config("Des de la memòria cau"),
        "activate",
    )
    .await;
    app.stop().await;
    let cache = dir.path().join("plugin-cache");
    let cached: Vec<_> =
        std::fs::read_dir(&cache).expect("cache dir").map(|entry| entry.expect("entry").path()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let sha = sha256_hex(&component("business_hours_ack"));
    assert!(cached[0].file_name().expect("name").to_string_lossy().starts_with(&sha), "named by the component's hash");

    // No compiler at all after the restart: the plugin still runs, from the cache.
    let no_compiler = |settings: &mut recado::config::Settings| {
        settings.plugins.compiler = Some("/nonexistent/recado-compiler".into());
    };
    let app = crate::helpers::spawn_in(dir.path(), no_compiler).await;
    let (_, conversation) = app.ingest_processed("dental", &token, "1", "+34600", "Hola").await;
    assert_eq!(acks(&conversation), ["Des de la memòria cau"]);
    app.stop().await;

    // Cache deleted (or written by another wasmtime): compiled again from the bytes kept in the store.
    std::fs::remove_dir_all(&cache).expect("remove cache");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    let (_, conversation) = app.ingest_processed("dental", &token, "2", "+34611", "Hola").await;
    assert_eq!(acks(&conversation), ["Des de la memòria cau"]);
    assert_eq!(std::fs::read_dir(&cache).expect("cache dir").count(), 1, "the cache is filled again");
    app.stop().await;

    // Neither cache nor compiler: the plugin cannot start, counts as failed, and the defaults apply.
    std::fs::remove_dir_all(&cache).expect("remove cache");
    let app = crate::helpers::spawn_in(dir.path(), no_compiler).await;
    let (message_id, conversation) = app.ingest_processed("dental", &token, "3", "+34622", "Hola").await;
    assert_eq!(acks(&conversation), ["¡Gracias! Te respondemos enseguida."]);
    let decisions = app.decisions_of(&message_id).await;
    assert!(
        decisions.iter().any(|d| d["failure"].as_str().is_some_and(|f| f.contains("could not start"))),
        "{decisions:?}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    recado::plugins::compile::sha256_hex(bytes)
}

#[tokio::test]
async fn every_hostile_plugin_fails_alone_and_the_message_gets_the_defaults() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let behaviours =
        ["loop", "memory", "huge-output", "many-tags", "bad-label", "trap", "recursion", "host-flood", "filesystem"];
    let mut ids = Vec::new();
    for behaviour in behaviours {
        // The trigger lets each pass the upload's trial call; it misbehaves on "boom" only.
        let config = json!({ "behaviour": behaviour, "trigger": "boom" }).to_string();
        ids.push((
            behaviour,
            app.install_plugin("dental", &token, ("hostile", behaviour, "1"), &config, "activate").await,
        ));
    }
    let (message_id, conversation) = app.ingest_processed("dental", &token, "1", "+34600", "boom").await;
    assert_eq!(acks(&conversation), ["¡Gracias! Te respondemos enseguida."], "{conversation:#}");
    assert_eq!(conversation["queue"], Value::Null, "nothing a failed plugin said was applied");
    let decisions = app.decisions_of(&message_id).await;
    let applied = decisions.iter().find(|d| d["applied"] == true && d["plugin"].is_null()).expect("applied decision");
    assert_eq!(applied["source"], "defaults");
    assert!(applied["decision"]["reason"].as_str().expect("reason").starts_with("every active plugin failed"));
    for (behaviour, id) in &ids {
        let run = decisions.iter().find(|d| d["plugin"]["id"] == id.as_str()).expect("run recorded");
        let failure = run["failure"].as_str().unwrap_or_else(|| panic!("{behaviour} did not fail: {run}"));
        let expected: &[&str] = match *behaviour {
            "loop" => &["instruction budget", "deadline"],
            // Growing to the 32 MiB cap touches every page: on a loaded machine, in a debug build, the
            // deadline may come first. Either way the call fails alone.
            "memory" => &["more memory", "deadline"],
            "huge-output" => &["invalid decision", "more memory"],
            "many-tags" | "bad-label" => &["invalid decision"],
            "trap" | "recursion" => &["crashed"],
            "host-flood" => &["too many host calls"],
            _ => &["no filesystem"],
        };
        assert!(expected.iter().any(|e| failure.contains(e)), "{behaviour}: {failure}");
    }
    // The server still works for everyone.
    let (_, calm) = app.ingest_processed("dental", &token, "2", "+34611", "Hola").await;
    assert_eq!(acks(&calm), ["¡Gracias! Te respondemos enseguida."]);
}

#[tokio::test]
async fn a_plugin_routes_only_to_its_own_clients_queues() {
    let app = spawn_app().await;
    let mut body = crate::helpers::profile("Clínica");
    body["slug"] = json!("dental");
    body["queues"] = json!(["billing", "general"]);
    let (status, created) = app.post("/api/v1/clients", &app.admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = app.client_token("dental").await;
    let config = json!({
        "routes": [
            { "queue": "billing", "keywords": ["factura"] },
            { "queue": "someone-elses", "keywords": ["cita"] }
        ]
    })
    .to_string();
    let id = app.install_plugin("dental", &token, ("keyword_router", "router", "1"), &config, "activate").await;

    let (_, billed) = app.ingest_processed("dental", &token, "1", "+34600", "La factura, si us plau").await;
    assert_eq!(billed["queue"], "billing");
    let (message_id, other) = app.ingest_processed("dental", &token, "2", "+34611", "Vull una cita").await;
    assert_eq!(other["queue"], Value::Null, "{other:#}");
    let decisions = app.decisions_of(&message_id).await;
    let run = decisions.iter().find(|d| d["plugin"]["id"] == id.as_str()).expect("run");
    assert!(run["failure"].as_str().expect("failure").contains("not one of this client's queues"), "{run}");
}

#[tokio::test]
async fn a_component_the_compiler_refuses_is_rejected_with_its_reason() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    // Valid WebAssembly (shared memory is standard), but this engine runs without threads.
    let shared = wat::parse_str("(component (core module (memory 1 1 shared)))").expect("wat");
    let (status, body) = app.upload_plugin("dental", &token, shared, "threads", "1", "{}").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("compile_failed")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().expect("message").contains("threads"), "{body}");
}

#[tokio::test]
async fn a_contact_tagged_by_a_person_is_seen_tagged_by_the_rules() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let config = json!({ "routes": [], "vip": { "handles": [], "priority": "high" } }).to_string();
    app.install_plugin("dental", &token, ("keyword_router", "router", "1"), &config, "activate").await;

    let (_, before) = app.ingest_processed("dental", &token, "1", "+34600", "Hola").await;
    assert_eq!(before["priority"], "normal", "not a VIP yet: {before:#}");
    assert_eq!(before["contact"]["tags"], json!([]));
    let contact = before["contact"]["id"].as_str().expect("contact id").to_owned();

    // An assistant marks the customer as a VIP; the tags are checked labels, each kept once.
    let path = format!("/api/v1/contacts/{contact}/tags");
    let (status, error) =
        app.call(reqwest::Method::PUT, &path, Some(&app.assistant), Some(json!({ "tags": ["Not A Label"] }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, tagged) =
        app.call(reqwest::Method::PUT, &path, Some(&app.assistant), Some(json!({ "tags": ["vip", "vip"] }))).await;
    assert_eq!(status, StatusCode::OK, "{tagged}");
    assert_eq!(tagged["tags"], json!(["vip"]));

    // The next message of that customer reaches the rules with the tag.
    let (_, after) = app.ingest_processed("dental", &token, "2", "+34600", "Hola de nou").await;
    assert_eq!(after["contact"]["tags"], json!(["vip"]));
    assert_eq!(after["priority"], "high", "the router's VIP rule applied: {after:#}");
    assert!(after["tags"].as_array().expect("tags").contains(&json!("vip")));

    // Another client's token cannot see or change the contact.
    let other = app.create_client("bakery").await;
    let (status, _) = app.call(reqwest::Method::PUT, &path, Some(&other), Some(json!({ "tags": [] }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Stores `count` first messages of as many customers of `slug`, received `ago` before now, straight into the
/// store of a stopped server: the backlog a restart finds, or a burst the pipeline has not reached yet.
async fn store_waiting(data_dir: &std::path::Path, slug: &str, count: usize, ago: Duration) {
    use recado::domain::{ChannelName, ClientSlug, Timestamp};
    let db = crate::database::open_store(data_dir).await;
    let client = ClientSlug::parse(slug).expect("slug");
    let channel = ChannelName::known(ChannelName::API);
    let received_at = Timestamp(Timestamp::now().millis() - i64::try_from(ago.as_millis()).expect("ms"));
    let messages = (0..count)
        .map(|n| crate::helpers::inbound(&client, format!("{slug}-{n}"), format!("+3460{n:06}"), received_at))
        .collect();
    let batch = recado::store::InboundBatch { messages, ..Default::default() };
    db.ingest(client, channel, batch).await.expect("stored");
    db.close().await;
}

/// Each decision recorded for an inbound message, in the order they were applied: (client, source, reason).
/// Decisions are only ever inserted, so the physical order of a fresh table's rows (SQLite's `rowid`,
/// PostgreSQL's `ctid`) is the order they were applied in.
async fn decisions_in_order(app: &TestApp) -> Vec<(String, String, String)> {
    let order = if crate::database::postgres() { "ctid" } else { "rowid" };
    let rows = app
        .database()
        .query(
            &format!(
                "SELECT client_id, source, decision FROM decisions WHERE source IN ('chain', 'defaults') ORDER BY {order}"
            ),
            &[],
        )
        .await;
    rows.iter()
        .map(|row| {
            let decision: Value = serde_json::from_str(row[2].text()).expect("a decision");
            let reason = decision["reason"].as_str().expect("a reason").to_owned();
            (row[0].text().to_owned(), row[1].text().to_owned(), reason)
        })
        .collect()
}

#[tokio::test]
async fn a_busy_clients_rules_decide_every_message_while_other_clients_take_turns() {
    let dir = tempfile::tempdir().expect("dir");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    for slug in ["busy", "quiet"] {
        let token = app.create_client(slug).await;
        app.install_plugin(slug, &token, ("hostile", "counter", "1"), r#"{"behaviour": "kv-counter"}"#, "activate")
            .await;
    }
    app.stop().await;
    // The busy client's 20 messages are older than the quiet one's 2; turns are 5 messages long and one
    // client is served at a time, so the order of turns is the only thing that decides who waits.
    store_waiting(dir.path(), "busy", 20, Duration::from_millis(10)).await;
    store_waiting(dir.path(), "quiet", 2, Duration::ZERO).await;
    let app = crate::helpers::spawn_in(dir.path(), |settings| {
        settings.pipeline.lanes = 1;
        settings.pipeline.batch_size = 5;
    })
    .await;
    app.wait_for_metric("recado_processed_messages_total", 22.0).await;

    let decisions = decisions_in_order(&app).await;
    let clients: Vec<&str> = decisions.iter().map(|(client, _, _)| client.as_str()).collect();
    let expected: Vec<&str> = [["busy"; 5].as_slice(), &["quiet"; 2], &["busy"; 15]].concat();
    assert_eq!(clients, expected, "the quiet client's turn comes after one turn of the busy one, not after all four");
    for (n, (_, source, reason)) in decisions.iter().filter(|(client, _, _)| client == "busy").enumerate() {
        assert_eq!(source, "chain", "{reason}");
        assert!(reason.contains(&format!("counter: count {}", n + 1)), "the rules decided each in order: {reason}");
    }
    assert_eq!(app.metric("recado_plugin_queue_timeouts_total").await, 0.0);
    app.stop().await;
}

#[tokio::test]
async fn a_message_that_waited_too_long_for_its_clients_rules_gets_the_defaults_with_an_event() {
    let dir = tempfile::tempdir().expect("dir");
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    let token = app.create_client("dental").await;
    app.install_plugin("dental", &token, ("business_hours_ack", "ack", "1"), &ack_config("Ara mateix"), "activate")
        .await;
    // A client an admin allowed to wait two minutes for its rules.
    let patient = app.create_client("patient").await;
    app.install_plugin("patient", &patient, ("business_hours_ack", "ack", "1"), &ack_config("Ja hi som"), "activate")
        .await;
    let grant = json!({ "plugin_limits": { "client_queue_ms": 120_000 } });
    let (status, body) = app.call(Method::PATCH, "/api/v1/clients/patient", Some(&app.admin), Some(grant)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
    // Left waiting a minute (a server that was down); messages may wait 30 s for the client's rules.
    store_waiting(dir.path(), "dental", 1, Duration::from_secs(60)).await;
    store_waiting(dir.path(), "patient", 1, Duration::from_secs(60)).await;
    let app = crate::helpers::spawn_in(dir.path(), |_| {}).await;
    app.wait_for_metric("recado_processed_messages_total", 2.0).await;

    let late = decisions_in_order(&app).await;
    assert_eq!(late.len(), 2, "{late:?}");
    let of = |slug: &str| late.iter().find(|(client, _, _)| client == slug).expect("decided").clone();
    let (_, source, _) = of("patient");
    assert_eq!(source, "chain", "the patient client's message was within its two minutes");
    let (_, source, reason) = &of("dental");
    assert_eq!(source, "defaults");
    assert!(reason.starts_with("rules not run: the message waited 60 s for this client's rules"), "{reason}");
    assert_eq!(app.metric("recado_plugin_queue_timeouts_total").await, 1.0);
    let data = app.database().value("SELECT data FROM events WHERE kind = 'rules.queue_timeout'", &[]).await;
    let data: Value = serde_json::from_str(data.text()).expect("json");
    assert_eq!(data["limit_ms"], 30_000);
    assert!(data["waited_ms"].as_u64().expect("ms") >= 60_000, "{data}");

    // A message that did not wait is decided by the rules as usual.
    let (message_id, _) = app.ingest_processed("dental", &token, "now", "+34611", "Bon dia").await;
    let decisions = app.decisions_of(&message_id).await;
    assert!(decisions.iter().any(|d| d["source"] == "chain"), "{decisions:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_component_built_against_contract_0_1_0_still_uploads_activates_and_decides() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    // The acknowledgement example as it was built against recado:plugin@0.1.0, before 0.2.0 existed.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins/business-hours-ack-0.1.0.wasm");
    let wasm = std::fs::read(path).expect("the 0.1.0 component");
    let (status, plugin) = app.upload_plugin("dental", &token, wasm, "ack", "0.1", &ack_config("Bon dia!")).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    assert_eq!(plugin["contract"], "recado:plugin@0.1.0", "the version it was built against is recorded");
    let (_, list) = app.get("/api/v1/clients/dental/plugins", &token).await;
    assert_eq!(list["plugins"][0]["contract"], "recado:plugin@0.1.0");
    let (status, newer) =
        app.upload_plugin("dental", &token, component("business_hours_ack"), "ack", "0.2", &ack_config("Hola")).await;
    assert_eq!((status, &newer["contract"]), (StatusCode::CREATED, &json!("recado:plugin@0.2.0")));
    let id = plugin["id"].as_str().expect("id");
    let (status, body) = app.post(&format!("/api/v1/clients/dental/plugins/{id}/activate"), &token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (message_id, conversation) = app.ingest_processed("dental", &token, "m1", "+34600", "Hola").await;
    assert_eq!(acks(&conversation), ["Bon dia!"]);
    let decisions = app.decisions_of(&message_id).await;
    assert!(decisions.iter().any(|d| d["source"] == "chain"), "{decisions:?}");
}

#[tokio::test]
async fn an_upload_near_a_limit_is_accepted_with_warnings_that_say_which() {
    // Limits tight enough that the examples come near them: 2 MiB of memory (they use about 1.1), 2 M
    // instructions (a short message takes well under 0.2 M, the longest allowed several M), 200 KB uploads.
    let app = spawn_app_with(|settings| {
        settings.plugins.memory_bytes = 2 << 20;
        settings.plugins.fuel = 2_000_000;
        settings.plugins.max_component_bytes = 200_000;
    })
    .await;
    let token = app.create_client("dental").await;
    let config =
        std::fs::read_to_string(crate::helpers::example_plugins().join("keyword-router/config.json")).expect("config");
    let (status, plugin) =
        app.upload_plugin("dental", &token, component("keyword_router"), "router", "1", &config).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let warnings: Vec<&str> =
        plugin["warnings"].as_array().expect("warnings").iter().map(|w| w.as_str().expect("text")).collect();
    assert!(
        warnings[0].starts_with("the component is ")
            && warnings[0].ends_with("KiB, more than half of the 195 KiB allowed"),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|w| w.starts_with("on a message, used more than half of its memory")), "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w
                .starts_with("on the longest message allowed (16384 characters) it ran out of its instruction budget")),
        "{warnings:?}"
    );
    // Warnings belong to the upload's answer; the version as listed has none.
    let (_, shown) =
        app.get(&format!("/api/v1/clients/dental/plugins/{}", plugin["id"].as_str().expect("id")), &token).await;
    assert!(shown.get("warnings").is_none(), "{shown}");

    // Within the default limits, the same upload has nothing to warn about.
    let roomy = spawn_app().await;
    let token = roomy.create_client("dental").await;
    let (status, plugin) =
        roomy.upload_plugin("dental", &token, component("keyword_router"), "router", "1", &config).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    assert!(plugin.get("warnings").is_none(), "{plugin}");
}

#[tokio::test]
async fn limits_an_admin_grants_one_client_apply_to_that_clients_calls_and_uploads_alone() {
    let app = spawn_app().await;
    let dental = app.create_client("dental").await;
    let other = app.create_client("other").await;
    let patch = |slug: &'static str, token: String, limits: Value| {
        let app = &app;
        async move {
            let body = json!({ "plugin_limits": limits });
            app.call(Method::PATCH, &format!("/api/v1/clients/{slug}"), Some(&token), Some(body)).await
        }
    };
    // 40 MiB held at once: more than the 32 MiB a call gets by default, so the upload's trial call fails.
    let big = r#"{"behaviour": "allocate", "mib": 40}"#;
    let (status, body) = app.upload_plugin("dental", &dental, component("hostile"), "big", "1", big).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("smoke_call_failed")));
    assert!(body["error"]["message"].as_str().expect("message").contains("more memory than allowed"), "{body}");

    // A client cannot grant itself more; an admin cannot grant more than the server allows one client.
    let (status, body) = patch("dental", dental.clone(), json!({ "memory_bytes": 64 << 20 })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = patch("dental", app.admin.clone(), json!({ "memory_bytes": 1_u64 << 30 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("plugin_limits.memory_bytes: must be at most 134217728"), "{message}");
    let (status, body) = patch("dental", app.admin.clone(), json!({ "fuel": 10 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) =
        patch("dental", app.admin.clone(), json!({ "memory_bytes": 64 << 20, "deadline_ms": 1_000 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plugin_limits"], json!({ "memory_bytes": 64 << 20, "deadline_ms": 1_000 }));
    // The client reads what it was granted, and the limits its plugins run under.
    let (status, card) = app.get("/api/v1/clients/dental", &dental).await;
    assert_eq!((status, &card["plugin_limits"]["memory_bytes"]), (StatusCode::OK, &json!(64 << 20)));
    let (_, list) = app.get("/api/v1/clients/dental/plugins", &dental).await;
    assert_eq!(
        list["limits"],
        json!({ "memory_bytes": 64 << 20, "fuel": 250_000_000, "deadline_ms": 1_000, "max_component_bytes": 48 << 20,
                "client_slice_ms": 250, "client_queue_ms": 30_000 })
    );
    let (_, list) = app.get("/api/v1/clients/other/plugins", &other).await;
    assert_eq!(
        (&list["limits"]["memory_bytes"], &list["limits"]["deadline_ms"]),
        (&json!(32 << 20), &json!(crate::helpers::TEST_DEADLINE_MS))
    );

    // Granted, the same component is accepted and decides the client's messages.
    app.install_plugin("dental", &dental, ("hostile", "big", "2"), big, "activate").await;
    let (message_id, _) = app.ingest_processed("dental", &dental, "m1", "+34600", "Hola").await;
    let decisions = app.decisions_of(&message_id).await;
    let chain = decisions.iter().find(|d| d["source"] == "chain").expect("decided by its rules");
    assert!(chain["decision"]["reason"].as_str().expect("reason").contains("allocated 40 MiB"), "{decisions:?}");

    // Another client keeps the defaults.
    let (status, body) = app.upload_plugin("other", &other, component("hostile"), "big", "1", big).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("smoke_call_failed")));

    // A smaller upload limit for one client: its uploads past it get 413, the other client's do not.
    let (status, body) = patch("other", app.admin.clone(), json!({ "max_component_bytes": 100_000 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let calm = r#"{"behaviour": "allocate", "mib": 1}"#;
    let (status, body) = app.upload_plugin("other", &other, component("hostile"), "calm", "1", calm).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("100000"), "{body}");
    let (status, body) = app.upload_plugin("dental", &dental, component("hostile"), "calm", "1", calm).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // `null` takes a grant back: the defaults apply again.
    let (status, body) = app
        .call(Method::PATCH, "/api/v1/clients/other", Some(&app.admin), Some(json!({ "plugin_limits": null })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("plugin_limits").is_none(), "{body}");
    let (status, body) = app.upload_plugin("other", &other, component("hostile"), "calm", "1", calm).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}
