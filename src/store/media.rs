//! Media customers sent: a row per media part, queued at ingest in the message's transaction, claimed by the
//! download worker with a lease (as the outbox is), and looked up for serving within the caller's scope.

use super::sql::{Connection, Dialect, OptionalExtension, Row, params};

use super::access::Scope;
use super::{Db, Error, Result};
use crate::domain::{
    ChannelName, ClientSlug, ConversationId, Media, MediaId, MediaState, MessageId, Outbound, Timestamp,
};

/// A download claimed by the worker.
#[derive(Debug, Clone)]
pub struct ClaimedMedia {
    /// The client.
    pub client: ClientSlug,
    /// Our id.
    pub id: MediaId,
    /// The channel whose API fetches it.
    pub channel: ChannelName,
    /// The provider's id of the file.
    pub provider_id: String,
    /// The type the provider stated.
    pub declared_type: Option<String>,
    /// Attempts including this one.
    pub attempts: u32,
}

/// How a download attempt ended.
#[derive(Debug, Clone)]
pub enum MediaOutcome {
    /// Stored as this blob.
    Stored {
        /// SHA-256 of the bytes.
        sha256: String,
        /// Size in bytes.
        size: u64,
        /// The type sniffed from the bytes.
        content_type: String,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: Timestamp,
        /// What went wrong (no secrets).
        error: String,
    },
    /// Given up: too large, gone at the provider, or out of attempts.
    Failed {
        /// Why (no secrets).
        error: String,
    },
}

/// A media file as listed on its message and served.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MediaView {
    /// Our id.
    pub id: MediaId,
    /// The client.
    #[serde(skip)]
    pub client: ClientSlug,
    /// The message it belongs to.
    #[serde(skip)]
    pub message_id: MessageId,
    /// Index of its part in the message.
    pub part: i64,
    /// Where its download stands.
    pub state: MediaState,
    /// The file's name, if the customer's app gave one.
    pub filename: Option<String>,
    /// The type sniffed from the bytes (stored files), else the one the provider stated.
    pub content_type: Option<String>,
    /// Size in bytes, once stored.
    pub size: Option<i64>,
    /// SHA-256 of the bytes, once stored.
    pub sha256: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Attempts made.
    pub attempts: i64,
}

/// Records each media part of a new message: provider files (WhatsApp, Telegram) and URLs given to the
/// message API are queued for download; files given inline to the API (`sha256:<hash>`, already in the
/// blob store) are listed as stored.
pub(super) fn queue_downloads(
    connection: &Connection,
    client: &ClientSlug,
    channel: &ChannelName,
    message_id: &MessageId,
    media: &[(usize, &Media)],
    now: i64,
) -> Result<()> {
    let provider = matches!(channel.as_str(), ChannelName::WHATSAPP | ChannelName::TELEGRAM);
    for (part, media) in media {
        // The message API may name any channel, "whatsapp" included: its files are told apart by their id.
        let stored = media.provider_id.strip_prefix("sha256:");
        let url = is_url(&media.provider_id);
        if !provider && stored.is_none() && !url {
            continue;
        }
        connection
            .prepare_cached(
                "INSERT INTO media (client_id, id, message_id, part, channel, provider_id, kind, declared_type,
                                    filename, state, next_attempt_at, sha256, size, content_type, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?11, ?11)",
            )?
            .execute(params![
                client.as_str(),
                MediaId::generate(),
                message_id,
                i64::try_from(*part).unwrap_or(i64::MAX),
                channel.as_str(),
                media.provider_id,
                serde_json::to_value(media.kind)?.as_str().unwrap_or("document"),
                media.mime_type,
                media.filename,
                if stored.is_some() { MediaState::Stored } else { MediaState::Pending },
                now,
                stored,
                media.size.map(|size| i64::try_from(size).unwrap_or(i64::MAX)),
                stored.and(media.mime_type.as_deref()),
            ])?;
    }
    Ok(())
}

/// Lists a file we send (an assistant's attachment, already in the blob store) on its outbound message, so
/// it is shown and served like the customers' files.
pub(super) fn record_outbound(
    connection: &Connection,
    client: &ClientSlug,
    channel: &ChannelName,
    message_id: &MessageId,
    payload: &Outbound,
) -> Result<()> {
    let Outbound::Attachment { kind, sha256, content_type, filename, size, .. } = payload else { return Ok(()) };
    let now = Timestamp::now().millis();
    connection.execute(
        "INSERT INTO media (client_id, id, message_id, part, channel, provider_id, kind, declared_type, filename,
                            state, next_attempt_at, sha256, size, content_type, created_at, updated_at)
         VALUES (?1, ?2, ?3, 0, ?4, '', ?5, ?6, ?7, 'stored', ?8, ?9, ?10, ?6, ?8, ?8)",
        params![
            client,
            MediaId::generate(),
            message_id,
            channel,
            serde_json::to_value(kind)?.as_str().unwrap_or("document"),
            content_type,
            filename,
            now,
            sha256,
            i64::try_from(*size).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(())
}

/// Returns true if and only if a media part's id is a URL (a file given by URL to the message API), never a
/// provider's id.
pub(crate) fn is_url(provider_id: &str) -> bool {
    provider_id.starts_with("https://") || provider_id.starts_with("http://")
}

const VIEW_COLUMNS: &str = "id, client_id, message_id, part, state, filename, COALESCE(content_type, declared_type),
     size, sha256, last_error, attempts";

fn view_from_row(row: &Row<'_>) -> Result<MediaView> {
    Ok(MediaView {
        id: row.get(0)?,
        client: row.get(1)?,
        message_id: row.get(2)?,
        part: row.get(3)?,
        state: row.get(4)?,
        filename: row.get(5)?,
        content_type: row.get(6)?,
        size: row.get(7)?,
        sha256: row.get(8)?,
        last_error: row.get(9)?,
        attempts: row.get(10)?,
    })
}

/// The media of the messages of a conversation created at or after `since` (the page being shown), by
/// message and part: one query for the page rather than one per message.
pub(super) fn media_of_page(
    connection: &Connection,
    client: &ClientSlug,
    conversation_id: &ConversationId,
    since: i64,
) -> Result<Vec<MediaView>> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM media
         WHERE client_id = ?1 AND message_id IN (
             SELECT id FROM messages WHERE client_id = ?1 AND conversation_id = ?2 AND created_at >= ?3)
         ORDER BY message_id, part"
    );
    connection
        .prepare_cached(&sql)?
        .query_map(params![client, conversation_id, since], view_from_row)?
        .collect::<Result<_>>()
}

/// Due downloads, and ones whose lease ran out (the node fetching them stopped).
const CLAIM_MEDIA: &str = "SELECT client_id, id, channel, provider_id, declared_type, attempts FROM media
     WHERE (state = 'pending' AND next_attempt_at <= ?1) OR (state = 'fetching' AND lease_until <= ?1)
     ORDER BY next_attempt_at LIMIT ?2";

/// The same for PostgreSQL: each node skips the rows another is claiming (see the outbox's claim).
const CLAIM_MEDIA_POSTGRES: &str = "SELECT client_id, id, channel, provider_id, declared_type, attempts FROM media
     WHERE (state = 'pending' AND next_attempt_at <= ?1) OR (state = 'fetching' AND lease_until <= ?1)
     ORDER BY next_attempt_at LIMIT ?2
     FOR UPDATE SKIP LOCKED";

impl Db {
    /// Claims up to `limit` due downloads for `lease`.
    pub async fn claim_media(&self, limit: usize, lease: std::time::Duration) -> Result<Vec<ClaimedMedia>> {
        self.write(move |connection| {
            let now = Timestamp::now();
            let mut claimed: Vec<ClaimedMedia> = connection
                .prepare_cached(match connection.dialect() {
                    Dialect::Sqlite => CLAIM_MEDIA,
                    Dialect::Postgres => CLAIM_MEDIA_POSTGRES,
                })?
                .query_map(params![now.millis(), i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                    Ok(ClaimedMedia {
                        client: row.get(0)?,
                        id: row.get(1)?,
                        channel: row.get(2)?,
                        provider_id: row.get(3)?,
                        declared_type: row.get(4)?,
                        attempts: row.get(5)?,
                    })
                })?
                .collect::<Result<_>>()?;
            let lease_until = now.plus(lease).millis();
            for media in &mut claimed {
                media.attempts += 1;
                connection
                    .prepare_cached(
                        "UPDATE media SET state = 'fetching', attempts = ?3, lease_until = ?4, updated_at = ?5
                         WHERE client_id = ?1 AND id = ?2",
                    )?
                    .execute(params![media.client, media.id, media.attempts, lease_until, now.millis()])?;
            }
            Ok(claimed)
        })
        .await
    }

    /// When the next pending download is due, if any.
    pub async fn next_media_due(&self) -> Result<Option<Timestamp>> {
        self.read(|connection| {
            connection.query_row("SELECT MIN(next_attempt_at) FROM media WHERE state = 'pending'", [], |row| row.get(0))
        })
        .await
    }

    /// Records how a download attempt ended.
    pub async fn record_media(&self, client: ClientSlug, id: MediaId, outcome: MediaOutcome) -> Result<()> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            let now = Timestamp::now().millis();
            match &outcome {
                MediaOutcome::Stored { sha256, size, content_type } => connection.execute(
                    "UPDATE media SET state = 'stored', sha256 = ?3, size = ?4, content_type = ?5, last_error = NULL,
                            lease_until = NULL, updated_at = ?6
                     WHERE client_id = ?1 AND id = ?2",
                    params![client, id, sha256, i64::try_from(*size).unwrap_or(i64::MAX), content_type, now],
                )?,
                MediaOutcome::Retry { at, error } => connection.execute(
                    "UPDATE media SET state = 'pending', next_attempt_at = ?3, last_error = ?4, lease_until = NULL,
                            updated_at = ?5
                     WHERE client_id = ?1 AND id = ?2",
                    params![client, id, at.millis(), error, now],
                )?,
                MediaOutcome::Failed { error } => connection.execute(
                    "UPDATE media SET state = 'failed', last_error = ?3, lease_until = NULL, updated_at = ?4
                     WHERE client_id = ?1 AND id = ?2",
                    params![client, id, error, now],
                )?,
            };
            let row: Option<(MessageId, MediaState)> = connection
                .query_row(
                    "SELECT message_id, state FROM media WHERE client_id = ?1 AND id = ?2",
                    params![client, id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            if let Some((message_id, state)) = row.filter(|(_, state)| *state != MediaState::Pending) {
                let data = serde_json::json!({ "media_id": id, "state": state });
                super::events::record_for_message(connection, client.as_str(), "media.updated", &message_id, &data)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// One media file, if `scope` may see its client.
    pub async fn media(&self, scope: Scope, id: MediaId) -> Result<MediaView> {
        self.read_as(&scope.clone(), move |connection| {
            let sql =
                format!("SELECT {VIEW_COLUMNS} FROM media WHERE id = ?1 AND {}", Scope::condition("client_id", 2));
            let (every, person) = scope.params();
            connection
                .prepare_cached(&sql)?
                .query_row(params![id, every, person], view_from_row)
                .optional()?
                .ok_or(Error::NotFound("media"))
        })
        .await
    }

    /// Queues a failed download again, with a fresh set of attempts. Returns the media as it now is.
    pub async fn retry_media(&self, scope: Scope, id: MediaId) -> Result<MediaView> {
        self.write_as(&scope.clone(), move |connection| {
            let (every, person) = scope.params();
            let changed = connection.execute(
                &format!(
                    "UPDATE media SET state = 'pending', attempts = 0, next_attempt_at = ?4, updated_at = ?4
                     WHERE id = ?1 AND {} AND state = 'failed'",
                    Scope::condition("client_id", 2)
                ),
                params![id, every, person, Timestamp::now().millis()],
            )?;
            let sql =
                format!("SELECT {VIEW_COLUMNS} FROM media WHERE id = ?1 AND {}", Scope::condition("client_id", 2));
            let media = connection
                .prepare_cached(&sql)?
                .query_row(params![id, every, person], view_from_row)
                .optional()?
                .ok_or(Error::NotFound("media"))?;
            if changed == 0 && media.state != MediaState::Pending {
                return Err(Error::Conflict(format!("the download is {}, not failed", media.state)));
            }
            Ok(media)
        })
        .await
    }
}
