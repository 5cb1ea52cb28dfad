//! Clients, their channel settings (sealed at rest, see [`super::secrets`]) and the audit log.

use std::sync::Arc;

use super::sql::{Connection, Lock, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::paging::{Page, PageRequest};
use super::secrets::{SecretKey, context};
use super::{Db, Error, Result, Scope};
use crate::domain::{ChannelKind, ClientProfile, ClientSlug, Timestamp, new_id};

/// Where an entry stands in the audit log's order: `(at, id)`, newest first.
pub type AuditKey = (Timestamp, String);

/// One entry of the audit log: who changed what, when.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The entry's id.
    pub id: String,
    /// The client it concerns, if one.
    pub client: Option<ClientSlug>,
    /// Who: a person's id, `token:<id>` for an integration's token, `cli` for the command line, or the
    /// worker that acted.
    pub actor: String,
    /// The person's name, when the actor is a person.
    pub actor_name: Option<String>,
    /// What was done (`conversation.assign`, `plugin.activate`, ...).
    pub action: String,
    /// The particulars (ids, names; never a secret).
    pub detail: serde_json::Value,
    /// When.
    pub at: Timestamp,
}

/// A stored client.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    /// Its slug.
    pub slug: ClientSlug,
    /// Its profile.
    pub profile: ClientProfile,
    /// Which channels have settings.
    pub channels: Vec<ChannelKind>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl Db {
    /// Creates a client. A taken slug is a [`Error::Conflict`].
    pub async fn create_client(&self, slug: ClientSlug, profile: ClientProfile, actor: String) -> Result<ClientRecord> {
        self.write_as(&Scope::Client(slug.clone()), move |connection| {
            let exists: bool = connection
                .query_row("SELECT 1 FROM clients WHERE id = ?1", [slug.as_str()], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if exists {
                return Err(Error::Conflict(format!("a client with slug {slug:?} already exists")));
            }
            let now = Timestamp::now();
            connection.execute(
                "INSERT INTO clients (id, name, profile, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![slug.as_str(), profile.name, serde_json::to_string(&profile)?, now.millis()],
            )?;
            audit(connection, Some(&slug), &actor, "client.create", &serde_json::json!({ "name": profile.name }))?;
            load_client(connection, &slug)
        })
        .await
    }

    /// Replaces a client's profile with the result of `change` applied to the current one.
    ///
    /// `change` runs inside the write transaction, so concurrent patches never lose each other's fields.
    pub async fn update_client<F>(&self, slug: ClientSlug, actor: String, change: F) -> Result<ClientRecord>
    where
        F: Fn(ClientProfile) -> Result<ClientProfile> + Send + 'static,
    {
        self.write_as(&Scope::Client(slug.clone()), move |connection| {
            connection.lock(Lock::Client(&slug))?;
            let current = load_client(connection, &slug)?;
            let profile = change(current.profile)?;
            connection.execute(
                "UPDATE clients SET name = ?2, profile = ?3, updated_at = ?4 WHERE id = ?1",
                params![slug.as_str(), profile.name, serde_json::to_string(&profile)?, Timestamp::now().millis()],
            )?;
            audit(connection, Some(&slug), &actor, "client.update", &serde_json::json!({ "name": profile.name }))?;
            load_client(connection, &slug)
        })
        .await
    }

    /// The clients whose rows a transaction for `scope` reaches, as the database itself enforces it: what a
    /// query that forgot its client filter would see. PostgreSQL's row-level security narrows it to `scope`'s
    /// clients; SQLite has no such check, so there it is every client.
    pub async fn clients_visible_to(&self, scope: Scope) -> Result<Vec<ClientSlug>> {
        self.read_as(&scope, |connection| {
            connection.prepare_cached("SELECT id FROM clients ORDER BY id")?.query_map([], |row| row.get(0))?.collect()
        })
        .await
    }

    /// One client.
    pub async fn client(&self, slug: ClientSlug) -> Result<ClientRecord> {
        self.read_as(&Scope::Client(slug.clone()), move |connection| load_client(connection, &slug)).await
    }

    /// Every client, by slug.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>> {
        self.read(|connection| {
            let slugs: Vec<String> = connection
                .prepare_cached("SELECT id FROM clients ORDER BY id")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_>>()?;
            slugs
                .iter()
                .map(|slug| {
                    let slug = ClientSlug::parse(slug).map_err(|e| Error::Conflict(e.to_string()))?;
                    load_client(connection, &slug)
                })
                .collect()
        })
        .await
    }

    /// A page of the audit log, newest first: one client's entries, or every entry (those about no client in
    /// particular too) when `client` is `None`.
    pub async fn audit_log(
        &self,
        client: Option<ClientSlug>,
        page: PageRequest<AuditKey>,
    ) -> Result<Page<AuditEntry, AuditKey>> {
        self.read(move |connection| {
            let (after_at, after_id) = match &page.after {
                Some((at, id)) => (Some(*at), Some(id.clone())),
                None => (None, None),
            };
            let entries: Vec<AuditEntry> = connection
                .prepare_cached(
                    "SELECT a.id, a.client_id, a.actor, p.name, a.action, a.detail, a.at
                     FROM audit_log a LEFT JOIN people p ON p.id = a.actor
                     WHERE (CAST(?1 AS TEXT) IS NULL OR a.client_id = ?1)
                       AND (CAST(?2 AS BIGINT) IS NULL OR a.at < ?2 OR (a.at = ?2 AND a.id < ?3))
                     ORDER BY a.at DESC, a.id DESC LIMIT ?4",
                )?
                .query_map(params![client, after_at, after_id, page.probe()], |row| {
                    let client: String = row.get(1)?;
                    let detail: String = row.get(5)?;
                    Ok(AuditEntry {
                        id: row.get(0)?,
                        client: (!client.is_empty()).then(|| ClientSlug::parse(&client).ok()).flatten(),
                        actor: row.get(2)?,
                        actor_name: row.get(3)?,
                        action: row.get(4)?,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                        at: row.get(6)?,
                    })
                })?
                .collect::<Result<_>>()?;
            Ok(page.page(entries, |last| (last.at, last.id.clone())))
        })
        .await
    }

    /// Stores the settings of one channel of a client (replacing earlier ones).
    pub async fn put_channel<C>(&self, slug: ClientSlug, kind: ChannelKind, config: C, actor: String) -> Result<()>
    where
        C: Serialize + Send + 'static,
    {
        let secrets = Arc::clone(&self.inner.secrets);
        self.write_as(&Scope::Client(slug.clone()), move |connection| {
            ensure_client(connection, &slug)?;
            let sealed = secrets.seal(&serde_json::to_string(&config)?, &context(slug.as_str(), kind.as_str()))?;
            connection.execute(
                "INSERT INTO channels (client_id, kind, config, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (client_id, kind) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                params![slug.as_str(), kind.as_str(), sealed, Timestamp::now().millis()],
            )?;
            // Never the secrets: only which channel changed.
            audit(connection, Some(&slug), &actor, "channel.update", &serde_json::json!({ "channel": kind.as_str() }))?;
            Ok(())
        })
        .await
    }

    /// The settings of one channel of a client, if configured.
    pub async fn channel<C>(&self, slug: ClientSlug, kind: ChannelKind) -> Result<Option<C>>
    where
        C: DeserializeOwned + Send + 'static,
    {
        let secrets = Arc::clone(&self.inner.secrets);
        self.read_as(&Scope::Client(slug.clone()), move |connection| channel_config(connection, &secrets, &slug, kind))
            .await
    }
}

fn channel_config<C: DeserializeOwned>(
    connection: &Connection,
    secrets: &SecretKey,
    slug: &ClientSlug,
    kind: ChannelKind,
) -> Result<Option<C>> {
    let text: Option<String> = connection
        .query_row(
            "SELECT config FROM channels WHERE client_id = ?1 AND kind = ?2",
            params![slug.as_str(), kind.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    Ok(match text {
        Some(text) => Some(serde_json::from_str(&secrets.open(&text, &context(slug.as_str(), kind.as_str()))?)?),
        None => None,
    })
}

/// Fails with [`Error::NotFound`] unless the client exists.
pub(super) fn ensure_client(connection: &Connection, slug: &ClientSlug) -> Result<()> {
    connection
        .query_row("SELECT 1 FROM clients WHERE id = ?1", [slug.as_str()], |_| Ok(()))
        .optional()?
        .ok_or(Error::NotFound("client"))
}

pub(super) fn load_client(connection: &Connection, slug: &ClientSlug) -> Result<ClientRecord> {
    let (profile, created_at, updated_at): (String, i64, i64) = connection
        .query_row("SELECT profile, created_at, updated_at FROM clients WHERE id = ?1", [slug.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?
        .ok_or(Error::NotFound("client"))?;
    let channels = connection
        .prepare_cached("SELECT kind FROM channels WHERE client_id = ?1 ORDER BY kind")?
        .query_map([slug.as_str()], |row| row.get::<_, String>(0))?
        .filter_map(|kind| kind.ok().and_then(|kind| kind.parse().ok()))
        .collect();
    Ok(ClientRecord {
        slug: slug.clone(),
        profile: serde_json::from_str(&profile)?,
        channels,
        created_at: Timestamp(created_at),
        updated_at: Timestamp(updated_at),
    })
}

/// Appends an entry to the audit log, in the caller's transaction.
pub(crate) fn audit(
    connection: &Connection,
    client: Option<&ClientSlug>,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    connection.execute(
        "INSERT INTO audit_log (client_id, id, actor, action, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            client.map(ClientSlug::as_str).unwrap_or(""),
            new_id("aud"),
            actor,
            action,
            detail.to_string(),
            Timestamp::now().millis()
        ],
    )?;
    Ok(())
}
