//! The accept loop: hyper with the connection limits that axum's own `serve` lacks.
//!
//! - **Caps.** At most `http.max_connections` connections open at once (lowered at start to fit under the
//!   process's open-file limit, whose soft value is raised to the hard one), and at most
//!   `http.max_connections_per_address` from one address (an IPv6 /64 counts as one). At the total cap the
//!   connection open longest without sending a byte is closed to make room; a connection over the address
//!   cap, or arriving when every open connection is in use, is closed as soon as it is accepted. So
//!   descriptors never run out, and silent sockets cannot keep `/healthz` or anyone else out.
//! - **Behind a proxy.** Connections from `http.trusted_proxies` are not held to the per-address cap, and
//!   their requests are taken to come from the client their `X-Forwarded-For` names ([`ClientAddress`]).
//! - **Timeouts.** A connection that sends nothing within `http.first_byte_timeout_ms` is closed, and so is
//!   one silent both ways for `http.idle_timeout_ms` (HTTP/1 keep-alive and HTTP/2 alike); hyper closes
//!   HTTP/1 connections whose headers take longer than `http.header_read_timeout_ms`.
//! - **HTTP/2** connections carry at most `http.http2_max_concurrent_streams` requests at once.
//! - **Logs.** Accept failures and refused connections are logged at most once a second, with the number
//!   left out, so a flood cannot fill the log.
//!
//! Shutdown is graceful: the listener closes, requests in flight get the grace period to finish.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::admission::{ClientAddress, is_trusted};
use crate::config::HttpSettings;
use crate::metrics::Metrics;

/// Descriptors kept free for the store, the index, the plugin cache and outbound calls.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and waits up to the
/// grace period for open requests.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    settings: HttpSettings,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let max_connections = connection_cap(settings.max_connections, raise_open_file_limit());
    let connections = Connections::new(max_connections, settings.max_connections_per_address);
    let proxies: Arc<[ipnet::IpNet]> = settings.trusted_proxy_ranges().into();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        // Streams opened and reset at once (the "rapid reset" attack) close the connection past this.
        .max_pending_accept_reset_streams(Some(20));
    let graceful = GracefulShutdown::new();
    let mut accept_log = RateLimitedLog::default();
    let mut refusal_log = RateLimitedLog::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_log.warn(|suppressed| tracing::warn!(%error, suppressed, "accept failed"));
                        // Out of file descriptors and the like: back off briefly instead of spinning.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let activity = Arc::new(Activity::new());
                // Everyone behind a trusted proxy arrives from its address: its connections are not held to
                // one address's share.
                let from_proxy = is_trusted(peer.ip(), &proxies);
                let guard = match connections.open(peer.ip(), !from_proxy, Arc::clone(&activity)) {
                    Ok((guard, evicted)) => {
                        if evicted {
                            metrics.connection_shed("evicted_silent");
                            refusal_log.warn(|suppressed| {
                                tracing::warn!(suppressed, "connection limit reached: closed the oldest silent connection");
                            });
                        }
                        guard
                    }
                    Err(refusal) => {
                        metrics.connection_shed(refusal.label());
                        refusal_log.warn(|suppressed| {
                            tracing::warn!(reason = refusal.label(), suppressed, "connection refused: over the connection limit");
                        });
                        drop(stream);
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "set_nodelay failed");
                }
                let io = TokioIo::new(Watched { io: stream, activity: Arc::clone(&activity) });
                let proxies = Arc::clone(&proxies);
                let service = router.clone().map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let client = ClientAddress::resolve(peer.ip(), request.headers(), &proxies);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(client);
                    request
                });
                let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
                let connection = graceful.watch(connection.into_owned());
                let (first_byte, idle) = (settings.first_byte_timeout(), settings.idle_timeout());
                tokio::spawn(async move {
                    tokio::select! {
                        result = connection => {
                            if let Err(error) = result {
                                tracing::debug!(error = %error, "connection ended with an error");
                            }
                        }
                        () = activity.silent_for(first_byte, idle) => {
                            tracing::debug!("connection closed: silent too long");
                        }
                        () = guard.close.cancelled() => {
                            tracing::debug!("connection closed: evicted to make room");
                        }
                    }
                    drop(guard);
                });
            }
            () = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace(), graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period ran out with requests still open");
    }
}

/// Raises the soft open-file limit to the hard one and returns the soft limit in force (`None` where it
/// cannot be read).
fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return Some(hard),
            Err(error) => tracing::debug!(%error, "raising the open-file limit failed"),
        }
    }
    Some(soft)
}

/// The connection cap in force: the configured one, lowered to leave [`RESERVED_DESCRIPTORS`] free under the
/// open-file limit.
fn connection_cap(configured: usize, open_file_limit: Option<u64>) -> usize {
    let Some(limit) = open_file_limit else { return configured };
    let room = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX).max(16);
    if room < configured {
        tracing::info!(configured, in_force = room, "connection cap lowered to fit the open-file limit");
    }
    configured.min(room)
}

/// The address a connection counts against: IPv4 addresses as they are, IPv6 by their /64 (one host
/// usually has a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// Open connections, in total and per address.
struct Connections {
    max: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_address: HashMap<IpAddr, usize>,
}

struct Entry {
    address: IpAddr,
    activity: Arc<Activity>,
    close: CancellationToken,
}

/// One open connection; counted until dropped or evicted.
struct ConnectionGuard {
    connections: Arc<Connections>,
    id: u64,
    /// Cancelled when the connection is evicted to make room.
    close: CancellationToken,
}

/// What happened to a new connection.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Its address already has its share.
    PerAddress,
    /// The total is reached and every open connection has spoken.
    Total,
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::Total => "total",
        }
    }
}

impl Connections {
    fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self { max, max_per_address, open: Mutex::new(Open::default()) })
    }

    /// Counts a new connection from `ip` (held to the per-address cap if `capped`). At the total cap, the connection that has been open longest
    /// without sending a byte is closed to make room (so silent sockets cannot lock everyone out); when
    /// every connection has spoken, the new one is refused. Returns the guard and whether one was evicted.
    fn open(
        self: &Arc<Self>,
        ip: IpAddr,
        capped: bool,
        activity: Arc<Activity>,
    ) -> Result<(ConnectionGuard, bool), Refusal> {
        let address = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if capped && open.per_address.get(&address).copied().unwrap_or(0) >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        let mut evicted = false;
        if open.entries.len() >= self.max {
            let silent = open
                .entries
                .iter()
                .filter(|(_, entry)| !entry.activity.spoke.load(Ordering::Relaxed))
                .min_by_key(|(_, entry)| entry.activity.opened)
                .map(|(id, _)| *id);
            let Some(silent) = silent else { return Err(Refusal::Total) };
            if let Some(entry) = Open::remove(&mut open, silent) {
                entry.close.cancel();
                evicted = true;
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let close = CancellationToken::new();
        *open.per_address.entry(address).or_insert(0) += 1;
        open.entries.insert(id, Entry { address, activity, close: close.clone() });
        Ok((ConnectionGuard { connections: Arc::clone(self), id, close }, evicted))
    }
}

impl Open {
    fn remove(open: &mut Self, id: u64) -> Option<Entry> {
        let entry = open.entries.remove(&id)?;
        if let Some(count) = open.per_address.get_mut(&entry.address) {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&entry.address);
            }
        }
        Some(entry)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An evicted connection was uncounted when it was evicted.
        Open::remove(&mut open, self.id);
    }
}

/// When a connection last moved a byte either way.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last byte read or written.
    last: AtomicU64,
    /// Whether the peer has sent anything yet.
    spoke: AtomicBool,
    /// Signalled when the peer first speaks, so a wait on the first-byte deadline moves to the idle one.
    first_spoke: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            spoke: AtomicBool::new(false),
            first_spoke: tokio::sync::Notify::new(),
        }
    }

    fn touch(&self, read: bool) {
        let elapsed = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
        if read && !self.spoke.swap(true, Ordering::Relaxed) {
            // `notify_one` keeps a permit when nobody waits yet, so the wake-up cannot be missed.
            self.first_spoke.notify_one();
        }
    }

    /// Completes once the peer has been silent past `first_byte` after opening, or the connection has moved
    /// nothing either way for `idle`.
    async fn silent_for(&self, first_byte: Duration, idle: Duration) {
        loop {
            if self.spoke.load(Ordering::Relaxed) {
                let deadline = self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle;
                if Instant::now() >= deadline {
                    return;
                }
                // Activity only moves the deadline later: sleep, then look again.
                tokio::time::sleep_until(deadline).await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep_until(self.opened + first_byte) => {
                        if !self.spoke.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    () = self.first_spoke.notified() => {}
                }
            }
        }
    }
}

/// A socket that records its [`Activity`].
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch(true);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch(false);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch(false);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Logs one line a second at most, saying how many were left out since the last.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken() -> Arc<Activity> {
        let activity = Arc::new(Activity::new());
        activity.touch(true);
        activity
    }

    #[test]
    fn connections_are_capped_in_total_and_per_address_and_released_on_drop() {
        let connections = Connections::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = connections.open(a, true, spoken()).expect("first from a");
        let _second = connections.open(a, true, spoken()).expect("second from a");
        assert_eq!(connections.open(a, true, spoken()).err(), Some(Refusal::PerAddress));
        let _third = connections.open(b, true, spoken()).expect("b has its own share");
        assert_eq!(connections.open(b, true, spoken()).err(), Some(Refusal::Total), "every connection has spoken");
        drop(first);
        assert!(connections.open(a, true, spoken()).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn a_trusted_proxys_connections_are_not_held_to_one_addresss_share() {
        let connections = Connections::new(4, 1);
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let _first = connections.open(proxy, false, spoken()).expect("first");
        let _second = connections.open(proxy, false, spoken()).expect("second, past the address cap");
        let other: IpAddr = "192.0.2.1".parse().expect("ip");
        let _one = connections.open(other, true, spoken()).expect("one");
        assert_eq!(connections.open(other, true, spoken()).err(), Some(Refusal::PerAddress), "others still are");
    }

    #[test]
    fn at_the_cap_the_oldest_silent_connection_makes_room() {
        let connections = Connections::new(3, 3);
        let attacker: IpAddr = "192.0.2.66".parse().expect("ip");
        let (oldest, _) = connections.open(attacker, true, Arc::new(Activity::new())).expect("silent");
        let (newer, _) = connections.open(attacker, true, Arc::new(Activity::new())).expect("silent");
        let (_busy, _) = connections.open("192.0.2.1".parse().expect("ip"), true, spoken()).expect("busy");
        let (_probe, evicted) = connections.open("192.0.2.2".parse().expect("ip"), true, spoken()).expect("room made");
        assert!(evicted);
        assert!(oldest.close.is_cancelled(), "the oldest silent connection is closed");
        assert!(!newer.close.is_cancelled());
        drop(oldest);
        assert_eq!(connections.open.lock().expect("lock").entries.len(), 3, "an evicted guard is not uncounted twice");
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(one), address_key(two));
        assert_ne!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn the_cap_leaves_room_under_the_open_file_limit() {
        assert_eq!(connection_cap(8192, Some(1024)), 768);
        assert_eq!(connection_cap(100, Some(1_048_576)), 100);
        assert_eq!(connection_cap(100, None), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_silent_past_the_first_byte_timeout_then_past_the_idle_timeout() {
        let activity = Activity::new();
        let silent = tokio::time::timeout(
            Duration::from_secs(11),
            activity.silent_for(Duration::from_secs(10), Duration::from_secs(60)),
        );
        assert!(silent.await.is_ok(), "nothing sent within the first-byte timeout");

        let activity = Activity::new();
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.touch(true);
        let waiting = activity.silent_for(Duration::from_secs(10), Duration::from_secs(60));
        assert!(
            tokio::time::timeout(Duration::from_secs(50), waiting).await.is_err(),
            "a connection that spoke gets the idle timeout from its last byte"
        );
        let waiting = activity.silent_for(Duration::from_secs(10), Duration::from_secs(60));
        assert!(tokio::time::timeout(Duration::from_secs(11), waiting).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_begun_before_the_peer_speaks_ends_at_the_idle_deadline() {
        // The connection task may start waiting before the first byte is read: the first-byte deadline must
        // not outlive the first byte.
        let activity = Arc::new(Activity::new());
        let waiting = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.silent_for(Duration::from_secs(10), Duration::from_millis(1500)).await }
        });
        tokio::task::yield_now().await;
        activity.touch(true);
        let closed = tokio::time::timeout(Duration::from_secs(2), waiting).await;
        assert!(closed.is_ok(), "closed 1.5 s after the last byte, not at the first-byte deadline");
    }

    #[test]
    fn the_rate_limited_log_says_how_many_lines_it_left_out() {
        let mut log = RateLimitedLog::default();
        let mut lines = Vec::new();
        for _ in 0..5 {
            log.warn(|suppressed| lines.push(suppressed));
        }
        assert_eq!(lines, vec![0], "one line within the second");
        log.last = Some(Instant::now() - Duration::from_secs(2));
        log.warn(|suppressed| lines.push(suppressed));
        assert_eq!(lines, vec![0, 4]);
    }
}
