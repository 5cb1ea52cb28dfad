//! The HTTP surface: routes, admission, error shape and the server loop.
//!
//! Two separate concurrency budgets (a bulkhead): ingest (webhooks and the message API) and everything else,
//! so a flood of inbox requests cannot starve providers' webhooks and the other way round. Each budget has a
//! share per principal (a client for ingest, a token for the API), so one caller cannot take all of it.
//! Past its budget a request gets a fast 503 with `Retry-After` instead of waiting; bodies are read before a
//! slot is taken, under a minimum rate ([`admission`]). Each request may run for a bounded time (504).
//! Health and metrics sit outside both budgets.

mod admission;
mod articles;
mod audit;
mod clients;
mod conversations;
mod error;
mod events;
mod extract;
mod ingest;
mod media;
mod ops;
mod paging;
mod people;
mod plugins;
mod server;
mod session;
mod suggestions;
mod tokens;

pub(crate) use error::ApiError;
pub(crate) use server::serve;

use std::sync::Arc;
use std::time::Instant;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{BoxError, Router};
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::blobs::Blobs;
use crate::config::Settings;
use crate::kb::Knowledge;
use crate::media::MediaHandle;
use crate::metrics::Metrics;
use crate::outbox::OutboxHandle;
use crate::pipeline::PipelineHandle;
use crate::plugins::rules::Rules;
use crate::store::Db;
pub(crate) use admission::Admission;
use admission::BodyRule;
use error::InternalCause;

/// What handlers share. Every field is a cheap handle.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Wakes message processing.
    #[from_ref(skip)]
    pub pipeline: PipelineHandle,
    /// Wakes delivery.
    #[from_ref(skip)]
    pub outbox: OutboxHandle,
    /// Wakes media downloads.
    #[from_ref(skip)]
    pub media: MediaHandle,
    /// Stored media files.
    pub blobs: Blobs,
    /// Metrics.
    pub metrics: Metrics,
    /// The knowledge base: search, language detection, learned boosts.
    pub knowledge: Knowledge,
    /// Rule plugins: uploads, chains, replays.
    pub rules: Rules,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Budgets and body rules.
    pub(crate) admission: Admission,
    /// Password hashing and checking, a few at a time off the async threads.
    pub passwords: crate::people::Passwords,
    /// Cancelled when the server begins to shut down: long-lived responses (event streams) end then.
    pub stopping: tokio_util::sync::CancellationToken,
    /// The background workers, watched (`/readyz` is red while one is down).
    pub workers: crate::worker::Workers,
}

/// Builds every route with its layers (see [`admission`] for the order a request passes them in).
pub(crate) fn router(state: AppState) -> Router {
    let http = &state.settings.http;
    let admission = &state.admission;
    // Webhook handlers check the channel and its secret before they read the body and take a slot.
    let webhooks = Router::new()
        .route("/webhooks/whatsapp/{slug}", get(ingest::whatsapp_verify).post(ingest::whatsapp_receive))
        .route("/webhooks/telegram/{slug}", post(ingest::telegram_receive))
        .layer(DefaultBodyLimit::max(http.ingest_body_limit_bytes))
        .layer(request_timeout(&state.settings));
    let message_api = Router::new()
        .route("/api/v1/clients/{slug}/messages", post(ingest::messages_create))
        .layer(DefaultBodyLimit::max(http.ingest_body_limit_bytes))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.ingest.clone(), admission::admit_client))
        .layer(middleware::from_fn_with_state(admission.ingest_body, admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    // The component plus the other fields and the multipart framing.
    let upload_limit = state.settings.plugins.max_component_bytes.saturating_add(128 * 1024);
    let uploads = Router::new()
        .route("/api/v1/clients/{slug}/plugins", get(plugins::plugins_list).post(plugins::plugins_upload))
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.clone(), admission::admit_token))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, upload_limit), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    // An attachment plus the caption and the multipart framing.
    let attachment_limit = state.settings.media.max_upload_bytes.saturating_add(64 * 1024);
    let attachments = Router::new()
        .route("/api/v1/conversations/{id}/attachments", post(conversations::conversations_attachment))
        .layer(DefaultBodyLimit::max(attachment_limit))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.clone(), admission::admit_token))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, attachment_limit), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    let api = Router::new()
        .route("/api/v1/clients", get(clients::clients_list).post(clients::clients_create))
        .route("/api/v1/clients/{slug}", get(clients::clients_show).patch(clients::clients_update))
        .route("/api/v1/clients/{slug}/channels/{kind}", put(clients::channels_put))
        .route("/api/v1/clients/{slug}/kb/articles", get(articles::articles_list).post(articles::articles_create))
        .route(
            "/api/v1/clients/{slug}/kb/articles/{id}",
            get(articles::articles_show).put(articles::articles_update).delete(articles::articles_delete),
        )
        .route("/api/v1/clients/{slug}/plugins/{id}", get(plugins::plugins_show))
        .route("/api/v1/clients/{slug}/plugins/{id}/replay", post(plugins::plugins_replay))
        .route("/api/v1/clients/{slug}/plugins/{id}/{action}", post(plugins::plugins_action))
        .route("/api/v1/clients/{slug}/decisions", get(plugins::decisions_list))
        .route("/api/v1/conversations", get(conversations::conversations_list))
        .route("/api/v1/conversations/{id}", get(conversations::conversations_show))
        .route("/api/v1/conversations/{id}/replies", post(conversations::conversations_reply))
        .route("/api/v1/conversations/{id}/templates", post(conversations::conversations_template))
        .route("/api/v1/conversations/{id}/close", post(conversations::conversations_close))
        .route("/api/v1/conversations/{id}/reopen", post(conversations::conversations_reopen))
        .route("/api/v1/conversations/{id}/assign", post(conversations::conversations_assign))
        .route("/api/v1/messages/{id}/decisions", get(conversations::messages_decisions))
        .route("/api/v1/contacts/{id}/tags", put(conversations::contacts_tags))
        .route("/api/v1/people", get(people::people_list).post(people::people_create))
        .route("/api/v1/people/{id}/password", put(people::people_password))
        .route("/api/v1/people/{id}/disable", post(people::people_disable))
        .route("/api/v1/people/{id}/clients", put(people::people_clients))
        .route("/api/v1/clients/{slug}/assistants", get(clients::assistants_show).put(clients::assistants_put))
        .route("/api/v1/session", delete(session::session_delete))
        .route("/api/v1/me", get(session::me_show))
        .route("/api/v1/me/password", put(session::me_password))
        .route("/api/v1/tokens", get(tokens::tokens_list).post(tokens::tokens_create))
        .route("/api/v1/tokens/{id}", delete(tokens::tokens_revoke))
        .route("/api/v1/audit", get(audit::audit_list))
        .route("/api/v1/events", get(events::events_stream))
        .route("/api/v1/media/{id}", get(media::media_show))
        .route("/api/v1/media/{id}/retry", post(media::media_retry))
        .route("/api/v1/messages/{id}/suggestions", get(suggestions::suggestions_for_message))
        .route("/api/v1/clients/{slug}/suggestions", get(suggestions::suggestions_for_query))
        .route("/api/v1/suggestions/feedback", post(suggestions::suggestions_feedback))
        .layer(DefaultBodyLimit::max(http.api_body_limit_bytes))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.clone(), admission::admit_token))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, http.api_body_limit_bytes), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    // Signing in has no credential to check first: a throttled address is refused before its body is read,
    // and the password check takes one of a few global slots (`people::Passwords`).
    let sign_in = Router::new()
        .route("/api/v1/session", post(session::session_create))
        .layer(DefaultBodyLimit::max(http.api_body_limit_bytes))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, http.api_body_limit_bytes), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::throttle_address));
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));

    Router::new()
        .merge(webhooks)
        .merge(message_api)
        .merge(uploads)
        .merge(attachments)
        .merge(api)
        .merge(sign_in)
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // A 500's cause is logged once by `observe`; shed (503) and timed-out (504) requests are counted in
                // the metrics, and one log line each would let a flood of them flood the log.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            error::error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }))
        .with_state(state)
}

/// The span of one request: the method and the path, never the query string (the WhatsApp handshake carries
/// its verify token there) nor any header.
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!("request", method = method_label(request.method()), path = %request.uri().path())
}

/// The method as a label from a closed set: a made-up method name must not become a new metric series or a
/// long log field.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Turns a request running past `http.request_timeout_ms` into 504.
fn request_timeout(
    settings: &Settings,
) -> impl tower::Layer<
    axum::routing::Route,
    Service: tower::Service<Request, Response = Response, Error = std::convert::Infallible, Future: Send>
                 + Clone
                 + Send
                 + Sync
                 + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|error: BoxError| async move {
            if error.is::<tower::timeout::error::Elapsed>() {
                ApiError::Timeout.into_response()
            } else {
                ApiError::Internal(anyhow::anyhow!("middleware failed: {error}")).into_response()
            }
        }))
        .layer(TimeoutLayer::new(settings.http.request_timeout()))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Records each request in the metrics and logs the cause of every 500 once, inside the request's span.
async fn observe(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let in_flight = metrics.request_started(&route);
    let response = next.run(request).await;
    drop(in_flight);
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(error = %format!("{cause:#}"), %route, "request failed");
    }
    metrics.request(method, &route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
