//! Extractors whose rejections use the one error shape, and the authenticated caller.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};

use super::AppState;
use super::error::ApiError;
use crate::config::AuthSettings;
use crate::domain::{ClientSlug, Role, TypedId};
use crate::store::{Caller, PersonRecord, Scope};

/// `axum::Json` with [`ApiError`] rejections.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(super) struct AppJson<T>(pub T);

/// `axum::extract::Path` with [`ApiError`] rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(super) struct AppPath<T>(pub T);

/// `axum::extract::Query` with [`ApiError`] rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(super) struct AppQuery<T>(pub T);

/// Parses an id taken from a path or a body. An id of the wrong shape cannot exist, so it is a 404 like an unknown
/// one, answered without a query.
pub(super) fn id_or_404<T: TypedId>(text: &str) -> Result<T, ApiError> {
    T::parse_id(text).ok_or_else(|| ApiError::NotFound(T::KIND.into()))
}

/// An id as the only path parameter, parsed as [`id_or_404`] does.
pub(super) struct IdPath<T>(pub T);

impl<T: TypedId, S: Send + Sync> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AppPath(text) = AppPath::<String>::from_request_parts(parts, state).await?;
        id_or_404(&text).map(Self)
    }
}

/// The raw body, limited by the route's body limit, with [`ApiError`] rejections.
pub(super) struct AppBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBytes {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        bytes::Bytes::from_request(request, state).await.map(Self).map_err(ApiError::from)
    }
}

/// The caller: a person signed in with the session cookie or using their token, or an integration's token.
#[derive(Debug, Clone)]
pub(super) struct Principal {
    /// Who, as the store resolved them.
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // The admission middleware authenticates before the body is read and leaves the caller here.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        Self::authenticate(&parts.method, &parts.headers, state).await
    }
}

/// The name of the session cookie.
pub(super) const SESSION_COOKIE: &str = "recado_session";

/// The value of the session cookie in `headers`, if there is one.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// Refuses a state change authenticated by the cookie unless the browser says it comes from this site: its
/// `Sec-Fetch-Site` is `same-origin`, or (older browsers) its `Origin` is this server's. A request that says
/// neither is refused too: every browser that sends cookies sends one of them on a POST.
pub(super) fn check_same_site(method: &Method, headers: &HeaderMap, settings: &AuthSettings) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refused = |why: &str| {
        Err(ApiError::CrossSite(format!(
            "{why}: a change made with the session cookie must come from recado's own pages"
        )))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" { Ok(()) } else { refused("the request came from another site") };
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|value| value.to_str().ok()) else {
        return refused("the request does not say which site it came from");
    };
    let same = match &settings.public_origin {
        Some(public) => origin == public,
        None => {
            let host = headers.get(HOST).and_then(|value| value.to_str().ok());
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            host.is_some() && origin_host == host
        }
    };
    if same { Ok(()) } else { refused("the request came from another site") }
}

impl Principal {
    /// Authenticates the bearer token in `headers` or, without one, the session cookie (whose state changes
    /// must come from this site).
    ///
    /// # Errors
    /// 401 for a missing, malformed, unknown or revoked token or an ended session; 403 for a cross-site
    /// change; 503 when the store is unavailable.
    pub(super) async fn authenticate(method: &Method, headers: &HeaderMap, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = headers.get(AUTHORIZATION) else {
            let Some(secret) = session_cookie(headers) else {
                return Err(ApiError::unauthorized("sign in, or send Authorization: Bearer <token>"));
            };
            check_same_site(method, headers, &state.settings.auth)?;
            let caller =
                state.db.session_caller(secret, state.settings.auth.session_rules()).await?.ok_or_else(|| {
                    ApiError::Unauthorized {
                        code: "session_ended",
                        message: "the session has ended; sign in again".into(),
                    }
                })?;
            return Ok(Self { caller });
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        let caller = state
            .db
            .authenticate(token.to_owned())
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is unknown or revoked"))?;
        Ok(Self { caller })
    }

    /// The principal budgets are kept for: the person, whatever the credential, or the integration's token.
    pub(super) fn key(&self) -> String {
        self.caller.actor()
    }

    /// What this caller may do.
    pub(super) fn role(&self) -> Role {
        self.caller.role
    }

    /// The name their replies carry.
    pub(super) fn name(&self) -> &str {
        &self.caller.name
    }

    /// The author of this caller's replies.
    pub(super) fn author(&self) -> crate::store::Author {
        crate::store::Author { name: self.caller.name.clone(), id: self.caller.actor() }
    }

    /// What data this caller may see.
    pub(super) fn scope(&self) -> Scope {
        self.caller.scope.clone()
    }

    /// Name recorded in the audit log.
    pub(super) fn actor(&self) -> String {
        self.caller.actor()
    }

    /// Fails with 403 unless the caller is an admin.
    pub(super) fn require_admin(&self) -> Result<(), ApiError> {
        if self.caller.role == Role::Admin { Ok(()) } else { Err(ApiError::Forbidden("this needs an admin".into())) }
    }

    /// The person this caller is, or 403 for an integration's token.
    pub(super) fn person(&self) -> Result<&PersonRecord, ApiError> {
        self.caller
            .person
            .as_ref()
            .ok_or_else(|| ApiError::Forbidden("this is for people; an integration's token is no one".into()))
    }

    /// Parses a client slug from a path and checks this caller may see that client.
    ///
    /// Another client's slug (and an invalid one) is a 404, never a 403, so a client token cannot learn which
    /// clients exist.
    pub(super) fn client_in_path(&self, slug: &str) -> Result<ClientSlug, ApiError> {
        let slug = ClientSlug::parse(slug).map_err(|_| ApiError::NotFound("client".into()))?;
        if self.caller.scope.allows(&slug) { Ok(slug) } else { Err(ApiError::NotFound("client".into())) }
    }
}
