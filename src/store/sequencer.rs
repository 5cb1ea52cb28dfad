//! The positions of the logs readers follow (`events`, which live streams resume from; `kb_changes`, which
//! each node's search index catches up from) on PostgreSQL, given once a row is committed, and the
//! notifications that tell every node when they grew.
//!
//! A reader asks for the rows after the last position it saw, so a row must never get a position below one a
//! reader may already have passed. On SQLite that holds by itself: one writer at a time numbers and commits.
//! On PostgreSQL an identity column numbers rows when they are inserted, not when they commit, and a reader
//! could pass a number whose transaction was still running. So rows are inserted without a position, and this
//! sequencer numbers the committed ones, one numbering at a time (under an advisory lock), continuing from the
//! last position given (`log_positions`): a position becomes visible only with the numbering that gave it, and
//! every later numbering gives higher ones.
//!
//! Each node numbers after its own commits that wrote log rows, every second anyway (rows a stopped node left
//! unnumbered wait no longer than that), and again shortly when another node was numbering at the time. A
//! numbering notifies `recado_events` and `recado_kb`; every node listens on a connection of its own and wakes
//! its streams and its indexer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::postgres::Postgres;
use super::{Error, Result};

/// Any number, the same for every node: the advisory lock the numbering runs under.
const SEQUENCER_LOCK: i64 = 0x7265_6361_646f_0002;

/// Every node looks at least this often, so rows a stopped node left unnumbered are numbered.
const SWEEP: Duration = Duration::from_secs(1);

/// Rows numbered per log in one transaction.
const BATCH: i64 = 5_000;

/// Numbers the committed events, in the order they were written, after the last position given.
const NUMBER_EVENTS: &str = "WITH ready AS (
        SELECT id, row_number() OVER (ORDER BY id) AS n FROM events
        WHERE seq IS NULL ORDER BY id LIMIT $1),
    moved AS (
        UPDATE log_positions SET last = last + (SELECT COUNT(*) FROM ready) WHERE log = 'events'
        RETURNING last - (SELECT COUNT(*) FROM ready) AS before)
    UPDATE events e SET seq = moved.before + ready.n FROM ready, moved WHERE e.id = ready.id";

/// The same for article changes.
const NUMBER_KB_CHANGES: &str = "WITH ready AS (
        SELECT id, row_number() OVER (ORDER BY id) AS n FROM kb_changes
        WHERE seq IS NULL ORDER BY id LIMIT $1),
    moved AS (
        UPDATE log_positions SET last = last + (SELECT COUNT(*) FROM ready) WHERE log = 'kb_changes'
        RETURNING last - (SELECT COUNT(*) FROM ready) AS before)
    UPDATE kb_changes k SET seq = moved.before + ready.n FROM ready, moved WHERE k.id = ready.id";

/// What one numbering did.
#[derive(Debug, Default)]
struct Numbered {
    events: u64,
    kb_changes: u64,
    /// Committed rows are still unnumbered (another node was numbering, or there were more than a batch).
    waiting: bool,
}

/// The running sequencer and listener of one node.
pub(super) struct Sequencer {
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Sequencer {
    /// Starts numbering (woken by [`Sequencer::wake`]) and listening; each log's watch changes when it grew.
    pub(super) fn start(
        postgres: Postgres,
        config: tokio_postgres::Config,
        event_ticks: watch::Sender<u64>,
        kb_ticks: watch::Sender<u64>,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(number(postgres, Arc::clone(&wake), event_ticks.clone(), kb_ticks.clone(), stop.clone()));
        tokio::spawn(listen(config, event_ticks, kb_ticks, stop.clone()));
        Self { wake, stop }
    }

    /// A transaction that wrote log rows committed: number them.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops both tasks.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

fn tick(ticks: &watch::Sender<u64>) {
    ticks.send_modify(|tick| *tick = tick.wrapping_add(1));
}

async fn number(
    postgres: Postgres,
    wake: Arc<Notify>,
    event_ticks: watch::Sender<u64>,
    kb_ticks: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(SWEEP) => {}
        }
        // While rows wait (another node was numbering): look again soon, a little later each time.
        let mut again = Duration::from_millis(2);
        loop {
            let pause = match number_once(&postgres).await {
                Ok(numbered) => {
                    failures = 0;
                    // The notification reaches this node's listener too; ticking here as well keeps this
                    // node's streams going while its listener reconnects.
                    if numbered.events > 0 {
                        tick(&event_ticks);
                    }
                    if numbered.kb_changes > 0 {
                        tick(&kb_ticks);
                    }
                    if !numbered.waiting {
                        break;
                    }
                    let pause = again;
                    again = (again * 2).min(Duration::from_millis(100));
                    pause
                }
                Err(error) => {
                    failures += 1;
                    // Once per outage, not once per try: an unreachable database is reported by `/readyz`.
                    if failures == 1 {
                        tracing::warn!(%error, "numbering the logs failed; trying again");
                    }
                    Duration::from_millis(100 * u64::from(failures.min(50)))
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

async fn number_once(postgres: &Postgres) -> Result<Numbered> {
    let mut client = postgres.client().await?;
    let transaction = client.transaction().await.map_err(super::postgres::classify)?;
    let locked: bool = transaction.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SEQUENCER_LOCK]).await?.get(0);
    if !locked {
        // Another node is numbering: what it leaves is numbered on the next look.
        return Ok(Numbered { waiting: true, ..Numbered::default() });
    }
    let events = transaction.execute(NUMBER_EVENTS, &[&BATCH]).await?;
    let kb_changes = transaction.execute(NUMBER_KB_CHANGES, &[&BATCH]).await?;
    let waiting: bool = transaction
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)
                 OR EXISTS (SELECT 1 FROM kb_changes WHERE seq IS NULL)",
            &[],
        )
        .await?
        .get(0);
    if events > 0 {
        transaction.execute("SELECT pg_notify('recado_events', '')", &[]).await?;
    }
    if kb_changes > 0 {
        transaction.execute("SELECT pg_notify('recado_kb', '')", &[]).await?;
    }
    transaction.commit().await.map_err(super::postgres::classify)?;
    Ok(Numbered { events, kb_changes, waiting })
}

/// Listens for other nodes' numbering on a connection of its own, reconnecting with backoff; after each
/// (re)connection both logs are ticked, for what was numbered while nobody listened.
async fn listen(
    config: tokio_postgres::Config,
    event_ticks: watch::Sender<u64>,
    kb_ticks: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&config, &event_ticks, &kb_ticks, &stop, &mut backoff).await {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, "the log notification connection ended; reconnecting"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listening connection, until it fails (`Err`) or the node stops (`Ok`). Once it listens, `backoff`
/// starts again from its least.
async fn listen_once(
    config: &tokio_postgres::Config,
    event_ticks: &watch::Sender<u64>,
    kb_ticks: &watch::Sender<u64>,
    stop: &CancellationToken,
    backoff: &mut Duration,
) -> Result<()> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await.map_err(super::postgres::classify)?;
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    // The connection delivers notifications only while it is polled: a task of its own drives it.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(notification))) => {
                    if sender.send(notification.channel().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    });
    let listening = client.batch_execute("LISTEN recado_events; LISTEN recado_kb").await;
    if let Err(error) = listening {
        driver.abort();
        return Err(Error::from(error));
    }
    *backoff = Duration::from_millis(100);
    tick(event_ticks);
    tick(kb_ticks);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                driver.abort();
                return Ok(());
            }
            channel = notifications.recv() => match channel.as_deref() {
                Some("recado_events") => tick(event_ticks),
                Some("recado_kb") => tick(kb_ticks),
                Some(_) => {}
                None => {
                    return Err(match driver.await? {
                        Err(error) => Error::from(error),
                        Ok(()) => Error::Unavailable("the server closed the connection".into()),
                    });
                }
            },
        }
    }
}
