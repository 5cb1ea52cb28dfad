//! Ingest routes: the generic message API and the WhatsApp and Telegram webhooks.
//!
//! Every message is durably committed before the 2xx is sent. Webhooks are authenticated by the client's
//! channel secret, verified on the raw bytes before anything is parsed or stored. An unknown client or
//! channel, and a missing secret or signature header, are refused before the body is read; failed
//! authentications count against the caller's address.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::AppState;
use super::admission::ClientAddress;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, AppQuery, Principal};
use crate::channels::telegram::{self, TelegramConfig};
use crate::channels::whatsapp::{self, WhatsAppConfig};
use crate::channels::{Parsed, ParsedMessage, verify_hmac_header};
use base64::Engine as _;

use crate::domain::{
    ChannelKind, ChannelName, ClientSlug, Context, InboundMessage, Media, MediaKind, Part, Role, Timestamp,
};
use crate::store::{InboundBatch, IngestOutcome, IngestReport};

/// Body of `POST /api/v1/clients/{slug}/messages`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewMessage {
    external_id: String,
    from: Sender,
    /// The text; may be left out when the message has parts or attachments.
    #[serde(default)]
    text: String,
    #[serde(default)]
    channel: Option<String>,
    /// Structured content beside the text: places, contact cards, button choices, orders.
    #[serde(default)]
    parts: Vec<Part>,
    /// Files: fetched from a URL (under the same rules as every outbound call) or given inline.
    #[serde(default)]
    attachments: Vec<NewAttachment>,
    /// What the message answers, whether it was forwarded, the ad it came from.
    #[serde(default)]
    context: Option<Context>,
}

/// A file sent with a message through the API: exactly one of `url` and `data_base64`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAttachment {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    /// `image`, `video`, `audio`, `voice`, `document`...; guessed from the type when left out.
    #[serde(default)]
    kind: Option<MediaKind>,
}

#[derive(Deserialize, utoipa::ToSchema)]
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
        parts: parsed.parts,
        context: parsed.context,
        user_id: parsed.user_id,
        username: parsed.username,
        received_at,
    }
}

/// Stores a batch, counts it and wakes the pipeline.
async fn store(
    state: &AppState,
    client: ClientSlug,
    channel: &ChannelName,
    batch: InboundBatch,
) -> Result<IngestReport, ApiError> {
    if batch.messages.is_empty() && batch.changes.is_empty() && batch.statuses.is_empty() {
        return Ok(IngestReport::default());
    }
    // Channel names of the message API are the client's choice: the label keeps to a closed set.
    let label = match channel.as_str() {
        ChannelName::API => ChannelName::API,
        ChannelName::WHATSAPP => ChannelName::WHATSAPP,
        ChannelName::TELEGRAM => ChannelName::TELEGRAM,
        _ => "other",
    };
    for change in &batch.changes {
        state.metrics.channel_change(label, change.kind());
    }
    let has_media = batch
        .messages
        .iter()
        .any(|message| message.parts.iter().any(|part| matches!(part, crate::domain::Part::Media(_))));
    let report = state.db.ingest(client, channel.clone(), batch).await?;
    if has_media {
        state.media.wake();
    }
    let duplicates = report.messages.iter().filter(|outcome| outcome.duplicate).count() as u64;
    state.metrics.ingested(label, report.messages.len() as u64 - duplicates, duplicates);
    if report.messages.iter().any(|outcome| !outcome.duplicate) {
        state.pipeline.wake();
    }
    Ok(report)
}

/// Turns what a webhook carried into a batch: messages that are too long for us are cut rather than
/// refused, because a refused webhook is retried and then dropped with every other message of its batch.
fn batch_of(state: &AppState, client: &ClientSlug, channel: &'static str, parsed: Parsed) -> InboundBatch {
    for kind in &parsed.ignored {
        state.metrics.update_ignored(channel, kind);
    }
    let channel_name = ChannelName::known(channel);
    let now = Timestamp::now();
    let messages = parsed
        .messages
        .into_iter()
        .filter_map(|message| {
            let mut message = inbound(client, &channel_name, message, now);
            message.fit();
            match message.validate() {
                Ok(()) => Some(message),
                Err(error) => {
                    // An id or handle longer than any provider sends: not a real message.
                    tracing::debug!(%error, "webhook message dropped");
                    state.metrics.update_ignored(channel, "malformed");
                    None
                }
            }
        })
        .collect();
    InboundBatch { messages, changes: parsed.changes, statuses: parsed.statuses }
}

/// The answer to a provider: what was stored of its call.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct WebhookAnswer {
    messages: usize,
    duplicates: usize,
    changes: usize,
    changes_repeated: usize,
    changes_unmatched: usize,
    statuses: usize,
    ignored: usize,
    /// A Telegram update carries at most one message: it is named, as that route always has.
    #[serde(flatten)]
    message: Option<IngestOutcome>,
}

impl WebhookAnswer {
    fn new(report: IngestReport, statuses: usize, ignored: usize) -> Self {
        Self {
            messages: report.messages.len(),
            duplicates: report.messages.iter().filter(|outcome| outcome.duplicate).count(),
            changes: report.changes_applied,
            changes_repeated: report.changes_repeated,
            changes_unmatched: report.changes_unmatched,
            statuses,
            ignored,
            message: None,
        }
    }
}

/// `POST /api/v1/clients/{slug}/messages`: admin or the client's own token. 201 for a new message, 200 with
/// `"duplicate": true` and the first copy's ids for a repeat.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/messages", tag = "messages", params(("slug" = String, Path, description = "the client's slug")), request_body(content = NewMessage, content_type = "application/json"), responses((status = 201, description = "stored; 200 with `duplicate: true` when it was already", body = crate::store::IngestOutcome), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn messages_create(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<NewMessage>,
) -> Result<Response, ApiError> {
    let client = principal.client_in_path(&slug)?;
    if principal.role() == Role::Assistant {
        return Err(ApiError::Forbidden("assistants cannot submit customer messages".into()));
    }
    let channel = match &body.channel {
        Some(name) => ChannelName::parse(name)?,
        None => ChannelName::known(ChannelName::API),
    };
    let mut parts = Vec::new();
    if !body.text.is_empty() {
        parts.push(Part::Text { text: body.text.clone() });
    }
    for (index, part) in body.parts.into_iter().enumerate() {
        if matches!(part, Part::Media(_)) {
            return Err(ApiError::Invalid(format!("parts[{index}]: files go in attachments")));
        }
        parts.push(part);
    }
    for (index, attachment) in body.attachments.into_iter().enumerate() {
        parts.push(attachment_part(&state, attachment).await.map_err(|error| match error {
            ApiError::Invalid(message) => ApiError::Invalid(format!("attachments[{index}].{message}")),
            other => other,
        })?);
    }
    if parts.is_empty() {
        return Err(ApiError::Invalid("text: a message needs a text, parts or attachments".into()));
    }
    let mut parsed = ParsedMessage::new(body.external_id, body.from.handle, parts);
    parsed.name = body.from.name;
    // A plain text message stays plain: its text as given, no parts to store.
    if parsed.parts.len() == 1 && matches!(parsed.parts[0], Part::Text { .. }) {
        parsed.text = body.text;
        parsed.parts.clear();
    }
    parsed.context = body.context.unwrap_or_default();
    let message = inbound(&client, &channel, parsed, Timestamp::now());
    message.validate()?;
    let batch = InboundBatch { messages: vec![message], ..InboundBatch::default() };
    let outcome = store(&state, client, &channel, batch)
        .await?
        .messages
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("ingest returned no outcome")))?;
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(outcome)).into_response())
}

/// Turns an API attachment into a media part: inline data is stored at once (`sha256:<hash>`), a URL is
/// checked now and fetched by the media worker like a provider's file.
async fn attachment_part(state: &AppState, attachment: NewAttachment) -> Result<Part, ApiError> {
    let allow_private = state.settings.outbox.allow_private_targets;
    let filename = attachment.filename.map(|name| name.chars().filter(|c| !c.is_control()).take(200).collect());
    let declared = attachment.content_type.clone();
    let (provider_id, size, mime_type) = match (attachment.url, attachment.data_base64) {
        (Some(url), None) => {
            crate::channels::validate_target_url("url", &url, allow_private)?;
            (url, None, declared)
        }
        (None, Some(data)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|error| ApiError::Invalid(format!("data_base64: not base64: {error}")))?;
            if bytes.is_empty() {
                return Err(ApiError::Invalid("data_base64: the file is empty".into()));
            }
            let content_type = crate::media::content_type(&bytes[..bytes.len().min(8192)], declared.as_deref());
            let mut writer = state.blobs.writer().await.map_err(|error| ApiError::Internal(error.into()))?;
            writer.write(bytes.into()).await.map_err(|error| ApiError::Internal(error.into()))?;
            let stored = writer.finish().await.map_err(|error| ApiError::Internal(error.into()))?;
            (format!("sha256:{}", stored.sha256), Some(stored.size), Some(content_type))
        }
        _ => return Err(ApiError::Invalid("url: give exactly one of url and data_base64".into())),
    };
    // By the type when known, else by the file name's (or the URL's) extension.
    let name = filename.clone().unwrap_or_else(|| provider_id.rsplit('/').next().unwrap_or_default().to_owned());
    let extension = name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()).unwrap_or_default();
    let kind =
        attachment.kind.unwrap_or_else(|| match (mime_type.as_deref().unwrap_or_default(), extension.as_str()) {
            (image, _) if image.starts_with("image/") => MediaKind::Image,
            (audio, _) if audio.starts_with("audio/") => MediaKind::Audio,
            (video, _) if video.starts_with("video/") => MediaKind::Video,
            ("", "jpg" | "jpeg" | "png" | "webp" | "gif" | "heic") => MediaKind::Image,
            ("", "mp3" | "ogg" | "oga" | "opus" | "m4a" | "aac" | "amr") => MediaKind::Audio,
            ("", "mp4" | "mov" | "webm" | "3gp") => MediaKind::Video,
            _ => MediaKind::Document,
        });
    let caption = match attachment.caption {
        Some(caption) => Some(crate::domain::parse_text("caption", &caption, 4_096)?),
        None => None,
    };
    Ok(Part::Media(Media { kind, provider_id, mime_type, filename, caption, size, emoji: None }))
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
#[utoipa::path(get, path = "/webhooks/whatsapp/{slug}", tag = "webhooks", params(("slug" = String, Path, description = "the client's slug"), ("hub.mode" = Option<String>, Query), ("hub.verify_token" = Option<String>, Query), ("hub.challenge" = Option<String>, Query)), responses((status = 200, description = "the challenge, echoed"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)))]
pub(super) async fn whatsapp_verify(
    State(state): State<AppState>,
    ClientAddress(peer): ClientAddress,
    AppPath(slug): AppPath<String>,
    AppQuery(query): AppQuery<VerifyQuery>,
) -> Result<Response, ApiError> {
    let failures = &state.admission.auth_failures;
    if !failures.allows(&peer) {
        return Err(failures.throttled());
    }
    let (_, config): (_, WhatsAppConfig) = channel_config(&state, &slug, ChannelKind::WhatsApp).await?;
    let token_matches: bool = query.verify_token.as_bytes().ct_eq(config.verify_token.expose().as_bytes()).into();
    if query.mode != "subscribe" || !token_matches {
        failures.record(&peer);
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
#[utoipa::path(post, path = "/webhooks/whatsapp/{slug}", tag = "webhooks", params(("slug" = String, Path, description = "the client's slug")), request_body(content = serde_json::Value, content_type = "application/json", description = "a WhatsApp Cloud API webhook notification, as Meta sends it"), responses((status = 200, description = "stored (or acknowledged and ignored)", body = WebhookAnswer), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)))]
pub(super) async fn whatsapp_receive(
    State(state): State<AppState>,
    ClientAddress(peer): ClientAddress,
    AppPath(slug): AppPath<String>,
    request: Request,
) -> Result<Json<WebhookAnswer>, ApiError> {
    let failures = &state.admission.auth_failures;
    if !failures.allows(&peer) {
        return Err(failures.throttled());
    }
    let (client, config): (_, WhatsAppConfig) = channel_config(&state, &slug, ChannelKind::WhatsApp).await?;
    let signature = request.headers().get(whatsapp::SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    let Some(signature) = signature.filter(|value| value.trim().starts_with("sha256=")).map(str::to_owned) else {
        failures.record(&peer);
        return Err(invalid_signature());
    };
    let (_, body) = state.admission.ingest_body.read(request).await?;
    let _slot = state.admission.ingest.admit(client.as_str())?;
    if !verify_hmac_header(config.app_secret.expose(), &body, Some(&signature)) {
        failures.record(&peer);
        return Err(invalid_signature());
    }
    let parsed = whatsapp::parse(&body).map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    let (statuses, ignored) = (parsed.statuses.len(), parsed.ignored.len());
    let batch = batch_of(&state, &client, ChannelName::WHATSAPP, parsed);
    let report = store(&state, client, &ChannelName::known(ChannelName::WHATSAPP), batch).await?;
    Ok(Json(WebhookAnswer::new(report, statuses, ignored)))
}

fn invalid_signature() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_signature",
        message: "X-Hub-Signature-256 is missing or does not match the body".into(),
    }
}

/// `POST /webhooks/telegram/{slug}`: stores the message of an `Update` or applies the change it reports;
/// other updates are acknowledged and counted, so Telegram does not retry them.
///
/// The channel and the secret header are checked before a byte of the body is read.
#[utoipa::path(post, path = "/webhooks/telegram/{slug}", tag = "webhooks", params(("slug" = String, Path, description = "the client's slug")), request_body(content = serde_json::Value, content_type = "application/json", description = "a Telegram Bot API update, as Telegram sends it"), responses((status = 200, description = "stored (or acknowledged and ignored)", body = WebhookAnswer), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)))]
pub(super) async fn telegram_receive(
    State(state): State<AppState>,
    ClientAddress(peer): ClientAddress,
    AppPath(slug): AppPath<String>,
    request: Request,
) -> Result<Json<WebhookAnswer>, ApiError> {
    let failures = &state.admission.auth_failures;
    if !failures.allows(&peer) {
        return Err(failures.throttled());
    }
    let (client, config): (_, TelegramConfig) = channel_config(&state, &slug, ChannelKind::Telegram).await?;
    if !config.verify(request.headers().get(telegram::SECRET_HEADER).map(|value| value.as_bytes())) {
        failures.record(&peer);
        return Err(ApiError::Unauthorized {
            code: "invalid_secret",
            message: "X-Telegram-Bot-Api-Secret-Token is missing or wrong".into(),
        });
    }
    let (_, body) = state.admission.ingest_body.read(request).await?;
    let _slot = state.admission.ingest.admit(client.as_str())?;
    let parsed = telegram::parse(&body).map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    let ignored = parsed.ignored.len();
    let batch = batch_of(&state, &client, ChannelName::TELEGRAM, parsed);
    let report = store(&state, client, &ChannelName::known(ChannelName::TELEGRAM), batch).await?;
    let first = report.messages.first().cloned();
    Ok(Json(WebhookAnswer { message: first, ..WebhookAnswer::new(report, 0, ignored) }))
}
