//! Downloading what customers send (photos, voice notes, documents) from the providers, soon after it
//! arrives: provider links expire, and an assistant must be able to see the photo of the broken crown.
//!
//! Each media part is queued at ingest in the message's transaction. The worker claims due downloads with
//! a lease, asks the provider where the file is (WhatsApp: `GET /{media-id}` on the Graph API; Telegram:
//! `getFile`; a URL given to the message API is fetched as it is), then streams it into the [`Blobs`]
//! store under a size cap, sniffing its type from the bytes.
//! Every attempt looks the file up afresh, so an expired link is retried with a new one. Lookups the
//! provider refuses (the file is gone, too large) fail at once; other failures are retried with backoff;
//! a failed download says why on its message and can be retried by hand.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::blobs::{BlobWriter, Blobs};
use crate::channels::telegram::TelegramConfig;
use crate::channels::whatsapp::WhatsAppConfig;
use crate::channels::{self, ChannelConfig, PublicResolver, redact};
use crate::config::MediaSettings;
use crate::domain::{ClientSlug, Timestamp};
use crate::metrics::Metrics;
use crate::store::{ClaimedMedia, Db, MediaOutcome};
use crate::worker::{self, ClaimWorker, Limits, Wake};

/// Handle used to wake the download worker when media is queued.
pub(crate) type MediaHandle = Wake;

/// Types a browser may show in place (never HTML, SVG or anything scriptable).
const SHOWN_INLINE: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "audio/ogg",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/amr",
    "video/mp4",
    "video/webm",
    "video/3gpp",
];

/// Returns true if and only if a file of `content_type` may be shown in the browser rather than only
/// downloaded.
pub(crate) fn shown_inline(content_type: &str) -> bool {
    SHOWN_INLINE.contains(&content_type)
}

/// The download worker.
pub(crate) struct Fetcher {
    db: Db,
    blobs: Blobs,
    http: reqwest::Client,
    settings: MediaSettings,
    allow_private_targets: bool,
    metrics: Metrics,
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (network trouble, an expired link, a provider hiccup).
    Retryable(String),
    /// Not worth another (the provider says the file is gone or too large, or it is over our cap).
    Final(String),
}

/// Where a file can be fetched from, once looked up.
struct Located {
    url: String,
    bearer: Option<String>,
    size: Option<u64>,
}

impl ClaimWorker for Fetcher {
    type Item = ClaimedMedia;
    const NAME: &'static str = "media";

    async fn claim(&self, limit: usize) -> crate::store::Result<Vec<ClaimedMedia>> {
        self.db.claim_media(limit, self.settings.lease()).await
    }

    async fn next_due(&self) -> crate::store::Result<Option<Timestamp>> {
        self.db.next_media_due().await
    }

    async fn work(&self, media: ClaimedMedia) {
        self.fetch(media).await;
    }
}

impl Fetcher {
    /// Builds the worker and its HTTP client (no redirects; internal addresses refused unless allowed).
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS roots unavailable).
    pub(crate) fn new(
        db: Db,
        blobs: Blobs,
        settings: MediaSettings,
        allow_private_targets: bool,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.request_timeout())
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("recado/", env!("CARGO_PKG_VERSION")));
        if !allow_private_targets {
            builder = builder.dns_resolver(Arc::new(PublicResolver));
        }
        let http = builder.build()?;
        Ok(Self { db, blobs, http, settings, allow_private_targets, metrics })
    }

    /// Fetches until `shutdown` is cancelled. A download may take minutes, so those in flight are dropped
    /// then: their lease runs out and they are fetched again, and a partial file never reaches its content
    /// address.
    pub(crate) async fn run(self, handle: MediaHandle, shutdown: CancellationToken) {
        let limits = Limits {
            concurrency: self.settings.concurrency,
            poll: Duration::from_millis(self.settings.poll_interval_ms),
            abort_on_shutdown: true,
        };
        worker::run(self, limits, handle, shutdown).await;
    }

    async fn fetch(&self, media: ClaimedMedia) {
        let outcome = match self.attempt(&media).await {
            Ok(outcome) => outcome,
            Err(Failure::Final(error)) => MediaOutcome::Failed { error },
            Err(Failure::Retryable(error)) if media.attempts >= self.settings.max_attempts => {
                MediaOutcome::Failed { error: format!("gave up after {} attempts: {error}", media.attempts) }
            }
            Err(Failure::Retryable(error)) => {
                MediaOutcome::Retry { at: Timestamp::now().plus(self.backoff(media.attempts)), error }
            }
        };
        self.metrics.media_download(match &outcome {
            MediaOutcome::Stored { .. } => "stored",
            MediaOutcome::Retry { .. } => "retry",
            MediaOutcome::Failed { .. } => "failed",
        });
        if let MediaOutcome::Failed { error } = &outcome {
            tracing::warn!(media_id = %media.id, client = %media.client, %error, "media download failed");
        }
        if let Err(error) = self.db.record_media(media.client.clone(), media.id.clone(), outcome).await {
            tracing::error!(media_id = %media.id, %error, "recording a media download failed");
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        crate::outbox::jittered_backoff(self.settings.base_backoff_ms, self.settings.max_backoff_ms, attempts)
    }

    /// One attempt: look the file up, download it. Error texts have the channel's secrets removed.
    async fn attempt(&self, media: &ClaimedMedia) -> Result<MediaOutcome, Failure> {
        let client = media.client.clone();
        let url = crate::store::is_media_url(&media.provider_id);
        let (located, secrets) = match media.channel.as_str() {
            "whatsapp" if !url => {
                let config: WhatsAppConfig = self.config(client).await?;
                let secrets = config.secrets();
                (self.locate_whatsapp(&config, &media.provider_id).await, secrets)
            }
            "telegram" if !url => {
                let config: TelegramConfig = self.config(client).await?;
                let secrets = config.secrets();
                (self.locate_telegram(&config, &media.provider_id).await, secrets)
            }
            // A file the message API was given by URL: fetched as it is, under the same address rules.
            _ => {
                channels::validate_target_url("url", &media.provider_id, self.allow_private_targets)
                    .map_err(|error| Failure::Final(format!("the file's url is refused: {error}")))?;
                (Ok(Located { url: media.provider_id.clone(), bearer: None, size: None }), Vec::new())
            }
        };
        let result = match located {
            Ok(located) => self.download(located, media.declared_type.as_deref()).await,
            Err(failure) => Err(failure),
        };
        result.map_err(|failure| match failure {
            Failure::Retryable(error) => Failure::Retryable(redact(&error, &secrets)),
            Failure::Final(error) => Failure::Final(redact(&error, &secrets)),
        })
    }

    async fn config<C: ChannelConfig>(&self, client: ClientSlug) -> Result<C, Failure> {
        let kind = C::KIND;
        match self.db.channel::<C>(client, kind).await {
            Ok(Some(config)) => Ok(config),
            // An admin may add the settings before the attempts run out.
            Ok(None) => Err(Failure::Retryable(format!("no {kind} channel configured for this client"))),
            Err(error) => Err(Failure::Retryable(format!("loading channel settings failed: {error}"))),
        }
    }

    /// `GET /{media-id}` on the Graph API: a short-lived URL, fetched with the same access token.
    async fn locate_whatsapp(&self, config: &WhatsAppConfig, media_id: &str) -> Result<Located, Failure> {
        if !media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(Failure::Final("the media id is not one WhatsApp issues".into()));
        }
        let url = format!("{}/{media_id}", config.api_base_url.trim_end_matches('/'));
        let answer = self.lookup(self.http.get(url).bearer_auth(config.access_token.expose()), "whatsapp").await?;
        let url = answer
            .get("url")
            .and_then(|url| url.as_str())
            .ok_or_else(|| Failure::Retryable("whatsapp media lookup answered without a url".into()))?;
        channels::validate_target_url("url", url, self.allow_private_targets)
            .map_err(|error| Failure::Final(format!("whatsapp media url refused: {error}")))?;
        Ok(Located {
            url: url.to_owned(),
            bearer: Some(config.access_token.expose().to_owned()),
            size: answer.get("file_size").and_then(serde_json::Value::as_u64),
        })
    }

    /// `getFile` on the Bot API, then the file under `/file/bot<token>/<file_path>`.
    async fn locate_telegram(&self, config: &TelegramConfig, file_id: &str) -> Result<Located, Failure> {
        let base = config.api_base_url.trim_end_matches('/');
        let request =
            self.http.get(format!("{base}/bot{}/getFile", config.bot_token.expose())).query(&[("file_id", file_id)]);
        let answer = self.lookup(request, "telegram").await?;
        let result = answer.get("result").cloned().unwrap_or_default();
        let path = result.get("file_path").and_then(|path| path.as_str()).ok_or_else(|| {
            Failure::Final("telegram getFile answered without a file_path (the file may be too big for bots)".into())
        })?;
        if path.split('/').any(|segment| segment == "..") {
            return Err(Failure::Final("telegram answered an unusable file_path".into()));
        }
        Ok(Located {
            url: format!("{base}/file/bot{}/{path}", config.bot_token.expose()),
            bearer: None,
            size: result.get("file_size").and_then(serde_json::Value::as_u64),
        })
    }

    /// A lookup call: 2xx JSON, or a failure (4xx other than 408/429 are final: the file is gone).
    async fn lookup(&self, request: reqwest::RequestBuilder, kind: &str) -> Result<serde_json::Value, Failure> {
        let response = self.send(request, kind).await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| Failure::Retryable(format!("{kind} media lookup failed: {}", error.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|_| Failure::Retryable(format!("{kind} media lookup answered something other than JSON")));
        }
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let error = format!("{kind} media lookup answered {status}: {detail}");
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(Failure::Final(error))
        } else {
            Err(Failure::Retryable(error))
        }
    }

    /// Streams the file into the blob store under the size cap.
    async fn download(&self, located: Located, declared: Option<&str>) -> Result<MediaOutcome, Failure> {
        let max = self.settings.max_bytes;
        if located.size.is_some_and(|size| size > max) {
            return Err(Failure::Final(format!(
                "the file is {} bytes, over the limit of {max} (media.max_bytes)",
                located.size.unwrap_or_default()
            )));
        }
        let mut request = self.http.get(&located.url);
        if let Some(token) = &located.bearer {
            request = request.bearer_auth(token);
        }
        let mut response = self.send(request, "media").await?;
        let status = response.status();
        if !status.is_success() {
            // The link was looked up a moment ago: a refusal now is most likely its expiry, and the next
            // attempt looks up a new one.
            return Err(Failure::Retryable(format!("the media download answered {status}")));
        }
        if response.content_length().is_some_and(|length| length > max) {
            return Err(Failure::Final(format!("the file is over the limit of {max} bytes (media.max_bytes)")));
        }
        let mut writer = self.blobs.writer().await.map_err(storage_failure)?;
        let mut head = Vec::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    return Err(Failure::Retryable(format!("the media download broke off: {}", error.without_url())));
                }
            };
            if writer.size() + chunk.len() as u64 > max {
                return Err(Failure::Final(format!("the file is over the limit of {max} bytes (media.max_bytes)")));
            }
            if head.len() < 8192 {
                head.extend_from_slice(&chunk[..chunk.len().min(8192 - head.len())]);
            }
            writer.write(chunk).await.map_err(storage_failure)?;
        }
        let content_type = content_type(&head, declared);
        let stored = BlobWriter::finish(writer).await.map_err(storage_failure)?;
        Ok(MediaOutcome::Stored { sha256: stored.sha256, size: stored.size, content_type })
    }

    async fn send(&self, request: reqwest::RequestBuilder, kind: &str) -> Result<reqwest::Response, Failure> {
        let request = request
            .build()
            .map_err(|error| Failure::Final(format!("{kind} request cannot be built: {}", error.without_url())))?;
        let literal = match request.url().host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if !self.allow_private_targets && literal.is_some_and(channels::is_internal) {
            return Err(Failure::Final(format!("{kind} refused: the URL points at an internal address")));
        }
        self.http.execute(request).await.map_err(|error| {
            let what = if error.is_timeout() { "timed out" } else { "failed" };
            // Telegram's URLs carry the bot token: drop the URL at the source.
            Failure::Retryable(format!("{kind} request {what}: {}", error.without_url()))
        })
    }
}

fn storage_failure(error: std::io::Error) -> Failure {
    Failure::Retryable(format!("storing the file failed: {error}"))
}

/// The type of a file: sniffed from its first bytes; else the provider's word for it when it names a plain
/// media type; else opaque bytes. What a customer's app claims never makes a file HTML.
pub(crate) fn content_type(head: &[u8], declared: Option<&str>) -> String {
    if let Some(kind) = infer::get(head) {
        let sniffed = kind.mime_type();
        // Markup sniffed from the bytes is still only bytes to us: nothing we serve may render as a page.
        let markup = sniffed.starts_with("text/") || sniffed.contains("xml") || sniffed.contains("html");
        return if markup { "application/octet-stream".to_owned() } else { sniffed.to_owned() };
    }
    let declared = declared.map(|declared| declared.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match declared {
        Some(declared) if shown_inline(&declared) || declared == "text/plain" || declared == "application/pdf" => {
            declared
        }
        _ => "application/octet-stream".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_comes_from_the_bytes_and_a_claim_never_makes_a_file_html() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
        assert_eq!(content_type(&jpeg, Some("text/html")), "image/jpeg");
        assert_eq!(content_type(b"<html><script>", Some("text/html")), "application/octet-stream");
        assert_eq!(content_type(b"<svg onload=alert(1)>", Some("image/svg+xml")), "application/octet-stream");
        assert_eq!(content_type(b"\x00\x01", Some("audio/ogg; codecs=opus")), "audio/ogg");
        assert!(shown_inline("image/png"));
        assert!(!shown_inline("application/pdf"));
    }
}
