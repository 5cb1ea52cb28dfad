//! Extractors whose rejections use the one error shape, and the authenticated caller.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::domain::{ClientSlug, Role, TypedId};
use crate::store::Scope;

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

/// The caller, authenticated by its bearer token.
#[derive(Debug, Clone)]
pub(super) struct Principal {
    /// The token's public id.
    pub token_id: String,
    /// What it may do.
    pub role: Role,
    /// Its client, for client tokens.
    pub client: Option<ClientSlug>,
    /// Its name (an assistant's name is the author of its replies).
    pub name: String,
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // The admission middleware authenticates before the body is read and leaves the caller here.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        Self::authenticate(&parts.headers, state).await
    }
}

impl Principal {
    /// Authenticates the bearer token in `headers`.
    ///
    /// # Errors
    /// 401 for a missing, malformed, unknown or revoked token; 503 when the store is unavailable.
    pub(super) async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Self, ApiError> {
        let header = headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        let record = state
            .db
            .authenticate(token.to_owned())
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is unknown or revoked"))?;
        Ok(Self { token_id: record.id, role: record.role, client: record.client, name: record.name })
    }

    /// What data this caller may see.
    pub(super) fn scope(&self) -> Scope {
        match (&self.role, &self.client) {
            (Role::Client, Some(slug)) => Scope::Client(slug.clone()),
            // A client token always has a client (enforced at creation); without one it sees nothing real.
            (Role::Client, None) => Scope::Client(ClientSlug::parse("none").expect("a valid literal slug")),
            _ => Scope::All,
        }
    }

    /// Name recorded in the audit log.
    pub(super) fn actor(&self) -> String {
        format!("{}:{}", self.role, self.token_id)
    }

    /// Fails with 403 unless the caller is an admin.
    pub(super) fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin { Ok(()) } else { Err(ApiError::Forbidden("this needs an admin token".into())) }
    }

    /// Parses a client slug from a path and checks this caller may see that client.
    ///
    /// Another client's slug (and an invalid one) is a 404, never a 403, so a client token cannot learn which
    /// clients exist.
    pub(super) fn client_in_path(&self, slug: &str) -> Result<ClientSlug, ApiError> {
        let slug = ClientSlug::parse(slug).map_err(|_| ApiError::NotFound("client".into()))?;
        if self.scope().allows(&slug) { Ok(slug) } else { Err(ApiError::NotFound("client".into())) }
    }
}
