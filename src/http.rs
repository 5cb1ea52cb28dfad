//! The HTTP surface: routes, admission, error shape and the server loop.
//!
//! Two separate concurrency budgets (a bulkhead): ingest (webhooks and the message API) and everything else,
//! so a flood of inbox requests cannot starve providers' webhooks and the other way round. Each budget has a
//! share per principal (a client for ingest; for the API a person, whatever session or token they use, or an
//! integration's token), so one caller cannot take all of it.
//! Past its budget a request gets a fast 503 with `Retry-After` instead of waiting; bodies are read before a
//! slot is taken, under a minimum rate ([`admission`]). Each request may run for a bounded time (504).
//! Health and metrics sit outside both budgets.

mod admission;
mod articles;
mod audit;
mod clients;
mod console;
mod conversations;
mod error;
mod events;
mod extract;
mod ingest;
mod media;
mod openapi;
mod ops;
mod paging;
mod people;
mod plugins;
mod reports;
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
use axum::{BoxError, Router};
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Builds every route with its layers (see [`admission`] for the order a request passes them in), and the
/// OpenAPI document of them all. Every route is registered through `routes!` from its handler's
/// `#[utoipa::path]`, so the document and the router cannot disagree.
pub(crate) fn router(state: AppState) -> Router {
    let http = &state.settings.http;
    let admission = &state.admission;
    // Webhook handlers check the channel and its secret before they read the body and take a slot.
    let webhooks = OpenApiRouter::new()
        .routes(routes!(ingest::whatsapp_verify, ingest::whatsapp_receive))
        .routes(routes!(ingest::telegram_receive))
        .layer(DefaultBodyLimit::max(http.ingest_body_limit_bytes))
        .layer(request_timeout(&state.settings));
    let message_api = OpenApiRouter::new()
        .routes(routes!(ingest::messages_create))
        .layer(DefaultBodyLimit::max(http.ingest_body_limit_bytes))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.ingest.clone(), admission::admit_client))
        .layer(middleware::from_fn_with_state(admission.ingest_body, admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    // The largest component any client may be granted, plus the other fields and the multipart framing (a
    // knowledge-base archive has the same cap); each client's own limit is checked once it is known.
    let upload_limit = state.settings.plugins.largest_component_bytes().saturating_add(128 * 1024);
    let uploads = OpenApiRouter::new()
        .routes(routes!(plugins::plugins_list, plugins::plugins_upload))
        .routes(routes!(articles::articles_import))
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.clone(), admission::admit_token))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, upload_limit), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    // An attachment plus the caption and the multipart framing.
    let attachment_limit = state.settings.media.max_upload_bytes.saturating_add(64 * 1024);
    let attachments = OpenApiRouter::new()
        .routes(routes!(conversations::conversations_attachment))
        .layer(DefaultBodyLimit::max(attachment_limit))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.clone(), admission::admit_token))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, attachment_limit), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    let api = OpenApiRouter::new()
        .routes(routes!(clients::clients_list, clients::clients_create))
        .routes(routes!(clients::clients_show, clients::clients_update))
        .routes(routes!(clients::channels_put))
        .routes(routes!(articles::articles_list, articles::articles_create))
        .routes(routes!(articles::articles_show, articles::articles_update, articles::articles_delete))
        .routes(routes!(articles::articles_preview))
        .routes(routes!(articles::articles_export))
        .routes(routes!(plugins::plugins_show))
        .routes(routes!(plugins::plugins_replay))
        .routes(routes!(plugins::plugins_action))
        .routes(routes!(plugins::decisions_list))
        .routes(routes!(conversations::conversations_list))
        .routes(routes!(conversations::conversations_show))
        .routes(routes!(conversations::conversations_reply))
        .routes(routes!(conversations::conversations_template))
        .routes(routes!(conversations::conversations_close))
        .routes(routes!(conversations::conversations_reopen))
        .routes(routes!(conversations::conversations_assign))
        .routes(routes!(conversations::messages_decisions))
        .routes(routes!(conversations::messages_retry))
        .routes(routes!(conversations::contacts_tags))
        .routes(routes!(people::people_list, people::people_create))
        .routes(routes!(people::people_password))
        .routes(routes!(people::people_disable))
        .routes(routes!(people::people_clients))
        .routes(routes!(clients::assistants_show, clients::assistants_put))
        .routes(routes!(session::session_delete))
        .routes(routes!(session::me_show))
        .routes(routes!(session::me_password))
        .routes(routes!(tokens::tokens_list, tokens::tokens_create))
        .routes(routes!(tokens::tokens_revoke))
        .routes(routes!(audit::audit_list))
        .routes(routes!(reports::reports_summary))
        .routes(routes!(events::events_stream))
        .routes(routes!(media::media_show))
        .routes(routes!(media::media_retry))
        .routes(routes!(suggestions::suggestions_for_message))
        .routes(routes!(suggestions::suggestions_for_query))
        .routes(routes!(suggestions::suggestions_feedback))
        .layer(DefaultBodyLimit::max(http.api_body_limit_bytes))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(admission.clone(), admission::admit_token))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, http.api_body_limit_bytes), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::authenticate));
    // Signing in has no credential to check first: a throttled address is refused before its body is read,
    // and the password check takes one of a few global slots (`people::Passwords`).
    let sign_in = OpenApiRouter::new()
        .routes(routes!(session::session_create))
        .layer(DefaultBodyLimit::max(http.api_body_limit_bytes))
        .layer(request_timeout(&state.settings))
        .layer(middleware::from_fn_with_state(BodyRule::new(http, http.api_body_limit_bytes), admission::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), admission::throttle_address));
    let ops = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::openapi_json));

    let (router, openapi) = OpenApiRouter::with_openapi(openapi::base())
        .merge(webhooks)
        .merge(message_api)
        .merge(uploads)
        .merge(attachments)
        .merge(api)
        .merge(sign_in)
        .merge(ops)
        .split_for_parts();
    router
        .layer(axum::Extension(openapi::Document::new(&openapi)))
        // The console's pages and files: not API, so not in the document.
        .merge(console::router())
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_registered_from_its_documented_operation() {
        // `routes!` takes a handler's path and method from its `#[utoipa::path]`, so a route added any other
        // way would be served but missing from `/api/v1/openapi.json`. (The console's page and files are not
        // API: `console::router` serves them.)
        let source = include_str!("http.rs");
        let plain_route = concat!(".ro", "ute(");
        assert!(!source.contains(plain_route), "a route registered around the OpenAPI document");
        let handlers = source.matches(concat!("routes", "!(")).count();
        assert!(handlers >= 40, "{handlers} route registrations");
    }
}
