//! Backups an installation can be restored from: `recado backup` (while the server runs), the scheduled
//! backups of the `[backup]` settings, and `recado restore`.
//!
//! A backup is a directory holding what cannot be made again:
//! - `recado.db`, a consistent copy of the database taken while the server writes (see
//!   [`crate::store::snapshot`]); uploaded plugin components are stored in it;
//! - `blobs/`, the media files that copy refers to, each checked against its content address as it is read;
//! - `config.toml`, the settings in force (they hold no secret: channel secrets are sealed in the database);
//! - `secrets.key`, the key those secrets are sealed with, only when asked for (`--include-secrets-key`):
//!   a backup without it cannot give the secrets away, so the key is best kept apart;
//! - `manifest.json`: the recado and schema versions, what the copy holds, and every file with its size
//!   and SHA-256.
//!
//! Nothing that is derived is copied: the next start rebuilds the search index from the articles and
//! compiles the plugins again from their stored components. A backup is written under a hidden temporary
//! name beside its destination and renamed once whole and synced, so a directory with a backup's name is
//! always a complete backup. A restore checks every file against the manifest, refuses a schema newer than
//! this build knows, and writes only into an empty data directory.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{BackupSettings, Settings};
use crate::metrics::Metrics;
use crate::store::snapshot::{self, Counts};

/// The layout version of a backup directory this build writes and reads.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "recado.db";
const CONFIG: &str = "config.toml";
const SECRETS_KEY: &str = "secrets.key";
/// Scheduled backups are named this and their UTC time, so names sort by age.
const SCHEDULED_PREFIX: &str = "recado-backup-";

/// Why a backup or a restore did not happen. Nothing half-written is left behind by either.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The database could not be copied or checked.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The destination of a backup exists.
    #[error("{} already exists: a backup is never written over; choose a new path", .0.display())]
    Exists(PathBuf),
    /// The source of a restore is not a backup this build can read.
    #[error("{} is not a recado backup this version can read: {reason}", path.display())]
    NotABackup {
        /// The directory given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data is in PostgreSQL, which is backed up with its own tools.
    #[error(
        "recado backups copy the SQLite database; this installation's data is in PostgreSQL: back it up with \
         PostgreSQL's tools (pg_basebackup with WAL archiving, or pg_dump)"
    )]
    Postgres,
    /// A file of the backup is missing or differs from the manifest.
    #[error("the backup is damaged, nothing was restored: {0}")]
    Damaged(String),
    /// The backup was made by a newer recado.
    #[error(
        "the backup's database schema is version {found}, newer than this recado knows ({supported}): restore it with recado {made_by} or newer"
    )]
    NewerSchema {
        /// The backup's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
        /// The version of recado that made the backup.
        made_by: String,
    },
    /// The restore's data directory already holds something.
    #[error("{} is not empty: restore into a new or empty directory (move what is there away first)", .0.display())]
    DataDirInUse(PathBuf),
    /// The channel secrets in the backup cannot be opened with the key at hand.
    #[error("{0}")]
    SecretsKey(String),
}

impl Error {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_owned(), source }
    }
}

/// A backup's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout version ([`FORMAT`]).
    pub format: u32,
    /// The recado that made it.
    pub recado_version: String,
    /// The database's schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// When the database was copied (RFC 3339, UTC).
    pub created_at: String,
    /// What the database copy holds.
    pub counts: Counts,
    /// The key the channel secrets are sealed with.
    pub secrets: SecretsNote,
    /// Media files the database refers to that were not found when the backup was taken.
    pub missing_blobs: Vec<String>,
    /// Media files whose bytes no longer matched their address when read (damaged on disk); not copied.
    pub damaged_blobs: Vec<String>,
    /// Every file of the backup but the manifest.
    pub files: Vec<FileEntry>,
}

/// What a backup says about the secrets key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretsNote {
    /// The key's id ([`crate::store::secrets_key_id`]), if the installation had one.
    pub key_id: Option<String>,
    /// Channels whose secrets are sealed with it.
    pub sealed_channels: u64,
    /// Whether `secrets.key` is in the backup.
    pub key_included: bool,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    /// Size.
    pub bytes: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// How to take a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Also copy the key that seals channel secrets (the backup must then be kept as safe as the key).
    pub include_secrets_key: bool,
}

/// A backup taken.
#[derive(Debug)]
pub struct Taken {
    /// Where it is.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its size on disk.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// The nice value of the thread taking a backup: it gives way to requests and message processing, and
/// takes longer when they keep the cores busy.
const BACKUP_NICENESS: i32 = 10;

/// [`take`] on a thread of its own at a low scheduling priority (nice 10), so that a backup taken while
/// the server runs slows the server as little as it can. Blocking: waits for that thread.
///
/// # Errors
/// As [`take`], or the thread cannot be started.
pub fn take_gently(settings: &Settings, to: &Path, options: &BackupOptions) -> Result<Taken, Error> {
    let (owned, target, options) = (settings.clone(), to.to_owned(), options.clone());
    let thread = std::thread::Builder::new()
        .name("recado-backup".into())
        .spawn(move || {
            // On Linux the nice value belongs to the thread: only this one is lowered.
            if let Err(error) = rustix::process::setpriority_process(None, BACKUP_NICENESS) {
                tracing::debug!(%error, "could not lower the backup thread's priority");
            }
            take(&owned, &target, &options)
        })
        .map_err(Error::io(to))?;
    thread.join().unwrap_or_else(|_| {
        Err(Error::Io { path: to.to_owned(), source: std::io::Error::other("the backup thread panicked") })
    })
}

/// Takes a backup of the installation `settings` describe into the new directory `to`. Safe while the
/// server runs; blocking (run it on a blocking thread; [`take_gently`] runs it at a low priority).
///
/// # Errors
/// `to` exists, the database cannot be copied, or a file cannot be written. Nothing is left at `to`.
pub fn take(settings: &Settings, to: &Path, options: &BackupOptions) -> Result<Taken, Error> {
    let started = Instant::now();
    if settings.database.postgres_url().is_some() {
        return Err(Error::Postgres);
    }
    if to.exists() {
        return Err(Error::Exists(to.to_owned()));
    }
    let name = to.file_name().ok_or_else(|| Error::Io {
        path: to.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a name for a new directory"),
    })?;
    let parent = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(Error::io(&parent))?;
    let partial = parent.join(format!(".{}.partial", name.to_string_lossy()));
    if partial.exists() {
        // What a crashed earlier attempt left.
        std::fs::remove_dir_all(&partial).map_err(Error::io(&partial))?;
    }
    create_private_dir(&partial)?;
    let written = write_backup(settings, &partial, options);
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, to).map_err(Error::io(to))?;
    sync_dir(&parent)?;
    let bytes = manifest.files.iter().map(|file| file.bytes).sum::<u64>()
        + std::fs::metadata(to.join(MANIFEST)).map_err(Error::io(to))?.len();
    Ok(Taken { path: to.to_owned(), manifest, bytes, elapsed: started.elapsed() })
}

fn write_backup(settings: &Settings, dir: &Path, options: &BackupOptions) -> Result<Manifest, Error> {
    let created_at = jiff::Timestamp::now();
    let database = dir.join(DATABASE);
    let facts = snapshot::copy_live(&settings.storage.database_path(), &database)?;
    let mut files = vec![entry_of(dir, DATABASE)?];

    let blobs = settings.storage.blobs_path();
    let (mut missing_blobs, mut damaged_blobs) = (Vec::new(), Vec::new());
    let mut blob_dirs = std::collections::BTreeSet::new();
    for sha256 in &facts.blobs {
        if !is_blob_name(sha256) {
            damaged_blobs.push(sha256.clone());
            continue;
        }
        let source = blobs.join(&sha256[..2]).join(sha256);
        if !source.exists() {
            missing_blobs.push(sha256.clone());
            continue;
        }
        let relative = format!("blobs/{}/{sha256}", &sha256[..2]);
        let target = dir.join(&relative);
        let target_dir = dir.join("blobs").join(&sha256[..2]);
        if blob_dirs.insert(target_dir.clone()) {
            std::fs::create_dir_all(&target_dir).map_err(Error::io(&target_dir))?;
        }
        let (bytes, found) = copy_hashing(&source, &target)?;
        if found == *sha256 {
            files.push(FileEntry { path: relative, bytes, sha256: found });
        } else {
            std::fs::remove_file(&target).map_err(Error::io(&target))?;
            damaged_blobs.push(sha256.clone());
        }
    }
    if !missing_blobs.is_empty() || !damaged_blobs.is_empty() {
        tracing::warn!(
            missing = missing_blobs.len(),
            damaged = damaged_blobs.len(),
            "media files the database refers to could not be backed up (listed in the manifest)"
        );
    }

    let config = toml::to_string_pretty(settings)
        .map_err(|e| Error::Io { path: dir.join(CONFIG), source: std::io::Error::other(e) })?;
    write_private(&dir.join(CONFIG), config.as_bytes())?;
    files.push(entry_of(dir, CONFIG)?);

    let key_path = settings.storage.secrets_key_path();
    let key_id = if key_path.exists() { Some(crate::store::secrets_key_id(&key_path)?) } else { None };
    let key_included = options.include_secrets_key && key_id.is_some();
    if key_included {
        copy_hashing(&key_path, &dir.join(SECRETS_KEY))?;
        files.push(entry_of(dir, SECRETS_KEY)?);
    }

    let manifest = Manifest {
        format: FORMAT,
        recado_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: facts.schema_version,
        created_at: created_at.to_string(),
        counts: facts.counts,
        secrets: SecretsNote { key_id, sealed_channels: facts.sealed_channels, key_included },
        missing_blobs,
        damaged_blobs,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Io { path: dir.join(MANIFEST), source: std::io::Error::other(e) })?;
    write_private(&dir.join(MANIFEST), &text)?;
    for blob_dir in &blob_dirs {
        sync_dir(blob_dir)?;
    }
    if !blob_dirs.is_empty() {
        sync_dir(&dir.join("blobs"))?;
    }
    sync_dir(dir)?;
    Ok(manifest)
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The key the backup's channel secrets were sealed with, when the backup does not hold it (the
    /// `secrets.key` of the old data directory, or the file `storage.secrets_key_file` named).
    pub secrets_key: Option<PathBuf>,
}

/// A restore done.
#[derive(Debug)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Whether a secrets key was put in the data directory (from the backup or `--secrets-key`).
    pub key_restored: bool,
}

/// Restores the backup at `from` into the data directory `data_dir`, which must be empty or not exist.
/// Blocking. The next start migrates the database if this build is newer, rebuilds the search index and
/// compiles the plugins.
///
/// # Errors
/// `from` is not a readable backup, a file differs from its manifest, the schema is newer than this build,
/// the secrets key is missing or the wrong one, or `data_dir` holds something. Nothing is left in
/// `data_dir` on error.
pub fn restore(from: &Path, data_dir: &Path, options: &RestoreOptions) -> Result<Restored, Error> {
    let manifest = read_manifest(from)?;
    let supported = snapshot::schema_version();
    if manifest.schema_version > supported {
        return Err(Error::NewerSchema {
            found: manifest.schema_version,
            supported,
            made_by: manifest.recado_version.clone(),
        });
    }
    verify(from, &manifest)?;
    let key = key_to_restore(from, &manifest, options)?;

    let existed = data_dir.exists();
    if existed && std::fs::read_dir(data_dir).map_err(Error::io(data_dir))?.next().is_some() {
        return Err(Error::DataDirInUse(data_dir.to_owned()));
    }
    let restored = write_restore(from, data_dir, &manifest, key.as_deref());
    if let Err(error) = restored {
        // Leave the directory as it was found: absent, or empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(data_dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(data_dir);
        }
        return Err(error);
    }
    Ok(Restored { manifest, key_restored: key.is_some() })
}

fn write_restore(from: &Path, data_dir: &Path, manifest: &Manifest, key: Option<&Path>) -> Result<(), Error> {
    create_private_dir(data_dir)?;
    let mut dirs = std::collections::BTreeSet::new();
    for file in manifest.files.iter().filter(|file| file.path.starts_with("blobs/")) {
        let target = data_dir.join(&file.path);
        if let Some(parent) = target.parent()
            && dirs.insert(parent.to_owned())
        {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        copy_hashing(&from.join(&file.path), &target)?;
    }
    if let Some(key) = key {
        copy_hashing(key, &data_dir.join(SECRETS_KEY))?;
    }
    // The database last, under a temporary name until checked: a data directory with `recado.db` in it
    // is a whole restore.
    let partial = data_dir.join(format!("{DATABASE}.restoring"));
    copy_hashing(&from.join(DATABASE), &partial)?;
    agrees_with(&snapshot::inspect(&partial)?, manifest)?;
    std::fs::rename(&partial, data_dir.join(DATABASE)).map_err(Error::io(data_dir))?;
    for dir in &dirs {
        sync_dir(dir)?;
    }
    if !dirs.is_empty() {
        sync_dir(&data_dir.join("blobs"))?;
    }
    sync_dir(data_dir)
}

/// Checks the backup at `from` without restoring it: its manifest, every file against it, and the
/// database copy's integrity and contents. Returns the manifest and whether this build can restore it (a
/// newer schema cannot be).
///
/// # Errors
/// `from` is not a readable backup, or a file differs from the manifest, or the database copy is damaged.
pub fn check(from: &Path) -> Result<(Manifest, bool), Error> {
    let manifest = read_manifest(from)?;
    verify(from, &manifest)?;
    agrees_with(&snapshot::inspect(&from.join(DATABASE))?, &manifest)?;
    let restorable = manifest.schema_version <= snapshot::schema_version();
    Ok((manifest, restorable))
}

/// Fails unless a database copy holds the schema and the counts its manifest says.
fn agrees_with(facts: &snapshot::Facts, manifest: &Manifest) -> Result<(), Error> {
    if facts.schema_version != manifest.schema_version || facts.counts != manifest.counts {
        return Err(Error::Damaged(format!(
            "the database holds schema {} and {:?}, the manifest says schema {} and {:?}",
            facts.schema_version, facts.counts, manifest.schema_version, manifest.counts
        )));
    }
    Ok(())
}

/// Reads and checks the shape of `from/manifest.json`.
fn read_manifest(from: &Path) -> Result<Manifest, Error> {
    let not_a_backup = |reason: String| Error::NotABackup { path: from.to_owned(), reason };
    let text = std::fs::read(from.join(MANIFEST)).map_err(|e| not_a_backup(format!("{MANIFEST}: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| not_a_backup(format!("{MANIFEST} does not parse: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(format!(
            "layout version {} (this recado reads {FORMAT}); it was made by recado {}",
            manifest.format, manifest.recado_version
        )));
    }
    if !manifest.files.iter().any(|file| file.path == DATABASE) {
        return Err(not_a_backup(format!("the manifest lists no {DATABASE}")));
    }
    // The manifest names files to copy into the data directory: only plain relative paths of the
    // layout, never `..` or an absolute path.
    for file in &manifest.files {
        let path = Path::new(&file.path);
        let plain = path.components().all(|part| matches!(part, Component::Normal(_)));
        let known = [DATABASE, CONFIG, SECRETS_KEY].contains(&file.path.as_str())
            || (file.path.starts_with("blobs/")
                && path.file_name().is_some_and(|name| {
                    is_blob_name(&name.to_string_lossy()) && name.to_string_lossy() == file.sha256
                }));
        if !plain || !known {
            return Err(not_a_backup(format!("the manifest lists an unexpected file {:?}", file.path)));
        }
    }
    Ok(manifest)
}

/// Checks every file of the backup against the manifest: all are checked, and all problems reported.
fn verify(from: &Path, manifest: &Manifest) -> Result<(), Error> {
    let mut problems = Vec::new();
    for file in &manifest.files {
        match hash_file(&from.join(&file.path)) {
            Ok((bytes, sha256)) if bytes == file.bytes && sha256 == file.sha256 => {}
            Ok((bytes, _)) => problems.push(format!("{} differs from the manifest ({bytes} bytes)", file.path)),
            Err(error) => problems.push(format!("{}: {error}", file.path)),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown = problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    let more = problems.len().saturating_sub(5);
    Err(Error::Damaged(if more > 0 { format!("{shown}; and {more} more") } else { shown }))
}

/// Which key file goes into the restored data directory, if any.
fn key_to_restore(from: &Path, manifest: &Manifest, options: &RestoreOptions) -> Result<Option<PathBuf>, Error> {
    let note = &manifest.secrets;
    if let Some(given) = &options.secrets_key {
        let id = crate::store::secrets_key_id(given)?;
        if let Some(expected) = &note.key_id
            && *expected != id
        {
            return Err(Error::SecretsKey(format!(
                "{} is not the key this backup's channel secrets were sealed with (key id {expected}; that file's is {id})",
                given.display()
            )));
        }
        return Ok(Some(given.clone()));
    }
    if note.key_included {
        return Ok(Some(from.join(SECRETS_KEY)));
    }
    if note.sealed_channels > 0 {
        return Err(Error::SecretsKey(format!(
            "the backup holds {} channel(s) whose secrets are sealed with key id {}, which a backup does not copy \
             unless asked to: pass --secrets-key FILE with that key (the old data directory's secrets.key, or \
             the file storage.secrets_key_file named)",
            note.sealed_channels,
            note.key_id.as_deref().unwrap_or("unknown")
        )));
    }
    Ok(None)
}

/// The scheduled backups of a running server: one every `backup.interval_minutes` into `backup.folder`,
/// the newest `backup.keep` kept. The first is due one interval after the newest backup already in the
/// folder (at once when there is none). Each outcome goes to the log and `/metrics`.
pub(crate) async fn run_scheduled(settings: Settings, metrics: Metrics, shutdown: CancellationToken) {
    let Some(folder) = settings.backup.folder.clone() else { return };
    let schedule = settings.backup.clone();
    let interval = Duration::from_secs(schedule.interval_minutes.saturating_mul(60));
    let scanned = {
        let folder = folder.clone();
        tokio::task::spawn_blocking(move || newest_scheduled(&folder)).await
    };
    let mut wait = match scanned.ok().flatten() {
        Some(at) => {
            let age = jiff::Timestamp::now().duration_since(at);
            interval.saturating_sub(Duration::try_from(age).unwrap_or_default())
        }
        None => Duration::ZERO,
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let (settings, folder, schedule) = (settings.clone(), folder.clone(), schedule.clone());
        let outcome = tokio::task::spawn_blocking(move || take_scheduled(&settings, &folder, &schedule))
            .await
            .map_err(|join| join.to_string())
            .and_then(|taken| taken.map_err(|error| error.to_string()));
        wait = match outcome {
            Ok(taken) => {
                tracing::info!(
                    path = %taken.path.display(),
                    bytes = taken.bytes,
                    seconds = taken.elapsed.as_secs_f64(),
                    messages = taken.manifest.counts.messages,
                    "backup taken"
                );
                metrics.backup_succeeded(taken.bytes, taken.elapsed.as_secs_f64());
                interval
            }
            Err(error) => {
                tracing::error!(%error, "scheduled backup failed; trying again in ten minutes at most");
                metrics.backup_failed();
                interval.min(Duration::from_secs(600))
            }
        };
    }
}

/// Takes one scheduled backup into `folder` and removes the oldest past `schedule.keep`.
///
/// # Errors
/// As [`take`]; pruning failures are logged, not returned (the backup itself is whole).
pub fn take_scheduled(settings: &Settings, folder: &Path, schedule: &BackupSettings) -> Result<Taken, Error> {
    let now = jiff::Timestamp::now();
    let name = format!("{SCHEDULED_PREFIX}{}", now.strftime("%Y%m%dT%H%M%S%.3fZ"));
    let options = BackupOptions { include_secrets_key: schedule.include_secrets_key };
    // What attempts cut short by a crash left (their names are never used again).
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let leftover = entry.file_name().to_string_lossy().into_owned();
            if leftover.starts_with(&format!(".{SCHEDULED_PREFIX}")) && leftover.ends_with(".partial") {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => tracing::info!(path = %entry.path().display(), "removed an unfinished backup"),
                    Err(error) => {
                        tracing::warn!(path = %entry.path().display(), %error, "could not remove an unfinished backup")
                    }
                }
            }
        }
    }
    let taken = take_gently(settings, &folder.join(name), &options)?;
    let mut scheduled = scheduled_backups(folder);
    scheduled.sort();
    let excess = scheduled.len().saturating_sub(schedule.keep.max(1));
    for old in scheduled.into_iter().take(excess) {
        match std::fs::remove_dir_all(&old) {
            Ok(()) => tracing::info!(path = %old.display(), "removed an old backup"),
            Err(error) => tracing::warn!(path = %old.display(), %error, "could not remove an old backup"),
        }
    }
    Ok(taken)
}

/// The complete scheduled backups in `folder` (by name; the hidden partial ones are not among them).
fn scheduled_backups(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(SCHEDULED_PREFIX))
                && path.join(MANIFEST).is_file()
        })
        .collect()
}

/// When the newest scheduled backup in `folder` was taken.
fn newest_scheduled(folder: &Path) -> Option<jiff::Timestamp> {
    scheduled_backups(folder)
        .iter()
        .filter_map(|path| std::fs::read(path.join(MANIFEST)).ok())
        .filter_map(|text| serde_json::from_slice::<Manifest>(&text).ok())
        .filter_map(|manifest| manifest.created_at.parse::<jiff::Timestamp>().ok())
        .max()
}

fn is_blob_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn entry_of(dir: &Path, relative: &str) -> Result<FileEntry, Error> {
    let path = dir.join(relative);
    let (bytes, sha256) = hash_file(&path).map_err(Error::io(&path))?;
    Ok(FileEntry { path: relative.to_owned(), bytes, sha256 })
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    hash_through(&mut std::fs::File::open(path)?, &mut std::io::sink())
}

/// Copies `from` to the new private file `to`, synced, hashing the bytes as they pass.
fn copy_hashing(from: &Path, to: &Path) -> Result<(u64, String), Error> {
    let mut source = std::fs::File::open(from).map_err(Error::io(from))?;
    let mut target = create_private_file(to)?;
    // A failure reading or writing names the file being written; both are named in the message.
    let copied = hash_through(&mut source, &mut target).map_err(|e| Error::Io {
        path: to.to_owned(),
        source: std::io::Error::new(e.kind(), format!("copying {}: {e}", from.display())),
    })?;
    target.sync_all().map_err(Error::io(to))?;
    Ok(copied)
}

/// Reads `source` to its end, writing every byte to `target`; returns the size and the SHA-256.
fn hash_through(source: &mut impl std::io::Read, target: &mut impl Write) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut total = 0u64;
    loop {
        let read = source.read(&mut buffer)?;
        if read == 0 {
            return Ok((total, hex::encode(hasher.finalize())));
        }
        hasher.update(&buffer[..read]);
        target.write_all(&buffer[..read])?;
        total += read as u64;
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = create_private_file(path)?;
    file.write_all(bytes).map_err(Error::io(path))?;
    file.sync_all().map_err(Error::io(path))
}

/// A new file only this user can read: backups hold every customer's messages.
fn create_private_file(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(Error::io(path))
}

fn create_private_dir(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(Error::io(path))
}

/// Makes the entries of `dir` (new files, renames) durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir).and_then(|file| file.sync_all()).map_err(Error::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientProfile, ClientSlug};
    use crate::store::Db;

    /// An installation in `dir` with one client, and its settings.
    async fn installation(dir: &Path) -> Settings {
        let settings = Settings::for_tests(&dir.join("data"));
        let db = Db::open(&settings.storage).expect("open");
        let profile: ClientProfile = serde_json::from_value(
            serde_json::json!({"name": "Acme", "timezone": "Europe/Madrid", "languages": ["es"]}),
        )
        .expect("profile");
        db.create_client(ClientSlug::parse("acme").expect("slug"), profile, "test".into()).await.expect("client");
        db.close().await;
        settings
    }

    #[tokio::test]
    async fn a_backup_restores_and_a_damaged_one_is_refused_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = installation(dir.path()).await;
        let to = dir.path().join("backups/first");
        let taken = take(&settings, &to, &BackupOptions::default()).expect("taken");
        assert_eq!(taken.manifest.counts.clients, 1);
        assert!(matches!(take(&settings, &to, &BackupOptions::default()), Err(Error::Exists(_))));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("backups")).expect("list").flatten().collect();
        assert_eq!(leftovers.len(), 1, "no partial directory left beside the backup");

        let (checked, restorable) = check(&to).expect("a whole backup checks");
        assert!(restorable && checked.counts.clients == 1);
        let into = dir.path().join("restored");
        restore(&to, &into, &RestoreOptions::default()).expect("restored");
        assert!(matches!(restore(&to, &into, &RestoreOptions::default()), Err(Error::DataDirInUse(_))));

        // One changed byte in the copy: refused before anything is written.
        let database = to.join(DATABASE);
        let mut bytes = std::fs::read(&database).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&database, bytes).expect("write");
        let elsewhere = dir.path().join("elsewhere");
        assert!(matches!(check(&to), Err(Error::Damaged(_))));
        let error = restore(&to, &elsewhere, &RestoreOptions::default()).expect_err("damaged");
        assert!(matches!(error, Error::Damaged(_)), "{error}");
        assert!(error.to_string().contains("recado.db"), "{error}");
        assert!(!elsewhere.exists(), "nothing written");
    }

    #[tokio::test]
    async fn a_newer_schema_or_a_manifest_naming_other_files_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = installation(dir.path()).await;
        let to = dir.path().join("backup");
        take(&settings, &to, &BackupOptions::default()).expect("taken");
        let original = std::fs::read(to.join(MANIFEST)).expect("manifest");
        let edit = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut manifest: serde_json::Value = serde_json::from_slice(&original).expect("json");
            change(&mut manifest);
            std::fs::write(to.join(MANIFEST), serde_json::to_vec(&manifest).expect("json")).expect("write");
        };
        edit(&|manifest| manifest["schema_version"] = serde_json::json!(snapshot::schema_version() + 1));
        let error = restore(&to, &dir.path().join("a"), &RestoreOptions::default()).expect_err("newer");
        assert!(matches!(error, Error::NewerSchema { .. }), "{error}");
        assert!(error.to_string().contains("restore it with recado"), "{error}");
        edit(&|manifest| {
            manifest["files"].as_array_mut().expect("files").push(
                serde_json::json!({ "path": "../outside", "bytes": 0, "sha256": hex::encode(Sha256::digest(b"")) }),
            );
        });
        let error = restore(&to, &dir.path().join("b"), &RestoreOptions::default()).expect_err("path");
        assert!(matches!(error, Error::NotABackup { .. }), "{error}");
        edit(&|manifest| manifest["format"] = serde_json::json!(FORMAT + 1));
        let error = restore(&to, &dir.path().join("c"), &RestoreOptions::default()).expect_err("format");
        assert!(matches!(error, Error::NotABackup { .. }), "{error}");
        assert!(!dir.path().join("a").exists() && !dir.path().join("b").exists() && !dir.path().join("c").exists());
    }

    #[tokio::test]
    async fn scheduled_backups_keep_the_newest_and_ignore_other_folders() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = installation(dir.path()).await;
        let folder = dir.path().join("scheduled");
        std::fs::create_dir_all(folder.join("notes")).expect("an operator's own folder");
        let unfinished = folder.join(".recado-backup-20261207T000000.000Z.partial");
        std::fs::create_dir_all(&unfinished).expect("what a crash left");
        let schedule = BackupSettings { folder: Some(folder.clone()), keep: 2, ..BackupSettings::default() };
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(take_scheduled(&settings, &folder, &schedule).expect("taken").path);
            // Names carry milliseconds; two backups in one would share one.
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut kept = scheduled_backups(&folder);
        kept.sort();
        assert_eq!(kept, taken[1..], "the oldest is removed");
        assert!(folder.join("notes").exists(), "only backups are removed");
        assert!(!unfinished.exists(), "an unfinished backup is removed");
        let newest = newest_scheduled(&folder).expect("newest");
        assert!(jiff::Timestamp::now().duration_since(newest) < jiff::SignedDuration::from_secs(60));
    }
}
