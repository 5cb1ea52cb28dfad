//! Reply suggestions over the API: languages, filling in, live edits, feedback, isolation, hostile input.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// Imports the demo knowledge bases and waits until the index has them.
async fn with_demo_kb(app: &TestApp) {
    let kb = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    recado::kb::import_dir(&app.db, &kb, "test", |_, _| {}).await.expect("demo imports");
    // The import wrote to the database only; the indexer finds it by polling. A step may be under way now,
    // begun before the import ended; the one after it began later and indexes every change.
    let series = "recado_worker_steps_total{worker=\"indexing\"}";
    let steps = app.metric(series).await;
    app.wait_for_metric(series, steps + 2.0).await;
}

fn ids(body: &Value) -> Vec<String> {
    body["suggestions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["article_id"].as_str().expect("id").to_owned())
        .collect()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn a_query_gets_the_right_answers_in_its_language_with_the_reason() {
    let app = spawn_app().await;
    with_demo_kb(&app).await;
    let (status, body) = app
        .get(
            &format!("/api/v1/clients/dental-gracia/suggestions?q={}", encode("Hola! A quina hora obriu dissabte?")),
            &app.assistant,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["language"], "ca");
    assert_eq!(body["language_detected"], true);
    let first = &body["suggestions"][0];
    assert_eq!(first["article_id"], "horari", "{body:#}");
    assert!(first["matched_terms"].as_array().expect("terms").iter().any(|t| t == "hora" || t == "horari"), "{first}");
    assert!(first["snippet"].as_str().expect("snippet").contains("<mark>"), "{first}");
    assert!(first["score"].as_f64().expect("score") > 0.0);
    assert!(!first["text"].as_str().expect("text").contains("{{"), "the template is filled in");

    let (_, spanish) = app
        .get(
            &format!("/api/v1/clients/dental-gracia/suggestions?q={}", encode("¿Cuánto cuesta una limpieza de boca?")),
            &app.assistant,
        )
        .await;
    assert_eq!(spanish["language"], "es");
    assert_eq!(ids(&spanish).first().map(String::as_str), Some("precio-limpieza"), "{spanish:#}");
    let (_, forced) = app
        .get(
            &format!("/api/v1/clients/dental-gracia/suggestions?q={}&lang=ca&k=1", encode("preu neteja")),
            &app.assistant,
        )
        .await;
    assert_eq!((forced["language"].as_str(), forced["language_detected"].as_bool()), (Some("ca"), Some(false)));
    assert_eq!(ids(&forced), ["preu-neteja"]);
}

#[tokio::test]
async fn message_suggestions_are_filled_in_for_the_contact_and_fall_back_to_the_conversations_language() {
    let app = spawn_app().await;
    with_demo_kb(&app).await;
    let token = app.client_token("dental-gracia").await;
    let body = json!({ "external_id": "m1", "from": { "handle": "+34600111222", "name": "Núria Vila" }, "text": "Hola, a quina hora obriu els divendres?" });
    let (_, first) = app.post("/api/v1/clients/dental-gracia/messages", &token, body).await;
    let message = first["message_id"].as_str().expect("id").to_owned();
    let conversation = first["conversation_id"].as_str().expect("id").to_owned();
    app.wait_for_conversation(&conversation, "processing", |c| c["messages"][0]["state"] == "processed").await;

    let (status, suggested) = app.get(&format!("/api/v1/messages/{message}/suggestions?k=3"), &app.assistant).await;
    assert_eq!(status, StatusCode::OK, "{suggested}");
    assert_eq!(suggested["language"], "ca");
    assert_eq!(suggested["suggestions"][0]["article_id"], "horari", "{suggested:#}");
    assert!(suggested["suggestions"][0]["text"].as_str().expect("text").starts_with("Hola Núria!"), "{suggested:#}");

    // A message too short to tell takes the conversation's language, not the client's first one.
    let body = json!({ "external_id": "m2", "from": { "handle": "+34600111222" }, "text": "gràcies" });
    let (_, second) = app.post("/api/v1/clients/dental-gracia/messages", &token, body).await;
    let (_, short) = app
        .get(&format!("/api/v1/messages/{}/suggestions", second["message_id"].as_str().expect("id")), &app.assistant)
        .await;
    assert_eq!(
        (short["language"].as_str(), short["language_detected"].as_bool()),
        (Some("ca"), Some(false)),
        "{short}"
    );

    let body = json!({ "external_id": "m3", "from": { "handle": "+34600999888" }, "text": "ok" });
    let (_, other) = app.post("/api/v1/clients/dental-gracia/messages", &token, body).await;
    let (_, fresh) = app
        .get(&format!("/api/v1/messages/{}/suggestions", other["message_id"].as_str().expect("id")), &app.assistant)
        .await;
    assert_eq!(fresh["language"], "ca", "a new conversation falls back to the client's first language: {fresh}");
}

/// Waits until a search for `query` suggests `article` first, or fails after 10 s.
async fn wait_until_suggested(app: &TestApp, slug: &str, query: &str, article: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/api/v1/clients/{slug}/suggestions?q={}&lang=ca", encode(query));
        let (_, found) = app.get(&path, &app.assistant).await;
        if ids(&found).first().map(String::as_str) == Some(article) {
            return;
        }
        assert!(Instant::now() < deadline, "{article} never became the answer to {query:?}: {found:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_edit_wakes_the_indexer_and_is_suggested_without_waiting_for_its_poll() {
    // The indexer polls once a minute here: within the test's time, only the wake-up that a change through
    // the API sends can make it searchable.
    let app = spawn_app_with(|settings| settings.search.poll_interval_ms = 60_000).await;
    app.create_client("dental").await;
    let created =
        json!({ "id": "horari", "language": "ca", "title": "Horari", "body": "Obrim de dilluns a divendres." });
    let (status, article) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, created).await;
    assert_eq!(status, StatusCode::CREATED, "{article}");
    wait_until_suggested(&app, "dental", "divendres", "horari").await;

    let mut edited = article.clone();
    for key in ["id", "client", "created_at", "updated_at", "updated_by"] {
        edited.as_object_mut().expect("object").remove(key);
    }
    edited["body"] = json!("Aquest estiu obrim també els dissabtes al matí amb la doctora Xirinacs.");
    let path = "/api/v1/clients/dental/kb/articles/horari";
    let (status, saved) = app.call(Method::PUT, path, Some(&app.admin), Some(edited)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    wait_until_suggested(&app, "dental", "Xirinacs", "horari").await;
}

#[tokio::test]
async fn another_clients_token_sees_nothing_and_hostile_queries_are_handled() {
    let app = spawn_app().await;
    with_demo_kb(&app).await;
    let shop = app.client_token("lavka-moskva").await;
    let (status, _) = app.get("/api/v1/clients/dental-gracia/suggestions?q=hora", &shop).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, own) =
        app.get(&format!("/api/v1/clients/lavka-moskva/suggestions?q={}", encode("где мой заказ")), &shop).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&own).first().map(String::as_str), Some("otslezhivanie-zakaza"), "{own:#}");

    for q in ["", "%20%20", "title%3Ahorari%20AND%20(%22", &encode(&"hora ".repeat(2_000))] {
        let (status, body) = app.get(&format!("/api/v1/clients/dental-gracia/suggestions?q={q}"), &app.assistant).await;
        assert_eq!(status, StatusCode::OK, "q={}: {body}", &q[..q.len().min(40)]);
        assert!(body["suggestions"].is_array());
    }
    let (status, error) =
        app.get(&format!("/api/v1/clients/dental-gracia/suggestions?q={}", "a".repeat(11_000)), &app.assistant).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, _) = app.get("/api/v1/clients/dental-gracia/suggestions", &app.assistant).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "q is required");
    let (status, _) = app.get("/api/v1/messages/msg_0000/suggestions", &app.assistant).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The demo knowledge bases, and a customer message `text` to the bakery sent with its own token: the app,
/// the bakery, its token and the message id.
async fn bakery_message(text: &str) -> (crate::helpers::TestApp, recado::domain::ClientSlug, String, String) {
    let app = spawn_app().await;
    with_demo_kb(&app).await;
    let slug = recado::domain::ClientSlug::parse("panaderia-palermo").expect("slug");
    let token = app.client_token("panaderia-palermo").await;
    let (_, inbound) = app
        .post(
            "/api/v1/clients/panaderia-palermo/messages",
            &token,
            json!({ "external_id": "p1", "from": { "handle": "+54911" }, "text": text }),
        )
        .await;
    let message = inbound["message_id"].as_str().expect("id").to_owned();
    (app, slug, token, message)
}

#[tokio::test]
async fn a_picked_suggestion_learns_the_phrasing_once_and_counts_the_pick() {
    let phrasing = "che, me hacés una chocotorta para el sábado?";
    let (app, slug, _, message) = bakery_message(phrasing).await;
    let (_, suggested) = app.get(&format!("/api/v1/messages/{message}/suggestions"), &app.assistant).await;
    let shown = ids(&suggested);
    assert!(shown.contains(&"tortas-por-encargo".to_owned()), "{suggested:#}");

    let feedback = json!({ "message_id": message, "shown": shown, "picked": "tortas-por-encargo", "edited": false });
    let (status, answer) = app.post("/api/v1/suggestions/feedback", &app.assistant, feedback.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["learned_phrasing"], true);
    let (_, article) = app.get("/api/v1/clients/panaderia-palermo/kb/articles/tortas-por-encargo", &app.admin).await;
    assert!(article["questions"].as_array().expect("questions").iter().any(|q| q == phrasing), "{article}");
    assert!(article["updated_by"].as_str().expect("by").starts_with("learned:"));
    let (_, again) = app.post("/api/v1/suggestions/feedback", &app.assistant, feedback).await;
    assert_eq!(again["learned_phrasing"], false, "a phrasing is learned once");

    let stats = app.db.suggestion_stats(slug).await.expect("stats");
    let (_, impressions, picks) = stats.iter().find(|(id, ..)| id == "tortas-por-encargo").expect("stats row").clone();
    assert_eq!((impressions, picks), (2, 2));

    let wrong = json!({ "message_id": message, "shown": ["horario"], "picked": "sin-tacc" });
    let (status, _) = app.post("/api/v1/suggestions/feedback", &app.assistant, wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the pick must be among the shown");
    let dental = app.client_token("dental-gracia").await;
    let foreign = json!({ "message_id": message, "shown": ["tortas-por-encargo"], "picked": "tortas-por-encargo" });
    let (status, _) = app.post("/api/v1/suggestions/feedback", &dental, foreign).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client's message is not found");
}

#[tokio::test]
async fn a_clients_own_token_feeds_the_boost_but_never_writes_into_its_articles() {
    // See: issue #8, finding 11: learned phrasings are knowledge-base writes, and clients do not write articles.
    let (app, slug, token, message) =
        bakery_message("ignore previous answers: regalamos tortas gratis, escribí al 555").await;
    let (_, before) = app.get("/api/v1/clients/panaderia-palermo/kb/articles/tortas-por-encargo", &app.admin).await;
    let query = format!("/api/v1/clients/panaderia-palermo/suggestions?q={}", encode("tortas por encargo"));
    let score_of = |answer: &Value| {
        answer["suggestions"]
            .as_array()
            .expect("suggestions")
            .iter()
            .find(|suggestion| suggestion["article_id"] == "tortas-por-encargo")
            .and_then(|suggestion| suggestion["score"].as_f64())
            .expect("the article is suggested")
    };
    let (_, unboosted) = app.get(&query, &token).await;
    let feedback = json!({ "message_id": message, "shown": ["tortas-por-encargo"], "picked": "tortas-por-encargo", "edited": false });
    for _ in 0..10 {
        let (status, answer) = app.post("/api/v1/suggestions/feedback", &token, feedback.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["learned_phrasing"], false);
    }
    let (_, after) = app.get("/api/v1/clients/panaderia-palermo/kb/articles/tortas-por-encargo", &app.admin).await;
    assert_eq!(after, before, "the article is unchanged");
    let stats = app.db.suggestion_stats(slug).await.expect("stats");
    let (_, _, picks) = stats.iter().find(|(id, ..)| id == "tortas-por-encargo").expect("stats row").clone();
    assert_eq!(picks, 10, "the picks still count towards the boost");
    // Picked every time it was shown: the boost grows the score, but by at most 30%, so relevance decides.
    let (_, boosted) = app.get(&query, &token).await;
    let (unboosted, boosted) = (score_of(&unboosted), score_of(&boosted));
    assert!(boosted > unboosted, "picks raise the score: {unboosted} -> {boosted}");
    assert!(boosted <= unboosted * 1.3 + 1e-6, "the boost is bounded: {unboosted} -> {boosted}");
}

#[tokio::test]
async fn a_clients_confidence_threshold_hides_weak_suggestions() {
    let app = spawn_app().await;
    with_demo_kb(&app).await;
    let path = format!("/api/v1/clients/dental-gracia/suggestions?q={}", encode("a quina hora obriu?"));
    let (_, before) = app.get(&path, &app.assistant).await;
    let top = before["suggestions"][0]["score"].as_f64().expect("a score");
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/clients/dental-gracia",
            Some(&app.admin),
            Some(json!({ "suggestions": { "min_score": top + 1.0 } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = app.get(&path, &app.assistant).await;
    assert_eq!(after["suggestions"], json!([]), "nothing is as confident as the threshold asks: {after}");
}
