//! `/api/v1/clients/{slug}/kb/articles`: the knowledge-base editor's API. Admins write; assistants read;
//! a client reads its own. Edits name the version they change, so two admins never overwrite each other.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, AppQuery, Principal};
use super::paging::{next_cursor, page_request};
use crate::domain::{ArticleContent, ArticleId, Invalid};
use crate::kb::template;
use crate::store::{Article, Edit};

/// A page of a client's articles.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ArticleList {
    articles: Vec<Article>,
    next_cursor: Option<String>,
}

/// The article with its version as the `ETag`.
fn article_response(status: StatusCode, article: &Article) -> Response {
    let mut response = (status, Json(article)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", article.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// Body of a create or a replace.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ArticleBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    version: Option<i64>,
    language: String,
    title: String,
    #[serde(default)]
    questions: Vec<String>,
    body: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    shortcut: Option<String>,
}

impl ArticleBody {
    /// The normalised, validated content (template included).
    fn content(&self) -> Result<ArticleContent, ApiError> {
        let content = ArticleContent {
            language: self.language.clone(),
            title: self.title.clone(),
            questions: self.questions.clone(),
            body: self.body.clone(),
            tags: self.tags.clone(),
            shortcut: self.shortcut.clone(),
        }
        .normalized();
        content.validate()?;
        template::validate(&content.body).map_err(|error| Invalid::new("body", error.to_string()))?;
        Ok(content)
    }
}

fn article_id(id: &str) -> Result<ArticleId, ApiError> {
    ArticleId::parse(id).map_err(|_| ApiError::NotFound("article".into()))
}

/// The version an edit names: `If-Match: "3"` (or `W/"3"`, or `3`), else a `version` field.
fn expected_version(headers: &HeaderMap, field: Option<i64>) -> Result<i64, ApiError> {
    match headers.get(header::IF_MATCH) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
            text.parse().map_err(|_| {
                ApiError::bad_request("invalid_if_match", "If-Match must be the article's version, e.g. \"3\"")
            })
        }
        None => field.ok_or_else(|| {
            ApiError::PreconditionRequired("name the version you edit: an If-Match header or a version field".into())
        }),
    }
}

/// Query of the article list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    q: Option<String>,
    language: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET .../kb/articles`: by id, filtered by text (`q`) and `language`, paged by `cursor`.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/kb/articles", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug"), ("q" = Option<String>, Query), ("language" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)), responses((status = 200, description = "a page of articles", body = ArticleList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_list(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Json<ArticleList>, ApiError> {
    let client = principal.client_in_path(&slug)?;
    let text = query.q.filter(|q| !q.trim().is_empty()).map(|q| q.chars().take(200).collect::<String>());
    let page = page_request(query.cursor.as_deref(), query.limit)?;
    let page = state.db.articles(client, text, query.language, page).await?;
    Ok(Json(ArticleList { next_cursor: next_cursor(page.next.as_ref()), articles: page.items }))
}

/// `POST .../kb/articles` (admin): the id is given or derived from the title.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/kb/articles", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug")), request_body(content = ArticleBody, content_type = "application/json"), responses((status = 201, description = "created", body = crate::store::Article), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_create(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<ArticleBody>,
) -> Result<Response, ApiError> {
    let client = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    let id = body.id.as_deref().map(ArticleId::parse).transpose()?;
    let content = body.content()?;
    let article = state.db.create_article(client, id, content, principal.actor()).await?;
    state.knowledge.index().wake();
    Ok(article_response(StatusCode::CREATED, &article))
}

/// `GET .../kb/articles/{id}`.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/kb/articles/{id}", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug"), ("id" = String, Path, description = "the object's id")), responses((status = 200, description = "the article, its version in `ETag`", body = crate::store::Article), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_show(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, id)): AppPath<(String, String)>,
) -> Result<Response, ApiError> {
    let client = principal.client_in_path(&slug)?;
    let article = state.db.article(client, article_id(&id)?).await?;
    Ok(article_response(StatusCode::OK, &article))
}

/// `PUT .../kb/articles/{id}` (admin): replaces the content of the version named; 409 with the current
/// article if that version is stale.
#[utoipa::path(put, path = "/api/v1/clients/{slug}/kb/articles/{id}", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug"), ("id" = String, Path, description = "the object's id")), request_body(content = ArticleBody, content_type = "application/json"), responses((status = 200, description = "the new version", body = crate::store::Article), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_update(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, id)): AppPath<(String, String)>,
    headers: HeaderMap,
    AppJson(body): AppJson<ArticleBody>,
) -> Result<Response, ApiError> {
    let client = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    let id = article_id(&id)?;
    if body.id.as_deref().is_some_and(|given| given != id.as_str()) {
        return Err(Invalid::new("id", "cannot be changed").into());
    }
    let version = expected_version(&headers, body.version)?;
    let content = body.content()?;
    match state.db.update_article(client, id, version, content, principal.actor()).await? {
        Edit::Applied(article) => {
            state.knowledge.index().wake();
            Ok(article_response(StatusCode::OK, &article))
        }
        Edit::Stale(current) => Err(ApiError::StaleVersion(current)),
    }
}

/// Query of a delete.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    version: Option<i64>,
}

/// `DELETE .../kb/articles/{id}` (admin): with `If-Match` or `?version=`.
#[utoipa::path(delete, path = "/api/v1/clients/{slug}/kb/articles/{id}", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug"), ("id" = String, Path, description = "the object's id"), ("version" = Option<u32>, Query)), responses((status = 204, description = "deleted"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_delete(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, id)): AppPath<(String, String)>,
    headers: HeaderMap,
    AppQuery(query): AppQuery<DeleteQuery>,
) -> Result<Response, ApiError> {
    let client = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    let id = article_id(&id)?;
    let version = expected_version(&headers, query.version)?;
    match state.db.delete_article(client, id, version, principal.actor()).await? {
        Edit::Applied(()) => {
            state.knowledge.index().wake();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Edit::Stale(current) => Err(ApiError::StaleVersion(current)),
    }
}

/// Body of a preview: the template being written, and optionally whom to fill it in for.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewBody {
    body: String,
    /// The sample contact's name ("Núria Vila" when left out).
    #[serde(default)]
    contact_name: Option<String>,
    /// The conversation to fill in (`cnv_example` when left out): the composer fills an article in for the
    /// conversation it answers.
    #[serde(default)]
    conversation_id: Option<String>,
}

/// A preview: the filled-in text, or what a save would refuse.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Preview {
    /// The body filled in for the sample contact, this client and the caller, when it is valid.
    text: Option<String>,
    /// Why a save would refuse the body, when it would.
    problem: Option<TemplateProblem>,
}

/// A problem in a body, with its line when known.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TemplateProblem {
    line: Option<usize>,
    message: String,
}

/// `POST .../kb/preview`: the editor's live preview. A broken template is the answer (200 with a
/// `problem`), not a refused request: the editor asks at every pause in typing.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/kb/preview", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug")), request_body(content = PreviewBody, content_type = "application/json"), responses((status = 200, description = "the filled-in text or the template's problem", body = Preview), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_preview(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<PreviewBody>,
) -> Result<Json<Preview>, ApiError> {
    let client = principal.client_in_path(&slug)?;
    let client = state.db.client(client).await?;
    let problem = |line, message| Ok(Json(Preview { text: None, problem: Some(TemplateProblem { line, message }) }));
    let text = body.body.replace("\r\n", "\n");
    let text = text.trim_end();
    if text.chars().count() > ArticleContent::MAX_BODY_CHARS {
        return problem(None, format!("longer than {} characters", ArticleContent::MAX_BODY_CHARS));
    }
    let fill = template::Fill {
        contact_name: Some(body.contact_name.unwrap_or_else(|| "Núria Vila".into())),
        client_name: Some(client.profile.name),
        assistant_name: Some(principal.name().to_owned()),
        conversation_id: Some(body.conversation_id.unwrap_or_else(|| "cnv_example".into())),
    };
    match template::preview(text, &fill) {
        Ok(text) => Ok(Json(Preview { text: Some(text), problem: None })),
        Err(error) => problem(error.line, error.message),
    }
}

/// `GET .../kb/export`: the client's profile and articles as a zip of the `kb/` file layout.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/kb/export", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug")), responses((status = 200, description = "a zip archive: `kb/<client>/client.toml` and `kb/<client>/articles/<id>.md`", content_type = "application/zip"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_export(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
) -> Result<Response, ApiError> {
    let slug = principal.client_in_path(&slug)?;
    let client = state.db.client(slug.clone()).await?;
    let articles: Vec<_> =
        state.db.all_articles(slug.clone()).await?.into_iter().map(|article| (article.id, article.content)).collect();
    let name = format!("{slug}-kb.zip");
    let bytes = tokio::task::spawn_blocking(move || crate::kb::archive::write(&slug, &client.profile, &articles))
        .await
        .map_err(|error| ApiError::Internal(error.into()))?
        .map_err(|error| ApiError::Internal(error.into()))?;
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok(([(header::CONTENT_TYPE, "application/zip".to_owned()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}

/// What an import did.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Imported {
    /// Whether the archive's `client.toml` changed the client's profile.
    profile_updated: bool,
    /// New articles.
    created: usize,
    /// Articles whose content changed.
    updated: usize,
    /// Articles already as in the archive.
    unchanged: usize,
}

/// `POST .../kb/import` (admin): a zip of the `kb/` file layout (as the export writes it) for this client.
/// Every file is checked first: with any problem, nothing is stored and the 422 lists them all, each with
/// its file and line. Articles not in the archive are left alone; importing the same archive twice changes
/// nothing.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/kb/import", tag = "knowledge base", params(("slug" = String, Path, description = "the client's slug")), request_body(content = Vec<u8>, content_type = "application/zip"), responses((status = 200, description = "imported", body = Imported), (status = "4XX", description = "refused: the error body says why (every problem, with its file and line)", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn articles_import(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Json<Imported>, ApiError> {
    let slug = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    let kind = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !kind.starts_with("application/zip") && !kind.starts_with("application/octet-stream") {
        return Err(ApiError::UnsupportedMediaType("send the archive as application/zip".into()));
    }
    // The client must exist: an archive imports into a client, it does not create one.
    state.db.client(slug.clone()).await?;
    let files = tokio::task::spawn_blocking({
        let slug = slug.clone();
        move || crate::kb::archive::read(&bytes, &slug)
    })
    .await
    .map_err(|error| ApiError::Internal(error.into()))?
    .map_err(|problems| {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        ApiError::Rejected {
            code: "invalid_archive",
            message: format!("{} problem(s); nothing was imported:\n{}", listed.len(), listed.join("\n")),
        }
    })?;
    if let Some(profile) = &files.profile {
        crate::plugins::ClientLimits::check(&state.settings.plugins, &profile.plugin_limits)?;
    }
    let summary = state.db.import_client(slug, files.profile, files.articles, principal.actor()).await?;
    state.knowledge.index().wake();
    Ok(Json(Imported {
        profile_updated: summary.client_updated,
        created: summary.created,
        updated: summary.updated,
        unchanged: summary.unchanged,
    }))
}
