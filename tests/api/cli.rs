//! The `recado` command itself: tokens with the server running or not, configuration errors, the demo.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Binary, printed};

/// What follows `prefix` on the line of `lines` that starts with it (the demo's banner).
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
    let value = |prefix: &str| printed(&lines, prefix);
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

    // The people it prints can sign in, and each sees what the banner says.
    while !lines.iter().any(|line| line.starts_with("  owner@")) {
        lines.push(demo.line().await);
    }
    let start = lines.iter().position(|line| line.starts_with("sign in")).expect("the people");
    let people: Vec<Vec<String>> =
        lines[start + 1..].iter().map(|line| line.split_whitespace().map(str::to_owned).collect()).collect();
    assert_eq!(people.len(), 4, "an admin, two assistants, a client's person: {people:?}");
    let http = reqwest::Client::new();
    for person in &people {
        let (email, password, role) = (&person[0], &person[1], person[2].trim_end_matches(':'));
        let response = http
            .post(format!("{base}/api/v1/session"))
            .header("sec-fetch-site", "same-origin")
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED, "{email}");
        let me: Value = response.json().await.expect("json");
        assert_eq!(me["role"], role, "{me}");
        let sees: Vec<&str> =
            me["clients"].as_array().expect("clients").iter().filter_map(|c| c["slug"].as_str()).collect();
        match role {
            "admin" => assert_eq!(sees.len(), 5),
            _ => assert_eq!(sees.join(", "), person[3..].join(" "), "{email} sees what the banner says"),
        }
    }
    demo.signal(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn kb_import_is_idempotent_and_export_round_trips_the_files() {
    let data = tempfile::tempdir().expect("temp dir");
    let kb = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    let output = recado(&["kb", "import", kb.to_str().expect("utf-8")], data.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("dental-gracia: 24 created, 0 updated, 0 unchanged (new client)"), "{summary}");
    assert!(summary.contains("total: 5 clients, 106 created"), "{summary}");

    let again = recado(&["kb", "import", kb.to_str().expect("utf-8")], data.path());
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("total: 5 clients, 0 created, 0 updated, 106 unchanged"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    let out = tempfile::tempdir().expect("temp dir");
    let export = recado(&["kb", "export", out.path().to_str().expect("utf-8 path")], data.path());
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let mut compared = 0;
    for client in std::fs::read_dir(&kb).expect("kb").map(|entry| entry.expect("entry").path()) {
        let slug = client.file_name().expect("name").to_owned();
        for article in
            std::fs::read_dir(client.join("articles")).expect("articles").map(|entry| entry.expect("entry").path())
        {
            let exported = out.path().join(&slug).join("articles").join(article.file_name().expect("name"));
            assert_eq!(
                std::fs::read(&article).expect("source"),
                std::fs::read(&exported).expect("exported"),
                "{}",
                article.display()
            );
            compared += 1;
        }
        let read = |path: std::path::PathBuf| -> recado::domain::ClientProfile {
            toml::from_str(&std::fs::read_to_string(path).expect("readable")).expect("a profile")
        };
        let (source, exported) = (read(client.join("client.toml")), read(out.path().join(&slug).join("client.toml")));
        assert_eq!(
            source, exported,
            "client.toml of {slug:?} round-trips by value (comments and defaults' spelling are not kept)"
        );
    }
    assert_eq!(compared, 106);
}

#[test]
fn a_broken_file_stops_the_import_with_its_location_and_writes_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let tree = tempfile::tempdir().expect("temp dir");
    let articles = tree.path().join("bakery/articles");
    std::fs::create_dir_all(&articles).expect("mkdir");
    std::fs::write(
        tree.path().join("bakery/client.toml"),
        "name = \"Bakery\"\ntimezone = \"Europe/Rome\"\nlanguages = [\"it\"]\n",
    )
    .expect("write");
    std::fs::write(articles.join("good.md"), "+++\nlanguage = \"it\"\ntitle = \"Orari\"\n+++\nApriamo alle 7.\n")
        .expect("write");
    std::fs::write(
        articles.join("broken.md"),
        "+++\nlanguage = \"it\"\ntitle = \"Prezzi\"\n+++\nCosta {{ prezzo }}.\n",
    )
    .expect("write");

    let output = recado(&["kb", "import", tree.path().to_str().expect("utf-8")], data.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.md:5:") && stderr.contains("prezzo") && stderr.contains("nothing was imported"),
        "{stderr}"
    );

    let export = tempfile::tempdir().expect("temp dir");
    let output = recado(&["kb", "export", export.path().to_str().expect("utf-8")], data.path());
    assert!(output.status.success());
    assert_eq!(std::fs::read_dir(export.path()).expect("dir").count(), 0, "no client and no article was written");
}

#[tokio::test]
async fn reindex_rebuilds_offline_and_refuses_while_the_server_holds_the_index() {
    let data = tempfile::tempdir().expect("temp dir");
    let kb = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    let import = recado(&["kb", "import", kb.to_str().expect("utf-8")], data.path());
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let reindex = recado(&["kb", "reindex"], data.path());
    assert!(reindex.status.success(), "{}", String::from_utf8_lossy(&reindex.stderr));
    assert_eq!(String::from_utf8_lossy(&reindex.stdout).trim(), "indexed 106 articles");

    let (server, _base) = Binary::serve(data.path()).await;
    let refused = recado(&["kb", "reindex"], data.path());
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use by another recado process"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn plugin_test_runs_fixtures_and_fails_on_a_mismatch() {
    let root = crate::helpers::example_plugins();
    let plugin = root.join("target/wasm32-wasip2/release/business_hours_ack.wasm");
    let run = |fixtures: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_recado"))
            .args(["plugin", "test"])
            .arg(&plugin)
            .arg("--config")
            .arg(root.join("business-hours-ack/config.json"))
            .arg("--fixtures")
            .arg(fixtures)
            .output()
            .expect("recado runs")
    };
    let output = run(&root.join("business-hours-ack/fixtures.toml"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    // Its five cases and the generated one, each with what it cost against the limits.
    assert!(stdout.contains("6 passed, 0 failed, 0 near a limit"), "{stdout}");
    assert!(stdout.contains("ok    generated: the longest message allowed"), "{stdout}");
    assert_eq!(stdout.matches("      cost: ").count(), 6, "{stdout}");
    assert!(
        stdout.contains("M of 250 M fuel") && stdout.contains("ms of 50 ms") && stdout.contains("of 32 MiB memory")
    );

    // For CI: one JSON document with the same figures.
    let output = Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(["plugin", "test"])
        .arg(&plugin)
        .arg("--config")
        .arg(root.join("business-hours-ack/config.json"))
        .arg("--fixtures")
        .arg(root.join("business-hours-ack/fixtures.toml"))
        .arg("--json")
        .output()
        .expect("recado runs");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!((report["passed"].as_u64(), report["failed"].as_u64()), (Some(6), Some(0)), "{report}");
    let stress = &report["cases"][5];
    assert!(stress["name"].as_str().expect("name").starts_with("generated:"), "{stress}");
    assert!(stress["fuel"].as_u64().expect("fuel") > report["cases"][0]["fuel"].as_u64().expect("fuel"), "{report}");
    assert!(stress["memory"].as_u64().expect("memory") > 0 && stress["memory_limit"] == 32 << 20, "{stress}");
    assert!(stress["duration_us"].as_u64().expect("us") > 0 && stress["warnings"] == json!([]), "{stress}");

    let dir = tempfile::tempdir().expect("temp dir");
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[defaults]\nlanguages = [\"ca\"]\n\n[[case]]\nname = \"expects the wrong text\"\ntext = \"Bon dia\"\nlanguage = \"ca\"\nexpect = { acknowledge = \"Adéu\" }\n",
    )
    .expect("write");
    let output = run(&wrong);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  expects the wrong text") && stdout.contains("expected Some(\"Adéu\")"), "{stdout}");

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(["plugin", "test"])
        .arg(&garbage)
        .arg("--fixtures")
        .arg(&wrong)
        .output()
        .expect("recado runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a valid WebAssembly component"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn plugin_test_runs_under_the_servers_plugin_limits() {
    let root = crate::helpers::example_plugins();
    let dir = tempfile::tempdir().expect("temp dir");
    let server_config = dir.path().join("recado.toml");
    // The acknowledgement example's fixtures under a server configuration holding `plugins`, and the
    // limits a client was granted.
    let under_granted = |plugins: &str, granted: Option<&str>| {
        std::fs::write(&server_config, format!("[plugins]\n{plugins}\n")).expect("write");
        let mut command = Command::new(env!("CARGO_BIN_EXE_recado"));
        command
            .args(["plugin", "test"])
            .arg(root.join("target/wasm32-wasip2/release/business_hours_ack.wasm"))
            .arg("--config")
            .arg(root.join("business-hours-ack/config.json"))
            .arg("--fixtures")
            .arg(root.join("business-hours-ack/fixtures.toml"))
            .arg("--server-config")
            .arg(&server_config);
        if let Some(granted) = granted {
            command.args(["--limits", granted]);
        }
        let output = command.output().expect("recado runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
    };
    let under = |plugins: &str| under_granted(plugins, None);
    // A tiny instruction budget: the same fixtures fail here as they would there.
    let (code, output) = under("fuel = 1000");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("ran out of its instruction budget"), "{output}");

    // A memory limit the plugin still fits in, but with less than half to spare: every case passes, and
    // each says how close it came.
    let (code, output) = under("memory_bytes = 2097152");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("6 passed, 0 failed, 6 near a limit"), "{output}");
    assert!(output.contains("warning: used more than half of its memory: 1.1 MiB of 2 MiB"), "{output}");

    // Under 1 MiB it does not fit; a client granted 4 MiB by an admin passes, with room to spare.
    let (code, output) = under("memory_bytes = 1048576");
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("tried to use more memory than allowed"), "{output}");
    let (code, output) = under_granted("memory_bytes = 1048576", Some(r#"{"memory_bytes": 4194304}"#));
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("6 passed, 0 failed, 0 near a limit") && output.contains("of 4 MiB memory"), "{output}");
    // A grant past what the server allows one client is refused, naming the ceiling.
    let (code, output) = under_granted("memory_bytes = 1048576", Some(r#"{"memory_bytes": 1073741824}"#));
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("plugin_limits.memory_bytes: must be at most 134217728")
            && output.contains("plugins.per_client_max.memory_bytes"),
        "{output}"
    );
}

#[test]
fn every_example_plugin_passes_its_own_fixtures() {
    let root = crate::helpers::example_plugins();
    // Each file's cases and the generated one.
    for (dir, file, cases) in [
        ("business-hours-ack", "business_hours_ack", 6),
        ("keyword-router", "keyword_router", 8),
        ("escalation", "escalation", 9),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_recado"))
            .args(["plugin", "test"])
            .arg(root.join(format!("target/wasm32-wasip2/release/{file}.wasm")))
            .arg("--config")
            .arg(root.join(dir).join("config.json"))
            .arg("--fixtures")
            .arg(root.join(dir).join("fixtures.toml"))
            .output()
            .expect("recado runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{dir}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains(&format!("{cases} passed, 0 failed")), "{dir}: {stdout}");
    }
}

/// A plugin author's path in each language with a template: `recado plugin new`, the template's own
/// `build.sh` (which installs componentize-py from PyPI or componentize-js from the npm registry, as an author
/// would), and `recado plugin test` on the component it built. A tool that cannot be installed fails the test
/// with the build's own output: it is never skipped.
#[test]
fn every_language_template_builds_and_passes_its_fixtures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixtures = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins-sdk/templates/fixtures.toml"),
    )
    .expect("the templates' fixtures");
    // The file's cases and the generated one (the longest message allowed).
    let cases = fixtures.matches("[[case]]").count() + 1;
    for language in ["rust", "python", "javascript", "c"] {
        let project = dir.path().join(language);
        let output = Command::new(env!("CARGO_BIN_EXE_recado"))
            .args(["plugin", "new", language])
            .arg(&project)
            .output()
            .expect("recado runs");
        assert!(output.status.success(), "{language}: {}", String::from_utf8_lossy(&output.stderr));
        let build = Command::new(project.join("build.sh")).output().expect("build.sh runs");
        assert!(
            build.status.success(),
            "the {language} template did not build (its tool is installed by build.sh):\n{}{}",
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
        let output = Command::new(env!("CARGO_BIN_EXE_recado"))
            .args(["plugin", "test", "plugin.wasm", "--config", "config.json", "--fixtures", "fixtures.toml"])
            .current_dir(&project)
            // This is a debug build of recado, several times slower at running guests than a release one
            // and sharing the machine with the rest of the suite: a longer deadline keeps the check about
            // the decisions (the template's cost is measured in bench/plugins, in a release build).
            .env("RECADO__PLUGINS__DEADLINE_MS", "2000")
            .output()
            .expect("recado runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{language}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains(&format!("{cases} passed, 0 failed")), "{language}: {stdout}");
    }
}

#[test]
fn the_compiler_process_limits_itself_before_reading_its_input() {
    let wasm = std::fs::read(crate::helpers::example_plugins().join("target/wasm32-wasip2/release/escalation.wasm"))
        .expect("component");
    let compile = |memory_bytes: u64| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_recado"))
            .args(["plugin", "compile-worker", "--memory-bytes", &memory_bytes.to_string(), "--cpu-seconds", "60"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts");
        // A starved compiler may die before reading: a broken pipe here is part of what is tested.
        let _ = std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &wasm);
        child.wait_with_output().expect("waits")
    };
    let enough = compile(2 << 30);
    assert!(enough.status.success(), "{}", String::from_utf8_lossy(&enough.stderr));
    assert!(enough.stdout.starts_with(b"\x7fELF"), "wasmtime's precompiled form");
    // 64 MiB of address space is not enough to even start the compiler's threads: it fails, it does not
    // take the machine's memory.
    let starved = compile(64 << 20);
    assert!(!starved.status.success(), "compiled within 64 MiB of address space?");
    assert!(starved.stdout.is_empty());
}

#[tokio::test]
async fn the_demo_can_activate_the_example_chain_and_it_decides_for_the_first_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/kb");
    let plugins = crate::helpers::example_plugins();
    let plugins = plugins.to_str().expect("utf-8 path");
    let mut demo = Binary::start(&["demo", "--listen", "127.0.0.1:0", "--kb", kb, "--plugins", plugins], dir.path());
    let mut lines = Vec::new();
    while !lines.iter().any(|line: &String| line.starts_with("client token")) {
        lines.push(demo.line().await);
    }
    let value = |prefix: &str| printed(&lines, prefix);
    assert_eq!(value("example plugin chain active for"), "dental-gracia");
    let base = value("listening on");
    let token = value("client token (dental-gracia):");
    let http = reqwest::Client::new();
    let list = crate::helpers::get_json(&http, &format!("{base}/api/v1/clients/dental-gracia/plugins"), &token).await;
    let active: Vec<&str> = list["plugins"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|p| p["state"] == "active")
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(active, ["business-hours-ack", "keyword-router", "escalation"], "in chain order");

    let urgent = serde_json::json!({
        "external_id": "d1",
        "from": { "handle": "+34600111222" },
        "text": "És urgent: em podeu enviar la factura?"
    });
    let sent: Value = crate::helpers::json_answer(
        http.post(format!("{base}/api/v1/clients/dental-gracia/messages")).bearer_auth(&token).json(&urgent),
    )
    .await;
    let message_id = sent["message_id"].as_str().expect("id");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let chain = loop {
        let decisions: Value = crate::helpers::json_answer(
            http.get(format!("{base}/api/v1/messages/{message_id}/decisions")).bearer_auth(&token),
        )
        .await;
        if let Some(chain) = decisions["decisions"].as_array().and_then(|d| d.iter().find(|d| d["source"] == "chain")) {
            break chain.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no chain decision: {decisions}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let decision = &chain["decision"];
    assert_eq!(decision["queue"], "billing", "{decision}");
    assert_eq!(decision["assignee"], "marta", "the VIP's assistant");
    assert_eq!(decision["escalate"]["level"], 2, "{decision}");
    assert!(decision["acknowledge"].is_string(), "{decision}");
    demo.signal(nix::sys::signal::Signal::SIGTERM);
}

/// Runs `recado` with `input` on its standard input.
fn recado_with_input(args: &[&str], data_dir: &std::path::Path, input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_recado"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("recado runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("written");
    child.wait_with_output().expect("recado ends")
}

#[test]
fn people_are_created_with_argon2id_hashes_and_their_passwords_set_and_their_accounts_disabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let hash_of = |email: &str| -> (String, bool) {
        rusqlite::Connection::open(dir.path().join("recado.db"))
            .expect("open")
            .query_row("SELECT password_hash, disabled FROM people WHERE email_key = ?1", [email], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("the person's row")
    };

    // Without --password-stdin, a password is generated and printed alone.
    let output =
        recado(&["person", "create", "--email", "Ana@Example.com", "--name", "Ana", "--role", "assistant"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let generated = generated.trim_end_matches('\n');
    assert_eq!(generated.lines().count(), 1);
    assert_eq!(generated.len(), 24, "{generated:?}");
    let (hash, disabled) = hash_of("ana@example.com");
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(recado::people::verify_password(generated, &hash));
    assert!(!disabled);

    // One account per address, whatever its case.
    let output =
        recado(&["person", "create", "--email", "ana@example.com", "--name", "Ana B", "--role", "admin"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("already has an account"), "{}", stderr(&output));
    // A client person needs a client; a short chosen password is refused before anything is written.
    let output =
        recado(&["person", "create", "--email", "c@example.com", "--name", "C", "--role", "client"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let args =
        ["person", "create", "--email", "marta@example.com", "--name", "Marta", "--role", "admin", "--password-stdin"];
    let output = recado_with_input(&args, dir.path(), "short\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("password"), "{}", stderr(&output));

    // A chosen password, read from standard input, is neither printed nor stored.
    let passphrase = "la porta del mar és oberta";
    let output = recado_with_input(&args, dir.path(), &format!("{passphrase}\n"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "nothing on stdout when the password was given");
    let (hash, _) = hash_of("marta@example.com");
    assert!(recado::people::verify_password(passphrase, &hash) && !hash.contains("porta"));

    let changed = "un altre passatge prou llarg";
    let output = recado_with_input(
        &["person", "set-password", "--email", "MARTA@example.com", "--password-stdin"],
        dir.path(),
        &format!("{changed}\n"),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let (hash, _) = hash_of("marta@example.com");
    assert!(recado::people::verify_password(changed, &hash) && !recado::people::verify_password(passphrase, &hash));

    // A token that acts as a person; --person and --role do not mix.
    let output = recado(&["token", "create", "--person", "MARTA@example.com", "--name", "laptop"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let token = String::from_utf8(output.stdout).expect("utf-8").trim_end().to_owned();
    let owner: String = rusqlite::Connection::open(dir.path().join("recado.db"))
        .expect("open")
        .query_row(
            "SELECT p.email FROM tokens t JOIN people p ON p.id = t.person_id WHERE t.name = 'laptop'",
            [],
            |row| row.get(0),
        )
        .expect("the token belongs to Marta");
    assert_eq!(owner, "marta@example.com");
    assert!(token.starts_with("rcd_"));
    let output = recado(&["token", "create", "--person", "marta@example.com", "--role", "admin"], dir.path());
    assert!(!output.status.success(), "--person with --role is refused");
    let output = recado(&["token", "create", "--person", "nobody@example.com"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    let output = recado(&["person", "disable", "--email", "ana@example.com"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(hash_of("ana@example.com").1, "disabled");
    let output = recado(&["person", "disable", "--email", "nobody@example.com"], dir.path());
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn assistants_are_assigned_and_reports_printed_from_the_command_line_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, base) = Binary::serve(dir.path()).await;
    let stderr = |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let output = recado(&["token", "create", "--role", "admin", "--name", "ops"], dir.path());
    let admin = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    let http = reqwest::Client::new();
    for slug in ["dental", "bakery"] {
        let mut body = crate::helpers::profile(slug);
        body["slug"] = Value::from(slug);
        let response = http.post(format!("{base}/api/v1/clients")).bearer_auth(&admin).json(&body).send().await;
        assert_eq!(response.expect("sent").status(), StatusCode::CREATED);
    }
    let output =
        recado(&["person", "create", "--email", "ana@example.com", "--name", "Ana", "--role", "assistant"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let output = recado(&["token", "create", "--person", "ana@example.com", "--name", "laptop"], dir.path());
    let ana = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    let served = || async {
        let me: Value = crate::helpers::json_answer(http.get(format!("{base}/api/v1/me")).bearer_auth(&ana)).await;
        me["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .map(|c| c["slug"].as_str().expect("slug").to_owned())
            .collect::<Vec<_>>()
    };
    assert!(served().await.is_empty());

    let output = recado(
        &["person", "assign", "--email", "ANA@example.com", "--client", "dental", "--client", "bakery"],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let mut now_served = served().await;
    now_served.sort();
    assert_eq!(now_served, ["bakery", "dental"], "the running server sees the assignment at once");
    let output = recado(&["person", "assign", "--email", "ana@example.com", "--client", "dental"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(served().await, ["dental"]);
    let output = recado(&["person", "assign", "--email", "ana@example.com", "--client", "nowhere"], dir.path());
    assert_eq!(output.status.code(), Some(2), "an unknown client");
    assert_eq!(served().await, ["dental"], "nothing changed");

    // Some work to report on: a customer message answered by Ana.
    let output = recado(&["token", "create", "--role", "client", "--client", "dental"], dir.path());
    let dental = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    let message = serde_json::json!({ "external_id": "m1", "from": { "handle": "+34600000001" }, "text": "Hola" });
    let ingested: Value = crate::helpers::json_answer(
        http.post(format!("{base}/api/v1/clients/dental/messages")).bearer_auth(&dental).json(&message),
    )
    .await;
    let conversation = ingested["conversation_id"].as_str().expect("conversation");
    let response = http
        .post(format!("{base}/api/v1/conversations/{conversation}/replies"))
        .bearer_auth(&ana)
        .json(&serde_json::json!({ "text": "Bon dia" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED);

    // The same report from the command line as from the API, for a fixed range.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let (from, tomorrow) =
        (today.saturating_sub(jiff::Span::new().days(30)).to_string(), today.tomorrow().expect("a date").to_string());
    let range = [("from", from.as_str()), ("to", tomorrow.as_str())];
    let output = recado(&["report", "--from", &from, "--to", &tomorrow], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let answered: Value = crate::helpers::json_answer(
        http.get(format!("{base}/api/v1/reports/summary")).query(&range).bearer_auth(&admin),
    )
    .await;
    assert_eq!(printed, answered);
    assert_eq!(printed["total"]["conversations"], 1);
    assert_eq!(printed["total"]["first_response"]["count"], 1);
    let output = recado(
        &[
            "report",
            "--from",
            "2026-01-01",
            "--to",
            &tomorrow,
            "--assistant",
            "ana@example.com",
            "--csv",
            "--group-by",
            "week",
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = String::from_utf8(output.stdout).expect("utf-8");
    assert!(csv.starts_with("slice,key,name,conversations,"), "{csv}");
    assert!(csv.lines().any(|line| line.starts_with("assistant,prs_") && line.contains(",Ana,")), "{csv}");
    let output = recado(&["report", "--from", "2026-12-01", "--to", "2026-11-01"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--to"), "{}", stderr(&output));
    server.signal(nix::sys::signal::Signal::SIGTERM);
}

#[tokio::test]
async fn the_demo_plays_customers_writing_to_every_client_and_acknowledges_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/kb");
    let args = ["demo", "--listen", "127.0.0.1:0", "--kb", kb, "--play", "--play-interval-ms", "50"];
    let mut demo = Binary::start(&args, dir.path());
    let mut lines = Vec::new();
    while !lines.iter().any(|line: &String| line.starts_with("played")) {
        lines.push(demo.line().await);
    }
    let value = |prefix: &str| printed(&lines, prefix);
    let base = value("listening on");
    let admin = value("admin token:");
    let playing = value("playing");
    let count: usize = playing.split(' ').next().expect("a count").parse().expect("a number");
    assert!(count >= 20, "{playing}");
    assert_eq!(value("played"), format!("{count} customer messages"), "every message was acknowledged");

    // Each message is a new customer's conversation, and each is acknowledged through the (simulated)
    // provider where the client's defaults say so (Northbridge's do not).
    let http = reqwest::Client::new();
    let counter = |metrics: &str, series: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut expected = None;
    loop {
        let metrics = http.get(format!("{base}/metrics")).send().await.expect("sent").text().await.expect("text");
        if expected.is_none() && counter(&metrics, "recado_processed_messages_total") >= count as f64 {
            let list = crate::helpers::get_json(&http, &format!("{base}/api/v1/conversations?limit=200"), &admin).await;
            let conversations = list["conversations"].as_array().expect("list").clone();
            let quiet = conversations.iter().filter(|c| c["client"] == "northbridge-consulting").count();
            expected = Some((conversations, count - quiet));
        }
        let sent = counter(&metrics, "recado_delivery_attempts_total{outcome=\"sent\"}");
        if let Some((_, acknowledgements)) = &expected
            && sent >= *acknowledgements as f64
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{sent} acknowledgements sent of {expected:?}:\n{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (conversations, _) = expected.expect("counted");
    assert_eq!(conversations.len(), count);
    let clients: std::collections::BTreeSet<&str> =
        conversations.iter().map(|c| c["client"].as_str().expect("client")).collect();
    assert_eq!(clients.len(), 5, "every demo client hears from customers: {clients:?}");

    let northbridge = conversations.iter().find(|c| c["client"] == "northbridge-consulting").expect("a customer");
    let thread = crate::helpers::get_json(
        &http,
        &format!("{base}/api/v1/conversations/{}", northbridge["id"].as_str().expect("id")),
        &admin,
    )
    .await;
    assert_eq!(thread["messages"].as_array().map(Vec::len), Some(1), "no acknowledgement: {thread}");

    // The played questions come from each client's knowledge base: the first message finds suggestions.
    let lavka = conversations.iter().find(|c| c["client"] == "lavka-moskva").expect("the Moscow shop's customer");
    let thread = crate::helpers::get_json(
        &http,
        &format!("{base}/api/v1/conversations/{}", lavka["id"].as_str().expect("id")),
        &admin,
    )
    .await;
    let first = &thread["messages"][0];
    assert_eq!(thread["messages"][1]["kind"], "auto_ack", "{thread}");
    assert_eq!(thread["messages"][1]["delivery"]["state"], "sent", "{thread}");
    assert!(first["text"].as_str().expect("text").chars().any(|c| ('а'..='я').contains(&c)), "{first}");
    let id = first["id"].as_str().expect("id");
    let suggestions =
        crate::helpers::get_json(&http, &format!("{base}/api/v1/messages/{id}/suggestions"), &admin).await;
    assert!(!suggestions["suggestions"].as_array().expect("list").is_empty(), "{suggestions}");
}
