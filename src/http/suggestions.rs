//! Reply suggestions: for an ad hoc query of an assistant, for a stored message, and feedback on them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, AppQuery, IdPath, Principal, id_or_404};
use crate::domain::{ArticleId, Invalid, MessageId, Role};
use crate::kb::{MAX_SUGGESTIONS, Pick, Suggestions};

/// Longest query text, in characters. Longer texts are refused; only the first words of a long text are
/// searched anyway.
const MAX_QUERY_CHARS: usize = 10_240;

/// What recording feedback did.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct FeedbackRecorded {
    recorded: bool,
    learned_phrasing: bool,
}

/// Query of `GET .../suggestions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryParams {
    q: String,
    k: Option<usize>,
    lang: Option<String>,
}

/// `GET /api/v1/clients/{slug}/suggestions?q=...&k=...&lang=...`.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/suggestions", tag = "suggestions", params(("slug" = String, Path, description = "the client's slug"), ("q" = Option<String>, Query), ("k" = Option<usize>, Query), ("lang" = Option<String>, Query)), responses((status = 200, description = "suggested replies for the text", body = Suggestions), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn suggestions_for_query(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppQuery(params): AppQuery<QueryParams>,
) -> Result<Json<Suggestions>, ApiError> {
    let client = principal.client_in_path(&slug)?;
    if params.q.chars().count() > MAX_QUERY_CHARS {
        return Err(Invalid::new("q", format!("must be at most {MAX_QUERY_CHARS} characters")).into());
    }
    if let Some(language) = &params.lang {
        crate::domain::parse_label("lang", &language.to_ascii_lowercase(), 16)?;
    }
    let k = params.k.unwrap_or(5).clamp(1, MAX_SUGGESTIONS);
    let result = state
        .knowledge
        .suggest_query(&state.db, client, params.q, params.lang, k, Some(principal.name().to_owned()))
        .await?;
    Ok(Json(result))
}

/// Query of `GET /api/v1/messages/{id}/suggestions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MessageParams {
    k: Option<usize>,
}

/// `GET /api/v1/messages/{id}/suggestions`: filled in for the message's contact.
#[utoipa::path(get, path = "/api/v1/messages/{id}/suggestions", tag = "suggestions", params(("id" = String, Path, description = "the object's id"), ("k" = Option<usize>, Query)), responses((status = 200, description = "suggested replies, filled in for the contact", body = Suggestions), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn suggestions_for_message(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<MessageId>,
    AppQuery(params): AppQuery<MessageParams>,
) -> Result<Json<Suggestions>, ApiError> {
    let k = params.k.unwrap_or(5).clamp(1, MAX_SUGGESTIONS);
    let result =
        state.knowledge.suggest_message(&state.db, principal.scope(), id, k, Some(principal.name().to_owned())).await?;
    Ok(Json(result))
}

/// Body of `POST /api/v1/suggestions/feedback`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedbackBody {
    message_id: String,
    shown: Vec<String>,
    picked: Option<String>,
    #[serde(default)]
    edited: bool,
}

/// `POST /api/v1/suggestions/feedback`: which suggestions were shown for a message and which was used.
#[utoipa::path(post, path = "/api/v1/suggestions/feedback", tag = "suggestions", request_body(content = FeedbackBody, content_type = "application/json"), responses((status = 201, description = "recorded", body = FeedbackRecorded), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn suggestions_feedback(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(body): AppJson<FeedbackBody>,
) -> Result<(StatusCode, Json<FeedbackRecorded>), ApiError> {
    let message_id: MessageId = id_or_404(&body.message_id)?;
    if body.shown.len() > MAX_SUGGESTIONS {
        return Err(Invalid::new("shown", format!("at most {MAX_SUGGESTIONS} articles")).into());
    }
    let shown = body
        .shown
        .iter()
        .map(|id| ArticleId::parse(id).map_err(|e| e.within("shown")))
        .collect::<Result<Vec<_>, _>>()?;
    let picked = body.picked.as_deref().map(ArticleId::parse).transpose().map_err(|e| e.within("picked"))?;
    if picked.as_ref().is_some_and(|picked| !shown.contains(picked)) {
        return Err(Invalid::new("picked", "must be one of the articles shown").into());
    }
    let learned = state
        .knowledge
        .feedback(
            &state.db,
            principal.scope(),
            Pick { message_id, shown, picked, edited: body.edited },
            principal.actor(),
            // Learned phrasings are knowledge-base writes: admins and the assistants who pick suggestions
            // make them; a client's own token only feeds the boost (clients do not write articles).
            principal.role() != Role::Client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(FeedbackRecorded { recorded: true, learned_phrasing: learned })))
}
