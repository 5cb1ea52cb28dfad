//! `/api/v1/tokens`: a person's own API tokens (for scripts and integrations that act as them). A person
//! lists, creates and revokes their own; an admin lists and revokes everyone's. The whole token is answered
//! once, when it is made.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, Principal};
use crate::domain::{Role, parse_text};
use crate::store::{PersonRef, TokenRecord};

/// Tokens the caller may see.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TokenList {
    tokens: Vec<TokenRecord>,
}

/// A token just made: its record and, this once, the whole token.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CreatedToken {
    #[serde(flatten)]
    record: TokenRecord,
    token: String,
}

/// Body of a new token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTokenBody {
    /// What it is for.
    name: String,
}

/// `GET /api/v1/tokens`: the caller's own tokens; every token for an admin.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "sign-in", responses((status = 200, description = "the tokens the caller may see", body = TokenList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn tokens_list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TokenList>, ApiError> {
    let owner = if principal.role() == Role::Admin { None } else { Some(principal.person()?.id.clone()) };
    Ok(Json(TokenList { tokens: state.db.tokens(owner).await? }))
}

/// `POST /api/v1/tokens`: `{"name"}` makes a token that acts as the caller.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "sign-in", request_body(content = NewTokenBody, content_type = "application/json"), responses((status = 201, description = "created: the whole token, this once", body = CreatedToken), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn tokens_create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(body): AppJson<NewTokenBody>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let person = principal.person()?.id.clone();
    let name = parse_text("name", &body.name, 100)?;
    let created = state.db.create_person_token(PersonRef::Id(person), name, principal.actor()).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { record: created.record, token: created.token })))
}

/// `DELETE /api/v1/tokens/{id}`: revokes one of the caller's tokens (any token, for an admin).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "sign-in", params(("id" = String, Path, description = "the object's id")), responses((status = 200, description = "revoked", body = TokenRecord), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn tokens_revoke(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Json<TokenRecord>, ApiError> {
    let owner = if principal.role() == Role::Admin { None } else { Some(principal.person()?.id.clone()) };
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound("token".into()));
    }
    Ok(Json(state.db.revoke_token_of(id, owner, principal.actor()).await?))
}
