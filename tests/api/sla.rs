//! Escalations and first-response clocks: urgent messages and overdue conversations escalate, the client's
//! escalation contact is told through the outbox, a human reply stops the clock, and clocks that fell due
//! while the server was down fire after the restart.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{FakeProvider, TestApp, profile, spawn_app, spawn_in, spawn_in_at};
use recado::domain::{ClientSlug, Clock, Role};

const SECRET: &str = "a-webhook-secret-for-tests";

/// A client whose escalation contact is reached through its webhook (the fake provider); returns its token.
async fn client_with_owner(app: &TestApp, slug: &str, provider: &FakeProvider) -> String {
    let mut body = profile("Clínica");
    body["slug"] = json!(slug);
    body["escalation_contact"] = json!({ "name": "Marta (owner)", "channel": "webhook", "handle": "owner-marta" });
    let (status, created) = app.post("/api/v1/clients", &app.admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    app.put_channel(slug, "webhook", json!({ "url": format!("{}/hook", provider.url), "secret": SECRET })).await;
    app.db
        .create_token(Role::Client, Some(ClientSlug::parse(slug).expect("slug")), "owner".into())
        .await
        .expect("token")
        .token
}

/// Owner notices the fake provider received, as JSON.
async fn notices(provider: &FakeProvider, at_least: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> =
            provider.received().iter().map(|r| r.json()).filter(|body| body["kind"] == "owner_notice").collect();
        if found.len() >= at_least || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_urgent_message_escalates_and_the_owner_is_told_through_the_outbox() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(vec![]).await;
    let token = client_with_owner(&app, "dental", &provider).await;
    app.install_plugin("dental", &token, ("escalation", "escalation", "1"), "{}", "activate").await;

    let (_, conversation) = app.ingest_processed("dental", &token, "1", "+34600", "És urgent, em fa molt de mal").await;
    assert_eq!(conversation["escalation_level"], 2, "{conversation:#}");
    assert_eq!(conversation["priority"], "urgent");
    assert!(conversation["tags"].as_array().expect("tags").contains(&json!("urgent")));

    let notices = notices(&provider, 1).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["to"], "owner-marta");
    let text = notices[0]["text"].as_str().expect("text");
    assert!(text.contains("Escalation level 2") && text.contains("urgent"), "{text}");
    // The notice is part of the conversation's history, not sent to the customer, and not its preview.
    let id = conversation["id"].as_str().expect("id");
    let conversation = app.conversation(id).await;
    assert_eq!(conversation["preview"], "És urgent, em fa molt de mal");

    // A calm message escalates nothing more.
    let (_, calm) = app.ingest_processed("dental", &token, "2", "+34611", "Quin horari feu?").await;
    assert_eq!(calm["escalation_level"], 0);
}

#[tokio::test]
async fn a_human_reply_stops_the_first_response_clock_and_an_acknowledgement_does_not() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let (_, conversation) = app.ingest_processed("dental", &token, "1", "+34600", "Hola").await;
    assert!(conversation["messages"].as_array().expect("m").iter().any(|m| m["kind"] == "auto_ack"));
    assert_eq!(conversation["sla"]["state"], "running", "{conversation:#}");
    let started = conversation["sla"]["started_at"].as_str().expect("started").parse::<jiff::Timestamp>().expect("ts");
    let due = conversation["sla"]["due_at"].as_str().expect("due").parse::<jiff::Timestamp>().expect("ts");
    // The test profile has no business hours (always open) and a 15-minute target.
    assert_eq!(due.duration_since(started).as_secs(), 15 * 60);

    let id = conversation["id"].as_str().expect("id");
    let (status, _) =
        app.post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "Hola!" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.conversation(id).await["sla"]["state"], "met");
}

/// A clock as far ahead of the system's as it takes to be a second past `at` (an RFC 3339 time from the API).
fn clock_past(at: &Value) -> Clock {
    let at: jiff::Timestamp = at.as_str().expect("a time").parse().expect("RFC 3339");
    let ahead = at.as_millisecond() + 1_000 - jiff::Timestamp::now().as_millisecond();
    Clock::ahead(Duration::from_millis(u64::try_from(ahead).unwrap_or(0)))
}

#[tokio::test]
async fn clocks_that_fell_due_while_the_server_was_down_fire_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = FakeProvider::start(vec![]).await;
    let app = spawn_in(dir.path(), |_| {}).await;
    let token = client_with_owner(&app, "dental", &provider).await;
    app.install_plugin("dental", &token, ("escalation", "escalation", "1"), r#"{"overdue_level": 2}"#, "activate")
        .await;
    let (message_id, conversation) =
        app.ingest_processed("dental", &token, "1", "+34600", "Bon dia, una consulta").await;
    let id = conversation["id"].as_str().expect("id").to_owned();
    assert_eq!(conversation["sla"]["state"], "running");
    app.stop().await;

    // The warning fell due while stopped: the server comes back with its clock past the warning.
    let app = spawn_in_at(dir.path(), |_| {}, clock_past(&conversation["sla"]["warn_at"])).await;
    app.wait_for_conversation(&id, "the warning", |c| c["sla"]["state"] == "warned").await;
    let events = app
        .db
        .conversation_events(ClientSlug::parse("dental").expect("slug"), conversation_id(&id))
        .await
        .expect("events");
    assert_eq!(events.iter().map(|(kind, _, _)| kind.as_str()).collect::<Vec<_>>(), ["sla.warning"]);
    app.stop().await;

    // Then the target.
    let app = spawn_in_at(dir.path(), |_| {}, clock_past(&conversation["sla"]["due_at"])).await;
    let conversation = app.wait_for_conversation(&id, "overdue", |c| c["sla"]["state"] == "overdue").await;
    assert_eq!(conversation["escalation_level"], 2, "the plugin's on-overdue escalation: {conversation:#}");
    assert!(conversation["tags"].as_array().expect("tags").contains(&json!("overdue")));
    let escalations =
        app.db.escalations(ClientSlug::parse("dental").expect("slug"), conversation_id(&id)).await.expect("esc");
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains("recado_sla_events_total{kind=\"overdue\"} 1"), "{metrics}");
    assert!(metrics.contains("recado_plugin_calls_total{hook=\"on-overdue\",outcome=\"ok\"} 1"), "{metrics}");
    assert_eq!((escalations[0].0.as_str(), escalations[0].1, escalations[0].3), ("overdue", 2, true));
    let notices = notices(&provider, 1).await;
    assert!(notices.iter().any(|n| n["text"].as_str().is_some_and(|t| t.contains("no first reply"))), "{notices:?}");

    let decisions = app.decisions_of(&message_id).await;
    assert!(decisions.iter().any(|d| d["source"] == "chain:on-overdue" && d["applied"] == true), "{decisions:?}");
    assert!(
        decisions.iter().any(|d| d["hook"] == "on-overdue" && d["plugin"]["name"] == "escalation"),
        "{decisions:?}"
    );

    // Once overdue, the clock is done: another restart, a day later, escalates nothing more.
    app.stop().await;
    let app = spawn_in_at(dir.path(), |_| {}, Clock::ahead(Duration::from_secs(24 * 3_600))).await;
    // A whole step of the clock worker has run on the restarted server and found nothing due.
    app.wait_for_metric("recado_worker_steps_total{worker=\"clocks\"}", 1.0).await;
    let escalations =
        app.db.escalations(ClientSlug::parse("dental").expect("slug"), conversation_id(&id)).await.expect("esc");
    assert_eq!(escalations.len(), 1);
}

#[tokio::test]
async fn without_plugins_the_defaults_escalate_an_overdue_conversation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_in(dir.path(), |_| {}).await;
    let token = app.create_client("dental").await;
    let (_, conversation) = app.ingest_processed("dental", &token, "1", "+34600", "Hola").await;
    let id = conversation["id"].as_str().expect("id").to_owned();
    app.stop().await;
    let app = spawn_in_at(dir.path(), |_| {}, clock_past(&conversation["sla"]["due_at"])).await;
    let conversation = app.wait_for_conversation(&id, "overdue", |c| c["sla"]["state"] == "overdue").await;
    assert_eq!(conversation["escalation_level"], 1);
    assert_eq!(conversation["priority"], "high");
}

/// The typed id of a conversation id read from the API.
fn conversation_id(id: &str) -> recado::domain::ConversationId {
    recado::domain::ConversationId::parse(id).expect("a conversation id")
}

#[tokio::test]
async fn a_clock_step_applies_once_even_when_run_twice_taken_over_or_after_the_reply_that_stopped_it() {
    use recado::domain::{Decision, Escalation, Timestamp};
    use recado::store::OverdueDecision;
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    let slug = ClientSlug::parse("dental").expect("slug");
    // Clocks are read as of an hour from now: due for this test, not yet for the server's own worker.
    let later = Timestamp(Timestamp::now().millis() + 3_600_000);
    // Each look claims what is due for a minute, as a node does.
    let lease = std::time::Duration::from_secs(60);
    let claim = |app: &TestApp, at: Timestamp, conversation: String| {
        let db = app.db.clone();
        async move {
            db.claim_due_clocks(at, lease, 100)
                .await
                .expect("clocks")
                .into_iter()
                .find(|clock| clock.conversation_id.as_str() == conversation)
        }
    };
    let due = |app: &TestApp, conversation: String| {
        let claimed = claim(app, later, conversation);
        async move { claimed.await.expect("the conversation's clock is due") }
    };
    let overdue = || OverdueDecision {
        source: recado::domain::DecisionSource::Defaults,
        decision: Decision {
            escalate: Some(Escalation { level: 1, reason: "overdue".into(), notify_owner: false }),
            reason: "test".into(),
            ..Decision::default()
        },
        runs: Vec::new(),
    };
    let breaker = recado::plugins::Breaker { failures: 5 };

    // Run twice: the warning is raised once.
    let (_, first) = app.ingest_processed("dental", &token, "1", "+34601", "Hola").await;
    let id = first["id"].as_str().expect("id").to_owned();
    let claimed = due(&app, id.clone()).await;
    // Claimed, the clock is nobody else's until the claim runs out; then another node takes it over, and the
    // first claim's step applies nothing.
    assert_eq!(claim(&app, later, id.clone()).await, None, "a claimed clock is not claimed twice");
    let clock = claim(&app, later.plus(lease), id.clone()).await.expect("taken over once the claim ran out");
    assert!(!app.db.warn_clock(claimed).await.expect("no-op"), "a claim taken over applies nothing");
    assert!(app.db.warn_clock(clock.clone()).await.expect("warned"), "the first run applies");
    assert!(!app.db.warn_clock(clock).await.expect("no-op"), "the same step again changes nothing");
    let events = app.db.conversation_events(slug.clone(), conversation_id(&id)).await.expect("events");
    assert_eq!(events.iter().map(|(kind, _, _)| kind.as_str()).collect::<Vec<_>>(), ["sla.warning"]);

    // A reply lands between reading the clock and applying its overdue step: the step applies nothing.
    let (_, second) = app.ingest_processed("dental", &token, "2", "+34602", "Hola?").await;
    let id = second["id"].as_str().expect("id").to_owned();
    let clock = due(&app, id.clone()).await;
    let context = app.db.overdue_context(slug.clone(), conversation_id(&id)).await.expect("context");
    let (status, reply) =
        app.post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "Ja hi som" })).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let applied = app.db.apply_overdue(clock, context.last_inbound_id, overdue(), breaker).await.expect("apply");
    assert!(!applied, "a stopped clock is not overdue");
    assert!(app.db.escalations(slug, conversation_id(&id)).await.expect("escalations").is_empty());
    let conversation = app.conversation(&id).await;
    assert_eq!(
        (conversation["sla"]["state"].as_str(), conversation["escalation_level"].as_u64()),
        (Some("met"), Some(0))
    );
}
