//! Reports against figures worked out by hand on a small scripted history: a client open Monday to Friday,
//! 09:00 to 17:00 in Madrid, with a one-hour first-response target, and three conversations in the week of
//! Monday 16 November 2026 (Madrid is UTC+1 then):
//!
//! | conversation | customer writes | acknowledged | first reply | wall clock | opening hours | target |
//! |---|---|---|---|---|---|---|
//! | C1 | Mon 16, 10:00 | +5 s | Mon 16, 10:20 by Ana (from a suggestion, edited) | 20 min | 20 min | met |
//! | C2 | Fri 20, 16:30 | +5 s | Mon 23, 09:40 by Bruno | 65 h 10 min | 30 + 40 = 70 min | late |
//! | C3 | Sat 21, 11:00 | +2 min | none; escalated (level 1) Sat 21, 12:00 | | | |
//!
//! The history is made through the API (messages, acknowledgements, replies, feedback, the escalation of an
//! overdue conversation), then moved to those times in the database, as if it had happened then; the server
//! fills in the first-response figures of replied conversations that lack them when it starts.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::database::Cell;
use crate::helpers::{TestApp, profile, spawn_in, spawn_in_at};

/// Milliseconds since the epoch of a UTC time.
fn utc(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().expect("a time").as_millisecond()
}

const MINUTE: i64 = 60_000;

#[tokio::test]
async fn figures_match_those_worked_out_by_hand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_in(dir.path(), |_| {}).await;
    let mut body = profile("Dental");
    body["slug"] = json!("dental");
    body["sla"] = json!({ "first_response_minutes": 60 });
    let weekday = json!(["09:00-17:00"]);
    body["business_hours"] = json!({ "mon": weekday, "tue": weekday, "wed": weekday, "thu": weekday, "fri": weekday });
    let (status, created) = app.post("/api/v1/clients", &app.admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = app.client_token("dental").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    let bruno = app.person("bruno@example.com", "assistant", None).await;
    let owner = app.person("owner@example.com", "client", Some("dental")).await;
    app.assign("dental", &["ana@example.com", "bruno@example.com"]).await;
    let (status, article) = app
        .post(
            "/api/v1/clients/dental/kb/articles",
            &app.admin,
            json!({ "language": "es", "title": "Horario", "body": "De 9 a 17." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{article}");

    let (m1, c1) = app.ingest_processed("dental", &token, "c1", "+34600000001", "¿Horario?").await;
    let (_, c2) = app.ingest_processed("dental", &token, "c2", "+34600000002", "¿Abrís el lunes?").await;
    let (_, c3) = app.ingest_processed("dental", &token, "c3", "+34600000003", "Hola").await;
    let (c1, c2, c3) = (
        c1["id"].as_str().expect("id").to_owned(),
        c2["id"].as_str().expect("id").to_owned(),
        c3["id"].as_str().expect("id").to_owned(),
    );
    let feedback = json!({ "message_id": m1, "shown": [article["id"]], "picked": article["id"], "edited": true });
    let (status, body) = app.post("/api/v1/suggestions/feedback", &ana.token, feedback).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    async fn reply(app: &TestApp, id: &str, token: &str) -> StatusCode {
        app.post(&format!("/api/v1/conversations/{id}/replies"), token, json!({ "text": "Hola" })).await.0
    }
    assert_eq!(reply(&app, &c1, &ana.token).await, StatusCode::CREATED);
    assert_eq!(reply(&app, &c2, &bruno.token).await, StatusCode::CREATED);
    let due = app.conversation(&c3).await["sla"]["due_at"].as_str().expect("due").to_owned();
    app.stop().await;

    // C3 runs out of time: the defaults escalate it.
    let ahead = (utc(&due) + 1_000 - jiff::Timestamp::now().as_millisecond()).max(0);
    let later = recado::domain::Clock::ahead(Duration::from_millis(u64::try_from(ahead).expect("ahead")));
    let app = spawn_in_at(dir.path(), |_| {}, later).await;
    app.wait_for_conversation(&c3, "the escalation", |c| c["escalation_level"] == 1).await;
    app.stop().await;

    // Move the history to the week it is scripted in.
    let db = crate::database::Database::of(dir.path());
    let script = [
        (&c1, utc("2026-11-16T09:00:00Z"), utc("2026-11-16T09:00:05Z"), Some(utc("2026-11-16T09:20:00Z")), "met"),
        (&c2, utc("2026-11-20T15:30:00Z"), utc("2026-11-20T15:30:05Z"), Some(utc("2026-11-23T08:40:00Z")), "met_late"),
        (&c3, utc("2026-11-21T10:00:00Z"), utc("2026-11-21T10:02:00Z"), None, "overdue"),
    ];
    for (id, wrote, acknowledged, replied, state) in &script {
        let (id, wrote, acknowledged, replied, state): (&str, Cell, Cell, Cell, Cell) =
            (id, (*wrote).into(), (*acknowledged).into(), (*replied).into(), (*state).into());
        db.execute(
            "UPDATE messages SET created_at = CASE WHEN direction = 'in' THEN ?2 WHEN kind = 'auto_ack' THEN ?3
                                 WHEN kind = 'assistant' THEN ?4 ELSE created_at END WHERE conversation_id = ?1",
            &[id.into(), wrote.clone(), acknowledged.clone(), replied.clone()],
        )
        .await;
        db.execute(
            "UPDATE conversations SET opened_at = ?2, acknowledged_at = ?3, first_human_reply_at = ?4, sla_state = ?5,
                    first_response_ms = NULL, first_response_open_ms = NULL WHERE id = ?1",
            &[id.into(), wrote, acknowledged, replied, state],
        )
        .await;
    }
    db.execute("UPDATE suggestion_feedback SET at = ?1", &[utc("2026-11-16T09:19:00Z").into()]).await;
    db.execute("UPDATE escalations SET created_at = ?1", &[utc("2026-11-21T11:00:00Z").into()]).await;
    // The counts reports read for whole days followed the messages as they were written, given an author and
    // moved in time.
    let counted = db
        .query(
            // On PostgreSQL a count may be split over several rows (one per connection that added to it).
            "SELECT day, channel, direction, kind, author_id, CAST(SUM(count) AS BIGINT) FROM message_counts
             GROUP BY 1, 2, 3, 4, 5 HAVING SUM(count) > 0 ORDER BY 1, 2, 3, 4, 5",
            &[],
        )
        .await;
    let messages = db
        .query(
            "SELECT created_at / 86400000, channel, direction, kind, COALESCE(author_id, ''), COUNT(*) FROM messages
             GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
            &[],
        )
        .await;
    assert_eq!(counted, messages);
    assert!(counted.iter().any(|row| row[3].text() == "assistant" && row[4].text() == ana.id), "{counted:?}");

    let app = spawn_in(dir.path(), |_| {}).await;
    app.wait_for_metric("recado_worker_steps_total{worker=\"housekeeping\"}", 1.0).await;
    let range = "from=2026-11-16&to=2026-11-24";
    let (status, report) = app.get(&format!("/api/v1/reports/summary?{range}"), &app.admin).await;
    assert_eq!(status, StatusCode::OK, "{report}");

    let total = &report["total"];
    assert_eq!(total["conversations"], 3);
    assert_eq!(total["conversations_by_channel"], json!({ "api": 3 }));
    assert_eq!(total["messages"], json!({ "inbound": 3, "outbound": 5 }), "three acknowledgements, two replies");
    let first = &total["first_response"];
    assert_eq!(first["count"], 2);
    assert_eq!(
        (first["median_ms"].as_i64(), first["p90_ms"].as_i64()),
        (Some(20 * MINUTE), Some((65 * 60 + 10) * MINUTE))
    );
    assert_eq!(
        (first["median_open_ms"].as_i64(), first["p90_open_ms"].as_i64()),
        (Some(20 * MINUTE), Some(70 * MINUTE))
    );
    assert_eq!((first["with_target"].as_u64(), first["within_target"].as_u64()), (Some(2), Some(1)));
    assert_eq!(first["within_target_share"], 0.5);
    assert_eq!(total["acknowledgements"], json!({ "conversations": 3, "within_a_minute": 2, "share": 2.0 / 3.0 }));
    assert_eq!(total["escalations_by_level"], json!({ "1": 1 }));
    assert_eq!(total["suggestions"], json!({ "replies": 2, "from_suggestion": 1, "edited": 1, "share": 0.5 }));
    assert_eq!(report["clients"][0]["client"], "dental");
    assert_eq!(report["clients"][0]["first_response"], *first);

    // Per person: Ana's one quick answer from a suggestion; Bruno's late one.
    let person = |id: &str| {
        report["assistants"]
            .as_array()
            .expect("assistants")
            .iter()
            .find(|a| a["assistant"] == id)
            .cloned()
            .expect("a person")
    };
    let (ana_figures, bruno_figures) = (person(&ana.id), person(&bruno.id));
    assert_eq!(
        (ana_figures["name"].as_str(), ana_figures["first_response"]["median_ms"].as_i64()),
        (Some("ana"), Some(20 * MINUTE))
    );
    assert_eq!(ana_figures["suggestions"], json!({ "replies": 1, "from_suggestion": 1, "edited": 1, "share": 1.0 }));
    assert_eq!(bruno_figures["first_response"]["median_open_ms"].as_i64(), Some(70 * MINUTE));
    assert_eq!(bruno_figures["first_response"]["within_target"], 0);

    // By day: eight days, each with its own; by week: the reply of Monday 23 falls in the second week.
    let days = report["periods"].as_array().expect("periods");
    assert_eq!(days.len(), 8);
    let day = |n: usize| {
        (
            days[n]["conversations"].as_u64(),
            days[n]["messages"]["inbound"].as_u64(),
            days[n]["messages"]["outbound"].as_u64(),
        )
    };
    assert_eq!(days[0]["start"], "2026-11-16T00:00:00.000Z");
    assert_eq!(
        [day(0), day(4), day(5), day(7)],
        [
            (Some(1), Some(1), Some(2)),
            (Some(1), Some(1), Some(1)),
            (Some(1), Some(1), Some(1)),
            (Some(0), Some(0), Some(1))
        ]
    );
    // A range that starts and ends inside days: its ends are counted message by message. From 09:10 on the
    // 16th (after C1's message and acknowledgement, before Ana's reply) to 08:00 on the 23rd (before Bruno's).
    let (status, partial) =
        app.get("/api/v1/reports/summary?from=2026-11-16T09:10:00Z&to=2026-11-23T08:00:00Z", &app.admin).await;
    assert_eq!(status, StatusCode::OK, "{partial}");
    assert_eq!(partial["total"]["conversations"], 2);
    assert_eq!(
        partial["total"]["messages"],
        json!({ "inbound": 2, "outbound": 3 }),
        "Ana's reply, two acknowledgements"
    );
    let partial_days = partial["periods"].as_array().expect("periods");
    assert_eq!(partial_days.len(), 8);
    assert_eq!(partial_days[0]["messages"], json!({ "inbound": 0, "outbound": 1 }));
    assert_eq!(partial_days[7]["messages"], json!({ "inbound": 0, "outbound": 0 }));
    assert_eq!(partial["total"]["suggestions"]["replies"], 1);

    let (_, weekly) = app.get(&format!("/api/v1/reports/summary?{range}&group_by=week"), &app.admin).await;
    let weeks = weekly["periods"].as_array().expect("periods");
    assert_eq!(weeks.len(), 2);
    assert_eq!(
        (weeks[0]["messages"]["outbound"].as_u64(), weeks[1]["messages"]["outbound"].as_u64()),
        (Some(4), Some(1))
    );

    // Each sees their own: the client's person the client's figures; Ana only her own work.
    let (_, theirs) = app.get(&format!("/api/v1/reports/summary?{range}"), &owner.token).await;
    assert_eq!(theirs["total"], report["total"]);
    let (_, own) = app.get(&format!("/api/v1/reports/summary?{range}"), &ana.token).await;
    assert_eq!(
        (own["total"]["conversations"].as_u64(), own["total"]["first_response"]["count"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(own["total"]["suggestions"]["replies"], 1);
    let (status, _) =
        app.get(&format!("/api/v1/reports/summary?{range}&assistant=bruno@example.com"), &ana.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not another assistant's");
    let (status, _) = app.get(&format!("/api/v1/reports/summary?{range}&client=elsewhere"), &owner.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/reports/summary?from=2026-11-24&to=2026-11-16", &app.admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, error) = app.get(&format!("/api/v1/reports/summary?{range}&format=xml"), &app.admin).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")),
        "{error}"
    );

    // CSV: by Accept or ?format=csv, the same figures.
    let csv = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/csv"));
        response.text().await.expect("text")
    };
    let url = format!("{}/api/v1/reports/summary?{range}", app.base);
    let by_accept = csv(app.http.request(Method::GET, &url).bearer_auth(&app.admin).header("accept", "text/csv")).await;
    let by_format = csv(app.http.get(format!("{url}&format=csv")).bearer_auth(&app.admin)).await;
    assert_eq!(by_accept, by_format);
    let lines: Vec<&str> = by_accept.lines().collect();
    assert!(lines[0].starts_with("slice,key,name,conversations,messages_in,messages_out,first_responses,"));
    assert_eq!(lines[1], "total,,,3,3,5,2,1200.0,234600.0,1200.0,4200.0,0.5000,0.6667,1,2,1,1,0.5000");
    assert_eq!(lines.len(), 1 + 1 + 1 + 2 + 8, "total, the client, two people, eight days");
    let _: Value = report;
}
