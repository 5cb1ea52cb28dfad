//! The store: the one part of the server that talks to a database, SQLite (embedded, the default) or
//! PostgreSQL (`database.url`, for several nodes). Every query is written once, against `store/sql.rs`'s
//! `Connection`, and runs on either.
//!
//! [`Db`] is a cheap clonable handle. With SQLite, writes go to **one writer thread** that owns the only write
//! connection and commits in groups: it takes every job that is waiting, runs each inside its own savepoint
//! (so one failing job does not undo the others), commits once (WAL, `synchronous=FULL`: the WAL is
//! fsynced) and only then answers each caller. Under load a group grows by itself, because jobs queue up
//! while the previous group's fsync runs; idle, a job is committed alone with no added delay. Reads run on
//! a small pool of read-only connections in `spawn_blocking`. With PostgreSQL (`store/postgres.rs`), each job
//! is a transaction of its own on a pooled connection, run on a blocking thread and run again when it lost a
//! race with another node. No async thread ever waits on the database.
//!
//! Every query that takes an id also takes the client scope, and on PostgreSQL row-level security holds each
//! transaction done for a caller to that caller's clients as well (`Db::read_as`/`Db::write_as`). The tables
//! of one client's data lead their primary key with the client id; the two append-only logs (`kb_changes`,
//! `events`) are read by a global position and carry the client id on every row (on PostgreSQL the position
//! is given once a row is committed: `store/sequencer.rs`). Queries use no SQLite-only functions; each backend has its
//! own schema (`store/migrations/`, PostgreSQL's starting at version 12), and the few statements that must
//! differ ask the connection for its dialect.
//!
//! Rows decode into domain types in `store/sql.rs` (`FromSql`/`ToSql` for ids, states, slugs and times), so no
//! `String` id leaves the store.

mod access;
mod articles;
mod clients;
mod conversations;
mod events;
mod ingest;
mod media;
mod migrations;
mod outbox;
mod paging;
mod people;
mod pipeline;
mod plugins;
mod postgres;
mod reports;
mod secrets;
mod sequencer;
mod sla;
pub mod snapshot;
pub(crate) mod sql;
mod suggestions;
mod tokens;
mod transfer;

pub use access::{Caller, Credential, NewSession, Scope, SessionRules};
pub use articles::{Article, Edit, ImportSummary};
pub use clients::{AuditEntry, AuditKey, ClientRecord};
pub use conversations::{
    Assignee, Author, ContactView, ConversationDetail, ConversationFilter, ConversationKey, ConversationSummary,
    Delivery, MessageView, RoutingChange, SlaClock,
};
pub use events::{EventPage, EventRecord};
pub use ingest::{InboundBatch, IngestOutcome, IngestReport};
pub(crate) use media::is_url as is_media_url;
pub use media::{ClaimedMedia, MediaOutcome, MediaView};
pub use outbox::{Claimed, DeliveryOutcome, OutboxBacklog};
pub use paging::{Page, PageRequest};
pub use people::{NewPerson, PersonRecord, PersonRef};
pub use pipeline::{ContactFacts, DecisionDelay, PendingBatch, PendingMessage, ProcessedDecision, ProcessingLease};
pub use plugins::{
    DecisionFilter, DecisionKey, DecisionRecord, MAX_KV_KEYS, NewPlugin, PluginRecord, PluginRun, RunningPlugin,
    TripRule,
};
pub use reports::{
    ConversationFacts, DAY_MS, EscalationCount, FeedbackCount, MessageCount, ReportActor, ReportRange, ReportRows,
    SyntheticHistory,
};
pub use secrets::key_id as secrets_key_id;
pub use sla::{DueClock, OverdueContext, OverdueDecision};
pub use suggestions::{Feedback, LEARNED_PHRASINGS_CAP, SuggestionContext};
pub use tokens::{NewToken, TokenRecord};
pub use transfer::TransferReport;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

use crate::config::{DatabaseSettings, StorageSettings};

/// Result type of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the store. Callers branch on the first variants; the rest are internal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (or is not visible to the caller's scope).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change conflicts with the current state, e.g. a slug already taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value handed to the store breaks a rule of the domain (checked inside the transaction).
    #[error("{0}")]
    Invalid(#[from] crate::domain::Invalid),
    /// A free-form message cannot be delivered: the channel's reply window has closed (WhatsApp: 24 hours
    /// after the customer's last message; only a template may be sent).
    #[error("the reply window closed")]
    WindowClosed {
        /// When it closed, if the customer ever wrote.
        closed_at: Option<crate::domain::Timestamp>,
    },
    /// The database was written by a newer recado.
    #[error("database schema version {found} is newer than this recado supports ({supported}); upgrade recado")]
    IncompatibleSchema {
        /// The `user_version` found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The database cannot take writes right now (disk full, I/O error, locked for too long).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The writer thread is gone (the process is shutting down).
    #[error("storage is shut down")]
    Closed,
    /// The node's key that seals channel secrets is not the one the shared database's secrets are sealed with.
    #[error(
        "this node's secrets key (id {node}) is not the one the database's channel secrets are sealed with (id {database}); \
         give every node the same key (storage.secrets_key_file)"
    )]
    SecretsKeyMismatch {
        /// The id recorded in the database by the first node.
        database: String,
        /// This node's key's id.
        node: String,
    },
    /// Work this node claimed for a while (a client's waiting messages) was taken over by another node once the
    /// claim expired: what this node made of it is dropped, and the other node's result stands.
    #[error("the claim on this work expired and another node took it over")]
    LeaseLost,
    /// A file moving an installation (`recado export`/`import`) is not one this build can read, or cannot be
    /// written.
    #[error("{0}")]
    Transfer(String),
    /// Any other SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Any other PostgreSQL error.
    #[error("postgres: {}", postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A query for one row found none (mapped to `None` by `.optional()`, or to [`Error::NotFound`] by callers).
    #[error("the query returned no row")]
    NoRow,
    /// A column's value is not what the Rust type it is read into can hold.
    #[error("column {column}: {message}")]
    Decode {
        /// Its position in the row.
        column: usize,
        /// What was found.
        message: String,
    },
    /// A value handed to a statement cannot be stored as it is (an integer beyond 64 bits).
    #[error("{0}")]
    Value(String),
    /// A stored JSON column could not be read back.
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking task running a query panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// Converts SQLite errors that mean "cannot write now" into [`Error::Unavailable`].
    fn classify(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, ReadOnly, SystemIoFailure};
        match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked | CannotOpen | ReadOnly
                ) =>
            {
                Self::Unavailable(error.to_string())
            }
            _ => Self::Sqlite(error),
        }
    }

    /// A copy of this error for the other jobs of a failed group commit.
    fn duplicate(&self) -> Self {
        match self {
            Self::Unavailable(message) => Self::Unavailable(message.clone()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A unit of work for the writer thread.
trait WriteJob: Send {
    /// Runs inside the job's savepoint. Returns whether the job succeeded (on failure its savepoint is rolled
    /// back) and what to do once the group's commit outcome is known.
    fn run(self: Box<Self>, connection: &sql::Connection<'_>) -> (bool, Completion);
    /// Answers the caller without running, when the group could not start.
    fn abort(self: Box<Self>, error: &Error);
}

/// Receives the outcome of the group's commit and answers the caller.
type Completion = Box<dyn FnOnce(Option<&Error>) + Send>;

struct TypedJob<T, F> {
    job: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    F: Fn(&sql::Connection<'_>) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, connection: &sql::Connection<'_>) -> (bool, Completion) {
        let Self { job, reply } = *self;
        let result = job(connection);
        let succeeded = result.is_ok();
        let completion = Box::new(move |commit_error: Option<&Error>| {
            let outcome = match (result, commit_error) {
                (Ok(value), None) => Ok(value),
                (Ok(_), Some(error)) => Err(error.duplicate()),
                (Err(error), _) => Err(error),
            };
            // The caller may have gone away (request cancelled); the outcome stands either way.
            let _ = reply.send(outcome);
        });
        (succeeded, completion)
    }

    fn abort(self: Box<Self>, error: &Error) {
        let _ = self.reply.send(Err(error.duplicate()));
    }
}

type Job = Box<dyn WriteJob>;

/// What the writer thread receives: work, or the order to stop once everything queued before it is done.
enum Command {
    Write(Job),
    Stop,
}

/// Handle to the database. Clone freely.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// False after a commit failed for lack of space or I/O (or the database could not be reached), until one
    /// succeeds: drives `/readyz`.
    writable: Arc<AtomicBool>,
    /// Seals channel secrets.
    secrets: Arc<secrets::SecretKey>,
    /// Changes when events may have become readable (SQLite: after commits that recorded some; PostgreSQL:
    /// after they were numbered, by any node).
    event_ticks: tokio::sync::watch::Sender<u64>,
    /// Changes when another node's article changes became readable (PostgreSQL only; on SQLite the index is
    /// woken by the edit itself, and polls for other processes' changes).
    kb_ticks: tokio::sync::watch::Sender<u64>,
    /// Numbers PostgreSQL's log rows once committed and listens for other nodes' numbering (absent on SQLite).
    sequencer: Option<sequencer::Sequencer>,
    /// This node's id, kept in its data directory (`node-id`) so that it outlives a crash: the claims it
    /// leaves behind are found again as its own when it restarts.
    node: String,
}

/// Where the data lives.
enum Backend {
    /// The embedded database in the data directory: one writer thread, a pool of readers.
    Sqlite(Sqlite),
    /// A PostgreSQL database shared by every node.
    Postgres(postgres::Postgres),
}

struct Sqlite {
    writer: std_mpsc::SyncSender<Command>,
    readers: Arc<std::sync::Mutex<Vec<Connection>>>,
    reader_permits: Semaphore,
    writer_thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

fn unavailable(what: &std::path::Path, error: std::io::Error) -> Error {
    Error::Unavailable(format!("cannot create {}: {error}", what.display()))
}

/// Creates the data directory (mode 0700) when it does not exist.
fn private_directory(data_dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| unavailable(data_dir, e))?;
    }
    Ok(())
}

/// This node's id: read from `node-id` in the data directory, made (random, hex) on the first start.
fn node_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) if is_node_id(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => return Err(Error::Unavailable(format!("{} does not hold a node id", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(unavailable(&path, error)),
    }
    let node = uuid::Uuid::now_v7().simple().to_string();
    // Written whole or not at all: a crash mid-write must not leave an id that another start reads half of.
    let partial = data_dir.join("node-id.partial");
    std::fs::write(&partial, format!("{node}\n")).map_err(|e| unavailable(&partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| unavailable(&path, e))?;
    Ok(node)
}

/// Whether `text` is an id [`node_id`] made: 32 lowercase hex digits (claims are matched by this prefix).
fn is_node_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Creates the data directory (mode 0700) and the database file (mode 0600) when they do not exist, and
/// takes group and other access away from an existing database file: it holds every client's conversations.
/// SQLite gives its `-wal` and `-shm` files the database file's mode.
fn private_files(data_dir: &std::path::Path, database: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    private_directory(data_dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(database)
        .map_err(|e| unavailable(database, e))?;
    let mode = std::fs::metadata(database).map_err(|e| unavailable(database, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::info!(path = %database.display(), "taking group and other access away from the database file");
        std::fs::set_permissions(database, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(|e| unavailable(database, e))?;
    }
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database under `settings.data_dir`, migrates it and starts the writer.
    ///
    /// # Errors
    /// The directory or file cannot be created or opened, or the schema is newer than this build.
    pub fn open(settings: &StorageSettings) -> Result<Self> {
        private_files(&settings.data_dir, &settings.database_path())?;
        let path = settings.database_path();
        let mut writer = Connection::open(&path)?;
        // Before anything writes to it: a newer recado's database is refused untouched.
        migrations::refuse_newer(&writer)?;
        configure(&writer)?;
        migrations::migrate(&mut writer)?;
        // A key named in the settings must exist; the data directory's own is made on the first start.
        let secrets = secrets::SecretKey::load(&settings.secrets_key_path(), settings.secrets_key_file.is_none())?;
        let sealed = secrets.seal_plain_rows(&sql::Connection::sqlite(&writer))?;
        if sealed > 0 {
            tracing::info!(sealed, "channel secrets written before encryption are now sealed");
        }

        let mut readers = Vec::with_capacity(settings.readers);
        for _ in 0..settings.readers {
            let reader = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            readers.push(reader);
        }

        // Bounded so that a stalled disk pushes back on callers instead of queueing without limit.
        let (sender, receiver) = std_mpsc::sync_channel::<Command>(settings.max_batch * 8);
        let writable = Arc::new(AtomicBool::new(true));
        let max_batch = settings.max_batch;
        let thread_writable = Arc::clone(&writable);
        let event_ticks = tokio::sync::watch::Sender::new(0);
        let thread_ticks = event_ticks.clone();
        let handle = thread::Builder::new()
            .name("recado-sqlite-writer".into())
            .spawn(move || run_writer(writer, receiver, max_batch, &thread_writable, &thread_ticks))
            .map_err(|e| Error::Unavailable(format!("cannot start the writer thread: {e}")))?;

        Ok(Self {
            inner: Arc::new(Inner {
                backend: Backend::Sqlite(Sqlite {
                    writer: sender,
                    reader_permits: Semaphore::new(readers.len()),
                    readers: Arc::new(std::sync::Mutex::new(readers)),
                    writer_thread: std::sync::Mutex::new(Some(handle)),
                }),
                writable,
                secrets: Arc::new(secrets),
                event_ticks,
                kb_ticks: tokio::sync::watch::Sender::new(0),
                sequencer: None,
                // One server processes a SQLite database: its claims are all this node's.
                node: "local".into(),
            }),
        })
    }

    /// Opens the store the settings name: PostgreSQL when `database.url` is a `postgres://` URL (connected,
    /// its durability settings checked, its schema migrated), otherwise the SQLite database in the data
    /// directory ([`Db::open`]). The data directory holds this node's own files either way.
    ///
    /// # Errors
    /// The database cannot be reached or opened, or its schema is newer than this build.
    pub async fn connect(storage: &StorageSettings, database: &DatabaseSettings) -> Result<Self> {
        let Some(url) = database.postgres_url() else {
            let storage = storage.clone();
            return tokio::task::spawn_blocking(move || Self::open(&storage)).await?;
        };
        let postgres = postgres::Postgres::connect(
            url,
            database.pool_size,
            std::time::Duration::from_millis(database.connect_timeout_ms),
        )
        .await?;
        let (secrets, node) = {
            let (data_dir, path) = (storage.data_dir.clone(), storage.secrets_key_path());
            let create = storage.secrets_key_file.is_none();
            tokio::task::spawn_blocking(move || {
                // The node's own files live here: the key (unless named elsewhere), the index, compiled plugins.
                private_directory(&data_dir)?;
                Ok::<_, Error>((secrets::SecretKey::load(&path, create)?, node_id(&data_dir)?))
            })
            .await??
        };
        let (event_ticks, kb_ticks) = (tokio::sync::watch::Sender::new(0), tokio::sync::watch::Sender::new(0));
        let sequencer = sequencer::Sequencer::start(
            postgres.clone(),
            postgres.config().clone(),
            event_ticks.clone(),
            kb_ticks.clone(),
        );
        let db = Self {
            inner: Arc::new(Inner {
                backend: Backend::Postgres(postgres),
                writable: Arc::new(AtomicBool::new(true)),
                secrets: Arc::new(secrets),
                event_ticks,
                kb_ticks,
                sequencer: Some(sequencer),
                node,
            }),
        };
        db.check_secrets_key().await?;
        let secrets = Arc::clone(&db.inner.secrets);
        let sealed = db.write(move |connection| secrets.seal_plain_rows(connection)).await?;
        if sealed > 0 {
            tracing::info!(sealed, "channel secrets written before encryption are now sealed");
        }
        Ok(db)
    }

    /// The id of the key this node seals channel secrets with.
    pub(crate) fn secrets_key_id(&self) -> &str {
        self.inner.secrets.id()
    }

    /// Which database this handle talks to.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    /// Returns true if and only if the last commit succeeded (false after disk full or I/O errors, or while
    /// the database cannot be reached).
    pub fn is_writable(&self) -> bool {
        self.inner.writable.load(Ordering::Relaxed)
    }

    /// Whether the store can take writes now: SQLite's last commit succeeded; PostgreSQL answers.
    pub async fn is_ready(&self) -> bool {
        match &self.inner.backend {
            Backend::Sqlite(_) => self.is_writable(),
            Backend::Postgres(postgres) => {
                let ready = postgres.ping().await;
                self.inner.writable.store(ready, Ordering::Relaxed);
                ready
            }
        }
    }

    /// Runs `job` in a write transaction and waits until it is durably committed (SQLite: the writer's group;
    /// PostgreSQL: a transaction of its own).
    ///
    /// If `job` fails, its own changes are rolled back and the error returned; other jobs in the group are
    /// unaffected. On PostgreSQL a job whose transaction lost a race with another node's is rolled back and run
    /// again, so `job` may run more than once: it must act only through `connection` (no effects outside the
    /// transaction) and keep what it captured for the next run (hence `Fn`, not `FnOnce`).
    ///
    /// The transaction works for every client: the server's own work. What is done for a caller limited to some
    /// clients goes through [`Db::write_as`].
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        F: Fn(&sql::Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_visible(None, job).await
    }

    /// [`Db::write`] for a caller limited to `scope`: on PostgreSQL the transaction sees and writes only the rows
    /// of `scope`'s clients (row-level security), whatever its statements say; SQLite has no such check, and the
    /// statements' own filters are all there is.
    pub(crate) async fn write_as<T, F>(&self, scope: &Scope, job: F) -> Result<T>
    where
        F: Fn(&sql::Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_visible(scope.row_visibility(), job).await
    }

    async fn write_visible<T, F>(&self, visible: Option<String>, job: F) -> Result<T>
    where
        F: Fn(&sql::Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let sqlite = match &self.inner.backend {
            Backend::Sqlite(sqlite) => sqlite,
            Backend::Postgres(postgres) => {
                let outcome = postgres.write(visible, job).await;
                match &outcome {
                    Ok((_, recorded)) => {
                        self.inner.writable.store(true, Ordering::Relaxed);
                        if let (true, Some(sequencer)) = (*recorded, &self.inner.sequencer) {
                            // Readable once numbered; the numbering ticks the streams.
                            sequencer.wake();
                        }
                    }
                    Err(Error::Unavailable(_)) => self.inner.writable.store(false, Ordering::Relaxed),
                    Err(_) => {}
                }
                return outcome.map(|(value, _)| value);
            }
        };
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let boxed: Job = Box::new(TypedJob { job, reply });
        match sqlite.writer.try_send(Command::Write(boxed)) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(Error::Closed),
            Err(std_mpsc::TrySendError::Full(boxed)) => {
                // The writer is behind (a slow disk): wait for room, but off the async threads.
                let sender = sqlite.writer.clone();
                tokio::task::spawn_blocking(move || sender.send(boxed).map_err(|_| Error::Closed)).await??;
            }
        }
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Runs a read-only query on a pooled connection, off the async threads, for every client (see
    /// [`Db::read_as`]).
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T>
    where
        F: FnOnce(&sql::Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.read_visible(None, query).await
    }

    /// [`Db::read`] for a caller limited to `scope` (see [`Db::write_as`]).
    pub(crate) async fn read_as<T, F>(&self, scope: &Scope, query: F) -> Result<T>
    where
        F: FnOnce(&sql::Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.read_visible(scope.row_visibility(), query).await
    }

    async fn read_visible<T, F>(&self, visible: Option<String>, query: F) -> Result<T>
    where
        F: FnOnce(&sql::Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let sqlite = match &self.inner.backend {
            Backend::Sqlite(sqlite) => sqlite,
            Backend::Postgres(postgres) => return postgres.read(visible, query).await,
        };
        let _permit = sqlite.reader_permits.acquire().await.map_err(|_| Error::Closed)?;
        let readers = Arc::clone(&sqlite.readers);
        tokio::task::spawn_blocking(move || {
            let connection = readers
                .lock()
                .map_err(|_| Error::Unavailable("reader pool poisoned".into()))?
                .pop()
                .ok_or_else(|| Error::Unavailable("no reader available".into()))?;
            // Every read is one snapshot: a commit between two of its statements cannot show one state in
            // the first and another in the second. A read-only transaction takes no lock a writer waits on.
            let result = connection.unchecked_transaction().map_err(Error::from).and_then(|snapshot| {
                let answer = query(&sql::Connection::sqlite(&snapshot))?;
                snapshot.finish()?;
                Ok(answer)
            });
            if let Ok(mut pool) = readers.lock() {
                pool.push(connection);
            }
            result
        })
        .await?
    }

    /// Stops the writer after it has committed every job queued so far, and waits for it (at most 10 s).
    ///
    /// Writes through any clone of this handle fail with [`Error::Closed`] afterwards.
    pub async fn close(self) {
        let sqlite = match &self.inner.backend {
            Backend::Sqlite(sqlite) => sqlite,
            Backend::Postgres(postgres) => {
                if let Some(sequencer) = &self.inner.sequencer {
                    sequencer.stop();
                }
                postgres.close();
                return;
            }
        };
        let sender = sqlite.writer.clone();
        // Blocks only while the queue is full; the marker lands behind every job already queued.
        let sent = tokio::task::spawn_blocking(move || sender.send(Command::Stop)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return; // The writer is already gone.
        }
        let handle = sqlite.writer_thread.lock().ok().and_then(|mut guard| guard.take());
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join());
            if tokio::time::timeout(std::time::Duration::from_secs(10), joined).await.is_err() {
                tracing::warn!("the writer did not finish its queue within 10 s");
            }
        }
    }
}

/// Connection settings shared by every connection that writes.
fn configure(connection: &Connection) -> Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged message survives power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn run_writer(
    connection: Connection,
    commands: std_mpsc::Receiver<Command>,
    max_batch: usize,
    writable: &AtomicBool,
    event_ticks: &tokio::sync::watch::Sender<u64>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut stopping = false;
    while !stopping {
        match commands.recv() {
            Ok(Command::Write(job)) => batch.push(job),
            Ok(Command::Stop) | Err(_) => break,
        }
        while batch.len() < max_batch {
            match commands.try_recv() {
                Ok(Command::Write(job)) => batch.push(job),
                Ok(Command::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        match run_group(&connection, batch.drain(..)) {
            Ok(completions) => {
                writable.store(true, Ordering::Relaxed);
                // Event streams wake only once what they will read is committed.
                if events::take_recorded() {
                    event_ticks.send_modify(|tick| *tick = tick.wrapping_add(1));
                }
                for complete in completions {
                    complete(None);
                }
            }
            Err((error, completions)) => {
                tracing::error!(%error, "group commit failed");
                if matches!(error, Error::Unavailable(_)) {
                    writable.store(false, Ordering::Relaxed);
                }
                for complete in completions {
                    complete(Some(&error));
                }
            }
        }
    }
    // Jobs queued after the stop marker are dropped with the receiver; their callers get `Error::Closed`.
    tracing::debug!("writer thread stopped");
}

/// Runs a group of jobs in one transaction. On a failed begin or commit, every job gets the error.
fn run_group(
    connection: &Connection,
    jobs: impl Iterator<Item = Job>,
) -> std::result::Result<Vec<Completion>, (Error, Vec<Completion>)> {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        let error = Error::classify(error);
        for job in jobs {
            job.abort(&error);
        }
        return Err((error, Vec::new()));
    }
    let mut completions = Vec::new();
    for job in jobs {
        if let Err(error) = connection.execute_batch("SAVEPOINT job") {
            job.abort(&Error::classify(error));
            continue;
        }
        let (succeeded, completion) = job.run(&sql::Connection::sqlite(connection));
        let end = if succeeded { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
        if let Err(error) = connection.execute_batch(end) {
            tracing::warn!(%error, "ending a savepoint failed");
        }
        completions.push(completion);
    }
    match connection.execute_batch("COMMIT") {
        Ok(()) => Ok(completions),
        Err(error) => {
            let error = Error::classify(error);
            // A failed COMMIT (e.g. SQLITE_FULL) can leave the transaction open; end it so the next group starts
            // clean. Its own error adds nothing to the one reported.
            let _ = connection.execute_batch("ROLLBACK");
            Err((error, completions))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sql::params;
    use super::*;

    fn open(dir: &std::path::Path) -> Db {
        let settings = StorageSettings {
            data_dir: dir.to_owned(),
            readers: 2,
            max_batch: 64,
            secrets_key_file: None,
            database_file: None,
        };
        Db::open(&settings).expect("store opens")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_data_directory_and_the_database_files_are_private() {
        // See: issue #8, finding 11.
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let db = open(&data);
        db.write(|connection| connection.execute("CREATE TABLE t (n INTEGER)", params![])).await.expect("a write");
        let mode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        for file in ["recado.db", "recado.db-wal", "recado.db-shm"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
        db.close().await;

        // A database file made readable to others (a careless copy) is made private again when opened.
        std::fs::set_permissions(data.join("recado.db"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let db = open(&data);
        assert_eq!(mode(&data.join("recado.db")), 0o600);
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_commits_durably_in_wal_mode_with_foreign_keys() {
        // An acknowledged message must survive power loss: FULL fsyncs the WAL at every commit.
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let pragmas = db
            .write(|connection| {
                let value = |name: &str| -> Result<String> {
                    connection.query_row(&format!("PRAGMA {name}"), params![], |row| {
                        Ok(match row.get::<_, sql::OwnedValue>(0)? {
                            sql::OwnedValue::Integer(n) => n.to_string(),
                            sql::OwnedValue::Text(text) => text,
                            other => format!("{other:?}"),
                        })
                    })
                };
                Ok((value("synchronous")?, value("journal_mode")?, value("foreign_keys")?))
            })
            .await
            .expect("pragmas");
        // synchronous: 2 is FULL (0 OFF, 1 NORMAL, 3 EXTRA).
        assert_eq!(pragmas, ("2".to_owned(), "wal".to_owned(), "1".to_owned()));
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_rolls_back_alone_while_its_group_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        db.write(|connection| connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)", params![]))
            .await
            .expect("table");

        let writes = (0..200i64).map(|n| {
            let db = db.clone();
            async move {
                db.write(move |connection| {
                    connection.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    // Every tenth job fails after writing: its row must not survive.
                    if n % 10 == 0 { Err(Error::Conflict(format!("job {n} fails"))) } else { Ok(n) }
                })
                .await
            }
        });
        let results = futures::future::join_all(writes).await;
        let failed = results.iter().filter(|result| result.is_err()).count();
        assert_eq!(failed, 20);

        let rows: Vec<i64> = db
            .read(|connection| {
                let mut statement = connection.prepare_cached("SELECT n FROM t ORDER BY n")?;
                let rows = statement.query_map([], |row| row.get(0))?.collect::<Result<_>>()?;
                Ok(rows)
            })
            .await
            .expect("read");
        let expected: Vec<i64> = (0..200).filter(|n| n % 10 != 0).collect();
        assert_eq!(rows, expected);
        db.close().await;
    }

    #[tokio::test]
    async fn close_commits_what_was_queued_and_then_refuses_writes_from_other_clones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        let clone = db.clone();
        db.write(|connection| connection.execute("CREATE TABLE t (n INTEGER)", params![])).await.expect("table");
        let queued = tokio::spawn({
            let db = db.clone();
            async move { db.write(|connection| connection.execute("INSERT INTO t VALUES (1)", [])).await }
        });
        queued.await.expect("task").expect("queued write committed");
        tokio::time::timeout(std::time::Duration::from_secs(5), db.close())
            .await
            .expect("close does not wait for clones");
        let error =
            clone.write(|connection| connection.execute("INSERT INTO t VALUES (2)", [])).await.expect_err("closed");
        assert!(matches!(error, Error::Closed), "{error}");
        drop(clone);
        let db = open(dir.path());
        let count: i64 = db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))).await.expect("read");
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn committed_writes_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path());
        db.write(|connection| {
            connection.execute("CREATE TABLE t (n INTEGER)", params![])?;
            connection.execute("INSERT INTO t VALUES (42)", params![])
        })
        .await
        .expect("write");
        db.close().await;
        let db = open(dir.path());
        let n: i64 =
            db.read(|connection| connection.query_row("SELECT n FROM t", [], |row| row.get(0))).await.expect("read");
        assert_eq!(n, 42);
        let mode: String = db
            .read(|connection| connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)))
            .await
            .expect("read");
        assert_eq!(mode, "wal");
    }
}
