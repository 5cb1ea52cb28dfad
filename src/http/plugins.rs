//! Plugin lifecycle routes: upload, list, activate / shadow / disable / deactivate, rollback, replay, and
//! the decisions log. A client token manages its own client's plugins; an admin token any client's.

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{AppBytes, AppPath, AppQuery, Principal, id_or_404};
use super::paging::{next_cursor, page_request};
use crate::domain::{
    ClientSlug, Decision, HookKind, LogLine, MessageId, PluginId, PluginState, Role, Timestamp, parse_label,
};
use crate::pipeline::ReplayReport;
use crate::plugins::rules::AdmitError;
use crate::plugins::{ClientLimits, LoadError};
use crate::store::{DecisionFilter, DecisionRecord, PluginRecord};

/// Longest configuration accepted, in bytes.
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// A plugin version as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PluginBody {
    id: PluginId,
    client: ClientSlug,
    name: String,
    version: String,
    sha256: String,
    /// The contract version it was built against (`recado:plugin@0.2.0`); null for versions uploaded before
    /// recado recorded it.
    contract: Option<String>,
    size: u64,
    /// The configuration as JSON (stored as the text it was given in).
    config: Value,
    state: PluginState,
    state_reason: Option<String>,
    position: i64,
    consecutive_failures: u32,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// In the answer to an upload only: each limit the trial calls came near (more than half used), the
    /// longest message allowed failing, a component over half the size allowed. Accepted all the same.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl From<PluginRecord> for PluginBody {
    fn from(plugin: PluginRecord) -> Self {
        Self {
            config: serde_json::from_str(&plugin.config).unwrap_or(Value::Null),
            id: plugin.id,
            client: plugin.client,
            name: plugin.name,
            version: plugin.version,
            sha256: plugin.sha256,
            contract: plugin.contract,
            size: plugin.size,
            state: plugin.state,
            state_reason: plugin.state_reason,
            position: plugin.position,
            consecutive_failures: plugin.failures,
            created_at: plugin.created_at,
            updated_at: plugin.updated_at,
            warnings: Vec::new(),
        }
    }
}

/// A recorded decision as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DecisionBody {
    message_id: MessageId,
    source: String,
    hook: HookKind,
    applied: bool,
    /// The plugin version, for a plugin's own run.
    plugin: Option<PluginRef>,
    decision: Option<Decision>,
    failure: Option<String>,
    logs: Vec<LogLine>,
    fuel: Option<u64>,
    duration_us: Option<u64>,
    created_at: Timestamp,
}

/// The plugin version a decision came from.
#[derive(Serialize, utoipa::ToSchema)]
struct PluginRef {
    id: PluginId,
    name: Option<String>,
    version: Option<String>,
}

impl From<DecisionRecord> for DecisionBody {
    fn from(record: DecisionRecord) -> Self {
        Self {
            plugin: record.plugin_id.map(|id| PluginRef {
                id,
                name: record.plugin_name,
                version: record.plugin_version,
            }),
            message_id: record.message_id,
            source: record.source.key(record.hook),
            hook: record.hook,
            applied: record.applied,
            decision: record.decision,
            failure: record.failure,
            logs: record.logs,
            fuel: record.fuel,
            duration_us: record.duration_us,
            created_at: record.created_at,
        }
    }
}

/// A client's plugin versions, and the limits its plugins run under.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PluginList {
    plugins: Vec<PluginBody>,
    limits: LimitsBody,
}

/// The limits a client's plugins run under: the server's defaults with what an admin granted it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LimitsBody {
    /// Linear memory of one call, in bytes.
    memory_bytes: usize,
    /// Instructions (fuel) of one call.
    fuel: u64,
    /// Deadline of one call, in milliseconds.
    deadline_ms: u64,
    /// Largest component an upload may carry, in bytes.
    max_component_bytes: usize,
    /// Plugin time of one of the client's turns, in milliseconds.
    client_slice_ms: u64,
    /// Longest a message waits for the client's rules, in milliseconds.
    client_queue_ms: u64,
}

impl From<ClientLimits> for LimitsBody {
    fn from(limits: ClientLimits) -> Self {
        let millis = |duration: std::time::Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self {
            memory_bytes: limits.call.memory_bytes,
            fuel: limits.call.fuel,
            deadline_ms: millis(limits.call.deadline),
            max_component_bytes: limits.max_component_bytes,
            client_slice_ms: millis(limits.slice),
            client_queue_ms: millis(limits.queue),
        }
    }
}

/// A replay, with the version it ran.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ReplayBody {
    plugin: PluginBody,
    replay: ReplayReport,
}

/// A page of the decision log.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DecisionList {
    decisions: Vec<DecisionBody>,
    next_cursor: Option<String>,
}

/// The client in the path, for a caller that may manage its plugins (its own client token, or an admin).
fn managed_client(principal: &Principal, slug: &str) -> Result<ClientSlug, ApiError> {
    let slug = principal.client_in_path(slug)?;
    match principal.role() {
        Role::Admin | Role::Client => Ok(slug),
        Role::Assistant => {
            Err(ApiError::Forbidden("managing plugins needs the client's token or an admin token".into()))
        }
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge("the upload is larger than this route accepts".into())
        } else {
            Self::UnsupportedMediaType(format!("expected a multipart/form-data body: {}", rejection.body_text()))
        }
    }
}

impl From<AdmitError> for ApiError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Load(error @ LoadError::TooLarge { .. }) => Self::PayloadTooLarge(error.to_string()),
            AdmitError::Load(error) => Self::Rejected { code: error.code(), message: error.to_string() },
            error @ AdmitError::Smoke(_) => Self::Rejected { code: "smoke_call_failed", message: error.to_string() },
            AdmitError::Internal(error) => Self::Internal(error),
        }
    }
}

/// The fields of an upload.
struct Upload {
    component: Vec<u8>,
    name: String,
    version: String,
    config: String,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, ApiError> {
    let (mut component, mut name, mut version, mut config) = (None, None, None, None);
    while let Some(field) = multipart.next_field().await.map_err(|error| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the upload is larger than this route accepts".into())
        } else {
            ApiError::bad_request("invalid_multipart", error.body_text())
        }
    })? {
        let field_name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|error| {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the upload is larger than this route accepts".into())
            } else {
                ApiError::bad_request("invalid_multipart", error.body_text())
            }
        })?;
        let text = || {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::Invalid(format!("{field_name}: must be UTF-8 text")))
        };
        match field_name.as_str() {
            "component" => component = Some(bytes.to_vec()),
            "name" => name = Some(text()?),
            "version" => version = Some(text()?),
            "config" => config = Some(text()?),
            other => {
                return Err(ApiError::Invalid(format!(
                    "unknown field {other:?}; expected component, name, version, config"
                )));
            }
        }
    }
    let component = component.ok_or_else(|| ApiError::Invalid("component: the .wasm file is required".into()))?;
    let name = parse_label("name", name.as_deref().unwrap_or_default().trim(), 64)?;
    let version = version.unwrap_or_default().trim().to_owned();
    if version.is_empty()
        || version.len() > 32
        || !version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    {
        return Err(ApiError::Invalid("version: 1 to 32 characters of letters, digits and . - _ +".into()));
    }
    let config = config.unwrap_or_else(|| "{}".to_owned());
    if config.len() > MAX_CONFIG_BYTES {
        return Err(ApiError::Invalid(format!("config: at most {MAX_CONFIG_BYTES} bytes")));
    }
    let parsed: Value =
        serde_json::from_str(&config).map_err(|error| ApiError::Invalid(format!("config: not valid JSON: {error}")))?;
    // Stored compact: the plugin gets exactly this text.
    Ok(Upload { component, name, version, config: parsed.to_string() })
}

/// `POST /api/v1/clients/{slug}/plugins`: checks, compiles (in a separate process), smoke-calls and stores a
/// version as `inactive`.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/plugins", tag = "plugins", params(("slug" = String, Path, description = "the client's slug")), request_body(content = serde_json::Value, content_type = "multipart/form-data"), responses((status = 201, description = "admitted, inactive", body = PluginBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn plugins_upload(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    request: Request,
) -> Result<(StatusCode, Json<PluginBody>), ApiError> {
    let client = managed_client(&principal, &slug)?;
    let settings = state.rules.settings().clone();
    let Some(_one_upload) = state.rules.begin_upload(&client) else {
        return Err(ApiError::TooManyRequests {
            message: "an upload of this client is still being checked; retry when it is done".into(),
            retry_after: 5,
        });
    };
    let hour = std::time::Duration::from_secs(3600);
    let (uploads, oldest) = state.db.plugin_uploads_since(client.clone(), Timestamp::now().minus(hour)).await?;
    if uploads >= settings.uploads_per_hour_per_client {
        let wait = oldest.map_or(60, |oldest| (oldest.plus(hour).millis() - Timestamp::now().millis()) / 1000 + 1);
        return Err(ApiError::TooManyRequests {
            message: format!("at most {} uploads an hour; retry later", settings.uploads_per_hour_per_client),
            retry_after: u32::try_from(wait.max(1)).unwrap_or(3600),
        });
    }
    let kept =
        state.db.prune_plugin_versions(client.clone(), settings.keep_inactive_versions, RETENTION.into()).await?;
    if kept >= settings.max_versions_per_client {
        return Err(ApiError::Conflict(format!(
            "this client keeps {kept} plugin versions, the most allowed; disable or deactivate versions it no longer needs \
             (inactive ones beyond {} per name are deleted)",
            settings.keep_inactive_versions
        )));
    }
    let multipart = Multipart::from_request(request, &state).await?;
    let upload = read_upload(multipart).await?;
    let profile = state.db.client(client.clone()).await?.profile;
    let max_component_bytes = state.rules.limits_for(&profile).max_component_bytes;
    let checked = async {
        let admitted = state.rules.admit(&upload.component, max_component_bytes).await?;
        let rules = state.rules.clone();
        let (plugin, config, smoke_client) = (admitted.plugin.clone(), upload.config.clone(), client.clone());
        let warnings = tokio::task::spawn_blocking(move || rules.smoke_call(&plugin, &profile, &smoke_client, &config))
            .await
            .map_err(|error| ApiError::Internal(error.into()))?
            .map_err(AdmitError::Smoke)?;
        Ok::<_, ApiError>((admitted, warnings))
    }
    .await;
    let (admitted, mut warnings) = match checked {
        Ok(admitted) => admitted,
        Err(error) => {
            // A refused upload cost a compile too: it counts towards the hourly limit.
            let code = match &error {
                ApiError::Rejected { code, .. } => *code,
                ApiError::PayloadTooLarge(_) => "too_large",
                _ => "failed",
            };
            state.db.record_refused_upload(client, principal.actor(), code).await?;
            return Err(error);
        }
    };
    let record = state
        .db
        .insert_plugin(
            client,
            crate::store::NewPlugin {
                name: upload.name,
                version: upload.version,
                sha256: admitted.sha256,
                contract: admitted.plugin.contract().to_owned(),
                component: upload.component,
                config: upload.config,
            },
            principal.actor(),
        )
        .await?;
    state.db.prune_plugin_versions(record.client.clone(), settings.keep_inactive_versions, RETENTION.into()).await?;
    let (size, max) = (usize::try_from(record.size).unwrap_or(usize::MAX), max_component_bytes);
    if size.saturating_mul(2) > max {
        let (size, max) = (size.div_ceil(1024), max / 1024);
        warnings.insert(0, format!("the component is {size} KiB, more than half of the {max} KiB allowed"));
    }
    Ok((StatusCode::CREATED, Json(PluginBody { warnings, ..PluginBody::from(record) })))
}

/// The actor named in the audit log for versions deleted by `plugins.keep_inactive_versions`.
const RETENTION: &str = "system:retention";

/// `GET /api/v1/clients/{slug}/plugins`: every version, in chain order.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/plugins", tag = "plugins", params(("slug" = String, Path, description = "the client's slug")), responses((status = 200, description = "every version, in chain order", body = PluginList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn plugins_list(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
) -> Result<Json<PluginList>, ApiError> {
    let client = managed_client(&principal, &slug)?;
    let limits = state.rules.limits_for(&state.db.client(client.clone()).await?.profile).into();
    let plugins = state.db.plugins(client).await?;
    Ok(Json(PluginList { plugins: plugins.into_iter().map(PluginBody::from).collect(), limits }))
}

/// `GET /api/v1/clients/{slug}/plugins/{id}`.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/plugins/{id}", tag = "plugins", params(("slug" = String, Path, description = "the client's slug"), ("id" = String, Path, description = "the object's id")), responses((status = 200, description = "the version", body = PluginBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn plugins_show(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, id)): AppPath<(String, String)>,
) -> Result<Json<PluginBody>, ApiError> {
    let client = managed_client(&principal, &slug)?;
    let plugin = state.db.plugin(client, id_or_404(&id)?).await?;
    Ok(Json(PluginBody::from(plugin)))
}

/// `POST /api/v1/clients/{slug}/plugins/{id}/{action}` with action `activate`, `shadow`, `disable`,
/// `deactivate` or `rollback`.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/plugins/{id}/{action}", tag = "plugins", params(("slug" = String, Path, description = "the client's slug"), ("id" = String, Path, description = "the object's id"), ("action" = String, Path, description = "activate, shadow, disable, deactivate or rollback")), responses((status = 200, description = "the version in its new state", body = PluginBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn plugins_action(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, id, action)): AppPath<(String, String, String)>,
) -> Result<Json<PluginBody>, ApiError> {
    let client = managed_client(&principal, &slug)?;
    let id: PluginId = id_or_404(&id)?;
    let actor = principal.actor();
    let plugin = match action.as_str() {
        "activate" => state.db.set_plugin_state(client, id, PluginState::Active, actor).await?,
        "shadow" => state.db.set_plugin_state(client, id, PluginState::Shadow, actor).await?,
        "disable" => state.db.set_plugin_state(client, id, PluginState::Disabled, actor).await?,
        "deactivate" => state.db.set_plugin_state(client, id, PluginState::Inactive, actor).await?,
        "rollback" => state.db.rollback_plugin(client, id, actor).await?,
        _ => return Err(ApiError::NotFound("route".into())),
    };
    // Messages already waiting are decided by the new chain.
    state.pipeline.wake();
    state.rules.release_unused(&state.db.running_plugin_hashes().await?);
    Ok(Json(PluginBody::from(plugin)))
}

/// Body of a replay request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// How many of the latest inbound messages (default 50).
    messages: Option<usize>,
}

/// `POST /api/v1/clients/{slug}/plugins/{id}/replay`: that version's decision for each of the client's latest
/// messages, next to the active chain's and the one recorded at the time. Nothing is stored or sent.
#[utoipa::path(post, path = "/api/v1/clients/{slug}/plugins/{id}/replay", tag = "plugins", params(("slug" = String, Path, description = "the client's slug"), ("id" = String, Path, description = "the object's id")), request_body(content = ReplayRequest, content_type = "application/json", description = "optional: how many of the latest messages"), responses((status = 200, description = "what the version would have decided, next to what was", body = ReplayBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn plugins_replay(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((slug, id)): AppPath<(String, String)>,
    AppBytes(body): AppBytes,
) -> Result<Json<ReplayBody>, ApiError> {
    let client = managed_client(&principal, &slug)?;
    let id: PluginId = id_or_404(&id)?;
    // The body is optional: an empty one replays the default number of messages.
    let body: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => ApiError::Invalid(error.to_string()),
            _ => ApiError::bad_request("invalid_json", error.to_string()),
        })?
    };
    let requested = body.messages.unwrap_or(50);
    let max = state.rules.settings().replay_max_messages;
    if requested == 0 || requested > max {
        return Err(ApiError::Invalid(format!("messages: must be between 1 and {max}")));
    }
    let plugin = state.db.plugin(client.clone(), id).await?;
    let report = crate::pipeline::replay(
        &state.db,
        &state.rules,
        state.knowledge.index(),
        &state.knowledge.detectors(),
        &client,
        &plugin,
        requested,
    )
    .await?;
    Ok(Json(ReplayBody { plugin: PluginBody::from(plugin), replay: report }))
}

/// Query of the decisions list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionsQuery {
    plugin_id: Option<String>,
    message_id: Option<String>,
    /// Where the page starts: the `next_cursor` of the previous page.
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/clients/{slug}/decisions`: what was decided, by which plugin and version, why, with its logs,
/// fuel and duration; newest first.
#[utoipa::path(get, path = "/api/v1/clients/{slug}/decisions", tag = "plugins", params(("slug" = String, Path, description = "the client's slug"), ("plugin_id" = Option<String>, Query), ("message_id" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)), responses((status = 200, description = "a page of the decision log", body = DecisionList), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn decisions_list(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(slug): AppPath<String>,
    AppQuery(query): AppQuery<DecisionsQuery>,
) -> Result<Json<DecisionList>, ApiError> {
    let client = principal.client_in_path(&slug)?;
    let page = page_request(query.cursor.as_deref(), query.limit)?;
    // A filter with an id of the wrong shape matches nothing.
    let (Some(plugin_id), Some(message_id)) = (
        query.plugin_id.as_deref().map_or(Some(None), |text| PluginId::parse(text).map(Some)),
        query.message_id.as_deref().map_or(Some(None), |text| MessageId::parse(text).map(Some)),
    ) else {
        return Ok(Json(DecisionList { decisions: Vec::new(), next_cursor: None }));
    };
    let filter = DecisionFilter { plugin_id, message_id };
    let page = state.db.decision_log(principal.scope(), client, filter, page).await?;
    Ok(Json(DecisionList {
        next_cursor: next_cursor(page.next.as_ref()),
        decisions: page.items.into_iter().map(DecisionBody::from).collect(),
    }))
}
