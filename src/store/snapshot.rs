//! The database's part of a backup: a consistent copy taken while the server keeps writing, and the facts
//! a backup's manifest records about a copy (schema version, what it holds, the media it refers to, whether
//! its channel secrets are sealed).
//!
//! The copy is SQLite's `VACUUM INTO` on a read-only connection of its own: it reads one snapshot of the
//! database (in WAL mode a reader never blocks the writer, nor the writer it), writes a compact file, and
//! never changes the source. Only the store knows SQLite; the backup module handles files and manifests.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// What a database copy holds, as counted in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Businesses.
    pub clients: u64,
    /// Conversations with customers.
    pub conversations: u64,
    /// Messages, both ways.
    pub messages: u64,
    /// Knowledge-base articles.
    pub articles: u64,
    /// Uploaded plugin versions (their components are stored in the database).
    pub plugins: u64,
}

/// The facts about a database copy that a backup records and a restore checks.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Its `user_version`.
    pub schema_version: i64,
    /// What it holds.
    pub counts: Counts,
    /// The SHA-256 of every media file it refers to.
    pub blobs: Vec<String>,
    /// Channels whose secrets are sealed (they open only with the key they were sealed under).
    pub sealed_channels: u64,
}

/// The newest schema this build knows.
pub fn schema_version() -> i64 {
    super::migrations::SCHEMA_VERSION
}

/// Copies the live database at `database` into the new file `to` (which must not exist), syncs it, checks
/// the copy and returns its facts. Safe while a server writes to `database`.
///
/// # Errors
/// There is no database at `database`, the copy cannot be written, or the copy is damaged.
pub fn copy_live(database: &Path, to: &Path) -> Result<Facts> {
    if !database.exists() {
        return Err(Error::Unavailable(format!("no database at {}", database.display())));
    }
    let source =
        Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    // A writer's checkpoint can hold the WAL index for a moment; wait rather than fail the backup.
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = to.to_str().ok_or_else(|| Error::Unavailable(format!("{} is not UTF-8", to.display())))?;
    // VACUUM INTO writes into an empty file as into a new one: made here, it is private (the copy holds
    // every customer's messages) and never one that already existed.
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| Error::Unavailable(format!("{}: {e}", to.display())))?;
    }
    source.execute("VACUUM INTO ?1", [target])?;
    drop(source);
    // VACUUM INTO does not sync what it wrote; a backup that a power cut can truncate is no backup.
    std::fs::File::open(to)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::Unavailable(format!("syncing {}: {e}", to.display())))?;
    inspect(to)
}

/// Reads the facts of the database copy at `path` after `PRAGMA integrity_check`, without changing it.
///
/// # Errors
/// The file is not a database, or the check finds damage (the error lists what it found).
pub fn inspect(path: &Path) -> Result<Facts> {
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let problems: Vec<String> = connection
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if problems != ["ok"] {
        return Err(Error::Unavailable(format!("{} is damaged: {}", path.display(), problems.join("; "))));
    }
    let schema_version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let count = |table: &str| -> Result<u64> {
        // A table the copy's schema does not have yet holds nothing (the names are our own constants).
        let exists: bool = connection.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )?;
        if !exists {
            return Ok(0);
        }
        let count: i64 = connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    };
    let counts = Counts {
        clients: count("clients")?,
        conversations: count("conversations")?,
        messages: count("messages")?,
        articles: count("articles")?,
        plugins: count("plugins")?,
    };
    let blobs = if count("media")? > 0 {
        connection
            .prepare("SELECT DISTINCT sha256 FROM media WHERE sha256 IS NOT NULL ORDER BY sha256")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    let sealed: i64 = if count("channels")? > 0 {
        connection.query_row("SELECT count(*) FROM channels WHERE config LIKE 'enc:v1:%'", [], |row| row.get(0))?
    } else {
        0
    };
    Ok(Facts { schema_version, counts, blobs, sealed_channels: u64::try_from(sealed).unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageSettings;
    use crate::domain::{ClientProfile, ClientSlug};
    use crate::store::Db;

    #[tokio::test]
    async fn a_copy_taken_while_the_writer_writes_is_whole_and_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = StorageSettings {
            data_dir: dir.path().join("data"),
            readers: 1,
            max_batch: 16,
            secrets_key_file: None,
            database_file: None,
        };
        let db = Db::open(&settings).expect("open");
        let profile: ClientProfile = serde_json::from_value(
            serde_json::json!({"name": "Acme", "timezone": "Europe/Madrid", "languages": ["es"]}),
        )
        .expect("profile");
        db.create_client(ClientSlug::parse("acme").expect("slug"), profile, "test".into()).await.expect("client");
        let copy = dir.path().join("copy.db");
        let facts = tokio::task::spawn_blocking({
            let (database, copy) = (settings.database_path(), copy.clone());
            move || copy_live(&database, &copy)
        })
        .await
        .expect("task")
        .expect("copied");
        assert_eq!(facts.schema_version, schema_version());
        assert_eq!(facts.counts.clients, 1);
        assert_eq!(facts.sealed_channels, 0);
        // A copy is never written over.
        let again = copy_live(&settings.database_path(), &copy).expect_err("the copy exists");
        assert!(again.to_string().contains("exists"), "{again}");
        db.close().await;
    }

    #[test]
    fn a_damaged_copy_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("broken.db");
        let mut connection = Connection::open(&path).expect("open");
        super::super::migrations::migrate(&mut connection).expect("migrate");
        for index in 0..2_000 {
            connection
                .execute(
                    "INSERT INTO clients (id, name, profile, created_at, updated_at) VALUES (?1, ?1, '{}', 0, 0)",
                    [format!("client-{index}")],
                )
                .expect("insert");
        }
        drop(connection);
        // Overwrite a page in the middle of the file, as a failing disk would.
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2 / 4096 * 4096;
        bytes[middle..middle + 4096].fill(0x5a);
        std::fs::write(&path, bytes).expect("write");
        let error = inspect(&path).expect_err("damage found");
        assert!(error.to_string().contains("damaged") || error.to_string().contains("malformed"), "{error}");
    }
}
