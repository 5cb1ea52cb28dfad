//! Which database the black-box suite runs against, and a throwaway PostgreSQL for it.
//!
//! `RECADO_TEST_DATABASE=postgres` runs every test against PostgreSQL (`scripts/test` runs the suite once
//! per backend). The cluster is this test process's own: `initdb` into a directory under the system's temp
//! directory, the server started from Debian's `postgresql` package on a Unix socket only (no TCP port to
//! collide with), as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root). It
//! dies with the test process (`setpriv --pdeathsig`); the directory of a run that ended is removed by the
//! next one. Each data directory a test uses gets a database of its own, so a restart on the same data
//! directory finds its data again. The server connects as `recado`, a role without superuser rights, as in
//! production: row-level security applies to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether this run uses PostgreSQL.
pub fn postgres() -> bool {
    std::env::var("RECADO_TEST_DATABASE").is_ok_and(|value| value == "postgres")
}

/// Whether a test of a SQLite-only part (the database file, its backups, its schema history) is to be left
/// out of this run: with PostgreSQL it is, and says so.
pub fn sqlite_only(what: &str) -> bool {
    if postgres() {
        // Written to the process's stderr, past the test harness's capture: the run's output says so.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "not run on PostgreSQL: {what}");
    }
    postgres()
}

/// Whether a test of a PostgreSQL-only part (what several writers committing at once could get wrong, where
/// SQLite has one writer at a time) is to be left out of this run: with SQLite it is, and says so.
pub fn postgres_only(what: &str) -> bool {
    if !postgres() {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "not run on SQLite: {what}");
    }
    !postgres()
}

/// The `database.url` for the data directory `data_dir`: a database of its own, created on first use.
pub fn url_for(data_dir: &Path) -> String {
    let name = database_name(data_dir);
    cluster().create_database(&name);
    cluster().url(&name, "recado")
}

/// The name of the PostgreSQL database of the data directory `data_dir`.
fn database_name(data_dir: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("recado_{}", hex::encode(&digest[..8]))
}

/// Settings for a server (or a store opened by a test) on `data_dir`, with the database this run uses.
pub fn settings_for(data_dir: &Path) -> recado::config::Settings {
    let mut settings = recado::config::Settings::for_tests(data_dir);
    if postgres() {
        settings.database.url = Some(url_for(data_dir).into());
    }
    settings
}

/// The store of `data_dir`, opened by the test itself (no server running on it).
pub async fn open_store(data_dir: &Path) -> recado::store::Db {
    let settings = settings_for(data_dir);
    recado::store::Db::connect(&settings.storage, &settings.database).await.expect("the store opens")
}

/// The process's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().expect("a throwaway PostgreSQL starts (Debian's postgresql package)"))
}

/// A PostgreSQL cluster in a directory of its own.
pub struct Cluster {
    pub dir: PathBuf,
    pub socket_dir: PathBuf,
    pub bin: PathBuf,
}

/// Where Debian installs the server's programs (they are not on the PATH).
pub fn server_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| anyhow::anyhow!("no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql"))
}

/// Runs `program` as the user that owns the cluster (the `postgres` user when we are root).
pub fn as_owner(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Cluster {
    fn start() -> anyhow::Result<Self> {
        remove_stale_clusters();
        let dir = std::env::temp_dir().join(format!("recado-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cluster = Self::create(dir, &[("fsync", "off")])?;
        cluster.psql("postgres", "CREATE ROLE recado LOGIN")?;
        Ok(cluster)
    }

    /// A new cluster in `dir` (its data in `data`, its socket in `socket`), started with `settings`; a test
    /// that needs clusters of its own puts them under [`cluster`]'s directory, removed with it.
    pub fn create(dir: PathBuf, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let cluster = Self { socket_dir: dir.join("socket"), dir, bin: server_bin()? };
        cluster.init()?;
        cluster.spawn_server(&cluster.dir.join("data"), settings)?;
        cluster.wait_ready(&cluster.socket_dir)?;
        Ok(cluster)
    }

    /// A streaming standby of this cluster in `dir`, started: a base backup (`pg_basebackup`) that follows the
    /// primary's log under the name `name` (what `synchronous_standby_names` lists).
    pub fn standby(&self, dir: PathBuf, name: &str) -> anyhow::Result<Self> {
        let standby = Self { socket_dir: dir.join("socket"), dir, bin: self.bin.clone() };
        std::fs::create_dir_all(&standby.socket_dir)?;
        if nix::unistd::geteuid().is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&standby.dir).status()?;
            anyhow::ensure!(status.success(), "chown of the standby's directory failed");
        }
        let data = standby.dir.join("data");
        let output = as_owner(&self.bin.join("pg_basebackup"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-U", "postgres", "--wal-method=stream", "--checkpoint=fast", "--write-recovery-conf", "-D"])
            .arg(&data)
            .output()?;
        anyhow::ensure!(output.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&output.stderr));
        // The recovery settings name the primary; given on the command line, this one also names the standby.
        let conninfo = format!("host={} user=postgres application_name={name}", self.socket_dir.display());
        // A standby that lost its primary looks for WAL again only after this (5 s by default), and a
        // promotion meanwhile waits for it.
        let settings = [("primary_conninfo", conninfo.as_str()), ("wal_retrieve_retry_interval", "200ms")];
        standby.spawn_server(&data, &settings)?;
        standby.wait_ready(&standby.socket_dir)?;
        Ok(standby)
    }

    /// Runs `pg_ctl` on this cluster's data directory with `args`, as the owner.
    pub fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = as_owner(&self.bin.join("pg_ctl")).arg("-D").arg(self.dir.join("data")).args(args).output()?;
        anyhow::ensure!(output.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    }

    /// `initdb` as the owner, with trust on the local socket (the directory is the owner's alone).
    fn init(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.socket_dir)?;
        if nix::unistd::geteuid().is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.dir).status()?;
            anyhow::ensure!(status.success(), "chown of the cluster directory failed");
        }
        let output = as_owner(&self.bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8", "-D"])
            .arg(self.dir.join("data"))
            .output()?;
        anyhow::ensure!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    }

    /// Starts `postgres` on `data` from a thread that lives as long as the process, so that the server is
    /// killed when the process ends (the parent-death signal is sent when the spawning thread exits).
    pub fn spawn_server(&self, data: &Path, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut command = if nix::unistd::geteuid().is_root() {
            let mut command = Command::new("setpriv");
            command.args(["--pdeathsig=SIGKILL", "--reuid=postgres", "--regid=postgres", "--init-groups"]);
            command.arg(self.bin.join("postgres"));
            command
        } else {
            let mut command = Command::new("setpriv");
            command.arg("--pdeathsig=SIGKILL").arg(self.bin.join("postgres"));
            command
        };
        command.arg("-D").arg(data).arg("-k").arg(&self.socket_dir);
        command.args(["-c", "listen_addresses=", "-c", "max_connections=400", "-c", "shared_buffers=64MB"]);
        for (name, value) in settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(data.with_extension("log"))?));
        let (started, result) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("postgres".into()).spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started.send(Ok(()));
                let _ = child.wait();
                // Keep the thread (and so the parent-death signal of servers started later from here) alive.
                loop {
                    std::thread::park();
                }
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        })?;
        result.recv()??;
        Ok(())
    }

    /// Waits until the server in `socket_dir` accepts connections.
    pub fn wait_ready(&self, socket_dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = Command::new(self.bin.join("pg_isready")).arg("-h").arg(socket_dir).arg("-q").status()?;
            if status.success() {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "PostgreSQL did not start within 60 s");
            // pg_isready has no way to wait for the server; it is asked again shortly.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs SQL as the superuser through `psql`.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", sql])
            .output()?;
        anyhow::ensure!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn create_database(&self, name: &str) {
        let exists = self
            .psql("postgres", &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"))
            .expect("psql answers");
        if exists.is_empty() {
            self.psql("postgres", &format!("CREATE DATABASE {name} OWNER recado")).expect("database created");
        }
    }

    /// A connection URL for `database` as `user`, over the Unix socket.
    pub fn url(&self, database: &str, user: &str) -> String {
        format!("postgres://{user}@{}/{database}", url_encode(&self.socket_dir.to_string_lossy()))
    }
}

/// Percent-encodes a socket directory for the host part of a URL.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Removes the clusters of earlier test processes that have ended.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("recado-test-pg-").and_then(|pid| pid.parse::<i32>().ok()) else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A value read from (or bound into) either database.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    pub fn integer(&self) -> i64 {
        match self {
            Self::Integer(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Self::Text(text) => text,
            other => panic!("not text: {other:?}"),
        }
    }

    pub fn blob(&self) -> &[u8] {
        match self {
            Self::Blob(bytes) => bytes,
            other => panic!("not bytes: {other:?}"),
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

/// The server's database, reached from outside as another program would (tests look at what was stored,
/// or change it behind the server's back): the SQLite file in the data directory, or the data directory's
/// PostgreSQL database as the superuser (which row-level security does not hold back).
pub struct Database {
    backend: Backend,
}

enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// The database `url` names (PostgreSQL), reached as whoever the URL says.
    pub fn at(url: String) -> Self {
        Self { backend: Backend::Postgres(url) }
    }

    /// The database of the server whose data directory is `data_dir`.
    pub fn of(data_dir: &Path) -> Self {
        if postgres() {
            Self { backend: Backend::Postgres(cluster().url(&database_name(data_dir), "postgres")) }
        } else {
            Self { backend: Backend::Sqlite(data_dir.join("recado.db")) }
        }
    }

    /// The rows of a query with numbered parameters (`?1`), each as its cells.
    pub async fn query(&self, sql: &str, params: &[Cell]) -> Vec<Vec<Cell>> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("open the database file");
                connection.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
                let mut statement = connection.prepare(sql).expect("prepare");
                let columns = statement.column_count();
                statement
                    .query_map(rusqlite::params_from_iter(params.iter().map(sqlite_value)), |row| {
                        (0..columns)
                            .map(|index| {
                                Ok(match row.get::<_, rusqlite::types::Value>(index)? {
                                    rusqlite::types::Value::Null => Cell::Null,
                                    rusqlite::types::Value::Integer(n) => Cell::Integer(n),
                                    rusqlite::types::Value::Real(x) => Cell::Real(x),
                                    rusqlite::types::Value::Text(text) => Cell::Text(text),
                                    rusqlite::types::Value::Blob(bytes) => Cell::Blob(bytes),
                                })
                            })
                            .collect()
                    })
                    .expect("query")
                    .collect::<rusqlite::Result<_>>()
                    .expect("rows")
            }
            Backend::Postgres(url) => {
                let client = connect(url).await;
                let params: Vec<PgCell<'_>> = params.iter().map(PgCell).collect();
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|cell| cell as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                let rows = client.query(&numbered(sql), &refs).await.expect("query");
                rows.iter().map(|row| (0..row.len()).map(|index| row.get::<_, PgCellOut>(index).0).collect()).collect()
            }
        }
    }

    /// The one value of a query for one row and column.
    pub async fn value(&self, sql: &str, params: &[Cell]) -> Cell {
        let rows = self.query(sql, params).await;
        assert_eq!(rows.len(), 1, "one row expected from {sql}");
        rows[0][0].clone()
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Cell]) -> u64 {
        match &self.backend {
            Backend::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("open the database file");
                connection.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
                connection.execute(sql, rusqlite::params_from_iter(params.iter().map(sqlite_value))).expect("execute")
                    as u64
            }
            Backend::Postgres(url) => {
                let client = connect(url).await;
                let params: Vec<PgCell<'_>> = params.iter().map(PgCell).collect();
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|cell| cell as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                client.execute(&numbered(sql), &refs).await.expect("execute")
            }
        }
    }

    /// Runs statements without parameters, in the backend's own dialect: `sqlite` or `postgres`.
    pub async fn batch(&self, sqlite: &str, postgres: &str) {
        match &self.backend {
            Backend::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("open the database file");
                connection.execute_batch(sqlite).expect("statements");
            }
            Backend::Postgres(url) => connect(url).await.batch_execute(postgres).await.expect("statements"),
        }
    }

    /// Holds writes to the messages (SQLite: the database's write lock; PostgreSQL: an exclusive lock on the
    /// messages table) until the guard is dropped, as a stalled disk or a long migration would.
    pub async fn hold_writes(&self) -> WritesHeld {
        match &self.backend {
            Backend::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("open the database file");
                connection.execute_batch("BEGIN IMMEDIATE").expect("write lock taken");
                WritesHeld::Sqlite(connection)
            }
            Backend::Postgres(url) => {
                let client = connect(url).await;
                client.batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE").await.expect("lock taken");
                WritesHeld::Postgres(client)
            }
        }
    }

    /// What the database holds, as bytes a secret could be found in: the SQLite file and its write-ahead log;
    /// for PostgreSQL, every row of every table as text.
    pub async fn everything(&self) -> Vec<u8> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let mut bytes = std::fs::read(path).expect("database");
                bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
                bytes
            }
            Backend::Postgres(url) => {
                let client = connect(url).await;
                let tables = client
                    .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[])
                    .await
                    .expect("tables");
                let mut bytes = Vec::new();
                for table in tables {
                    let table: String = table.get(0);
                    for row in client.query(&format!("SELECT t::text FROM {table} t"), &[]).await.expect("rows") {
                        bytes.extend(row.get::<_, String>(0).into_bytes());
                        bytes.push(b'\n');
                    }
                }
                bytes
            }
        }
    }

    /// Row counts of `tables`.
    pub async fn counts(&self, tables: &[&str]) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in tables {
            counts.push(self.value(&format!("SELECT COUNT(*) FROM {table}"), &[]).await.integer());
        }
        counts
    }

    /// Every row of each of `tables`, every column, in a stable order.
    pub async fn contents(&self, tables: &[&str]) -> Vec<Vec<Vec<Cell>>> {
        let mut contents = Vec::new();
        for table in tables {
            contents.push(self.query(&format!("SELECT * FROM {table} ORDER BY 1, 2"), &[]).await);
        }
        contents
    }
}

/// Writes held back by [`Database::hold_writes`]; dropping it lets them through.
pub enum WritesHeld {
    Sqlite(#[allow(dead_code)] rusqlite::Connection),
    Postgres(#[allow(dead_code)] tokio_postgres::Client),
}

impl Database {
    /// Begins a transaction of the test's own, as another node's would be, that first runs `lock` (a
    /// statement with numbered parameters taking row locks on PostgreSQL; on SQLite the transaction takes the
    /// database's write lock instead, which is how SQLite keeps writers apart). [`Held::commit`] ends it.
    pub async fn begin_holding(&self, lock: &str, params: &[Cell]) -> Held {
        match &self.backend {
            Backend::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("open the database file");
                connection.execute_batch("BEGIN IMMEDIATE").expect("write lock taken");
                Held::Sqlite(connection)
            }
            Backend::Postgres(url) => {
                let held = Held::Postgres(connect(url).await);
                held.execute("BEGIN", &[]).await;
                held.execute(lock, params).await;
                held
            }
        }
    }
}

/// A transaction begun by [`Database::begin_holding`].
pub enum Held {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Held {
    /// Runs a statement with numbered parameters in the transaction.
    pub async fn execute(&self, sql: &str, params: &[Cell]) {
        match self {
            Self::Sqlite(connection) => {
                connection.execute(sql, rusqlite::params_from_iter(params.iter().map(sqlite_value))).expect("execute");
            }
            Self::Postgres(client) => {
                let params: Vec<PgCell<'_>> = params.iter().map(PgCell).collect();
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|cell| cell as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                client.execute(&numbered(sql), &refs).await.expect("execute");
            }
        }
    }

    /// Returns once another session of this database waits for a lock (on PostgreSQL, as `pg_locks` shows;
    /// the server gives no other signal), or after `within` with false. On SQLite, at once with true: a writer waiting for the
    /// write lock leaves no trace to look for, and it waits all the same.
    pub async fn someone_waits(&self, within: Duration) -> bool {
        let Self::Postgres(client) = self else { return true };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let waiting: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE NOT l.granted AND a.datname = current_database()",
                    &[],
                )
                .await
                .expect("locks")
                .get(0);
            if waiting > 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Commits the transaction.
    pub async fn commit(self) {
        match self {
            Self::Sqlite(connection) => connection.execute_batch("COMMIT").expect("committed"),
            Self::Postgres(client) => client.batch_execute("COMMIT").await.expect("committed"),
        }
    }
}

/// Makes the PostgreSQL database of `data_dir` unreachable (no new connection, the open ones closed), as a
/// failed database server would be; [`allow_connections`] ends it.
pub fn refuse_connections(data_dir: &Path) {
    let name = database_name(data_dir);
    cluster().psql("postgres", &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).expect("refused");
    cluster()
        .psql("postgres", &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        .expect("connections closed");
    // Terminating only signals the backends: until they are gone, one could still serve a query.
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = format!("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{name}'");
    while cluster().psql("postgres", &left).expect("counted").trim() != "0" {
        assert!(Instant::now() < deadline, "the database's connections did not close");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ends [`refuse_connections`].
pub fn allow_connections(data_dir: &Path) {
    let name = database_name(data_dir);
    cluster().psql("postgres", &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).expect("allowed");
}

fn sqlite_value(cell: &Cell) -> rusqlite::types::Value {
    match cell {
        Cell::Null => rusqlite::types::Value::Null,
        Cell::Integer(n) => rusqlite::types::Value::Integer(*n),
        Cell::Real(x) => rusqlite::types::Value::Real(*x),
        Cell::Text(text) => rusqlite::types::Value::Text(text.clone()),
        Cell::Blob(bytes) => rusqlite::types::Value::Blob(bytes.clone()),
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// SQLite's numbered parameters as PostgreSQL's (the tests' statements hold no `?` in literals).
fn numbered(sql: &str) -> String {
    sql.replace('?', "$")
}

#[derive(Debug)]
struct PgCell<'a>(&'a Cell);

impl tokio_postgres::types::ToSql for PgCell<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        match (self.0, ty) {
            (Cell::Null, _) => Ok(tokio_postgres::types::IsNull::Yes),
            (Cell::Integer(n), &Type::INT4) => i32::try_from(*n)?.to_sql(ty, out),
            (Cell::Integer(n), &Type::BOOL) => (*n != 0).to_sql(ty, out),
            (Cell::Integer(n), _) => n.to_sql(ty, out),
            (Cell::Real(x), _) => x.to_sql(ty, out),
            (Cell::Text(text), _) => text.as_str().to_sql(&Type::TEXT, out),
            (Cell::Blob(bytes), _) => bytes.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

struct PgCellOut(Cell);

impl<'a> tokio_postgres::types::FromSql<'a> for PgCellOut {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        Ok(Self(match *ty {
            Type::INT8 => Cell::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Cell::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Cell::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Cell::Real(f64::from_sql(ty, raw)?),
            Type::BYTEA => Cell::Blob(Vec::<u8>::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => Cell::Text(String::from_sql(ty, raw)?),
            ref other => return Err(format!("a {other} column; cast it to text or bigint in the query").into()),
        }))
    }

    fn from_sql_null(_: &tokio_postgres::types::Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(Cell::Null))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}
