//! `/api/v1/clients`: client cards and their channel settings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, Principal};
use crate::channels::ChannelConfig;
use crate::channels::telegram::TelegramConfig;
use crate::channels::webhook::WebhookConfig;
use crate::channels::whatsapp::WhatsAppConfig;
use crate::config::Settings;
use crate::domain::{ChannelKind, ClientProfile, ClientSlug, Invalid, Timestamp};
use crate::plugins::ClientLimits;
use crate::store::{ClientRecord, Db};

/// A client card: slug, profile fields, public channel settings (never secrets), timestamps.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ClientBody {
    slug: ClientSlug,
    #[serde(flatten)]
    profile: ClientProfile,
    channels: BTreeMap<&'static str, Value>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// Every client the caller may see.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ClientList {
    clients: Vec<ClientBody>,
}

async fn client_body(db: &Db, record: ClientRecord) -> Result<ClientBody, ApiError> {
    async fn public_view<C: ChannelConfig>(db: &Db, slug: &ClientSlug) -> Result<Option<Value>, ApiError> {
        Ok(db.channel::<C>(slug.clone(), C::KIND).await?.map(|config| config.public_view()))
    }
    let mut channels = BTreeMap::new();
    for kind in &record.channels {
        let view = match kind {
            ChannelKind::WhatsApp => public_view::<WhatsAppConfig>(db, &record.slug).await?,
            ChannelKind::Telegram => public_view::<TelegramConfig>(db, &record.slug).await?,
            ChannelKind::Webhook => public_view::<WebhookConfig>(db, &record.slug).await?,
        };
        if let Some(view) = view {
            channels.insert(kind.as_str(), view);
        }
    }
    Ok(ClientBody {
        slug: record.slug,
        profile: record.profile,
        channels,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

/// Reads a profile from a JSON object, with the path of the first problem in the error.
fn profile_from(object: Map<String, Value>) -> Result<ClientProfile, ApiError> {
    let profile: ClientProfile = serde_path_to_error::deserialize(Value::Object(object))
        .map_err(|error| ApiError::Invalid(error.to_string()))?;
    profile.validate()?;
    Ok(profile)
}

/// `GET /api/v1/clients`: every client an admin or assistant may see; a client token sees its own.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", responses((status = 200, description = "the clients the caller may see", body = ClientList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn clients_list(State(db): State<Db>, principal: Principal) -> Result<Json<ClientList>, ApiError> {
    let scope = principal.scope();
    let mut clients = Vec::new();
    for record in db.clients().await? {
        if scope.allows(&record.slug) {
            clients.push(client_body(&db, record).await?);
        }
    }
    Ok(Json(ClientList { clients }))
}

/// `POST /api/v1/clients` (admin): creates a client from `{"slug", ...profile}`.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body(content = crate::domain::ClientProfile, content_type = "application/json", description = "the client's profile, and its `slug`"), responses((status = 201, description = "created", body = ClientBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn clients_create(
    State(db): State<Db>,
    State(settings): State<Arc<Settings>>,
    principal: Principal,
    AppJson(body): AppJson<Map<String, Value>>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require_admin()?;
    let mut body = body;
    let slug = match body.remove("slug") {
        Some(Value::String(slug)) => ClientSlug::parse(&slug)?,
        Some(_) => return Err(Invalid::new("slug", "must be a string").into()),
        None => return Err(Invalid::new("slug", "is required").into()),
    };
    let profile = profile_from(body)?;
    ClientLimits::check(&settings.plugins, &profile.plugin_limits)?;
    let record = db.create_client(slug, profile, principal.actor()).await?;
    Ok((StatusCode::CREATED, Json(client_body(&db, record).await?)))
}

/// `GET /api/v1/clients/{slug}`: admins, assistants and the client itself.
#[utoipa::path(get, path = "/api/v1/clients/{slug}", tag = "clients", params(("slug" = String, Path, description = "the client's slug")), responses((status = 200, description = "the client card", body = ClientBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn clients_show(
    State(db): State<Db>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
) -> Result<Json<ClientBody>, ApiError> {
    let slug = principal.client_in_path(&slug)?;
    let record = db.client(slug).await?;
    Ok(Json(client_body(&db, record).await?))
}

/// `PATCH /api/v1/clients/{slug}` (admin): replaces the given top-level fields; `null` resets one to its
/// default. The slug cannot change.
#[utoipa::path(patch, path = "/api/v1/clients/{slug}", tag = "clients", params(("slug" = String, Path, description = "the client's slug")), request_body(content = crate::domain::ClientProfile, content_type = "application/json", description = "the fields of the profile to replace; `null` resets one"), responses((status = 200, description = "the changed card", body = ClientBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn clients_update(
    State(db): State<Db>,
    State(settings): State<Arc<Settings>>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(patch): AppJson<Map<String, Value>>,
) -> Result<Json<ClientBody>, ApiError> {
    // Visibility before role: another client's slug is a 404 for a client token, never a 403.
    let slug = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    if patch.get("slug").is_some_and(|value| value.as_str() != Some(slug.as_str())) {
        return Err(Invalid::new("slug", "cannot be changed").into());
    }
    // Reject bad patches before taking the writer: a patch that is invalid on its own is invalid on any profile.
    for key in patch.keys() {
        if !PROFILE_FIELDS.contains(&key.as_str()) && key != "slug" {
            return Err(ApiError::Invalid(format!(
                "unknown field `{key}`, expected one of {}",
                PROFILE_FIELDS.join(", ")
            )));
        }
    }
    let record = db
        .update_client(slug, principal.actor(), move |current| {
            let Ok(Value::Object(mut object)) = serde_json::to_value(&current) else {
                return Err(crate::store::Error::Conflict("stored profile is not an object".into()));
            };
            for (key, value) in &patch {
                if key == "slug" {
                    continue;
                }
                if value.is_null() {
                    object.remove(key);
                } else {
                    object.insert(key.clone(), value.clone());
                }
            }
            let profile: ClientProfile = serde_path_to_error::deserialize(Value::Object(object))
                .map_err(|error| Invalid::new("", error.to_string()))?;
            profile.validate()?;
            ClientLimits::check(&settings.plugins, &profile.plugin_limits)?;
            Ok(profile)
        })
        .await?;
    Ok(Json(client_body(&db, record).await?))
}

/// Top-level fields of a profile that a PATCH may name.
const PROFILE_FIELDS: &[&str] = &[
    "name",
    "timezone",
    "languages",
    "business_hours",
    "sla",
    "instructions",
    "escalation_contact",
    "defaults",
    "suggestions",
    "whatsapp_templates",
    "plugin_limits",
];

/// `PUT /api/v1/clients/{slug}/channels/{kind}` (admin): stores a channel's settings, secrets included; the
/// answer shows only the public part.
#[utoipa::path(put, path = "/api/v1/clients/{slug}/channels/{kind}", tag = "clients", params(("slug" = String, Path, description = "the client's slug"), ("kind" = String, Path, description = "whatsapp, telegram or webhook")), request_body(content = serde_json::Value, content_type = "application/json", description = "the channel's settings: for `whatsapp` `phone_number_id`, `access_token`, `app_secret`, `verify_token`; for `telegram` `bot_token`, `secret_token`; for `webhook` `url`, `secret` (see the README)"), responses((status = 200, description = "stored (secrets are never returned)", body = ChannelSettings), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn channels_put(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, kind)): AppPath<(String, String)>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<ChannelSettings>, ApiError> {
    // Visibility before role: another client's slug is a 404 for a client token, never a 403.
    let slug = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    let kind: ChannelKind = kind.parse().map_err(|_| ApiError::NotFound("channel".into()))?;
    /// Reads, checks and stores one kind of settings; answers with their public part.
    async fn put<C: ChannelConfig>(
        state: &AppState,
        slug: ClientSlug,
        body: Value,
        actor: String,
    ) -> Result<ChannelSettings, ApiError> {
        let config: C = serde_path_to_error::deserialize(body).map_err(|error| ApiError::Invalid(error.to_string()))?;
        config.validate(state.settings.outbox.allow_private_targets)?;
        let settings = config.public_view();
        state.db.put_channel(slug, C::KIND, config, actor).await?;
        Ok(ChannelSettings { channel: C::KIND, settings })
    }
    let actor = principal.actor();
    let answer = match kind {
        ChannelKind::WhatsApp => put::<WhatsAppConfig>(&state, slug, body, actor).await?,
        ChannelKind::Telegram => put::<TelegramConfig>(&state, slug, body, actor).await?,
        ChannelKind::Webhook => put::<WebhookConfig>(&state, slug, body, actor).await?,
    };
    Ok(Json(answer))
}

/// A channel's settings as the API shows them: never a secret.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ChannelSettings {
    channel: ChannelKind,
    settings: Value,
}

/// The assistants who serve a client.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AssistantList {
    assistants: Vec<crate::store::PersonRecord>,
}

/// Body of the assistants who serve a client, by email.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssistantsBody {
    assistants: Vec<String>,
}

/// `GET /api/v1/clients/{slug}/assistants` (admin): who serves this client.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/assistants", tag = "people", params(("slug" = String, Path, description = "the client's slug")), responses((status = 200, description = "the assistants who serve the client", body = AssistantList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn assistants_show(
    State(db): State<Db>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
) -> Result<Json<AssistantList>, ApiError> {
    principal.require_admin()?;
    let slug = principal.client_in_path(&slug)?;
    Ok(Json(AssistantList { assistants: db.client_assistants(slug).await? }))
}

/// `PUT /api/v1/clients/{slug}/assistants` (admin): `{"assistants": [email, ...]}` replaces who serves it.
#[utoipa::path(put, path = "/api/v1/clients/{slug}/assistants", tag = "people", params(("slug" = String, Path, description = "the client's slug")), request_body(content = AssistantsBody, content_type = "application/json"), responses((status = 200, description = "the assistants who now serve the client", body = AssistantList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn assistants_put(
    State(db): State<Db>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<AssistantsBody>,
) -> Result<Json<AssistantList>, ApiError> {
    principal.require_admin()?;
    let slug = principal.client_in_path(&slug)?;
    let emails =
        body.assistants.iter().map(|email| crate::domain::Email::parse(email)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(AssistantList { assistants: db.set_client_assistants(slug, emails, principal.actor()).await? }))
}
