//! Signing in with a password: the session cookie and its attributes, signing out, sessions that end, the
//! cross-site refusal of cookie-authenticated changes, limits on guessing, a person's own password and
//! tokens.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

/// A request carrying the session cookie `cookie` and `headers`; answers status, headers and JSON body.
async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    headers: &[(&'static str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request =
        app.http.request(method, format!("{}{path}", app.base)).header("cookie", format!("recado_session={cookie}"));
    for (name, value) in headers {
        request = request.header(*name, HeaderValue::from_str(value).expect("header value"));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null))
}

/// The headers a browser sends with a same-origin `fetch`.
const SAME_ORIGIN: &[(&str, &str)] = &[("sec-fetch-site", "same-origin")];

/// Signs in; answers status, the `Set-Cookie` header (if any) and the body.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> (StatusCode, Option<String>, Value) {
    let response = app
        .http
        .post(format!("{}/api/v1/session", app.base))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let cookie = response.headers().get("set-cookie").map(|value| value.to_str().expect("ascii").to_owned());
    (status, cookie, serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null))
}

/// The session secret in a `Set-Cookie` value.
fn secret(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().expect("name=value");
    first.strip_prefix("recado_session=").expect("the session cookie").to_owned()
}

#[tokio::test]
async fn a_person_signs_in_sees_who_they_are_and_signs_out() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    app.assign("dental", &["ana@example.com"]).await;

    let (status, set_cookie, me) = sign_in(&app, "ANA@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{me}");
    let set_cookie = set_cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{attribute} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "not configured for TLS: {set_cookie}");
    assert_eq!((me["person"]["id"].as_str(), me["role"].as_str()), (Some(ana.id.as_str()), Some("assistant")), "{me}");
    assert_eq!(me["clients"], json!([{ "slug": "dental", "name": "Client dental" }]));
    assert!(me["session_expires_at"].is_string() && me["person"]["last_sign_in_at"].is_string(), "{me}");
    assert!(!me.to_string().contains("argon2"), "no hash in any answer: {me}");
    let cookie = secret(&set_cookie);
    let stored: Vec<Vec<u8>> = app
        .database()
        .query("SELECT secret_hash FROM sessions", &[])
        .await
        .iter()
        .map(|row| row[0].blob().to_vec())
        .collect();
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].windows(8).any(|window| cookie.as_bytes().windows(8).any(|w| w == window)),
        "only a hash is stored"
    );

    let (status, _, me) = with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[], None).await;
    assert_eq!((status, me["authenticated_by"].as_str()), (StatusCode::OK, Some("session")), "{me}");
    let (status, _, inbox) = with_cookie(&app, Method::GET, "/api/v1/conversations", &cookie, &[], None).await;
    assert_eq!(status, StatusCode::OK, "{inbox}");

    let (status, headers, _) = with_cookie(&app, Method::DELETE, "/api/v1/session", &cookie, SAME_ORIGIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cleared = headers.get("set-cookie").expect("the cookie is cleared").to_str().expect("ascii");
    assert!(cleared.starts_with("recado_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let (status, _, error) = with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[], None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_ended")));
}

#[tokio::test]
async fn wrong_passwords_unknown_addresses_and_disabled_people_get_the_same_answer() {
    let app = spawn_app().await;
    let ana = app.person("ana@example.com", "admin", None).await;
    let gone = app.person("gone@example.com", "admin", None).await;
    app.post(&format!("/api/v1/people/{}/disable", gone.id), &app.admin, json!({})).await;

    let mut answers = Vec::new();
    for (email, password) in [
        (ana.email.as_str(), "not the password at all"),
        ("nobody@example.com", PASSWORD),
        (gone.email.as_str(), PASSWORD),
    ] {
        let (status, cookie, body) = sign_in(&app, email, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}: {body}");
        assert!(cookie.is_none(), "{email}");
        answers.push(body);
    }
    assert!(answers.iter().all(|answer| *answer == answers[0]), "one answer for every failure: {answers:?}");
    assert_eq!(answers[0]["error"]["code"], "sign_in_failed");
    let (status, _, body) = sign_in(&app, "not an address", PASSWORD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured() {
    let app = spawn_app_with(|settings| settings.auth.secure_cookies = true).await;
    app.person("ana@example.com", "admin", None).await;
    let (status, set_cookie, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(set_cookie.expect("cookie").contains("Secure"));
}

#[tokio::test]
async fn a_change_forged_from_another_site_changes_nothing() {
    let app = spawn_app().await;
    let token = app.create_client("dental").await;
    app.person("ana@example.com", "admin", None).await;
    let (_, inbound) = app.ingest("dental", &token, "1", "+34600111222", "hola").await;
    let conversation = inbound["conversation_id"].as_str().expect("id").to_owned();
    let (_, set_cookie, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    let cookie = secret(&set_cookie.expect("cookie"));
    let close = format!("/api/v1/conversations/{conversation}/close");
    let host = app.base.trim_start_matches("http://").to_owned();

    let forged: [&[(&str, &str)]; 3] = [
        &[("sec-fetch-site", "cross-site")],
        &[("origin", "https://evil.example")],
        // A request that says nothing about where it came from is refused too.
        &[],
    ];
    for headers in forged {
        let (status, _, error) = with_cookie(&app, Method::POST, &close, &cookie, headers, Some(json!({}))).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("cross_site")),
            "{headers:?}"
        );
    }
    assert_eq!(app.conversation(&conversation).await["status"], "open", "nothing changed");
    // A forged sign-in (which would sign the victim into the attacker's account) is refused the same way.
    let response = app
        .http
        .post(format!("{}/api/v1/session", app.base))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Reads need no proof of origin (the cookie is SameSite=Strict; a read changes nothing).
    let (status, _, _) =
        with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[("sec-fetch-site", "cross-site")], None).await;
    assert_eq!(status, StatusCode::OK);
    // From recado's own pages: by Sec-Fetch-Site, or by Origin for browsers without it.
    let origin = format!("http://{host}");
    let (status, _, body) =
        with_cookie(&app, Method::POST, &close, &cookie, &[("origin", origin.as_str())], Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = with_cookie(
        &app,
        Method::POST,
        &format!("/api/v1/conversations/{conversation}/reopen"),
        &cookie,
        SAME_ORIGIN,
        Some(json!({})),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("open")), "{body}");
}

#[tokio::test]
async fn guessing_is_limited_per_account_and_per_address_with_retry_after() {
    let app = spawn_app_with(|settings| {
        settings.auth.sign_in_failures_per_account_burst = 3;
        settings.http.auth_failures_burst = 6;
        // Slow refills, so that none comes back while the test runs.
        settings.http.auth_failures_per_minute = 1;
        settings.auth.sign_in_failures_per_account_per_hour = 1;
    })
    .await;
    app.person("ana@example.com", "admin", None).await;
    app.person("berta@example.com", "admin", None).await;
    for _ in 0..3 {
        assert_eq!(sign_in(&app, "ana@example.com", "wrong password here").await.0, StatusCode::UNAUTHORIZED);
    }
    // The account is out of failures: even the right password is not checked now.
    let response = app
        .http
        .post(format!("{}/api/v1/session", app.base))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "email": "ana@example.com", "password": PASSWORD }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after >= 1, "{retry_after}");
    // Another account is not locked by it...
    assert_eq!(sign_in(&app, "berta@example.com", PASSWORD).await.0, StatusCode::CREATED);
    // ...but this address, after six failures across accounts, is.
    for email in ["x1@example.com", "x2@example.com", "x3@example.com"] {
        assert_eq!(sign_in(&app, email, "wrong password here").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _, body) = sign_in(&app, "berta@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test]
async fn sessions_end_at_their_lifetime_and_when_the_person_is_disabled() {
    let app = spawn_app().await;
    let ana = app.person("ana@example.com", "admin", None).await;
    let (_, set_cookie, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    let cookie = secret(&set_cookie.expect("cookie"));
    assert_eq!(with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[], None).await.0, StatusCode::OK);
    // Time passes: the session's lifetime is over.
    app.database().execute("UPDATE sessions SET expires_at = 0", &[]).await;
    assert_eq!(with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[], None).await.0, StatusCode::UNAUTHORIZED);

    // Idle too long.
    let (_, set_cookie, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    let cookie = secret(&set_cookie.expect("cookie"));
    app.database()
        .execute("UPDATE sessions SET last_seen_at = 0 WHERE revoked_at IS NULL AND expires_at > 0", &[])
        .await;
    assert_eq!(with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[], None).await.0, StatusCode::UNAUTHORIZED);

    // Disabled: the session and the person's token stop working at once.
    let (_, set_cookie, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    let cookie = secret(&set_cookie.expect("cookie"));
    assert_eq!(app.get("/api/v1/me", &ana.token).await.0, StatusCode::OK);
    app.post(&format!("/api/v1/people/{}/disable", ana.id), &app.admin, json!({})).await;
    assert_eq!(with_cookie(&app, Method::GET, "/api/v1/me", &cookie, &[], None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/me", &ana.token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_person_changes_their_own_password_and_their_other_sessions_end() {
    let app = spawn_app().await;
    app.person("ana@example.com", "assistant", None).await;
    let (_, first, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    let (_, second, _) = sign_in(&app, "ana@example.com", PASSWORD).await;
    let (first, second) = (secret(&first.expect("cookie")), secret(&second.expect("cookie")));
    let new_password = "a brand new passphrase";

    let change = |current: &str| json!({ "current_password": current, "new_password": new_password });
    let (status, _, body) =
        with_cookie(&app, Method::PUT, "/api/v1/me/password", &first, SAME_ORIGIN, Some(change("a wrong guess here")))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = with_cookie(
        &app,
        Method::PUT,
        "/api/v1/me/password",
        &first,
        SAME_ORIGIN,
        Some(json!({ "current_password": PASSWORD, "new_password": "short" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, body) =
        with_cookie(&app, Method::PUT, "/api/v1/me/password", &first, SAME_ORIGIN, Some(change(PASSWORD))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    assert_eq!(
        with_cookie(&app, Method::GET, "/api/v1/me", &first, &[], None).await.0,
        StatusCode::OK,
        "this one stays"
    );
    assert_eq!(with_cookie(&app, Method::GET, "/api/v1/me", &second, &[], None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&app, "ana@example.com", PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&app, "ana@example.com", new_password).await.0, StatusCode::CREATED);
    // An integration's token is no one: it has no password to change.
    let (status, _) = app.call(Method::PUT, "/api/v1/me/password", Some(&app.admin), Some(change(PASSWORD))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn people_list_make_and_revoke_their_own_tokens_and_admins_see_all() {
    let app = spawn_app().await;
    app.create_client("dental").await;
    let ana = app.person("ana@example.com", "assistant", None).await;
    let berta = app.person("berta@example.com", "assistant", None).await;
    app.assign("dental", &["ana@example.com"]).await;

    let (status, made) = app.post("/api/v1/tokens", &ana.token, json!({ "name": "my script" })).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().expect("the whole token, once").to_owned();
    let id = made["id"].as_str().expect("id").to_owned();
    assert_eq!((made["person"].as_str(), made["role"].as_str()), (Some(ana.id.as_str()), Some("assistant")));
    // It acts as Ana: her name, her clients.
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(
        (me["person"]["email"].as_str(), me["authenticated_by"].as_str()),
        (Some("ana@example.com"), Some("token"))
    );
    assert_eq!(me["clients"], json!([{ "slug": "dental", "name": "Client dental" }]));

    let (_, own) = app.get("/api/v1/tokens", &ana.token).await;
    let ids: Vec<&str> = own["tokens"].as_array().expect("tokens").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "the helper's token and the new one: {own}");
    assert!(ids.contains(&id.as_str()) && !own.to_string().contains(&token), "{own}");
    let (_, theirs) = app.get("/api/v1/tokens", &berta.token).await;
    assert!(!theirs.to_string().contains(&id), "Berta does not see Ana's tokens: {theirs}");
    let (_, all) = app.get("/api/v1/tokens", &app.admin).await;
    assert!(all["tokens"].as_array().expect("tokens").len() >= 4, "admins see every token: {all}");

    let path = format!("/api/v1/tokens/{id}");
    let (status, _) = app.call(Method::DELETE, &path, Some(&berta.token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not hers to revoke");
    assert_eq!(app.get("/api/v1/me", &token).await.0, StatusCode::OK);
    let (status, revoked) = app.call(Method::DELETE, &path, Some(&ana.token), None).await;
    assert_eq!((status, revoked["revoked_at"].is_string()), (StatusCode::OK, true), "{revoked}");
    assert_eq!(app.get("/api/v1/me", &token).await.0, StatusCode::UNAUTHORIZED);
    // An integration's token is no one: it makes no tokens of its own.
    let (status, _) = app.post("/api/v1/tokens", &app.assistant, json!({ "name": "x" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
