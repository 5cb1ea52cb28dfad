//! Uploaded plugin versions and their place in each client's chain, the installations' key-value stores,
//! and the log of what every plugin run decided.
//!
//! Per name, one version is active and one may run in shadow next to it: activating a version stops the
//! other running versions of the name, so replacing a plugin is one step and rolling back is activating the
//! previous one again.

use std::collections::HashMap;

use super::sql::{Connection, OptionalExtension, Row, params};

use super::access::Scope;
use super::clients::{audit, ensure_client};
use super::paging::{Page, PageRequest};
use super::{Db, Error, Result};
use crate::domain::{
    ClientSlug, Decision, DecisionSource, HookKind, LogLine, MessageId, PluginId, PluginState, Timestamp,
};

/// The rule that switches off a plugin that keeps failing (the plugin host's circuit breaker). The store
/// counts consecutive failures in the transaction that records a run, and asks this rule whether the count
/// trips it, so the count and the switch-off commit together.
pub trait TripRule: Send + Sync + 'static {
    /// Why a plugin whose last `consecutive` runs failed, the last with `last_failure`, is to be disabled;
    /// `None` while it may keep running.
    fn trips(&self, consecutive: u32, last_failure: &str) -> Option<String>;
}

/// Most keys one installation may keep; writes of new keys past it are dropped (and logged in the run).
pub const MAX_KV_KEYS: usize = 1_000;

/// One uploaded plugin version.
#[derive(Debug, Clone)]
pub struct PluginRecord {
    /// Its client.
    pub client: ClientSlug,
    /// Version id (`plg_...`).
    pub id: PluginId,
    /// Installation name.
    pub name: String,
    /// Version label given at upload.
    pub version: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// The contract version it was built against (`recado:plugin@0.2.0`); `None` for versions stored before
    /// recado recorded it.
    pub contract: Option<String>,
    /// Component size in bytes.
    pub size: u64,
    /// The configuration (JSON text).
    pub config: String,
    /// Where it stands.
    pub state: PluginState,
    /// Why it was disabled, when it was.
    pub state_reason: Option<String>,
    /// Order of its name in the chain (lower runs first).
    pub position: i64,
    /// Consecutive failed runs.
    pub failures: u32,
    /// When it was uploaded.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub updated_at: Timestamp,
}

/// A plugin version to store.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// Installation name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// The contract version it was built against, as the upload check found it.
    pub contract: String,
    /// The component.
    pub component: Vec<u8>,
    /// The configuration (JSON text).
    pub config: String,
}

/// A plugin version that runs on live traffic (active or shadow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPlugin {
    /// Version id.
    pub id: PluginId,
    /// Installation name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// SHA-256 of the component (the compile cache key).
    pub sha256: String,
    /// The configuration (JSON text).
    pub config: String,
    /// `Active` or `Shadow`.
    pub state: PluginState,
}

/// One plugin run recorded with the message (or overdue conversation) it decided about.
#[derive(Debug, Clone)]
pub struct PluginRun {
    /// The plugin version.
    pub plugin_id: PluginId,
    /// Its name.
    pub plugin_name: String,
    /// Its version label.
    pub plugin_version: String,
    /// Whether its decision was part of the applied chain (false for shadow runs).
    pub applied: bool,
    /// The decision, if the run succeeded.
    pub decision: Option<Decision>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Its log lines.
    pub logs: Vec<LogLine>,
    /// Fuel used.
    pub fuel: u64,
    /// Wall time in microseconds.
    pub duration_us: u64,
    /// Key-value writes to commit for its installation.
    pub kv_writes: Vec<(String, String)>,
}

/// A recorded decision, as listed by the decisions API.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// The message it is about (for overdue runs, the conversation's latest inbound message).
    pub message_id: MessageId,
    /// Who decided.
    pub source: DecisionSource,
    /// Which hook.
    pub hook: HookKind,
    /// Whether it was applied.
    pub applied: bool,
    /// The plugin version, for plugin runs.
    pub plugin_id: Option<PluginId>,
    /// Its name.
    pub plugin_name: Option<String>,
    /// Its version label.
    pub plugin_version: Option<String>,
    /// The decision (absent when the run failed).
    pub decision: Option<Decision>,
    /// Why the run failed.
    pub failure: Option<String>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// Fuel used.
    pub fuel: Option<u64>,
    /// Wall time in microseconds.
    pub duration_us: Option<u64>,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// Filters of the decisions list.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    /// Only runs of this plugin version.
    pub plugin_id: Option<PluginId>,
    /// Only decisions about this message.
    pub message_id: Option<MessageId>,
}

/// Where a decision stands in the log's order: `(created_at, message_id, source)`, newest first.
pub type DecisionKey = (Timestamp, MessageId, String);

const PLUGIN_COLUMNS: &str = "client_id, id, name, version, sha256, size, config, state, state_reason, position, \
                              failures, created_at, updated_at, contract";

fn plugin_from_row(row: &Row<'_>) -> Result<PluginRecord> {
    Ok(PluginRecord {
        client: row.get(0)?,
        id: row.get(1)?,
        name: row.get(2)?,
        version: row.get(3)?,
        sha256: row.get(4)?,
        size: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        config: row.get(6)?,
        state: row.get(7)?,
        state_reason: row.get(8)?,
        position: row.get(9)?,
        failures: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        contract: row.get(13)?,
    })
}

fn load_plugin(connection: &Connection, client: &ClientSlug, id: &PluginId) -> Result<PluginRecord> {
    connection
        .prepare_cached(&format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE client_id = ?1 AND id = ?2"))?
        .query_row(params![client.as_str(), id], plugin_from_row)
        .optional()?
        .ok_or(Error::NotFound("plugin"))
}

/// The plugins of `client` that run on live traffic, in chain order.
pub(super) fn running_plugins(connection: &Connection, client: &ClientSlug) -> Result<Vec<RunningPlugin>> {
    connection
        .prepare_cached(
            "SELECT id, name, version, sha256, config, state FROM plugins
             WHERE client_id = ?1 AND state IN ('active', 'shadow') ORDER BY position, name",
        )?
        .query_map([client.as_str()], |row| {
            Ok(RunningPlugin {
                id: row.get(0)?,
                name: row.get(1)?,
                version: row.get(2)?,
                sha256: row.get(3)?,
                config: row.get(4)?,
                state: row.get(5)?,
            })
        })?
        .collect::<Result<_>>()
}

/// The key-value store of one installation.
pub(super) fn load_kv(connection: &Connection, client: &ClientSlug, name: &str) -> Result<HashMap<String, String>> {
    connection
        .prepare_cached("SELECT key, value FROM plugin_kv WHERE client_id = ?1 AND plugin_name = ?2")?
        .query_map(params![client.as_str(), name], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_>>()
}

/// Records plugin runs about `message_id`, commits their key-value writes, and counts failures: a plugin
/// whose count trips `breaker` is disabled, with an audit entry.
pub(super) fn record_runs(
    connection: &Connection,
    client: &ClientSlug,
    message_id: &MessageId,
    hook: HookKind,
    runs: &[PluginRun],
    breaker: &dyn TripRule,
) -> Result<()> {
    let now = Timestamp::now().millis();
    for run in runs {
        let source = DecisionSource::Plugin(run.plugin_id.clone()).key(hook);
        connection
            .prepare_cached(
                "INSERT INTO decisions (client_id, message_id, source, applied, decision, created_at, plugin_id,
                                        plugin_name, plugin_version, hook, failure, logs, fuel, duration_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (client_id, message_id, source) DO NOTHING",
            )?
            .execute(params![
                client.as_str(),
                message_id,
                source,
                run.applied,
                serde_json::to_string(&run.decision)?,
                now,
                run.plugin_id,
                run.plugin_name,
                run.plugin_version,
                hook,
                run.failure,
                serde_json::to_string(&run.logs)?,
                i64::try_from(run.fuel).unwrap_or(i64::MAX),
                i64::try_from(run.duration_us).unwrap_or(i64::MAX),
            ])?;
        for (key, value) in &run.kv_writes {
            let keys: i64 = connection
                .prepare_cached("SELECT COUNT(*) FROM plugin_kv WHERE client_id = ?1 AND plugin_name = ?2")?
                .query_row(params![client.as_str(), run.plugin_name], |row| row.get(0))?;
            let sql = if usize::try_from(keys).unwrap_or(usize::MAX) < MAX_KV_KEYS {
                "INSERT INTO plugin_kv (client_id, plugin_name, key, value, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (client_id, plugin_name, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
            } else {
                // Full: only existing keys may change.
                "UPDATE plugin_kv SET value = ?4, updated_at = ?5 WHERE client_id = ?1 AND plugin_name = ?2 AND key = ?3"
            };
            connection.prepare_cached(sql)?.execute(params![client.as_str(), run.plugin_name, key, value, now])?;
        }
        if run.failure.is_none() {
            connection
                .prepare_cached("UPDATE plugins SET failures = 0 WHERE client_id = ?1 AND id = ?2 AND failures > 0")?
                .execute(params![client.as_str(), run.plugin_id])?;
            continue;
        }
        let failures: Option<u32> = connection
            .prepare_cached(
                "UPDATE plugins SET failures = failures + 1 WHERE client_id = ?1 AND id = ?2 RETURNING failures",
            )?
            .query_row(params![client.as_str(), run.plugin_id], |row| row.get(0))
            .optional()?;
        let tripped_by =
            failures.and_then(|failures| breaker.trips(failures, run.failure.as_deref().unwrap_or_default()));
        if let Some(reason) = tripped_by {
            let tripped = connection
                .prepare_cached(
                    "UPDATE plugins SET state = 'disabled', state_reason = ?3, updated_at = ?4
                     WHERE client_id = ?1 AND id = ?2 AND state IN ('active', 'shadow')",
                )?
                .execute(params![client.as_str(), run.plugin_id, reason, now])?;
            if tripped > 0 {
                tracing::warn!(client = client.as_str(), plugin = %run.plugin_id, %reason, "plugin disabled");
                audit(
                    connection,
                    Some(client),
                    "system:circuit-breaker",
                    "plugin.disable",
                    &serde_json::json!({ "plugin_id": run.plugin_id, "name": run.plugin_name,
                                          "version": run.plugin_version, "reason": reason }),
                )?;
            }
        }
    }
    Ok(())
}

/// Recorded decisions of `client` matching `filter`, newest first.
pub(super) fn query_decisions(
    connection: &Connection,
    client: &ClientSlug,
    filter: &DecisionFilter,
    page: &PageRequest<DecisionKey>,
) -> Result<Page<DecisionRecord, DecisionKey>> {
    let rows = connection
        .prepare_cached(
            "SELECT message_id, source, hook, applied, decision, plugin_id, plugin_name, plugin_version,
                    failure, logs, fuel, duration_us, created_at
             FROM decisions
             WHERE client_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR plugin_id = ?2) AND (CAST(?3 AS TEXT) IS NULL OR message_id = ?3)
               AND (CAST(?4 AS BIGINT) IS NULL OR created_at < ?4 OR (created_at = ?4 AND (message_id < ?6
                    OR (message_id = ?6 AND source > ?7))))
             ORDER BY created_at DESC, message_id DESC, source LIMIT ?5",
        )?
        .query_map(
            params![
                client.as_str(),
                filter.plugin_id,
                filter.message_id,
                page.after.as_ref().map(|after| after.0),
                page.probe(),
                page.after.as_ref().map(|after| &after.1),
                page.after.as_ref().map(|after| after.2.as_str()),
            ],
            |row| {
                Ok((
                    (row.get::<_, MessageId>(0)?, row.get::<_, String>(1)?, row.get::<_, HookKind>(2)?),
                    (row.get::<_, bool>(3)?, row.get::<_, String>(4)?),
                    (
                        row.get::<_, Option<PluginId>>(5)?,
                        row.get::<_, Option<String>>(6)?,
                        row.get::<_, Option<String>>(7)?,
                    ),
                    (row.get::<_, Option<String>>(8)?, row.get::<_, String>(9)?),
                    (row.get::<_, Option<i64>>(10)?, row.get::<_, Option<i64>>(11)?, row.get::<_, i64>(12)?),
                ))
            },
        )?
        .collect::<Result<Vec<_>>>()?;
    let records = rows
        .into_iter()
        .map(
            |(
                (message_id, source, hook),
                (applied, decision),
                (plugin_id, plugin_name, plugin_version),
                (failure, logs),
                (fuel, duration_us, created_at),
            )| {
                let (source, _) = DecisionSource::parse_key(&source)
                    .ok_or_else(|| Error::Conflict(format!("a stored decision source is unreadable: {source:?}")))?;
                Ok(DecisionRecord {
                    message_id,
                    source,
                    hook,
                    applied,
                    plugin_id,
                    plugin_name,
                    plugin_version,
                    decision: serde_json::from_str(&decision)?,
                    failure,
                    logs: serde_json::from_str(&logs)?,
                    fuel: fuel.and_then(|fuel| u64::try_from(fuel).ok()),
                    duration_us: duration_us.and_then(|us| u64::try_from(us).ok()),
                    created_at: Timestamp(created_at),
                })
            },
        )
        .collect::<Result<Vec<_>>>()?;
    Ok(page.page(records, |record| (record.created_at, record.message_id.clone(), record.source.key(record.hook))))
}

impl Db {
    /// Stores an uploaded version as `inactive`. Its name keeps its place in the chain; a new name goes last.
    /// The same name and version twice is a [`Error::Conflict`].
    pub async fn insert_plugin(&self, client: ClientSlug, plugin: NewPlugin, actor: String) -> Result<PluginRecord> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            let taken: bool = connection
                .prepare_cached("SELECT 1 FROM plugins WHERE client_id = ?1 AND name = ?2 AND version = ?3")?
                .query_row(params![client.as_str(), plugin.name, plugin.version], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if taken {
                return Err(Error::Conflict(format!(
                    "plugin {:?} already has a version {:?}; upload under a new version",
                    plugin.name, plugin.version
                )));
            }
            let position: i64 = connection
                .prepare_cached(
                    "SELECT COALESCE((SELECT MIN(position) FROM plugins WHERE client_id = ?1 AND name = ?2),
                                     (SELECT MAX(position) + 1 FROM plugins WHERE client_id = ?1), 0)",
                )?
                .query_row(params![client.as_str(), plugin.name], |row| row.get(0))?;
            let id = PluginId::generate();
            let now = Timestamp::now().millis();
            connection
                .prepare_cached(
                    "INSERT INTO plugins (client_id, id, name, version, sha256, size, component, config, state,
                                          position, failures, created_at, updated_at, contract)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'inactive', ?9, 0, ?10, ?10, ?11)",
                )?
                .execute(params![
                    client.as_str(),
                    id,
                    plugin.name,
                    plugin.version,
                    plugin.sha256,
                    i64::try_from(plugin.component.len()).unwrap_or(i64::MAX),
                    plugin.component,
                    plugin.config,
                    position,
                    now,
                    plugin.contract
                ])?;
            audit(
                connection,
                Some(&client),
                &actor,
                "plugin.upload",
                &serde_json::json!({ "plugin_id": id, "name": plugin.name, "version": plugin.version,
                                      "sha256": plugin.sha256 }),
            )?;
            load_plugin(connection, &client, &id)
        })
        .await
    }

    /// Records in the audit log an upload refused with `code` (it counts towards the upload rate limit).
    pub async fn record_refused_upload(&self, client: ClientSlug, actor: String, code: &'static str) -> Result<()> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            audit(connection, Some(&client), &actor, "plugin.upload_refused", &serde_json::json!({ "code": code }))
        })
        .await
    }

    /// How many uploads `client` made since `since`, kept or refused, and when the oldest of those was (the
    /// upload rate limit). Counted from the audit log, so pruned versions still count.
    pub async fn plugin_uploads_since(&self, client: ClientSlug, since: Timestamp) -> Result<(u32, Option<Timestamp>)> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            let (count, oldest): (u32, Option<i64>) = connection
                .prepare_cached(
                    "SELECT COUNT(*), MIN(at) FROM audit_log
                     WHERE client_id = ?1 AND action IN ('plugin.upload', 'plugin.upload_refused') AND at >= ?2",
                )?
                .query_row(params![client.as_str(), since.millis()], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok((count, oldest.map(Timestamp)))
        })
        .await
    }

    /// Deletes the versions of `client` no longer worth keeping: of each name, every inactive or disabled
    /// version but the newest `keep` and the one a rollback would return to. Running versions are never
    /// deleted. Returns how many versions remain.
    pub async fn prune_plugin_versions(&self, client: ClientSlug, keep: usize, actor: String) -> Result<usize> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            /// Id, name, state and activation time of a version.
            type Version = (PluginId, String, PluginState, Option<i64>);
            let versions: Vec<Version> = connection
                .prepare_cached(
                    "SELECT id, name, state, activated_at FROM plugins WHERE client_id = ?1
                     ORDER BY name, created_at DESC, id DESC",
                )?
                .query_map([client.as_str()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                .collect::<Result<_>>()?;
            let mut by_name: HashMap<&str, Vec<&Version>> = HashMap::new();
            for version in &versions {
                by_name.entry(version.1.as_str()).or_default().push(version);
            }
            let mut pruned = Vec::new();
            for versions in by_name.values() {
                let resting = |state: &PluginState| matches!(state, PluginState::Inactive | PluginState::Disabled);
                let rollback_target = versions
                    .iter()
                    .filter(|(_, _, state, activated_at)| resting(state) && activated_at.is_some())
                    .max_by_key(|(_, _, _, activated_at)| *activated_at)
                    .map(|(id, ..)| id);
                let prunable = versions
                    .iter()
                    .filter(|(id, _, state, _)| resting(state) && Some(id) != rollback_target)
                    .skip(keep);
                pruned.extend(prunable.map(|(id, ..)| id.clone()));
            }
            for id in &pruned {
                connection
                    .prepare_cached("DELETE FROM plugins WHERE client_id = ?1 AND id = ?2")?
                    .execute(params![client.as_str(), id])?;
            }
            if !pruned.is_empty() {
                audit(connection, Some(&client), &actor, "plugin.prune", &serde_json::json!({ "plugin_ids": pruned }))?;
            }
            Ok(versions.len() - pruned.len())
        })
        .await
    }

    /// Hashes of the components some client runs (active or shadow): the compiled plugins worth keeping in
    /// memory.
    pub async fn running_plugin_hashes(&self) -> Result<std::collections::HashSet<String>> {
        self.read(move |connection| {
            connection
                .prepare_cached("SELECT DISTINCT sha256 FROM plugins WHERE state IN ('active', 'shadow')")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_>>()
        })
        .await
    }

    /// Every version of every plugin of `client`, in chain order, newest version first within a name.
    pub async fn plugins(&self, client: ClientSlug) -> Result<Vec<PluginRecord>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            connection
                .prepare_cached(&format!(
                    "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE client_id = ?1 ORDER BY position, name, created_at DESC, id DESC"
                ))?
                .query_map([client.as_str()], plugin_from_row)?
                .collect::<Result<_>>()
        })
        .await
    }

    /// One plugin version of `client`.
    pub async fn plugin(&self, client: ClientSlug, id: PluginId) -> Result<PluginRecord> {
        self.read_as(&Scope::Client(client.clone()), move |connection| load_plugin(connection, &client, &id)).await
    }

    /// The uploaded bytes of one plugin version.
    pub async fn plugin_component(&self, client: ClientSlug, id: PluginId) -> Result<Vec<u8>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            connection
                .prepare_cached("SELECT component FROM plugins WHERE client_id = ?1 AND id = ?2")?
                .query_row(params![client.as_str(), id], |row| row.get(0))
                .optional()?
                .ok_or(Error::NotFound("plugin"))
        })
        .await
    }

    /// The plugins of `client` that run on live traffic, in chain order.
    pub async fn running_plugins(&self, client: ClientSlug) -> Result<Vec<RunningPlugin>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| running_plugins(connection, &client)).await
    }

    /// The key-value store of one installation of `client`.
    pub async fn plugin_kv(&self, client: ClientSlug, name: String) -> Result<HashMap<String, String>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| load_kv(connection, &client, &name)).await
    }

    /// Moves a plugin version to `state`. Activating or shadowing a version stops the other running version
    /// of the same name; every change resets the failure count and is audited.
    pub async fn set_plugin_state(
        &self,
        client: ClientSlug,
        id: PluginId,
        state: PluginState,
        actor: String,
    ) -> Result<PluginRecord> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let plugin = load_plugin(connection, &client, &id)?;
            change_state(connection, &plugin, state, None, &actor)?;
            load_plugin(connection, &client, &id)
        })
        .await
    }

    /// Rolls the plugin name of version `id` back: activates the version of that name that was active
    /// before the current one. Fails with a conflict when there is none.
    pub async fn rollback_plugin(&self, client: ClientSlug, id: PluginId, actor: String) -> Result<PluginRecord> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let plugin = load_plugin(connection, &client, &id)?;
            // The version that became active most recently before the currently active one.
            let current: Option<(PluginId, i64)> = connection
                .prepare_cached(
                    "SELECT id, activated_at FROM plugins
                     WHERE client_id = ?1 AND name = ?2 AND state = 'active'",
                )?
                .query_row(params![client.as_str(), plugin.name], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (current_id, since) = match current {
                Some((current_id, since)) => (Some(current_id), since),
                None => (None, i64::MAX),
            };
            let previous: Option<PluginId> = connection
                .prepare_cached(
                    "SELECT id FROM plugins
                     WHERE client_id = ?1 AND name = ?2 AND activated_at IS NOT NULL AND activated_at < ?3
                       AND id IS DISTINCT FROM ?4
                     ORDER BY activated_at DESC LIMIT 1",
                )?
                .query_row(params![client.as_str(), plugin.name, since, current_id], |row| row.get(0))
                .optional()?;
            let Some(previous) = previous else {
                return Err(Error::Conflict(format!(
                    "plugin {:?} has no earlier active version to roll back to",
                    plugin.name
                )));
            };
            let target = load_plugin(connection, &client, &previous)?;
            change_state(connection, &target, PluginState::Active, Some("rollback"), &actor)?;
            load_plugin(connection, &client, &previous)
        })
        .await
    }

    /// Recorded decisions of `client`, newest first.
    pub async fn decision_log(
        &self,
        scope: Scope,
        client: ClientSlug,
        filter: DecisionFilter,
        page: PageRequest<DecisionKey>,
    ) -> Result<Page<DecisionRecord, DecisionKey>> {
        self.read_as(&scope.clone(), move |connection| {
            if !scope.allows(&client) {
                return Err(Error::NotFound("client"));
            }
            ensure_client(connection, &client)?;
            query_decisions(connection, &client, &filter, &page)
        })
        .await
    }
}

/// Moves `plugin` to `state` in the caller's transaction (see [`Db::set_plugin_state`]).
fn change_state(
    connection: &Connection,
    plugin: &PluginRecord,
    state: PluginState,
    why: Option<&str>,
    actor: &str,
) -> Result<()> {
    let now = Timestamp::now().millis();
    let slug = plugin.client.as_str();
    // One active and one shadow version per name: a new version can be tried in shadow next to the
    // active one, and activating a version replaces whatever version of the name ran before.
    let replaced = match state {
        PluginState::Active => Some("('active', 'shadow')"),
        PluginState::Shadow => Some("('shadow')"),
        PluginState::Inactive | PluginState::Disabled => None,
    };
    if let Some(states) = replaced {
        connection
            .prepare_cached(&format!(
                "UPDATE plugins SET state = 'inactive', updated_at = ?4
                 WHERE client_id = ?1 AND name = ?2 AND id <> ?3 AND state IN {states}"
            ))?
            .execute(params![slug, plugin.name, plugin.id, now])?;
    }
    connection
        .prepare_cached(
            "UPDATE plugins SET state = ?3, state_reason = ?4, failures = 0, updated_at = ?5,
                    activated_at = CASE WHEN ?3 = 'active' THEN ?5 ELSE activated_at END
             WHERE client_id = ?1 AND id = ?2",
        )?
        .execute(params![slug, plugin.id, state, why, now])?;
    let action = match state {
        PluginState::Active => "plugin.activate",
        PluginState::Shadow => "plugin.shadow",
        PluginState::Disabled => "plugin.disable",
        PluginState::Inactive => "plugin.deactivate",
    };
    audit(
        connection,
        Some(&plugin.client),
        actor,
        action,
        &serde_json::json!({ "plugin_id": plugin.id, "name": plugin.name, "version": plugin.version,
                              "from": plugin.state.as_str(), "why": why }),
    )
}
