//! Ingest routes: the generic message API and the WhatsApp and Telegram webhooks.
//!
//! Every message is durably committed before the 2xx is sent. Webhooks are authenticated by the client's
//! channel secret, verified on the raw bytes before anything is parsed or stored. An unknown client or
//! channel, and a missing secret or signature header, are refused before the body is read; failed
//! authentications count against the caller's address.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, AppQuery, Principal};
use crate::channels::telegram::{self, TelegramConfig};
use crate::channels::whatsapp::{self, WhatsAppConfig};
use crate::channels::{ParsedMessage, verify_hmac_header};
use crate::domain::{ChannelKind, ChannelName, ClientSlug, InboundMessage, Role, Timestamp};
use crate::store::{IngestOutcome, StatusUpdate};

/// Body of `POST /api/v1/clients/{slug}/messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewMessage {
    external_id: String,
    from: Sender,
    text: String,
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sender {
    handle: String,
    #[serde(default)]
    name: Option<String>,
}

fn inbound(
    client: &ClientSlug,
    channel: &ChannelName,
    parsed: ParsedMessage,
    received_at: Timestamp,
) -> InboundMessage {
    InboundMessage {
        client: client.clone(),
        channel: channel.clone(),
        external_id: parsed.external_id,
        handle: parsed.handle,
        name: parsed.name,
        text: parsed.text,
        received_at,
    }
}

/// Stores messages and statuses, counts them and wakes the pipeline.
async fn store(
    state: &AppState,
    client: ClientSlug,
    channel: &ChannelName,
    messages: Vec<InboundMessage>,
    statuses: Vec<StatusUpdate>,
) -> Result<Vec<IngestOutcome>, ApiError> {
    if messages.is_empty() && statuses.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = state.db.ingest(client, messages, statuses).await?;
    let duplicates = outcomes.iter().filter(|outcome| outcome.duplicate).count() as u64;
    // Channel names of the message API are the client's choice: the label keeps to a closed set.
    let label = match channel.as_str() {
        name @ (ChannelName::API | ChannelName::WHATSAPP | ChannelName::TELEGRAM) => name,
        _ => "other",
    };
    state.metrics.ingested(label, outcomes.len() as u64 - duplicates, duplicates);
    if outcomes.iter().any(|outcome| !outcome.duplicate) {
        state.pipeline.wake();
    }
    Ok(outcomes)
}

/// `POST /api/v1/clients/{slug}/messages`: admin or the client's own token. 201 for a new message, 200 with
/// `"duplicate": true` and the first copy's ids for a repeat.
pub(super) async fn messages_create(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<NewMessage>,
) -> Result<Response, ApiError> {
    let client = principal.client_in_path(&slug)?;
    if principal.role == Role::Assistant {
        return Err(ApiError::Forbidden("assistants cannot submit customer messages".into()));
    }
    let channel = match &body.channel {
        Some(name) => ChannelName::parse(name)?,
        None => ChannelName::known(ChannelName::API),
    };
    let parsed = ParsedMessage {
        external_id: body.external_id,
        handle: body.from.handle,
        name: body.from.name,
        text: body.text,
    };
    let message = inbound(&client, &channel, parsed, Timestamp::now());
    message.validate()?;
    let outcome = store(&state, client, &channel, vec![message], Vec::new())
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("ingest returned no outcome")))?;
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let body = serde_json::json!({
        "message_id": outcome.message_id,
        "conversation_id": outcome.conversation_id,
        "duplicate": outcome.duplicate,
    });
    Ok((status, Json(body)).into_response())
}

/// Loads a channel's settings, answering 404 for an unknown client or an unconfigured channel (a provider
/// pointed at the wrong URL should see the error, and nothing learns whether the client exists).
async fn channel_config<C>(state: &AppState, slug: &str, kind: ChannelKind) -> Result<(ClientSlug, C), ApiError>
where
    C: serde::de::DeserializeOwned + Send + 'static,
{
    let client = ClientSlug::parse(slug).map_err(|_| ApiError::NotFound("channel".into()))?;
    let config =
        state.db.channel::<C>(client.clone(), kind).await?.ok_or_else(|| ApiError::NotFound("channel".into()))?;
    Ok((client, config))
}

/// Query of the WhatsApp subscription handshake.
#[derive(Deserialize)]
pub(super) struct VerifyQuery {
    #[serde(rename = "hub.mode", default)]
    mode: String,
    #[serde(rename = "hub.verify_token", default)]
    verify_token: String,
    #[serde(rename = "hub.challenge", default)]
    challenge: String,
}

/// `GET /webhooks/whatsapp/{slug}`: echoes `hub.challenge` as plain text when the verify token matches.
pub(super) async fn whatsapp_verify(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AppPath(slug): AppPath<String>,
    AppQuery(query): AppQuery<VerifyQuery>,
) -> Result<Response, ApiError> {
    let failures = &state.admission.auth_failures;
    if !failures.allows(peer.ip()) {
        return Err(failures.throttled());
    }
    let (_, config): (_, WhatsAppConfig) = channel_config(&state, &slug, ChannelKind::WhatsApp).await?;
    let token_matches: bool = query.verify_token.as_bytes().ct_eq(config.verify_token.as_bytes()).into();
    if query.mode != "subscribe" || !token_matches {
        failures.record(peer.ip());
        return Err(ApiError::Forbidden("the verify token does not match".into()));
    }
    // The challenge is the caller's text: plain text that no browser will sniff into HTML.
    let headers = [(CONTENT_TYPE, "text/plain; charset=utf-8"), (X_CONTENT_TYPE_OPTIONS, "nosniff")];
    Ok((StatusCode::OK, headers, query.challenge).into_response())
}

/// `POST /webhooks/whatsapp/{slug}`: stores every message of the batch and applies delivery statuses.
///
/// The signature covers the body, so only its presence can be checked before the body is read; the channel
/// must exist first.
pub(super) async fn whatsapp_receive(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AppPath(slug): AppPath<String>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let failures = &state.admission.auth_failures;
    if !failures.allows(peer.ip()) {
        return Err(failures.throttled());
    }
    let (client, config): (_, WhatsAppConfig) = channel_config(&state, &slug, ChannelKind::WhatsApp).await?;
    let signature = request.headers().get(whatsapp::SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    let Some(signature) = signature.filter(|value| value.trim().starts_with("sha256=")).map(str::to_owned) else {
        failures.record(peer.ip());
        return Err(invalid_signature());
    };
    let (_, body) = state.admission.ingest_body.read(request).await?;
    let _slot = state.admission.ingest.admit(client.as_str())?;
    if !verify_hmac_header(&config.app_secret, &body, Some(&signature)) {
        failures.record(peer.ip());
        return Err(invalid_signature());
    }
    let parsed = whatsapp::parse(&body).map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    let channel = ChannelName::known(ChannelName::WHATSAPP);
    let now = Timestamp::now();
    let messages: Vec<InboundMessage> =
        parsed.messages.into_iter().map(|message| inbound(&client, &channel, message, now)).collect();
    for message in &messages {
        message.validate()?;
    }
    let statuses = parsed.statuses.len();
    let outcomes = store(&state, client, &channel, messages, parsed.statuses).await?;
    Ok(Json(serde_json::json!({
        "messages": outcomes.len(),
        "duplicates": outcomes.iter().filter(|outcome| outcome.duplicate).count(),
        "statuses": statuses,
    })))
}

fn invalid_signature() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_signature",
        message: "X-Hub-Signature-256 is missing or does not match the body".into(),
    }
}

/// `POST /webhooks/telegram/{slug}`: stores the message of an `Update`; other updates are acknowledged and
/// ignored so Telegram does not retry them.
///
/// The channel and the secret header are checked before a byte of the body is read.
pub(super) async fn telegram_receive(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AppPath(slug): AppPath<String>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let failures = &state.admission.auth_failures;
    if !failures.allows(peer.ip()) {
        return Err(failures.throttled());
    }
    let (client, config): (_, TelegramConfig) = channel_config(&state, &slug, ChannelKind::Telegram).await?;
    if !config.verify(request.headers().get(telegram::SECRET_HEADER).map(|value| value.as_bytes())) {
        failures.record(peer.ip());
        return Err(ApiError::Unauthorized {
            code: "invalid_secret",
            message: "X-Telegram-Bot-Api-Secret-Token is missing or wrong".into(),
        });
    }
    let (_, body) = state.admission.ingest_body.read(request).await?;
    let _slot = state.admission.ingest.admit(client.as_str())?;
    let parsed = telegram::parse(&body).map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    let Some(parsed) = parsed else {
        return Ok(Json(serde_json::json!({ "ignored": true })));
    };
    let channel = ChannelName::known(ChannelName::TELEGRAM);
    let message = inbound(&client, &channel, parsed, Timestamp::now());
    message.validate()?;
    let outcome = store(&state, client, &channel, vec![message], Vec::new())
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("ingest returned no outcome")))?;
    Ok(Json(serde_json::json!({
        "message_id": outcome.message_id,
        "conversation_id": outcome.conversation_id,
        "duplicate": outcome.duplicate,
    })))
}
