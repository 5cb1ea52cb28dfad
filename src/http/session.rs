//! Signing in and out, and what a caller learns about themselves: `POST`/`DELETE /api/v1/session`,
//! `GET /api/v1/me`, `PUT /api/v1/me/password`.
//!
//! A sign-in is throttled per address and per account before the password is checked (each failure costs a
//! token of both), the check itself takes one of a few global password slots, and an address nobody has
//! costs the same time as a wrong password. The session lives server-side (only a hash of the cookie's secret
//! is stored); the cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when `auth.secure_cookies`
//! is on.

use axum::Json;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admission::peer;
use super::error::ApiError;
use super::extract::{AppJson, Principal, SESSION_COOKIE, check_same_site};
use super::people::password_hash;
use crate::config::AuthSettings;
use crate::domain::{ClientSlug, Email, Role, Timestamp};
use crate::store::{Caller, Credential, PersonRecord, PersonRef, Scope};

/// A sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignIn {
    email: String,
    password: String,
}

/// A client the caller may see.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct VisibleClient {
    slug: ClientSlug,
    name: String,
}

/// Who the caller is and what they may see.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Me {
    /// The person, unless the caller is an integration's token.
    person: Option<PersonRecord>,
    /// What they may do.
    role: Role,
    /// The name their replies carry.
    name: String,
    /// `session` or `token`.
    authenticated_by: &'static str,
    /// True if and only if they see every client (admins, the agency's integrations).
    all_clients: bool,
    /// The clients they may see.
    clients: Vec<VisibleClient>,
    /// When the session ends at the latest (sign-in answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    session_expires_at: Option<Timestamp>,
}

async fn me_body(state: &AppState, caller: Caller, session_expires_at: Option<Timestamp>) -> Result<Me, ApiError> {
    let clients = state
        .db
        .clients()
        .await?
        .into_iter()
        .filter(|record| caller.scope.allows(&record.slug))
        .map(|record| VisibleClient { slug: record.slug, name: record.profile.name })
        .collect();
    Ok(Me {
        role: caller.role,
        name: caller.name,
        authenticated_by: match caller.credential {
            Credential::Session(_) => "session",
            Credential::Token(_) => "token",
        },
        all_clients: caller.scope == Scope::All,
        clients,
        person: caller.person,
        session_expires_at,
    })
}

/// The `Set-Cookie` value of a session cookie (or of its removal, with no secret).
fn session_cookie(settings: &AuthSettings, secret: Option<&str>) -> HeaderValue {
    let max_age = match secret {
        Some(_) => cookie::time::Duration::hours(i64::try_from(settings.session_lifetime_hours).unwrap_or(12)),
        None => cookie::time::Duration::ZERO,
    };
    let cookie = cookie::Cookie::build((SESSION_COOKIE, secret.unwrap_or("")))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(settings.secure_cookies)
        .path("/")
        .max_age(max_age)
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie of URL-safe characters is a valid header value")
}

/// `POST /api/v1/session`: `{"email", "password"}`. Answers who signed in, with the session cookie. (A throttled
/// address was answered 429 before its body was read: [`super::admission::throttle_address`].)
#[utoipa::path(post, path = "/api/v1/session", tag = "sign-in", request_body(content = SignIn, content_type = "application/json"), responses((status = 201, description = "signed in: the session cookie is set", body = Me), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)))]
pub(super) async fn session_create(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let address = peer(&request);
    // A forged sign-in from another site would sign the victim's browser into the attacker's account.
    check_same_site(request.method(), request.headers(), &state.settings.auth)?;
    let admission = &state.admission;
    let AppJson(body) = AppJson::<SignIn>::from_request(request, &state).await?;
    let email = Email::parse(&body.email)?;
    let account = email.key();
    if !admission.sign_in_failures.allows(&account) {
        return Err(admission.sign_in_failures.throttled());
    }
    let found = state.db.person_for_sign_in(email).await?;
    let (person, hash) = match found {
        Some((person, hash)) if !person.disabled => (Some(person), Some(hash)),
        _ => (None, None),
    };
    let matches = state.passwords.verify(body.password, hash).await?;
    let Some(person) = person.filter(|_| matches) else {
        admission.auth_failures.record(&address);
        admission.sign_in_failures.record(&account);
        return Err(ApiError::Unauthorized {
            code: "sign_in_failed",
            message: "the email address or the password is wrong".into(),
        });
    };
    let session = state.db.create_session(person.id.clone(), state.settings.auth.session_rules()).await?;
    let caller = state
        .db
        .session_caller(session.secret.clone(), state.settings.auth.session_rules())
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session ended as it began; sign in again"))?;
    let body = me_body(&state, caller, Some(session.expires_at)).await?;
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.headers_mut().insert(SET_COOKIE, session_cookie(&state.settings.auth, Some(&session.secret)));
    Ok(response)
}

/// `DELETE /api/v1/session`: signs out (ends the session the cookie names and clears the cookie).
#[utoipa::path(delete, path = "/api/v1/session", tag = "sign-in", responses((status = 204, description = "signed out: the cookie is cleared"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn session_delete(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let Credential::Session(id) = &principal.caller.credential else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "a token is revoked, not signed out: DELETE /api/v1/tokens/{id}",
        ));
    };
    state.db.end_session(id.clone(), principal.actor()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(SET_COOKIE, session_cookie(&state.settings.auth, None));
    Ok(response)
}

/// `GET /api/v1/me`: who the caller is and which clients they may see.
#[utoipa::path(get, path = "/api/v1/me", tag = "sign-in", responses((status = 200, description = "who the caller is and which clients they may see", body = Me), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn me_show(State(state): State<AppState>, principal: Principal) -> Result<Json<Me>, ApiError> {
    Ok(Json(me_body(&state, principal.caller, None).await?))
}

/// A person's change of their own password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OwnPassword {
    current_password: String,
    new_password: String,
}

/// `PUT /api/v1/me/password`: `{"current_password", "new_password"}`. Ends the person's other sessions.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "sign-in", request_body(content = OwnPassword, content_type = "application/json"), responses((status = 204, description = "changed"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn me_password(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(body): AppJson<OwnPassword>,
) -> Result<StatusCode, ApiError> {
    let person = principal.person()?.clone();
    crate::people::check_password(&body.new_password)?;
    let account = person.email.to_lowercase();
    if !state.admission.sign_in_failures.allows(&account) {
        return Err(state.admission.sign_in_failures.throttled());
    }
    let hash = state.db.person_for_sign_in(Email::parse(&person.email)?).await?.map(|(_, hash)| hash);
    if !state.passwords.verify(body.current_password, hash).await? {
        // A stolen session must not be a way to guess the password either.
        state.admission.sign_in_failures.record(&account);
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    let (hash, _) = password_hash(&state, Some(body.new_password)).await?;
    let keep = match &principal.caller.credential {
        Credential::Session(id) => Some(id.clone()),
        Credential::Token(_) => None,
    };
    state.db.set_password(PersonRef::Id(person.id), hash, principal.actor(), keep).await?;
    Ok(StatusCode::NO_CONTENT)
}
