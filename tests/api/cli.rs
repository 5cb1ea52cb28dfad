//! The `recado` command itself: tokens with the server running or not, configuration errors, the demo.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::Binary;

fn recado(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_recado")).args(args).arg("--data-dir").arg(data_dir).output().expect("recado runs")
}

#[tokio::test]
async fn tokens_are_created_and_revoked_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, base) = Binary::serve(dir.path()).await;

    let output = recado(&["token", "create", "--role", "admin", "--name", "ops"], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the token on stdout: {stdout:?}");
    assert!(token.starts_with("rcd_"), "{token}");

    let http = reqwest::Client::new();
    let status = http.get(format!("{base}/api/v1/clients")).bearer_auth(token).send().await.expect("sent").status();
    assert_eq!(status, StatusCode::OK);

    let output = recado(&["token", "revoke", token], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = http.get(format!("{base}/api/v1/clients")).bearer_auth(token).send().await.expect("sent").status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revocation takes effect at once");
    server.signal(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn token_creation_refuses_bad_roles_and_unbound_client_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = recado(&["token", "create", "--role", "boss"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--role"), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());

    let output = recado(&["token", "create", "--role", "client"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("a client token must name its client"));

    let output = recado(&["token", "create", "--role", "client", "--client", "nobody"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("client not found"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_invalid_setting_stops_the_server_with_the_key_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RECADO__HTTP__REQUEST_TIMEOUT_MS", "soon")
        .output()
        .expect("recado runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(stderr.contains("http.request_timeout_ms"), "{stderr}");

    let config = dir.path().join("recado.toml");
    std::fs::write(&config, "[outbox]\nmax_atempts = 3\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("recado runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("max_atempts"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_demo_creates_the_demo_clients_and_prints_working_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/kb");
    let mut demo = Binary::start(&["demo", "--listen", "127.0.0.1:0", "--kb", kb], dir.path());
    let mut lines = Vec::new();
    while lines.len() < 5 {
        lines.push(demo.line().await);
    }
    let value = |prefix: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"))
    };
    let base = value("listening on");
    let assistant = value("assistant token:");
    let clients = value("demo clients:");
    assert_eq!(clients.split(", ").count(), 5, "{clients}");

    let body: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/clients"))
        .bearer_auth(&assistant)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let names: Vec<_> = body["clients"]
        .as_array()
        .expect("list")
        .iter()
        .map(|client| client["slug"].as_str().expect("slug").to_owned())
        .collect();
    assert_eq!(names.join(", "), clients);
    assert!(
        body["clients"]
            .as_array()
            .expect("list")
            .iter()
            .any(|client| client["languages"] == serde_json::json!(["ca", "es"]))
    );
    demo.signal(nix::sys::signal::Signal::SIGTERM);
}
