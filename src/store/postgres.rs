//! The PostgreSQL backend: a pool of connections shared by every store call of this node, each call one
//! transaction on a blocking thread (the store's queries are synchronous code, written once for both backends;
//! each statement is awaited on the runtime from that thread, so no async thread waits on the database).
//!
//! Writes run at READ COMMITTED, PostgreSQL's default, where concurrent increments of one counter row wait for
//! each other instead of failing. What two nodes could otherwise both do (store one provider message twice,
//! open two conversations for one customer) is refused by a unique constraint; the losing transaction is rolled
//! back and run again from the start, when it sees the winner's row. A serialization failure or a deadlock is
//! retried the same way. Reads run in one REPEATABLE READ, READ ONLY snapshot, as SQLite's reads do.
//!
//! Nothing is acknowledged before `COMMIT` returns: with `synchronous_commit = on` (the default, checked at
//! start) that is after the commit record is flushed, and with a synchronous standby, after it has it too.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;

use super::sql::Connection;
use super::{Error, Result, events, migrations};

/// How many times a transaction that lost a race is run again before the error is returned.
const ATTEMPTS: u32 = 5;

/// A pool of connections to one database (or to whichever of several hosts is the primary).
#[derive(Clone)]
pub(super) struct Postgres {
    pool: Pool,
    /// What the pool connects with: the notification listener opens its own connection with it.
    config: tokio_postgres::Config,
}

impl Postgres {
    /// Connects, checks the server's durability settings and brings the schema up to date.
    pub(super) async fn connect(url: &str, pool_size: usize, connect_timeout: Duration) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| Error::Unavailable(format!("database.url is not a PostgreSQL URL: {error}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("recado");
        }
        // The node's own work is for every client; a transaction for some clients narrows this (row-level
        // security: a connection that sets nothing sees no client's rows).
        let options = match config.get_options() {
            Some(given) => format!("{given} -c recado.scope=all"),
            None => "-c recado.scope=all".to_owned(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(connect_timeout))
            .create_timeout(Some(connect_timeout))
            .build()
            .map_err(|error| Error::Unavailable(format!("cannot build the connection pool: {error}")))?;
        let store = Self { pool, config };
        let mut client = store.client().await?;
        let synchronous: String = client.query_one("SHOW synchronous_commit", &[]).await.map_err(Error::from)?.get(0);
        if synchronous != "on" && synchronous != "remote_write" && synchronous != "remote_apply" {
            tracing::warn!(
                synchronous_commit = %synchronous,
                "PostgreSQL acknowledges commits before they are flushed: an acknowledged message can be lost in a crash"
            );
        }
        migrations::migrate_postgres(&mut client).await?;
        Ok(store)
    }

    /// How this node connects (for a connection of its own, outside the pool).
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A connection from the pool; an unreachable database is [`Error::Unavailable`].
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|error| Error::Unavailable(format!("database unreachable: {error}")))
    }

    /// Whether the database answers now (for `/readyz`).
    pub(super) async fn ping(&self) -> bool {
        match self.client().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }

    /// Runs `job` in a transaction of its own and commits it; runs it again when it lost a race. Also says
    /// whether the committed transaction recorded an event. With `visible`, a comma-separated list of client
    /// slugs, the transaction sees and writes only those clients' rows (row-level security).
    pub(super) async fn write<T, F>(&self, visible: Option<String>, job: F) -> Result<(T, bool)>
    where
        F: Fn(&Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::current();
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut attempt = 1;
            loop {
                // A flag left by a failed attempt must not count for this one.
                events::take_recorded();
                let outcome = run(&runtime, &pool, IsolationLevel::ReadCommitted, false, visible.as_deref(), &job);
                let recorded = events::take_recorded();
                match outcome.map(|value| (value, recorded)) {
                    Err(error) if attempt < ATTEMPTS && lost_a_race(&error) => {
                        tracing::debug!(%error, attempt, "a transaction lost a race; running it again");
                        // A little later each time, so that two nodes retrying the same work drift apart.
                        std::thread::sleep(Duration::from_millis(u64::from(attempt) * 2));
                        attempt += 1;
                    }
                    outcome => return outcome,
                }
            }
        })
        .await?
    }

    /// Runs a read-only query in one snapshot, seeing only the clients in `visible` if given (see `write`).
    pub(super) async fn read<T, F>(&self, visible: Option<String>, query: F) -> Result<T>
    where
        F: FnOnce(&Connection<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = tokio::runtime::Handle::current();
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            run(&runtime, &pool, IsolationLevel::RepeatableRead, true, visible.as_deref(), query)
        })
        .await?
    }

    /// Closes the pool: connections in use are closed when returned.
    pub(super) fn close(&self) {
        self.pool.close();
    }
}

/// One transaction: begin, the job, commit (or roll back when the job failed).
fn run<T>(
    runtime: &tokio::runtime::Handle,
    pool: &Pool,
    isolation: IsolationLevel,
    read_only: bool,
    visible: Option<&str>,
    job: impl FnOnce(&Connection<'_>) -> Result<T>,
) -> Result<T> {
    let mut client =
        runtime.block_on(pool.get()).map_err(|error| Error::Unavailable(format!("database unreachable: {error}")))?;
    let transaction = runtime
        .block_on(client.build_transaction().isolation_level(isolation).read_only(read_only).start())
        .map_err(classify)?;
    if let Some(clients) = visible {
        // For this transaction only (`true`: like `SET LOCAL`); the connection goes back to the pool as it was.
        let narrowed = runtime.block_on(transaction.execute(
            "SELECT set_config('recado.scope', 'clients', true), set_config('recado.clients', $1, true)",
            &[&clients],
        ));
        if let Err(error) = narrowed {
            let _ = runtime.block_on(transaction.rollback());
            return Err(classify(error));
        }
    }
    let outcome = job(&Connection::postgres(&transaction, runtime.clone()));
    match outcome {
        Ok(value) => {
            runtime.block_on(transaction.commit()).map_err(classify)?;
            Ok(value)
        }
        Err(error) => {
            // Rolled back explicitly so the connection goes back to the pool clean; if that fails too, the
            // connection is broken and the pool drops it.
            let _ = runtime.block_on(transaction.rollback());
            Err(error)
        }
    }
}

/// Whether running the transaction again may succeed: it conflicted with another one.
fn lost_a_race(error: &Error) -> bool {
    let Error::Postgres(error) = error else { return false };
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::UNIQUE_VIOLATION
    )
}

/// A lost connection or a server that cannot take writes is [`Error::Unavailable`]; other errors stay.
pub(super) fn classify(error: tokio_postgres::Error) -> Error {
    let unavailable = error.is_closed()
        || error.code().is_some_and(|code| {
            // Class 08: connection exceptions; 53: insufficient resources; 57P: the server is shutting down;
            // 25006: a read-only transaction (a standby that has not been promoted yet).
            let code = code.code();
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "25006"
        })
        || std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
    if unavailable {
        Error::Unavailable(format!("database unavailable: {}", describe(&error)))
    } else {
        Error::Postgres(error)
    }
}

/// The error's code and message (`db error` alone says nothing). The detail, which can quote a row's values, is
/// left out.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
