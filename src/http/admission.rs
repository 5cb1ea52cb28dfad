//! Admission: what a request must pass before it may use one of the server's work slots, so that nobody
//! without a token, no single client and no single address can take every slot.
//!
//! A request goes through, in this order:
//! 1. **Identification before the body.** A bearer token is checked (and a webhook's channel and secret
//!    header, in its handler) before a byte of the body is read, so an anonymous caller cannot make the
//!    server wait for a body at all. Failed authentications are rate-limited per address ([`AuthFailures`]).
//! 2. **The body, under a minimum rate** ([`BodyRule`]): a declared `Content-Length` over the route's limit is
//!    refused at once (413); otherwise the body must arrive within a grace period plus the time its size
//!    takes at a minimum rate, or the request gets 408. Reading the body holds no work slot, so a caller
//!    sending one byte at a time holds only its own connection (and connections are capped per address by
//!    the accept loop).
//! 3. **A work slot** ([`Budget`]): one of the route group's global slots and one of the slots of its
//!    principal (for API routes the person, across all their sessions and tokens, or the integration's
//!    token; the client for ingest). Past either, a fast 503 with
//!    `Retry-After`. API routes also take a token of their caller's request rate ([`Buckets`]); past it, 429.
//! 4. The request timeout (504), which measures the work alone, not the time the body took.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppPath, Principal};
use crate::config::{HttpSettings, Settings};

/// A concurrency budget: `global` slots shared by every principal, at most `per_principal` of them held by
/// any one principal.
pub(crate) struct Budget {
    name: &'static str,
    global: Arc<Semaphore>,
    per_principal: usize,
    held: Mutex<HashMap<String, usize>>,
    retry_after: u32,
}

/// A slot of a [`Budget`]; released when dropped.
pub(crate) struct Slot {
    budget: Arc<Budget>,
    principal: String,
    _global: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `global` slots, `per_principal` of them at most for one principal.
    pub(crate) fn new(name: &'static str, global: usize, per_principal: usize, retry_after: u32) -> Arc<Self> {
        Arc::new(Self {
            name,
            global: Arc::new(Semaphore::new(global)),
            per_principal: per_principal.min(global),
            held: Mutex::new(HashMap::new()),
            retry_after,
        })
    }

    /// Takes a slot for `principal`, or fails at once with 503 when the principal's share or the whole budget
    /// is in use.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] with code `overloaded`.
    pub(crate) fn admit(self: &Arc<Self>, principal: &str) -> Result<Slot, ApiError> {
        {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = held.entry(principal.to_owned()).or_insert(0);
            if *count >= self.per_principal {
                drop(held);
                tracing::debug!(budget = self.name, "a principal's share of the budget is in use");
                return Err(self.overloaded("too many requests of yours are in progress; retry later"));
            }
            *count += 1;
        }
        match Arc::clone(&self.global).try_acquire_owned() {
            Ok(permit) => Ok(Slot { budget: Arc::clone(self), principal: principal.to_owned(), _global: permit }),
            Err(_) => {
                self.release(principal);
                Err(self.overloaded("the server is busy; retry later"))
            }
        }
    }

    fn release(&self, principal: &str) {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(principal) {
            *count -= 1;
            // Principals with nothing in progress are forgotten, so the map is bounded by the slots in use.
            if *count == 0 {
                held.remove(principal);
            }
        }
    }

    fn overloaded(&self, message: &str) -> ApiError {
        ApiError::Unavailable { code: "overloaded", message: message.into(), retry_after: self.retry_after }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budget.release(&self.principal);
    }
}

/// How long a body may take: `grace` plus its size at `min_bytes_per_second`, and never more than `limit`
/// bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRule {
    /// Largest accepted body.
    pub(crate) limit: usize,
    /// Time every body gets, whatever its size.
    pub(crate) grace: Duration,
    /// The slowest acceptable rate past the grace period.
    pub(crate) min_bytes_per_second: u64,
}

impl BodyRule {
    /// The rule of a route group with body limit `limit`.
    pub(crate) fn new(settings: &HttpSettings, limit: usize) -> Self {
        Self {
            limit,
            grace: Duration::from_millis(settings.body_grace_ms),
            min_bytes_per_second: settings.body_min_bytes_per_second.max(1),
        }
    }

    /// Reads the whole body of `request` under this rule.
    ///
    /// # Errors
    /// 413 when the declared or actual size is over the limit, 408 when the body is too slow, 400 when the
    /// connection fails mid-body.
    pub(crate) async fn read(&self, request: Request) -> Result<(axum::http::request::Parts, Bytes), ApiError> {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.limit as u64) {
            return Err(too_large());
        }
        let bytes = self.read_body(body).await?;
        Ok((parts, bytes))
    }

    async fn read_body(&self, mut body: Body) -> Result<Bytes, ApiError> {
        let started = tokio::time::Instant::now();
        let mut buffer = BytesMut::new();
        loop {
            let allowed = self.grace + Duration::from_secs_f64(buffer.len() as f64 / self.min_bytes_per_second as f64);
            let frame = match tokio::time::timeout_at(started + allowed, body.frame()).await {
                Err(_) => return Err(ApiError::RequestTimeout("the request body arrived too slowly".into())),
                Ok(None) => return Ok(buffer.freeze()),
                Ok(Some(Err(error))) => {
                    return Err(ApiError::bad_request("invalid_body", format!("reading the body failed: {error}")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > self.limit {
                    return Err(too_large());
                }
                buffer.extend_from_slice(&data);
            }
        }
    }
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge("the request body is larger than this route accepts".into())
}

/// Token buckets by key: `burst` tokens, refilled at `per_second`. Keys whose bucket is full again are
/// forgotten once many are tracked, so the map stays bounded.
pub(crate) struct Buckets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
    per_second: f64,
    burst: f64,
}

#[derive(Clone, Copy)]
struct Bucket {
    left: f64,
    at: tokio::time::Instant,
}

/// Keys remembered at most before full buckets are forgotten.
const MAX_TRACKED_KEYS: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    /// Buckets of `burst` tokens refilled at `per_second`.
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        Self { buckets: Mutex::new(HashMap::new()), per_second, burst: f64::from(burst.max(1)) }
    }

    fn refilled(&self, bucket: Bucket, now: tokio::time::Instant) -> f64 {
        (bucket.left + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(self.burst)
    }

    /// Returns true if and only if `key` has a token left (without taking it).
    pub(crate) fn has_token(&self, key: &K) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.get(key).is_none_or(|bucket| self.refilled(*bucket, tokio::time::Instant::now()) >= 1.0)
    }

    /// Takes a token of `key`; returns false (taking nothing) when it has none.
    pub(crate) fn take(&self, key: &K) -> bool {
        let now = tokio::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_KEYS {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
        }
        let left = buckets.get(key).map_or(self.burst, |bucket| self.refilled(*bucket, now));
        if left < 1.0 {
            return false;
        }
        buckets.insert(key.clone(), Bucket { left: left - 1.0, at: now });
        true
    }

    /// Seconds until a token comes back, rounded up.
    fn retry_after(&self) -> u32 {
        (1.0 / self.per_second).ceil().clamp(1.0, 3600.0) as u32
    }
}

/// Failures by key (an address, an account): a bucket of `burst` failures refilled at a steady rate. While a
/// key has no failures left, its requests get 429 before any credential is checked, whether the next one would
/// be right or not, so guessing costs time.
pub(crate) struct Failures<K> {
    buckets: Buckets<K>,
    throttled: &'static str,
}

/// Failed authentications per address.
pub(crate) type AuthFailures = Failures<IpAddr>;

impl<K: std::hash::Hash + Eq + Clone> Failures<K> {
    /// `per_minute` failures per key, in bursts of up to `burst`; `throttled` is the message of the 429.
    pub(crate) fn new(per_minute: f64, burst: u32, throttled: &'static str) -> Arc<Self> {
        Arc::new(Self { buckets: Buckets::new(per_minute.max(f64::MIN_POSITIVE) / 60.0, burst), throttled })
    }

    /// Returns true if and only if `key` has a failure left before it is throttled.
    pub(crate) fn allows(&self, key: &K) -> bool {
        self.buckets.has_token(key)
    }

    /// Records a failure of `key`.
    pub(crate) fn record(&self, key: &K) {
        // A key already out of failures is answered 429 before it gets here; nothing more to count.
        let _ = self.buckets.take(key);
    }

    /// The 429 answered to a throttled key.
    pub(crate) fn throttled(&self) -> ApiError {
        ApiError::TooManyRequests { message: self.throttled.into(), retry_after: self.buckets.retry_after() }
    }
}

/// The address a request comes from, as the accept loop worked it out: the connection's peer, or, when
/// the peer is a trusted proxy, the client its `X-Forwarded-For` names. Per-address limits count against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddress(pub(crate) IpAddr);

impl ClientAddress {
    /// The address of a request from `peer` with `headers`: the peer itself unless it is one of `proxies`;
    /// then the nearest address in `X-Forwarded-For` (read from the right, as each proxy appends the
    /// address it was called from) that is not a trusted proxy. A header that does not parse is not
    /// believed: the peer is the caller.
    pub(crate) fn resolve(peer: IpAddr, headers: &axum::http::HeaderMap, proxies: &[ipnet::IpNet]) -> Self {
        // A dual-stack listener sees an IPv4 proxy as `::ffff:a.b.c.d`: compared as the IPv4 address it is.
        let peer = peer.to_canonical();
        let trusted = |address: &IpAddr| is_trusted(*address, proxies);
        if !trusted(&peer) {
            return Self(peer);
        }
        let mut hops = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else { return Self(peer) };
            for hop in text.split(',') {
                match parse_hop(hop) {
                    Some(address) => hops.push(address.to_canonical()),
                    None => return Self(peer),
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !trusted(&hop) {
                break;
            }
        }
        Self(client)
    }
}

/// Whether `address` (IPv4-mapped IPv6 counting as IPv4) is in one of `proxies`.
pub(crate) fn is_trusted(address: IpAddr, proxies: &[ipnet::IpNet]) -> bool {
    let address = address.to_canonical();
    proxies.iter().any(|range| range.contains(&address))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.7:5123`, `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|address| address.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(client_address(&parts.extensions))
    }
}

fn client_address(extensions: &axum::http::Extensions) -> ClientAddress {
    extensions
        .get::<ClientAddress>()
        .copied()
        .or_else(|| {
            extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|ConnectInfo(address)| ClientAddress(address.ip()))
        })
        // Not through the accept loop (in-process calls): loopback.
        .unwrap_or(ClientAddress(IpAddr::from([127, 0, 0, 1])))
}

/// The address a request comes from (see [`ClientAddress`]).
pub(crate) fn peer(request: &Request) -> IpAddr {
    client_address(request.extensions()).0
}

/// Middleware: authenticates the bearer token before the body is read and keeps the [`Principal`] for the
/// handler; failures count against the caller's address.
pub(crate) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let address = peer(&request);
    if !state.admission.auth_failures.allows(&address) {
        return state.admission.auth_failures.throttled().into_response();
    }
    match Principal::authenticate(request.method(), request.headers(), &state).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => {
            if matches!(error, ApiError::Unauthorized { .. }) {
                state.admission.auth_failures.record(&address);
            }
            error.into_response()
        }
    }
}

/// Middleware: answers 429 to an address out of authentication failures, before its body is read (the
/// sign-in route, which has no credential to check first).
pub(crate) async fn throttle_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.admission.auth_failures.allows(&peer(&request)) {
        next.run(request).await
    } else {
        state.admission.auth_failures.throttled().into_response()
    }
}

/// Middleware: reads the body under `rule` before the request may take a work slot.
pub(crate) async fn read_body(State(rule): State<BodyRule>, request: Request, next: Next) -> Response {
    match rule.read(request).await {
        Ok((parts, bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(error) => error.into_response(),
    }
}

/// Middleware: takes a token of the caller's request rate and a slot of the API budget.
pub(crate) async fn admit_token(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    let principal = request.extensions().get::<Principal>().map(Principal::key);
    let Some(principal) = principal else {
        return ApiError::Internal(anyhow::anyhow!("admission before authentication")).into_response();
    };
    if !admission.api_rate.take(&principal) {
        return ApiError::TooManyRequests {
            message: "too many requests with this token; retry later".into(),
            retry_after: admission.api_rate.retry_after(),
        }
        .into_response();
    }
    match admission.api.admit(&principal) {
        Ok(slot) => {
            let response = next.run(request).await;
            drop(slot);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Middleware: takes a slot of the ingest budget for the client named in the path.
pub(crate) async fn admit_client(
    State(budget): State<Arc<Budget>>,
    AppPath(slug): AppPath<String>,
    request: Request,
    next: Next,
) -> Response {
    match budget.admit(&slug) {
        Ok(slot) => {
            let response = next.run(request).await;
            drop(slot);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// The budgets and rules of every route group, shared by the router.
#[derive(Clone)]
pub(crate) struct Admission {
    /// Ingest: webhooks and the message API, one share per client.
    pub(crate) ingest: Arc<Budget>,
    /// Every other API route, one share per person or integration token.
    pub(crate) api: Arc<Budget>,
    /// Live event streams, one share per person or integration token (held while the stream is open).
    pub(crate) events: Arc<Budget>,
    /// Failed authentications per address (tokens, sessions, sign-ins, webhook secrets).
    pub(crate) auth_failures: Arc<AuthFailures>,
    /// Failed sign-ins per account (by the address's lower-case key), whatever the caller's address.
    pub(crate) sign_in_failures: Arc<Failures<String>>,
    /// Requests per person or integration token on the API routes.
    pub(crate) api_rate: Arc<Buckets<String>>,
    /// Bodies of ingest routes.
    pub(crate) ingest_body: BodyRule,
}

impl Admission {
    /// Budgets and rules from the settings.
    pub(crate) fn new(all: &Settings) -> Self {
        let settings = &all.http;
        Self {
            ingest: Budget::new(
                "ingest",
                settings.max_concurrent_ingest,
                settings.max_concurrent_ingest_per_client,
                settings.retry_after_seconds,
            ),
            api: Budget::new(
                "api",
                settings.max_concurrent_api,
                settings.max_concurrent_api_per_token,
                settings.retry_after_seconds,
            ),
            events: Budget::new(
                "events",
                settings.max_event_streams.max(1),
                settings.max_event_streams_per_token,
                settings.retry_after_seconds,
            ),
            auth_failures: AuthFailures::new(
                f64::from(settings.auth_failures_per_minute),
                settings.auth_failures_burst,
                "too many failed authentications from this address; retry later",
            ),
            sign_in_failures: Failures::new(
                f64::from(all.auth.sign_in_failures_per_account_per_hour) / 60.0,
                all.auth.sign_in_failures_per_account_burst,
                "too many failed sign-ins for this account; retry later",
            ),
            api_rate: Arc::new(Buckets::new(
                f64::from(settings.api_requests_per_second_per_token.max(1)),
                settings.api_requests_burst_per_token,
            )),
            ingest_body: BodyRule::new(settings, settings.ingest_body_limit_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_trusted_proxies_is_the_nearest_untrusted_forwarded_address() {
        let proxies: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().expect("range"), "127.0.0.1/32".parse().expect("range")];
        let headers = |values: &[&str]| {
            let mut map = axum::http::HeaderMap::new();
            for value in values {
                map.append("x-forwarded-for", value.parse().expect("header"));
            }
            map
        };
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let proxy = ip("127.0.0.1");
        let resolve = |peer, values: &[&str]| ClientAddress::resolve(peer, &headers(values), &proxies).0;
        assert_eq!(resolve(proxy, &["203.0.113.7"]), ip("203.0.113.7"));
        // The client wrote its own header: only what the trusted proxies appended counts.
        assert_eq!(resolve(proxy, &["198.51.100.1, 203.0.113.7, 10.1.2.3"]), ip("203.0.113.7"));
        assert_eq!(resolve(proxy, &["198.51.100.1", "203.0.113.7:5123"]), ip("203.0.113.7"));
        assert_eq!(resolve(proxy, &["[2001:db8::7]:443"]), ip("2001:db8::7"));
        // Every hop a proxy: the farthest one.
        assert_eq!(resolve(proxy, &["10.9.9.9, 10.1.1.1"]), ip("10.9.9.9"));
        // No header, or one that does not parse: the peer.
        assert_eq!(resolve(proxy, &[]), proxy);
        assert_eq!(resolve(proxy, &["unknown, 203.0.113.7"]), proxy);
        // A dual-stack listener's view of an IPv4 proxy is that proxy.
        assert_eq!(resolve(ip("::ffff:127.0.0.1"), &["203.0.113.7"]), ip("203.0.113.7"));
        // From anyone else the header is not believed.
        assert_eq!(resolve(ip("192.0.2.50"), &["203.0.113.7"]), ip("192.0.2.50"));
    }

    #[test]
    fn one_principal_cannot_take_more_than_its_share_and_others_still_get_slots() {
        let budget = Budget::new("test", 4, 2, 1);
        let first = budget.admit("a").expect("a's first slot");
        let _second = budget.admit("a").expect("a's second slot");
        assert!(matches!(budget.admit("a"), Err(ApiError::Unavailable { code: "overloaded", .. })));
        let _b1 = budget.admit("b").expect("b's first slot");
        let _b2 = budget.admit("b").expect("b's second slot");
        assert!(budget.admit("c").is_err(), "the global budget is used up");
        drop(first);
        let _c = budget.admit("c").expect("a released slot is available to anyone");
        assert!(budget.admit("a").is_err(), "a holds one slot and the budget is full again");
    }

    #[test]
    fn released_principals_are_forgotten() {
        let budget = Budget::new("test", 8, 8, 1);
        let slots: Vec<Slot> = (0..8).map(|n| budget.admit(&format!("p{n}")).expect("slot")).collect();
        assert_eq!(budget.held.lock().expect("lock").len(), 8);
        drop(slots);
        assert!(budget.held.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_authentications_are_throttled_per_address_and_recover() {
        let failures = AuthFailures::new(60.0, 3, "throttled");
        let attacker = IpAddr::from([10, 0, 0, 1]);
        let other = IpAddr::from([10, 0, 0, 2]);
        for _ in 0..3 {
            assert!(failures.allows(&attacker));
            failures.record(&attacker);
        }
        assert!(!failures.allows(&attacker), "the burst is used up");
        assert!(failures.allows(&other), "another address is not affected");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(failures.allows(&attacker), "one failure a second comes back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_past_its_rate_is_refused_until_its_bucket_refills() {
        let buckets = Buckets::new(2.0, 3);
        let (token, other) = ("tok_a".to_owned(), "tok_b".to_owned());
        assert!((0..3).all(|_| buckets.take(&token)), "the burst");
        assert!(!buckets.take(&token) && !buckets.has_token(&token));
        assert!(buckets.take(&other), "another key has its own bucket");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(buckets.take(&token), "one token back after half a second at two a second");
        assert!(!buckets.take(&token));
        assert_eq!(buckets.retry_after(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_minimum_rate_gets_408_and_a_declared_oversize_413_at_once() {
        let rule = BodyRule { limit: 1024, grace: Duration::from_secs(2), min_bytes_per_second: 100 };
        let (mut sender, receiver) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let reading = tokio::spawn(async move { rule.read_body(Body::from_stream(receiver)).await });
        futures::SinkExt::send(&mut sender, Ok(Bytes::from_static(b"{"))).await.expect("sent");
        tokio::time::advance(Duration::from_secs(3)).await;
        let result = reading.await.expect("task");
        assert!(matches!(result, Err(ApiError::RequestTimeout(_))), "{result:?}");

        let request = Request::builder().header(CONTENT_LENGTH, "4096").body(Body::empty()).expect("request");
        assert!(matches!(rule.read(request).await, Err(ApiError::PayloadTooLarge(_))));
    }
}
