//! Delivery of outbound messages: workers claim due rows from the durable outbox and call the provider
//! (WhatsApp Cloud API, Telegram Bot API, or the client's signed webhook), then record the outcome.
//!
//! Failures are retried with exponential backoff and full jitter; a provider's `Retry-After` (header, or
//! Telegram's `retry_after`) is honoured; 4xx answers other than 408, 425 and 429 are final; after
//! `max_attempts` a delivery is dead-lettered with its last error, visible in the API. Rows claimed by a
//! process that died are retried when their lease runs out, so deliveries resume after a restart.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::channels::telegram::TelegramConfig;
use crate::channels::webhook::WebhookConfig;
use crate::channels::whatsapp::WhatsAppConfig;
use crate::channels::{self, ChannelConfig, Outgoing, OutgoingFile, PublicResolver, Sending, redact};
use crate::config::OutboxSettings;

use crate::blobs::Blobs;
use crate::domain::{ChannelKind, ClientSlug, MediaKind, Outbound, Timestamp};
use crate::metrics::Metrics;
use crate::store::{Claimed, Db, DeliveryOutcome};
use crate::worker::{self, ClaimWorker, Limits, Wake};

/// The longest `Retry-After` we honour; a provider asking for more is retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Handle used to wake the delivery worker when a message is queued.
pub(crate) type OutboxHandle = Wake;

/// The delivery worker.
pub(crate) struct Deliverer {
    db: Db,
    blobs: Blobs,
    http: reqwest::Client,
    settings: OutboxSettings,
    metrics: Metrics,
}

/// What one provider call came to, before retry policy is applied.
#[derive(Debug)]
enum Attempt {
    Sent(Option<String>),
    Retryable { error: String, retry_after: Option<Duration> },
    Permanent(String),
}

impl ClaimWorker for Deliverer {
    type Item = Claimed;
    const NAME: &'static str = "delivery";

    async fn claim(&self, limit: usize) -> crate::store::Result<Vec<Claimed>> {
        self.db.claim_deliveries(limit, self.settings.lease()).await
    }

    async fn next_due(&self) -> crate::store::Result<Option<Timestamp>> {
        self.db.next_delivery_due().await
    }

    async fn work(&self, delivery: Claimed) {
        self.deliver(delivery).await;
    }
}

impl Deliverer {
    /// Builds the worker and its HTTP client.
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS roots unavailable).
    pub(crate) fn new(db: Db, blobs: Blobs, settings: OutboxSettings, metrics: Metrics) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.request_timeout())
            .connect_timeout(Duration::from_secs(5))
            // A provider redirect could point at an internal address the URL check refused.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("recado/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private_targets {
            // Names are checked by the address they resolve to, at every call (see `PublicResolver`).
            builder = builder.dns_resolver(Arc::new(PublicResolver));
        }
        let http = builder.build()?;
        Ok(Self { db, blobs, http, settings, metrics })
    }

    /// Delivers until `shutdown` is cancelled, then lets the sends in flight finish and record their
    /// outcome, so nothing is left `sending` needlessly.
    pub(crate) async fn run(self, handle: OutboxHandle, shutdown: CancellationToken) {
        let limits = Limits {
            concurrency: self.settings.concurrency,
            poll: Duration::from_millis(self.settings.poll_interval_ms),
            abort_on_shutdown: false,
        };
        worker::run(self, limits, handle, shutdown).await;
    }

    async fn deliver(&self, delivery: Claimed) {
        let attempt = self.attempt(&delivery).await;
        let outcome = match attempt {
            Attempt::Sent(provider_message_id) => DeliveryOutcome::Sent { provider_message_id },
            Attempt::Permanent(error) => DeliveryOutcome::Dead { error },
            Attempt::Retryable { error, .. } if delivery.attempts >= self.settings.max_attempts => {
                DeliveryOutcome::Dead { error: format!("gave up after {} attempts: {error}", delivery.attempts) }
            }
            Attempt::Retryable { error, retry_after } => {
                let delay =
                    retry_after.map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or_else(|| self.backoff(delivery.attempts));
                DeliveryOutcome::Retry { at: Timestamp::now().plus(delay), error }
            }
        };
        self.metrics.delivery_attempt(match &outcome {
            DeliveryOutcome::Sent { .. } => "sent",
            DeliveryOutcome::Retry { .. } => "retry",
            DeliveryOutcome::Dead { .. } => "dead",
        });
        if let DeliveryOutcome::Dead { error } = &outcome {
            tracing::warn!(outbox_id = %delivery.outbox_id, client = %delivery.client, %error, "delivery dead-lettered");
        }
        if let Err(error) = self.db.record_delivery(delivery.client.clone(), delivery.outbox_id.clone(), outcome).await
        {
            // The lease will expire and the delivery be retried; log so an operator sees the storage trouble.
            tracing::error!(outbox_id = %delivery.outbox_id, %error, "recording a delivery outcome failed");
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        jittered_backoff(self.settings.base_backoff_ms, self.settings.max_backoff_ms, attempts)
    }

    /// One provider call (two for a WhatsApp attachment: upload, then send). Every error text it returns has
    /// the channel's secrets removed: it is stored as the delivery's `last_error`, shown to assistants and
    /// clients, and logged.
    async fn attempt(&self, delivery: &Claimed) -> Attempt {
        let file = match &delivery.payload {
            Some(Outbound::Attachment { kind, sha256, content_type, filename, .. }) => {
                match self.blobs.read(sha256).await {
                    Ok(bytes) => Some(OutgoingFile {
                        kind: media_kind_name(*kind),
                        bytes,
                        sha256: sha256.clone(),
                        content_type: content_type.clone(),
                        filename: filename.clone().unwrap_or_else(|| format!("attachment.{}", extension(content_type))),
                    }),
                    Err(error) => {
                        return Attempt::Permanent(format!("the attachment is missing from the media store: {error}"));
                    }
                }
            }
            _ => None,
        };
        match delivery.adapter {
            ChannelKind::WhatsApp => self.send_on::<WhatsAppConfig>(delivery, file).await,
            ChannelKind::Telegram => self.send_on::<TelegramConfig>(delivery, file).await,
            ChannelKind::Webhook => self.send_on::<WebhookConfig>(delivery, file).await,
        }
    }

    /// Sends `delivery` on channel `C` as the channel says it is sent: one request, or an upload and then
    /// the send it makes possible. Errors lose the channel's secrets.
    async fn send_on<C: ChannelConfig>(&self, delivery: &Claimed, file: Option<OutgoingFile>) -> Attempt {
        let config: C = match self.config(delivery.client.clone()).await {
            Ok(config) => config,
            Err(failed) => return failed,
        };
        let template = match &delivery.payload {
            Some(Outbound::Template { name, language, parameters }) => {
                Some((name.as_str(), language.as_str(), parameters.as_slice()))
            }
            _ => None,
        };
        let text = match &delivery.payload {
            Some(Outbound::Attachment { caption, .. }) => caption.as_str(),
            _ => delivery.text.as_str(),
        };
        let message = Outgoing {
            outbox_id: delivery.outbox_id.as_str(),
            message_id: delivery.message_id.as_str(),
            conversation_id: delivery.conversation_id.as_str(),
            client: delivery.client.as_str(),
            kind: delivery.kind.as_str(),
            to: &delivery.recipient,
            text,
            template,
            file,
        };
        let attempt = match config.sending(&self.http, message) {
            Err(refused) => Attempt::Permanent(refused),
            Ok(Sending::Request(request)) => self.send::<C>(request).await,
            Ok(Sending::Upload { upload, then }) => match self.call(upload, C::KIND).await {
                Ok(answer) => match then(&answer) {
                    Ok(request) => self.send::<C>(request).await,
                    Err(error) => Attempt::Retryable { error, retry_after: None },
                },
                Err(failed) => failed,
            },
        };
        redacted(attempt, &config.secrets())
    }

    /// The client's settings of channel `C`; their absence or a store outage is a retryable attempt.
    async fn config<C: ChannelConfig>(&self, client: ClientSlug) -> Result<C, Attempt> {
        match self.db.channel(client, C::KIND).await {
            Ok(Some(config)) => Ok(config),
            Ok(None) => Err(not_configured(C::KIND.as_str())),
            Err(error) => Err(storage_error(error)),
        }
    }

    /// One request whose success is the send: the provider's id of the message from its answer.
    async fn send<C: ChannelConfig>(&self, request: reqwest::RequestBuilder) -> Attempt {
        match self.call(request, C::KIND).await {
            Ok(json) => Attempt::Sent(C::sent_message_id(&json)),
            Err(failed) => failed,
        }
    }

    /// One call: the answer's JSON on success, else how it failed.
    async fn call(&self, request: reqwest::RequestBuilder, kind: ChannelKind) -> Result<serde_json::Value, Attempt> {
        let request = match request.build() {
            Ok(request) => request,
            Err(error) => {
                return Err(Attempt::Permanent(format!("{kind} request cannot be built: {}", error.without_url())));
            }
        };
        // A literal address never reaches the resolver: check it here, for settings saved before the rules
        // they now break.
        let literal = match request.url().host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if !self.settings.allow_private_targets && literal.is_some_and(channels::is_internal) {
            return Err(Attempt::Permanent(format!("{kind} refused: the URL points at an internal address")));
        }
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                let what = if error.is_timeout() { "timed out" } else { "request failed" };
                // The URL is dropped at the source: Telegram's carries the bot token (`/bot<token>/...`).
                let error = error.without_url();
                return Err(Attempt::Retryable {
                    error: format!("{kind} {what}: {}", error_chain(&error)),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let header_retry_after = retry_after_header(response.headers());
        // Bodies of provider answers are small; cap what we read from a misbehaving endpoint.
        let body = read_capped(response, 64 * 1024).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let error = format!("{kind} answered {status}: {detail}");
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.as_u16() == 425
            || status.is_server_error()
        {
            let retry_after =
                header_retry_after.or_else(|| channels::telegram::retry_after(&json).map(Duration::from_secs));
            Err(Attempt::Retryable { error, retry_after })
        } else {
            Err(Attempt::Permanent(error))
        }
    }
}

/// How the channels name a kind of file: `image`, `audio`, `video`, or `document` for everything else.
fn media_kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Audio | MediaKind::Voice => "audio",
        MediaKind::Video | MediaKind::VideoNote | MediaKind::Animation => "video",
        MediaKind::Document | MediaKind::Sticker => "document",
    }
}

/// A file name extension for a type, for files sent without a name.
fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "application/pdf" => "pdf",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

fn redacted(attempt: Attempt, secrets: &[String]) -> Attempt {
    match attempt {
        Attempt::Retryable { error, retry_after } => Attempt::Retryable { error: redact(&error, secrets), retry_after },
        Attempt::Permanent(error) => Attempt::Permanent(redact(&error, secrets)),
        sent @ Attempt::Sent(_) => sent,
    }
}

fn not_configured(channel: &str) -> Attempt {
    // Retryable: an admin may add the channel settings before the attempts run out.
    Attempt::Retryable { error: format!("no {channel} channel configured for this client"), retry_after: None }
}

fn storage_error(error: crate::store::Error) -> Attempt {
    Attempt::Retryable { error: format!("loading channel settings failed: {error}"), retry_after: None }
}

/// Exponential backoff with full jitter: a random delay in `[d/2, d]`, `d = base * 2^(attempts-1)`, capped
/// at `max` (milliseconds). Shared by the workers that retry provider calls.
pub(crate) fn jittered_backoff(base_ms: u64, max_ms: u64, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let ceiling = base_ms.saturating_mul(1u64 << exponent).min(max_ms);
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling.max(1)))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these providers and treated as absent).
fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_jitter_in_its_upper_half() {
        let (base, max) = (50, 1_000);
        for attempts in 1..=12u32 {
            let ceiling = (base * (1u64 << (attempts - 1).min(30))).min(max);
            let delays: Vec<u64> = (0..200)
                .map(|_| u64::try_from(jittered_backoff(base, max, attempts).as_millis()).expect("small"))
                .collect();
            assert!(
                delays.iter().all(|delay| (ceiling / 2..=ceiling).contains(delay)),
                "attempt {attempts}: {delays:?}"
            );
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 1, "attempt {attempts}: jittered, not one fixed delay");
        }
        // Past the cap, growth stops; an absurd attempt count does not overflow.
        assert!(jittered_backoff(base, max, u32::MAX) <= Duration::from_millis(max));
    }

    #[test]
    fn with_the_shipped_settings_a_delivery_rides_out_over_a_minute_of_outage() {
        // As README.md says: the waits between the 8 attempts add up to at least 63.5 s (half of 1 + 2 + ... + 64 s),
        // whatever the jitter.
        let settings = OutboxSettings::default();
        assert_eq!(settings.max_attempts, 8);
        let least: Duration = (1..settings.max_attempts)
            .map(|attempts| {
                (0..50)
                    .map(|_| jittered_backoff(settings.base_backoff_ms, settings.max_backoff_ms, attempts))
                    .min()
                    .expect("samples")
            })
            .sum();
        assert!(least >= Duration::from_millis(63_500), "{least:?}");
        let longest = jittered_backoff(settings.base_backoff_ms, settings.max_backoff_ms, 40);
        assert!(longest <= Duration::from_millis(settings.max_backoff_ms), "capped at max_backoff_ms: {longest:?}");
    }
}
