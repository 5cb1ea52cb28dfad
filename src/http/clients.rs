//! `/api/v1/clients`: client cards and their channel settings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppPath, Principal};
use crate::channels::telegram::TelegramConfig;
use crate::channels::webhook::WebhookConfig;
use crate::channels::whatsapp::WhatsAppConfig;
use crate::domain::{ChannelKind, ClientProfile, ClientSlug, Invalid};
use crate::store::{ClientRecord, Db};

/// The client as JSON: slug, profile fields, public channel settings (never secrets), timestamps.
async fn client_json(db: &Db, record: ClientRecord) -> Result<Value, ApiError> {
    let mut object = match serde_json::to_value(&record.profile) {
        Ok(Value::Object(map)) => map,
        Ok(_) => Map::new(),
        Err(error) => return Err(ApiError::Internal(error.into())),
    };
    let mut channels = Map::new();
    for kind in &record.channels {
        let slug = record.slug.clone();
        let view = match kind {
            ChannelKind::WhatsApp => db.channel::<WhatsAppConfig>(slug, *kind).await?.map(|c| c.public_view()),
            ChannelKind::Telegram => db.channel::<TelegramConfig>(slug, *kind).await?.map(|c| c.public_view()),
            ChannelKind::Webhook => db.channel::<WebhookConfig>(slug, *kind).await?.map(|c| c.public_view()),
        };
        if let Some(view) = view {
            channels.insert(kind.as_str().to_owned(), view);
        }
    }
    object.insert("slug".into(), Value::String(record.slug.to_string()));
    object.insert("channels".into(), Value::Object(channels));
    object.insert("created_at".into(), Value::String(record.created_at.to_rfc3339()));
    object.insert("updated_at".into(), Value::String(record.updated_at.to_rfc3339()));
    Ok(Value::Object(object))
}

/// Reads a profile from a JSON object, with the path of the first problem in the error.
fn profile_from(object: Map<String, Value>) -> Result<ClientProfile, ApiError> {
    let profile: ClientProfile = serde_path_to_error::deserialize(Value::Object(object))
        .map_err(|error| ApiError::Invalid(error.to_string()))?;
    profile.validate()?;
    Ok(profile)
}

/// `GET /api/v1/clients`: every client an admin or assistant may see; a client token sees its own.
pub(super) async fn clients_list(State(db): State<Db>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let scope = principal.scope();
    let mut clients = Vec::new();
    for record in db.clients().await? {
        if scope.allows(&record.slug) {
            clients.push(client_json(&db, record).await?);
        }
    }
    Ok(Json(serde_json::json!({ "clients": clients })))
}

/// `POST /api/v1/clients` (admin): creates a client from `{"slug", ...profile}`.
pub(super) async fn clients_create(
    State(db): State<Db>,
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
    let record = db.create_client(slug, profile, principal.actor()).await?;
    Ok((StatusCode::CREATED, Json(client_json(&db, record).await?)))
}

/// `GET /api/v1/clients/{slug}`: admins, assistants and the client itself.
pub(super) async fn clients_show(
    State(db): State<Db>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let slug = principal.client_in_path(&slug)?;
    let record = db.client(slug).await?;
    Ok(Json(client_json(&db, record).await?))
}

/// `PATCH /api/v1/clients/{slug}` (admin): replaces the given top-level fields; `null` resets one to its
/// default. The slug cannot change.
pub(super) async fn clients_update(
    State(db): State<Db>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppJson(patch): AppJson<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
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
            for (key, value) in patch {
                if key == "slug" {
                    continue;
                }
                if value.is_null() {
                    object.remove(&key);
                } else {
                    object.insert(key, value);
                }
            }
            let profile: ClientProfile = serde_path_to_error::deserialize(Value::Object(object))
                .map_err(|error| Invalid::new("", error.to_string()))?;
            profile.validate()?;
            Ok(profile)
        })
        .await?;
    Ok(Json(client_json(&db, record).await?))
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
];

/// `PUT /api/v1/clients/{slug}/channels/{kind}` (admin): stores a channel's settings, secrets included; the
/// answer shows only the public part.
pub(super) async fn channels_put(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, kind)): AppPath<(String, String)>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    // Visibility before role: another client's slug is a 404 for a client token, never a 403.
    let slug = principal.client_in_path(&slug)?;
    principal.require_admin()?;
    let kind: ChannelKind = kind.parse().map_err(|_| ApiError::NotFound("channel".into()))?;
    let allow_private = state.settings.outbox.allow_private_targets;
    fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
        serde_path_to_error::deserialize(body).map_err(|error| ApiError::Invalid(error.to_string()))
    }
    let db = &state.db;
    let view = match kind {
        ChannelKind::WhatsApp => {
            let config: WhatsAppConfig = parse(body)?;
            config.validate(allow_private)?;
            let view = config.public_view();
            db.put_channel(slug, kind, config, principal.actor()).await?;
            view
        }
        ChannelKind::Telegram => {
            let config: TelegramConfig = parse(body)?;
            config.validate(allow_private)?;
            let view = config.public_view();
            db.put_channel(slug, kind, config, principal.actor()).await?;
            view
        }
        ChannelKind::Webhook => {
            let config: WebhookConfig = parse(body)?;
            config.validate(allow_private)?;
            let view = config.public_view();
            db.put_channel(slug, kind, config, principal.actor()).await?;
            view
        }
    };
    Ok(Json(serde_json::json!({ "channel": kind.as_str(), "settings": view })))
}
