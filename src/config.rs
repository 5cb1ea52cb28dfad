//! Typed settings, loaded in layers: built-in defaults, then an optional TOML file, then
//! `RECADO__SECTION__KEY` environment variables, then the few command-line flags.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every error names the
//! key it concerns. Settings are validated once here and then passed into constructors; nothing deeper in
//! the code reads the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override settings (`RECADO__HTTP__LISTEN`).
pub const ENV_PREFIX: &str = "RECADO__";

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value could not be read or has the wrong type, or a key is unknown.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value has the right type but an unacceptable value.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `http.request_timeout_ms`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// All settings of a recado process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The HTTP server.
    pub http: HttpSettings,
    /// The data directory and the embedded SQLite store.
    pub storage: StorageSettings,
    /// Which database holds the data: SQLite in the data directory (the default) or PostgreSQL.
    pub database: DatabaseSettings,
    /// Delivery of outbound messages.
    pub outbox: OutboxSettings,
    /// Processing of stored inbound messages.
    pub pipeline: PipelineSettings,
    /// The knowledge-base search index.
    pub search: SearchSettings,
    /// Rule plugins: upload checks, compilation and per-call limits.
    pub plugins: PluginSettings,
    /// Downloading customers' media from the providers.
    pub media: MediaSettings,
    /// People signing in: sessions, cookies, limits on guessing.
    pub auth: AuthSettings,
    /// The event log behind the live event streams.
    pub events: EventSettings,
    /// Scheduled backups.
    pub backup: BackupSettings,
}

/// Scheduled backups, taken by the running server (see `recado backup` for one by hand).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// The folder backups are written into, one directory each (`recado-backup-<UTC time>`). Unset: no
    /// scheduled backups. Best on another disk, or copied off the machine from there.
    pub folder: Option<PathBuf>,
    /// Minutes between two backups. The first is due this long after the newest one in the folder (at
    /// once when there is none).
    pub interval_minutes: u64,
    /// How many backups to keep; older ones are removed after each new one.
    pub keep: usize,
    /// Also copy the key that seals channel secrets into each backup. Off by default: a backup without
    /// the key does not give the secrets away, and the key (which never changes) is best kept apart.
    pub include_secrets_key: bool,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self { folder: None, interval_minutes: 24 * 60, keep: 7, include_secrets_key: false }
    }
}

/// The event log behind `GET /api/v1/events`: how long it is kept and how far a stream may catch up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Events older than this many days are trimmed; a stream resuming from before them is told to resync.
    pub retention_days: u64,
    /// A stream resuming more than this many events behind is told to resync instead of replaying them.
    pub max_replay: i64,
    /// How often an open stream checks that its session or token still works (signed out, revoked or
    /// disabled callers lose their stream within this time).
    pub recheck_ms: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { retention_days: 30, max_replay: 10_000, recheck_ms: 30_000 }
    }
}

/// People signing in: how long sessions last, how the cookie is sent, how fast passwords may be guessed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// A session ends this many hours after sign-in, whatever its activity.
    pub session_lifetime_hours: u64,
    /// A session unused for this many minutes ends.
    pub session_idle_minutes: u64,
    /// Send the session cookie with `Secure` (only over HTTPS). Turn on when recado is reached over TLS,
    /// directly or behind a proxy that terminates it.
    pub secure_cookies: bool,
    /// The origin the browser console is reached at (`https://recado.example.com`). Cookie-authenticated
    /// writes must come from it; when unset, from the origin the request's `Host` names.
    pub public_origin: Option<String>,
    /// Failed sign-ins one account may take in a burst before it gets 429 (whatever the address).
    pub sign_in_failures_per_account_burst: u32,
    /// Failed sign-ins an account gets back per hour once its burst is used.
    pub sign_in_failures_per_account_per_hour: u32,
    /// Password checks (sign-ins, password changes) running at once; more get 503. Each takes 19 MiB and
    /// tens of milliseconds of a core.
    pub max_concurrent_password_checks: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_lifetime_hours: 12,
            session_idle_minutes: 120,
            secure_cookies: false,
            public_origin: None,
            sign_in_failures_per_account_burst: 5,
            sign_in_failures_per_account_per_hour: 30,
            max_concurrent_password_checks: 4,
        }
    }
}

impl AuthSettings {
    /// The session lifetimes.
    pub fn session_rules(&self) -> crate::store::SessionRules {
        crate::store::SessionRules {
            lifetime: Duration::from_secs(self.session_lifetime_hours * 3600),
            idle: Duration::from_secs(self.session_idle_minutes * 60),
        }
    }
}

/// Media downloads: photos, voice notes and documents customers send, fetched from the provider soon after
/// they arrive (provider URLs expire) and kept under the data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSettings {
    /// Largest file kept; a larger one is refused and noted on its message.
    pub max_bytes: u64,
    /// Largest attachment an assistant may send with a reply (WhatsApp takes images up to 5 MB, audio and
    /// video up to 16 MB, documents up to 100 MB; Telegram bots send up to 50 MB).
    pub max_upload_bytes: usize,
    /// Downloads in flight at once.
    pub concurrency: usize,
    /// Attempts before a download is given up (it can be retried by hand).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each attempt (with jitter).
    pub base_backoff_ms: u64,
    /// Longest delay between attempts.
    pub max_backoff_ms: u64,
    /// Timeout of one download, lookup included.
    pub request_timeout_ms: u64,
    /// How often the worker looks for due downloads when nothing wakes it.
    pub poll_interval_ms: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            // WhatsApp documents go up to 100 MB, Telegram bots may fetch up to 20 MB.
            max_bytes: 100 * 1024 * 1024,
            max_upload_bytes: 16 * 1024 * 1024,
            concurrency: 4,
            max_attempts: 6,
            base_backoff_ms: 2_000,
            max_backoff_ms: 600_000,
            request_timeout_ms: 120_000,
            poll_interval_ms: 1_000,
        }
    }
}

impl MediaSettings {
    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long a claimed download stays claimed before another attempt may take it.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.saturating_mul(2).saturating_add(5_000))
    }
}

/// Rule-plugin settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Largest component accepted at upload.
    pub max_component_bytes: usize,
    /// Largest single function body: compile time grows with it (a 1.5 MiB function took Cranelift 20 s).
    pub max_function_bytes: usize,
    /// Wall-clock limit of compiling one upload; the compiler process is killed past it.
    pub compile_timeout_ms: u64,
    /// Address-space limit of the compiler process.
    pub compile_memory_bytes: u64,
    /// Program run to compile uploads (`<program> plugin compile-worker`); empty means this executable.
    pub compiler: Option<PathBuf>,
    /// Linear memory one call may use.
    pub memory_bytes: usize,
    /// Instruction budget (fuel) of one call.
    pub fuel: u64,
    /// Wall-clock deadline of one call.
    pub deadline_ms: u64,
    /// Consecutive failures after which a plugin is disabled (the circuit breaker).
    pub breaker_failures: u32,
    /// Plugin wall time one client's turn in the pipeline lasts: past it, the client's remaining messages
    /// wait for its next turn (after the other clients waiting have had theirs), so one client's slow rules
    /// delay its own messages, not everyone's. Its rules still decide every message.
    #[serde(alias = "client_batch_budget_ms")]
    pub client_slice_ms: u64,
    /// Longest a message waits for its client's rules: a message that has waited longer when its turn
    /// comes is decided by the client's defaults, and the decision says so (the only case where a running
    /// rule does not decide; counted in `recado_plugin_queue_timeouts_total`).
    pub client_queue_ms: u64,
    /// Most stored messages a replay runs over.
    pub replay_max_messages: usize,
    /// Uploads one client may make in an hour; more get 429.
    pub uploads_per_hour_per_client: u32,
    /// Versions one client may keep, all names together; an upload past it gets 409.
    pub max_versions_per_client: usize,
    /// Of each plugin name, how many inactive or disabled versions are kept (besides the running ones and
    /// the one a rollback returns to); older ones are deleted at the next upload.
    pub keep_inactive_versions: usize,
    /// The most an admin may grant one client in its profile's `plugin_limits`.
    pub per_client_max: PluginCeilings,
}

/// The most an admin may grant one client's plugins; a ceiling below the server's default counts as the
/// default. A profile asking for more is refused, and a grant made before a ceiling was lowered is capped at
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginCeilings {
    /// Linear memory of one call. Every instance slot of the pool is sized for it.
    pub memory_bytes: usize,
    /// Instructions of one call.
    pub fuel: u64,
    /// Wall-clock deadline of one call.
    pub deadline_ms: u64,
    /// Largest component one upload may carry (the upload route reads bodies up to this size from a
    /// signed-in admin or client).
    pub max_component_bytes: usize,
    /// Plugin time of one client's turn.
    pub client_slice_ms: u64,
    /// Longest a message waits for its client's rules.
    pub client_queue_ms: u64,
}

impl Default for PluginCeilings {
    fn default() -> Self {
        Self {
            memory_bytes: 128 * 1024 * 1024,
            fuel: 2_000_000_000,
            deadline_ms: 1_000,
            max_component_bytes: 128 * 1024 * 1024,
            client_slice_ms: 2_000,
            client_queue_ms: 600_000,
        }
    }
}

impl PluginSettings {
    /// The largest component any client may upload: the ceiling, or the default where that is larger.
    pub fn largest_component_bytes(&self) -> usize {
        self.per_client_max.max_component_bytes.max(self.max_component_bytes)
    }
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            // A Python component (componentize-py) is about 18 MB; a JavaScript one about 12 MB.
            max_component_bytes: 48 * 1024 * 1024,
            max_function_bytes: 512 * 1024,
            compile_timeout_ms: 60_000,
            compile_memory_bytes: 2 * 1024 * 1024 * 1024,
            compiler: None,
            // Sized for the interpreted templates with room to spare: on the longest message allowed, the
            // Python template uses 12.4 MiB and 43 M instructions, the JavaScript one 9.1 MiB and 119 M.
            memory_bytes: 32 * 1024 * 1024,
            fuel: 250_000_000,
            deadline_ms: 50,
            breaker_failures: 5,
            client_slice_ms: 250,
            client_queue_ms: 30_000,
            replay_max_messages: 500,
            uploads_per_hour_per_client: 20,
            max_versions_per_client: 50,
            keep_inactive_versions: 5,
            per_client_max: PluginCeilings::default(),
        }
    }
}

impl StorageSettings {
    /// Directory of compiled plugins (a cache: deleting it only costs recompiles).
    pub fn plugin_cache_path(&self) -> PathBuf {
        self.data_dir.join("plugin-cache")
    }
}

/// Knowledge-base index settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    /// How often the indexer looks for article changes made by other processes (edits through the API are
    /// indexed at once). Edits are searchable within about this long.
    pub poll_interval_ms: u64,
    /// Memory of the index writer before it flushes a segment.
    pub writer_memory_bytes: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self { poll_interval_ms: 200, writer_memory_bytes: 50 * 1024 * 1024 }
    }
}

impl StorageSettings {
    /// Directory of stored media, content-addressed.
    pub fn blobs_path(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    /// Directory of the search index.
    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index")
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// A connection that has not sent complete request headers within this time is closed.
    pub header_read_timeout_ms: u64,
    /// A connection that sends nothing at all within this time of being accepted is closed.
    pub first_byte_timeout_ms: u64,
    /// A connection with no traffic either way for this long is closed (longer than `request_timeout_ms`,
    /// so a request in progress always ends first).
    pub idle_timeout_ms: u64,
    /// Connections open at once; more are closed as soon as they are accepted. Lowered at start to leave
    /// room under the process's open-file limit.
    pub max_connections: usize,
    /// Connections open at once from one address (an IPv6 /64 counts as one address).
    pub max_connections_per_address: usize,
    /// Requests in progress at once on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Time every request body gets, whatever its size.
    pub body_grace_ms: u64,
    /// Past the grace period, a body must arrive at least this fast or the request gets 408.
    pub body_min_bytes_per_second: u64,
    /// A request not answered within this time gets 504.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// Requests handled at once on the ingest routes (webhooks and the message API); more get 503.
    pub max_concurrent_ingest: usize,
    /// Of `max_concurrent_ingest`, how many one client may use.
    pub max_concurrent_ingest_per_client: usize,
    /// Requests handled at once on every other API route; more get 503.
    pub max_concurrent_api: usize,
    /// Of `max_concurrent_api`, how many one token may use.
    pub max_concurrent_api_per_token: usize,
    /// Live event streams (`GET /api/v1/events`) open at once; more get 503.
    pub max_event_streams: usize,
    /// Of `max_event_streams`, how many one token may hold.
    pub max_event_streams_per_token: usize,
    /// Requests per second one token may make on the API routes (not ingest) once its burst is used; past
    /// it, 429.
    pub api_requests_per_second_per_token: u32,
    /// Requests one token may make on the API routes in a burst.
    pub api_requests_burst_per_token: u32,
    /// Failed authentications (bad tokens, webhook secrets and signatures) one address may make per minute
    /// once its burst is used up; past that it gets 429 without its token being checked.
    pub auth_failures_per_minute: u32,
    /// Failed authentications one address may make in a burst.
    pub auth_failures_burst: u32,
    /// Largest accepted body on ingest routes.
    pub ingest_body_limit_bytes: usize,
    /// Largest accepted body on other API routes.
    pub api_body_limit_bytes: usize,
    /// `Retry-After` seconds sent with 503 when overloaded.
    pub retry_after_seconds: u32,
    /// Reverse proxies in front of recado (addresses or CIDR ranges, e.g. `["127.0.0.1", "10.0.0.0/8"]`).
    /// A request from one of them is taken to come from the address its `X-Forwarded-For` names (the
    /// nearest one that is not itself a trusted proxy) by the per-address limits on guessing; and
    /// connections from them are not held to `max_connections_per_address`. Empty: the header is ignored
    /// (anyone could write it).
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_read_timeout_ms: 10_000,
            first_byte_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 8_192,
            max_connections_per_address: 256,
            http2_max_concurrent_streams: 32,
            body_grace_ms: 5_000,
            body_min_bytes_per_second: 32_768,
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            max_concurrent_ingest: 512,
            max_concurrent_ingest_per_client: 128,
            max_concurrent_api: 256,
            max_concurrent_api_per_token: 32,
            max_event_streams: 256,
            max_event_streams_per_token: 4,
            api_requests_per_second_per_token: 50,
            api_requests_burst_per_token: 200,
            auth_failures_per_minute: 30,
            auth_failures_burst: 20,
            ingest_body_limit_bytes: 1024 * 1024,
            api_body_limit_bytes: 256 * 1024,
            retry_after_seconds: 1,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpSettings {
    /// `first_byte_timeout_ms` as a duration.
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }

    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// `header_read_timeout_ms` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `shutdown_grace_ms` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// `trusted_proxies` parsed (a plain address is a range of one). Entries that do not parse are left
    /// out; validation refuses them before a server starts.
    pub fn trusted_proxy_ranges(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.iter().filter_map(|entry| parse_range(entry)).collect()
    }
}

/// An address or CIDR range.
fn parse_range(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry.parse::<ipnet::IpNet>().ok().or_else(|| entry.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Which database holds the data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user@host/db` for PostgreSQL (libpq's URL form, options included: several hosts with
    /// `target_session_attrs=read-write` for failover); `sqlite:///path/recado.db` or unset for SQLite (unset or
    /// `sqlite://` alone: `recado.db` in the data directory). May hold a password: it is never logged, shown or
    /// written into a backup.
    #[serde(skip_serializing)]
    pub url: Option<secrecy::SecretString>,
    /// PostgreSQL connections this node keeps open at most.
    pub pool_size: usize,
    /// How long to wait for a PostgreSQL connection (connecting, or a free one from the pool).
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: None, pool_size: 16, connect_timeout_ms: 5_000 }
    }
}

/// What `database.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl<'a> {
    /// SQLite; the database file, when the URL names one.
    Sqlite(Option<PathBuf>),
    /// PostgreSQL, with this connection string.
    Postgres(&'a str),
}

impl DatabaseSettings {
    /// The backend the URL names (SQLite when unset).
    ///
    /// # Errors
    /// A URL of another scheme (the message does not repeat it: it may hold a password).
    pub fn backend(&self) -> Result<DatabaseUrl<'_>, Error> {
        use secrecy::ExposeSecret as _;
        let Some(url) = &self.url else { return Ok(DatabaseUrl::Sqlite(None)) };
        let url = url.expose_secret().trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return if path.is_empty() {
                Ok(DatabaseUrl::Sqlite(None))
            } else {
                Ok(DatabaseUrl::Sqlite(Some(PathBuf::from(path))))
            };
        }
        // The value itself is not repeated: it may hold a password.
        Err(Error::Invalid {
            key: "database.url",
            message: "must start with postgres://, postgresql:// or sqlite://".into(),
        })
    }

    /// The PostgreSQL connection string, when the URL names PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        match self.backend() {
            Ok(DatabaseUrl::Postgres(url)) => Some(url),
            _ => None,
        }
    }
}

/// The data directory and the SQLite store's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Directory holding `recado.db` (with SQLite), the search index, compiled plugins and media files.
    pub data_dir: PathBuf,
    /// The SQLite database file, when `database.url` names one elsewhere than the data directory.
    #[serde(skip)]
    pub database_file: Option<PathBuf>,
    /// Read-only connections kept open for queries.
    pub readers: usize,
    /// Most write jobs committed together in one transaction (group commit).
    pub max_batch: usize,
    /// The key that seals channel secrets in the database (32 bytes, base64). Unset: `secrets.key` in the
    /// data directory, created on the first start. Keep it out of copies of the database.
    pub secrets_key_file: Option<PathBuf>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("recado-data"),
            database_file: None,
            readers: 4,
            max_batch: 256,
            secrets_key_file: None,
        }
    }
}

impl StorageSettings {
    /// Path of the SQLite database file: `recado.db` in the data directory unless `database.url` names one.
    pub fn database_path(&self) -> PathBuf {
        self.database_file.clone().unwrap_or_else(|| self.data_dir.join("recado.db"))
    }

    /// Path of the key that seals channel secrets: `secrets_key_file`, else `secrets.key` in the data
    /// directory.
    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file.clone().unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }
}

/// Outbound delivery settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each attempt (with jitter).
    pub base_backoff_ms: u64,
    /// Longest delay between attempts (a provider's `Retry-After` may ask for more).
    pub max_backoff_ms: u64,
    /// Timeout of one call to a provider.
    pub request_timeout_ms: u64,
    /// Allows provider and webhook URLs on loopback or private networks (off by default: SSRF).
    pub allow_private_targets: bool,
    /// How often the outbox looks for due deliveries when nothing wakes it.
    pub poll_interval_ms: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_attempts: 8,
            base_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            request_timeout_ms: 10_000,
            allow_private_targets: false,
            poll_interval_ms: 1_000,
        }
    }
}

impl OutboxSettings {
    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long a claimed delivery stays claimed: a process that dies mid-send leaves the row to be retried
    /// after this lease, never before the provider call could have timed out.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.saturating_mul(2).saturating_add(5_000))
    }
}

/// Message-processing settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Most messages of one client decided in one turn and applied in one transaction.
    pub batch_size: usize,
    /// Clients whose messages are decided at once, each on a thread of its own (at least 1). By default the
    /// number of processors, and at least 2, so one client's slow rules never hold up every other client.
    pub lanes: usize,
    /// How often unprocessed messages are looked for (they are also processed as soon as they arrive).
    pub sweep_interval_ms: u64,
    /// Longest wait between looks at first-response clocks (the worker also wakes when the next one is due).
    pub sla_poll_interval_ms: u64,
    /// How long a node's claim on a client's waiting messages, or on a due first-response clock, lasts. Claims
    /// end as soon as the work is applied; this is how long a node that stopped mid-turn holds that work up
    /// before another node (or this one, restarted) takes it. Longer than any turn takes.
    pub lease_ms: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        let processors = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self {
            batch_size: 256,
            lanes: processors.max(2),
            sweep_interval_ms: 5_000,
            sla_poll_interval_ms: 1_000,
            lease_ms: 30_000,
        }
    }
}

/// Command-line flags that override settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<secrecy::SecretString>,
}

impl Settings {
    /// Loads settings from the layers described in the module docs.
    ///
    /// # Errors
    /// A missing `file`, a value of the wrong type, an unknown key or an out-of-range value.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("http.listen", listen));
        }
        if let Some(data_dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("storage.data_dir", data_dir));
        }
        if let Some(url) = &overrides.database_url {
            use secrecy::ExposeSecret as _;
            figment = figment.merge(Serialized::default("database.url", url.expose_secret()));
        }
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        if let DatabaseUrl::Sqlite(Some(file)) = settings.database.backend()? {
            settings.storage.database_file = Some(file);
        }
        Ok(settings)
    }

    /// Settings for tests: everything under `data_dir`, a free port, short timeouts, loopback targets allowed.
    pub fn for_tests(data_dir: &Path) -> Self {
        let mut settings = Self::default();
        settings.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.http.shutdown_grace_ms = 2_000;
        settings.storage.data_dir = data_dir.to_owned();
        settings.outbox.allow_private_targets = true;
        settings.outbox.base_backoff_ms = 50;
        settings.outbox.max_backoff_ms = 1_000;
        settings.outbox.request_timeout_ms = 2_000;
        settings.outbox.poll_interval_ms = 100;
        settings.pipeline.sweep_interval_ms = 200;
        settings.pipeline.sla_poll_interval_ms = 100;
        settings.media.base_backoff_ms = 50;
        settings.media.max_backoff_ms = 500;
        settings.media.request_timeout_ms = 2_000;
        settings.media.poll_interval_ms = 100;
        settings
    }

    /// Scheduled backups copy the SQLite database: with PostgreSQL, `backup.folder` is refused rather than
    /// ignored (PostgreSQL is backed up with its own tools).
    ///
    /// # Errors
    /// `database.url` does not parse, or names PostgreSQL while `backup.folder` is set.
    pub fn check_backups(&self) -> Result<(), Error> {
        if matches!(self.database.backend()?, DatabaseUrl::Postgres(_)) && self.backup.folder.is_some() {
            return Err(Error::Invalid {
                key: "backup.folder",
                message: "scheduled backups copy the SQLite database; with PostgreSQL, use its own backups \
                          (pg_basebackup with WAL archiving, or pg_dump)"
                    .into(),
            });
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        let http = &self.http;
        let checks: [(&'static str, bool, &str); 22] = [
            ("http.header_read_timeout_ms", self.http.header_read_timeout_ms > 0, "must be greater than 0"),
            ("http.first_byte_timeout_ms", http.first_byte_timeout_ms > 0, "must be greater than 0"),
            (
                "http.idle_timeout_ms",
                http.idle_timeout_ms > http.request_timeout_ms,
                "must be greater than http.request_timeout_ms",
            ),
            ("http.max_connections", http.max_connections >= 16, "must be at least 16"),
            ("http.max_connections_per_address", http.max_connections_per_address > 0, "must be greater than 0"),
            ("http.http2_max_concurrent_streams", http.http2_max_concurrent_streams > 0, "must be greater than 0"),
            ("http.body_min_bytes_per_second", http.body_min_bytes_per_second > 0, "must be greater than 0"),
            (
                "http.max_concurrent_ingest_per_client",
                http.max_concurrent_ingest_per_client > 0,
                "must be greater than 0",
            ),
            ("http.max_concurrent_api_per_token", http.max_concurrent_api_per_token > 0, "must be greater than 0"),
            ("http.max_event_streams_per_token", http.max_event_streams_per_token > 0, "must be greater than 0"),
            ("http.auth_failures_burst", http.auth_failures_burst > 0, "must be greater than 0"),
            (
                "http.api_requests_per_second_per_token",
                http.api_requests_per_second_per_token > 0,
                "must be greater than 0",
            ),
            ("http.request_timeout_ms", self.http.request_timeout_ms > 0, "must be greater than 0"),
            ("http.max_concurrent_ingest", self.http.max_concurrent_ingest > 0, "must be greater than 0"),
            ("http.max_concurrent_api", self.http.max_concurrent_api > 0, "must be greater than 0"),
            ("http.ingest_body_limit_bytes", self.http.ingest_body_limit_bytes >= 1024, "must be at least 1024"),
            ("http.api_body_limit_bytes", self.http.api_body_limit_bytes >= 1024, "must be at least 1024"),
            ("storage.readers", (1..=64).contains(&self.storage.readers), "must be between 1 and 64"),
            ("storage.max_batch", (1..=10_000).contains(&self.storage.max_batch), "must be between 1 and 10000"),
            ("outbox.concurrency", (1..=1_024).contains(&self.outbox.concurrency), "must be between 1 and 1024"),
            ("outbox.max_attempts", self.outbox.max_attempts > 0, "must be greater than 0"),
            (
                "outbox.max_backoff_ms",
                self.outbox.max_backoff_ms >= self.outbox.base_backoff_ms,
                "must be at least outbox.base_backoff_ms",
            ),
        ];
        for (key, ok, message) in checks {
            if !ok {
                return Err(Error::Invalid { key, message: message.to_owned() });
            }
        }
        self.check_backups()?;
        if !(1..=1_000).contains(&self.database.pool_size) {
            return Err(Error::Invalid { key: "database.pool_size", message: "must be between 1 and 1000".into() });
        }
        if self.database.connect_timeout_ms == 0 {
            return Err(Error::Invalid {
                key: "database.connect_timeout_ms",
                message: "must be greater than 0".into(),
            });
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(Error::Invalid { key: "storage.data_dir", message: "must not be empty".into() });
        }
        if self.search.writer_memory_bytes < 15 * 1024 * 1024 {
            // tantivy's floor: below it the writer flushes after every document.
            return Err(Error::Invalid {
                key: "search.writer_memory_bytes",
                message: "must be at least 15728640".into(),
            });
        }
        if !(10..=10_000).contains(&self.search.poll_interval_ms) {
            return Err(Error::Invalid {
                key: "search.poll_interval_ms",
                message: "must be between 10 and 10000".into(),
            });
        }
        let plugins = &self.plugins;
        // A ceiling below its default is taken as the default (see `PluginCeilings`), so raising a default
        // alone never makes the configuration invalid.
        let ceiling_checks: [(&'static str, bool, &str); 1] = [(
            "plugins.per_client_max.deadline_ms",
            plugins.per_client_max.deadline_ms <= 10_000,
            "must be at most 10000",
        )];
        let plugin_checks: [(&'static str, bool, &str); 8] = [
            ("plugins.max_component_bytes", plugins.max_component_bytes >= 1024, "must be at least 1024"),
            ("plugins.max_function_bytes", plugins.max_function_bytes >= 1024, "must be at least 1024"),
            ("plugins.compile_timeout_ms", plugins.compile_timeout_ms >= 100, "must be at least 100"),
            ("plugins.memory_bytes", plugins.memory_bytes >= 1 << 20, "must be at least 1048576"),
            ("plugins.deadline_ms", (1..=10_000).contains(&plugins.deadline_ms), "must be between 1 and 10000"),
            ("plugins.breaker_failures", plugins.breaker_failures > 0, "must be greater than 0"),
            ("plugins.uploads_per_hour_per_client", plugins.uploads_per_hour_per_client > 0, "must be greater than 0"),
            ("plugins.max_versions_per_client", plugins.max_versions_per_client > 0, "must be greater than 0"),
        ];
        let media = &self.media;
        let media_checks: [(&'static str, bool, &str); 5] = [
            ("media.max_bytes", media.max_bytes >= 1024, "must be at least 1024"),
            ("media.max_upload_bytes", media.max_upload_bytes >= 1024, "must be at least 1024"),
            ("media.concurrency", (1..=256).contains(&media.concurrency), "must be between 1 and 256"),
            ("media.max_attempts", media.max_attempts > 0, "must be greater than 0"),
            (
                "media.max_backoff_ms",
                media.max_backoff_ms >= media.base_backoff_ms,
                "must be at least media.base_backoff_ms",
            ),
        ];
        for (key, ok, message) in plugin_checks.into_iter().chain(ceiling_checks).chain(media_checks) {
            if !ok {
                return Err(Error::Invalid { key, message: message.to_owned() });
            }
        }
        let auth = &self.auth;
        let auth_checks: [(&'static str, bool, &str); 10] = [
            ("backup.interval_minutes", self.backup.interval_minutes > 0, "must be greater than 0"),
            ("backup.keep", self.backup.keep > 0, "must be greater than 0"),
            ("events.retention_days", self.events.retention_days > 0, "must be greater than 0"),
            ("events.max_replay", self.events.max_replay > 0, "must be greater than 0"),
            ("events.recheck_ms", self.events.recheck_ms > 0, "must be greater than 0"),
            (
                "auth.session_lifetime_hours",
                (1..=24 * 90).contains(&auth.session_lifetime_hours),
                "must be between 1 and 2160",
            ),
            ("auth.session_idle_minutes", auth.session_idle_minutes > 0, "must be greater than 0"),
            (
                "auth.sign_in_failures_per_account_burst",
                auth.sign_in_failures_per_account_burst > 0,
                "must be greater than 0",
            ),
            (
                "auth.sign_in_failures_per_account_per_hour",
                auth.sign_in_failures_per_account_per_hour > 0,
                "must be greater than 0",
            ),
            ("auth.max_concurrent_password_checks", auth.max_concurrent_password_checks > 0, "must be greater than 0"),
        ];
        for (key, ok, message) in auth_checks {
            if !ok {
                return Err(Error::Invalid { key, message: message.to_owned() });
            }
        }
        if let Some(origin) = &auth.public_origin {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.split("://").nth(1).is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !valid {
                return Err(Error::Invalid {
                    key: "auth.public_origin",
                    message: "must be a scheme and host without a path, like https://recado.example.com".into(),
                });
            }
        }
        if let Some(entry) = self.http.trusted_proxies.iter().find(|entry| parse_range(entry).is_none()) {
            return Err(Error::Invalid {
                key: "http.trusted_proxies",
                message: format!("{entry:?} is not an address or a CIDR range like 10.0.0.0/8"),
            });
        }
        if !(1..=100_000).contains(&self.pipeline.batch_size) {
            return Err(Error::Invalid { key: "pipeline.batch_size", message: "must be between 1 and 100000".into() });
        }
        if self.pipeline.lease_ms < 100 {
            // Shorter than a turn can take: nodes would keep taking each other's clients.
            return Err(Error::Invalid { key: "pipeline.lease_ms", message: "must be at least 100".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures must return figment::Error.
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "recado.toml",
                "[http]\nlisten = \"127.0.0.1:9000\"\nrequest_timeout_ms = 5000\n[storage]\ndata_dir = \"/tmp/from-file\"\n",
            )?;
            jail.set_env("RECADO__HTTP__REQUEST_TIMEOUT_MS", "7000");
            let overrides = Overrides { data_dir: Some(PathBuf::from("/tmp/from-flag")), ..Overrides::default() };
            let settings = Settings::load(Some(Path::new("recado.toml")), &overrides).expect("valid");
            assert_eq!(settings.http.listen.port(), 9000);
            assert_eq!(settings.http.request_timeout_ms, 7000);
            assert_eq!(settings.storage.data_dir, PathBuf::from("/tmp/from-flag"));
            assert_eq!(settings.outbox.max_attempts, OutboxSettings::default().max_attempts);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[http]\nlisten_addr = \"x\"\n")?;
            let error = Settings::load(Some(Path::new("typo.toml")), &Overrides::default()).expect_err("unknown key");
            assert!(error.to_string().contains("listen_addr"), "{error}");

            jail.set_env("RECADO__HTTP__REQUEST_TIMEOUT_MS", "soon");
            let error = Settings::load(None, &Overrides::default()).expect_err("bad type");
            assert!(error.to_string().to_lowercase().contains("http.request_timeout_ms"), "{error}");
            jail.clear_env();

            jail.set_env("RECADO__STORAGE__READERS", "0");
            let error = Settings::load(None, &Overrides::default()).expect_err("out of range");
            assert!(error.to_string().contains("storage.readers"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_database_url_names_the_backend_and_a_bad_one_is_refused_without_repeating_it() {
        Jail::expect_with(|jail| {
            let settings = Settings::load(None, &Overrides::default()).expect("defaults");
            assert_eq!(settings.database.backend().expect("valid"), DatabaseUrl::Sqlite(None));
            assert_eq!(settings.storage.database_path(), PathBuf::from("recado-data/recado.db"));

            jail.set_env("RECADO__DATABASE__URL", "sqlite:///srv/recado/main.db");
            let settings = Settings::load(None, &Overrides::default()).expect("a SQLite file");
            assert_eq!(settings.storage.database_path(), PathBuf::from("/srv/recado/main.db"));

            let url = "postgres://recado:hunter2@db.internal/recado";
            jail.set_env("RECADO__DATABASE__URL", url);
            let settings = Settings::load(None, &Overrides::default()).expect("PostgreSQL");
            assert_eq!(settings.database.postgres_url(), Some(url));
            assert!(!format!("{settings:?}").contains("hunter2"), "the password is not in the settings' Debug");
            assert!(!serde_json::to_string(&settings).expect("serialises").contains("hunter2"), "nor in their copy");
            let flag = Overrides { database_url: Some("postgresql://flag@h/db".into()), ..Overrides::default() };
            let settings = Settings::load(None, &flag).expect("the flag wins");
            assert_eq!(settings.database.postgres_url(), Some("postgresql://flag@h/db"));

            jail.set_env("RECADO__DATABASE__URL", "mysql://root:hunter2@h/db");
            let error = Settings::load(None, &Overrides::default()).expect_err("another scheme");
            assert!(error.to_string().contains("database.url") && !error.to_string().contains("hunter2"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_documented_default_file_matches_the_built_in_defaults() {
        // Inside a Jail: other tests set RECADO__ variables, which Settings::load reads.
        Jail::expect_with(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
            let from_file = Settings::load(Some(&path), &Overrides::default()).expect("the documented file loads");
            let documented = serde_json::to_value(&from_file).expect("serialises");
            let built_in = serde_json::to_value(Settings::default()).expect("serialises");
            assert_eq!(documented, built_in, "config/default.toml and Settings::default() disagree");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error_naming_it() {
        Jail::expect_with(|_| {
            let error = Settings::load(Some(Path::new("/nonexistent/recado.toml")), &Overrides::default())
                .expect_err("missing file");
            assert!(error.to_string().contains("recado.toml"), "{error}");
            Ok(())
        });
    }
}
