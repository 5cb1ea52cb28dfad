//! The inbox: listing with filters and cursors, one thread, replies, close, reopen, assign.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_inbox_pages_by_cursor_newest_first_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let (_, body) = app.ingest("shop", &token, &format!("m{n}"), &format!("+7900{n}"), "Здравствуйте").await;
        ids.push(body["conversation_id"].as_str().expect("id").to_owned());
    }
    // Activity moves a conversation to the front (that is the point of the order), so page over a settled
    // inbox: wait for each conversation's automatic acknowledgement.
    for id in &ids {
        app.wait_for_conversation(id, "the acknowledgement", |c| c["message_count"] == 2).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/conversations?limit=3&cursor={cursor}"),
            None => "/api/v1/conversations?limit=3".to_owned(),
        };
        let (status, page) = app.get(&path, &app.assistant).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for conversation in page["conversations"].as_array().expect("list") {
            seen.push((
                conversation["last_activity_at"].as_str().expect("time").to_owned(),
                conversation["id"].as_str().expect("id").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(), 7, "no repeats");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest activity first");

    let (status, error) = app.get("/api/v1/conversations?cursor=garbage", &app.assistant).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "invalid_cursor");
}

#[tokio::test]
async fn filters_select_by_client_status_assignee_and_queue() {
    let app = spawn_app().await;
    let a = app.create_client("client-a").await;
    let b = app.create_client("client-b").await;
    let (_, one) = app.ingest("client-a", &a, "1", "+1", "hi").await;
    app.ingest("client-a", &a, "2", "+2", "hi").await;
    app.ingest("client-b", &b, "1", "+1", "hi").await;
    let id = one["conversation_id"].as_str().expect("id");
    let ana = app.person("Ana@example.com", "assistant", None).await;
    let berta = app.person("berta@example.com", "assistant", None).await;
    app.assign("client-a", &["ana@example.com"]).await;
    app.assign("client-b", &["berta@example.com"]).await;
    let path = format!("/api/v1/conversations/{id}/assign");
    let assign = |assignee: &str| {
        app.post(&path, &app.assistant, json!({ "assignee": assignee, "queue": "urgent", "priority": "high" }))
    };
    // Only a person who may see the client can take its conversation.
    for (nobody, why) in [
        ("Ana", "not an address"),
        ("carla@example.com", "no account"),
        (berta.email.as_str(), "serves another client"),
    ] {
        let (status, error) = assign(nobody).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {error}");
    }
    let (status, assigned) = assign("ANA@example.com").await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    assert_eq!(
        (assigned["assignee"].as_str(), assigned["queue"].as_str(), assigned["priority"].as_str()),
        (Some("Ana@example.com"), Some("urgent"), Some("high")),
        "the address as the account has it"
    );

    let count = |body: &serde_json::Value| body["conversations"].as_array().expect("list").len();
    assert_eq!(count(&app.get("/api/v1/conversations?client=client-a", &app.admin).await.1), 2);
    assert_eq!(count(&app.get("/api/v1/conversations?assignee=Ana@example.com", &app.admin).await.1), 1);
    assert_eq!(count(&app.get("/api/v1/conversations?assignee=me", &ana.token).await.1), 1, "assigned to me");
    assert_eq!(count(&app.get("/api/v1/conversations?assignee=me", &berta.token).await.1), 0);
    assert_eq!(count(&app.get("/api/v1/conversations?assignee=none", &app.admin).await.1), 2, "nobody's");
    assert_eq!(count(&app.get("/api/v1/conversations?assignee=none", &ana.token).await.1), 1, "of Ana's clients");
    assert_eq!(count(&app.get("/api/v1/conversations?queue=urgent", &app.admin).await.1), 1);
    app.post(&format!("/api/v1/conversations/{id}/close"), &app.assistant, json!({})).await;
    assert_eq!(count(&app.get("/api/v1/conversations?status=closed", &app.admin).await.1), 1);
    assert_eq!(count(&app.get("/api/v1/conversations?status=open", &app.admin).await.1), 2);
    let (status, error) = app.get("/api/v1/conversations?status=sleeping", &app.admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, _) = app.get("/api/v1/conversations?sort=name", &app.admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown query parameters are refused");

    // Clearing the assignee with null.
    let (_, cleared) =
        app.post(&format!("/api/v1/conversations/{id}/assign"), &app.assistant, json!({ "assignee": null })).await;
    assert!(cleared["assignee"].is_null());
    assert_eq!(cleared["queue"], "urgent", "fields not named are kept");
}

#[tokio::test]
async fn a_thread_lists_messages_oldest_first_and_honours_the_limit() {
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let mut conversation_id = String::new();
    for n in 0..5 {
        let (_, body) = app.ingest("shop", &token, &format!("m{n}"), "+7900", &format!("message {n}")).await;
        conversation_id = body["conversation_id"].as_str().expect("id").to_owned();
    }
    let (status, thread) = app.get(&format!("/api/v1/conversations/{conversation_id}?limit=2"), &app.assistant).await;
    assert_eq!(status, StatusCode::OK);
    let texts: Vec<_> = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(thread["has_more"], true);
    assert_eq!(texts.len(), 2);
    let (_, full) = app.get(&format!("/api/v1/conversations/{conversation_id}?limit=1000000"), &app.assistant).await;
    let customer: Vec<_> = full["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["kind"] == "customer")
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(customer, ["message 0", "message 1", "message 2", "message 3", "message 4"]);
    assert_eq!(full["has_more"], false);

    let (status, error) = app.get("/api/v1/conversations/cnv_nope", &app.assistant).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_reply_is_stored_queued_and_sets_the_first_human_reply_time() {
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let (_, inbound) = app.ingest("shop", &token, "m1", "+7900", "Где мой заказ 712345?").await;
    let id = inbound["conversation_id"].as_str().expect("id");

    let (status, reply) = app
        .post(
            &format!("/api/v1/conversations/{id}/replies"),
            &app.assistant,
            json!({ "text": "Заказ 712345 передан курьеру." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["message"]["kind"], "assistant");
    assert_eq!(reply["message"]["author"], "Ana");
    assert_eq!(reply["message"]["state"], "queued", "{reply}");
    let delivery = &reply["message"]["delivery"];
    assert!(delivery["outbox_id"].as_str().is_some_and(|id| id.starts_with("obx_")), "{reply}");
    // No channel is configured for this client: the delivery is waiting or being retried, never sent.
    assert!(["pending", "sending"].contains(&delivery["state"].as_str().expect("a state")), "{reply}");
    let conversation = app.conversation(id).await;
    assert_eq!(conversation["first_human_reply_at"], reply["message"]["created_at"], "{conversation:#}");
    let reply_id = reply["message"]["id"].as_str().expect("id");
    assert!(
        conversation["messages"].as_array().expect("messages").iter().any(|m| m["id"] == reply_id),
        "the reply is in the thread"
    );

    let (status, error) =
        app.post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "   " })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["error"]["message"].as_str().expect("message").contains("text"), "{error}");
    let (status, _) = app
        .post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "x".repeat(4097) }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn reopening_is_refused_while_the_contact_has_another_open_conversation() {
    let app = spawn_app().await;
    let token = app.create_client("shop").await;
    let (_, first) = app.ingest("shop", &token, "m1", "+7900", "1").await;
    let id = first["conversation_id"].as_str().expect("id");
    let (status, closed) = app.post(&format!("/api/v1/conversations/{id}/close"), &app.assistant, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(closed["status"], "closed");
    assert!(closed["closed_at"].is_string());

    let (status, reopened) = app.post(&format!("/api/v1/conversations/{id}/reopen"), &app.assistant, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reopened["status"], "open");
    app.post(&format!("/api/v1/conversations/{id}/close"), &app.assistant, json!({})).await;
    app.ingest("shop", &token, "m2", "+7900", "2").await; // opens a new conversation
    let (status, error) = app.post(&format!("/api/v1/conversations/{id}/reopen"), &app.assistant, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["code"], "conflict");
}

#[tokio::test]
async fn a_reply_is_stored_with_its_delivery_or_not_at_all() {
    let app = spawn_app().await;
    let token = app.create_client("client-a").await;
    let (_, inbound) = app.ingest("client-a", &token, "m1", "+34600", "Hola").await;
    let id = inbound["conversation_id"].as_str().expect("id").to_owned();
    let database = app.database();
    let assistant_messages =
        || async { database.value("SELECT COUNT(*) FROM messages WHERE kind = 'assistant'", &[]).await.integer() };
    // The outbox refuses every new row, as a full disk or a constraint would at that statement.
    database
        .batch(
            "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
             CREATE TRIGGER refuse_deliveries BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await;
    let (status, body) =
        app.post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "Bon dia" })).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(assistant_messages().await, 0, "the message was not kept without its delivery");

    database.batch("DROP TRIGGER refuse_deliveries", "DROP TRIGGER refuse_deliveries ON outbox").await;
    let (status, body) =
        app.post(&format!("/api/v1/conversations/{id}/replies"), &app.assistant, json!({ "text": "Bon dia" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(assistant_messages().await, 1);
    let queued = database
        .value(
            "SELECT COUNT(*) FROM outbox o JOIN messages m ON m.client_id = o.client_id AND m.id = o.message_id
             WHERE m.kind = 'assistant'",
            &[],
        )
        .await;
    assert_eq!(queued.integer(), 1, "and with it, its delivery");
}
