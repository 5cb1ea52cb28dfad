//! Provider wire formats: how WhatsApp, Telegram and our generic webhook encode inbound messages and
//! outbound sends, how their requests are authenticated, and the per-client channel settings.
//!
//! Pure functions over bytes and JSON; the HTTP calls themselves live in `outbox` and the routes in
//! `http`.

pub mod telegram;
pub mod webhook;
pub mod whatsapp;

use std::net::{IpAddr, Ipv4Addr};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{Change, ChannelKind, Context, Invalid, Part, StatusUpdate, readable_text};

/// The settings of one kind of channel, stored per client (sealed, secrets included). Each channel module
/// implements it for its configuration, so the API, the store and the delivery worker treat every channel
/// alike and a new channel is one more module.
pub trait ChannelConfig: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Which channel these settings are for.
    const KIND: ChannelKind;

    /// Checks the fields; `allow_private` lets outbound URLs point at internal addresses (tests only).
    fn validate(&self, allow_private: bool) -> Result<(), Invalid>;

    /// What the API shows of these settings: never a secret.
    fn public_view(&self) -> serde_json::Value;

    /// The values that must never appear in an error, a response or a log line.
    fn secrets(&self) -> Vec<String>;

    /// The provider's id of a message it accepted, from its answer to a send (the id later delivery
    /// statuses name), if it gives one.
    fn sent_message_id(_answer: &serde_json::Value) -> Option<String> {
        None
    }

    /// How `message` is sent on this channel, with requests built on `http`.
    ///
    /// # Errors
    /// The message cannot be sent this way at all (a file the request cannot carry): not worth retrying.
    fn sending(&self, http: &reqwest::Client, message: Outgoing<'_>) -> Result<Sending, String>;
}

/// A message to send, in the channels' common terms. Serialised (as the webhook sends it) without its
/// template and file, which each channel encodes its own way.
#[derive(Debug, Serialize)]
pub struct Outgoing<'a> {
    /// The delivery's id: the idempotency key, echoed back by providers that can.
    pub outbox_id: &'a str,
    /// The message.
    pub message_id: &'a str,
    /// Its conversation.
    pub conversation_id: &'a str,
    /// Its client.
    pub client: &'a str,
    /// What produced it (`assistant`, `auto_ack`, ...).
    pub kind: &'a str,
    /// The recipient's handle on the channel.
    pub to: &'a str,
    /// The text (a file's caption when there is a file).
    pub text: &'a str,
    /// An approved template to send instead of free text: name, language and parameters.
    #[serde(skip)]
    pub template: Option<(&'a str, &'a str, &'a [String])>,
    /// A file to send.
    #[serde(skip)]
    pub file: Option<OutgoingFile>,
}

/// A file to send, read from the media store.
#[derive(Debug)]
pub struct OutgoingFile {
    /// `image`, `audio`, `video` or `document`.
    pub kind: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Its type.
    pub content_type: String,
    /// Its name.
    pub filename: String,
}

/// What the continuation of an upload builds from the provider's answer.
pub type AfterUpload = Box<dyn FnOnce(&serde_json::Value) -> Result<reqwest::RequestBuilder, String> + Send>;

/// How a message is sent.
pub enum Sending {
    /// One request.
    Request(reqwest::RequestBuilder),
    /// A file uploaded first; the provider's answer (naming the uploaded file) gives the request that sends
    /// the message. An answer the continuation cannot use is worth retrying.
    Upload {
        /// The upload.
        upload: reqwest::RequestBuilder,
        /// The send, from the upload's answer.
        then: AfterUpload,
    },
}

/// Shortest accepted secret that callers must present (webhook secrets, verify tokens, signing keys).
pub const MIN_SECRET_LEN: usize = 16;

/// What `Debug` shows in place of a secret.
const REDACTED: &str = "[redacted]";

/// A channel credential (app secret, access token, bot token, webhook secret). `Debug` shows `[redacted]`, so
/// neither a log line nor an error built with `{:?}` can carry it; the bytes are zeroed when dropped. It is
/// serialised only to be stored with its channel, sealed (`store/secrets.rs`); the API shows a channel's
/// `public_view()`, never its settings.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    /// The secret itself, for the call that needs it.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret as _;
        self.0.expose_secret()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Returns true if and only if it is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.into())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

/// A message extracted from a provider payload, before it becomes an [`crate::domain::InboundMessage`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessage {
    /// The provider's id, unique per client and channel.
    pub external_id: String,
    /// Who wrote (the handle we reply to).
    pub handle: String,
    /// Their display name, if given.
    pub name: Option<String>,
    /// The readable text of all its parts.
    pub text: String,
    /// What it is made of.
    pub parts: Vec<Part>,
    /// What it answers, whether it was forwarded, the ad it came from.
    pub context: Context,
    /// The channel's stable user id when the handle is something else.
    pub user_id: Option<String>,
    /// The sender's public username.
    pub username: Option<String>,
}

impl ParsedMessage {
    /// A message of `parts`, its text made readable from them.
    pub fn new(external_id: String, handle: String, parts: Vec<Part>) -> Self {
        Self {
            external_id,
            handle,
            name: None,
            text: readable_text(&parts),
            parts,
            context: Context::default(),
            user_id: None,
            username: None,
        }
    }
}

/// Everything one provider call carried.
#[derive(Debug, Default)]
pub struct Parsed {
    /// New customer messages.
    pub messages: Vec<ParsedMessage>,
    /// Changes to stored messages and contacts.
    pub changes: Vec<Change>,
    /// Delivery reports on our messages.
    pub statuses: Vec<StatusUpdate>,
    /// Updates acknowledged and not used, by kind (from a closed list, so they can label a metric).
    pub ignored: Vec<&'static str>,
}

/// The label of an update kind recado does not use: itself if it is in `known`, else `other`.
fn ignored_kind(kind: &str, known: &[&'static str]) -> &'static str {
    known.iter().find(|candidate| **candidate == kind).copied().unwrap_or("other")
}

/// A provider's id of a file (WhatsApp media id, Telegram `file_id`), if it has the shape providers use:
/// letters, digits, `_` and `-`. Anything else (a URL, a `sha256:` name of a stored file) could make recado
/// fetch or serve a file the provider never sent.
fn file_id_at(value: &serde_json::Value, key: &str) -> Option<String> {
    let id = id_at(value, key)?;
    let plain = id.len() <= 512 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plain.then_some(id)
}

/// A string field of a JSON object, if present and a string.
fn text_at<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(serde_json::Value::as_str)
}

/// A non-empty string field, as owned text (kept as sent: not trimmed).
fn owned_at(value: &serde_json::Value, key: &str) -> Option<String> {
    text_at(value, key).filter(|text| !text.is_empty()).map(str::to_owned)
}

/// An id field that providers send as a number or a string.
fn id_at(value: &serde_json::Value, key: &str) -> Option<String> {
    match value.get(key)? {
        serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A number field that providers send as a number or a numeric string.
fn number_at(value: &serde_json::Value, key: &str) -> Option<f64> {
    match value.get(key)? {
        serde_json::Value::Number(number) => number.as_f64(),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|number: &f64| number.is_finite())
}

/// `text` with every occurrence of each secret replaced: the last line of defence for texts that quote a
/// request or a provider's answer (a provider may echo the token it was sent).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret.as_str(), REDACTED);
    }
    text
}

/// HMAC-SHA256 of `body` with `secret`, as lowercase hex.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Returns true if and only if `header` is `sha256=<hex>` with the HMAC-SHA256 of `body` under `secret`.
/// The comparison is constant-time.
pub fn verify_hmac_header(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_signature) = header.and_then(|value| value.trim().strip_prefix("sha256=")) else { return false };
    let Ok(signature) = hex::decode(hex_signature) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Checks a URL a client configured for outbound calls: http(s) only, and (unless the operator allows
/// private targets) not pointing at loopback, private, link-local or otherwise internal addresses, so a
/// client cannot make recado call into the operator's network (SSRF).
///
/// This is the check of the URL's text, made when it is saved: literal addresses in every spelling (IPv4,
/// IPv6, IPv4-mapped and -compatible, NAT64, 6to4), single-label names (`metadata`) and the suffixes of
/// internal names (`.local`, `.internal`, `.svc`, ...). Names are checked again when a call is made, by the
/// address they resolve to ([`PublicResolver`]).
pub fn validate_target_url(field: &str, url: &str, allow_private: bool) -> Result<(), Invalid> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Invalid::new(field, format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Invalid::new(field, "must be an http or https URL"));
    }
    if allow_private {
        return Ok(());
    }
    let internal = match parsed.host() {
        None => true,
        Some(url::Host::Domain(name)) => is_internal_name(name),
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
    };
    if internal {
        return Err(Invalid::new(field, "must not point at a loopback, private, link-local or internal address"));
    }
    Ok(())
}

/// Suffixes of names that only resolve inside a network.
const INTERNAL_SUFFIXES: &[&str] = &[
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".intranet",
    ".lan",
    ".home",
    ".home.arpa",
    ".corp",
    ".private",
    ".svc",
    ".cluster.local",
    ".in-addr.arpa",
    ".ip6.arpa",
];

/// Returns true if and only if `name` is a single label (`metadata`, `localhost`) or ends in a suffix of
/// internal names.
fn is_internal_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !name.contains('.') || INTERNAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// Returns true if and only if `ip` is not a public unicast address, in any spelling that embeds an IPv4
/// address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0 // 0.0.0.0/8, "this network"
                || a == 100 && (b & 0xc0) == 64 // 100.64.0.0/10, carrier-grade NAT
                || a == 192 && b == 0 && c == 0 // 192.0.0.0/24, protocol assignments
                || a == 198 && (b & 0xfe) == 18 // 198.18.0.0/15, benchmarking
                || a >= 224 // multicast and reserved
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded =
                |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
            if let Some(mapped) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(mapped));
            }
            match segments {
                // ::/96, IPv4-compatible (deprecated), `[::127.0.0.1]`; also :: and ::1.
                [0, 0, 0, 0, 0, 0, _, _] => true,
                // 64:ff9b::/96, NAT64: the IPv4 address it reaches decides.
                [0x64, 0xff9b, 0, 0, 0, 0, high, low] => is_internal(IpAddr::V4(embedded(high, low))),
                // 64:ff9b:1::/48, local-use NAT64.
                [0x64, 0xff9b, 1, ..] => true,
                // 2002::/16, 6to4: the IPv4 address is in the next 32 bits.
                [0x2002, high, low, ..] => is_internal(IpAddr::V4(embedded(high, low))),
                // 2001::/32 Teredo and 2001:db8::/32 documentation.
                [0x2001, 0 | 0xdb8, ..] => true,
                // 100::/64, discard-only.
                [0x100, 0, 0, 0, ..] => true,
                [first, ..] => {
                    (first & 0xfe00) == 0xfc00 // unique local
                        || (first & 0xffc0) == 0xfe80 // link-local
                        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                        || (first & 0xff00) == 0xff00 // multicast
                }
            }
        }
    }
}

/// The DNS resolver of outbound calls when private targets are not allowed: a name is resolved by the
/// system (hosts file included), and refused if any address it resolves to is internal. The HTTP client
/// connects only to the addresses returned here, so the address checked is the address connected to
/// (a name cannot pass the check and then resolve elsewhere).
#[derive(Debug, Default)]
pub struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if addresses.is_empty() {
                return Err(format!("{name} resolves to no address").into());
            }
            if let Some(internal) = addresses.iter().find(|address| is_internal(address.ip())) {
                return Err(format!("refused: {name} resolves to an internal address ({})", internal.ip()).into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_headers_verify_only_with_the_right_secret_and_body() {
        let header = format!("sha256={}", hmac_sha256_hex("s3cret", b"{\"a\":1}"));
        assert!(verify_hmac_header("s3cret", b"{\"a\":1}", Some(&header)));
        assert!(!verify_hmac_header("other", b"{\"a\":1}", Some(&header)));
        assert!(!verify_hmac_header("s3cret", b"{\"a\":2}", Some(&header)));
        assert!(!verify_hmac_header("s3cret", b"{\"a\":1}", None));
        assert!(!verify_hmac_header("s3cret", b"{\"a\":1}", Some("sha256=zz")));
        assert!(!verify_hmac_header("s3cret", b"{\"a\":1}", Some(&header[7..])));
    }

    #[tokio::test]
    async fn names_that_resolve_to_internal_addresses_are_refused_when_called() {
        use reqwest::dns::Resolve as _;
        // `localhost` passes no name check here: the hosts file sends it to loopback, and the resolver sees it.
        let name: reqwest::dns::Name = "localhost".parse().expect("a name");
        let error = PublicResolver.resolve(name).await.err().expect("refused");
        assert!(error.to_string().contains("internal address"), "{error}");
    }

    #[test]
    fn internal_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            // See: issue #8, finding 8.
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://[64:ff9b::7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[::]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:c0a8:101::1]/",
            "http://[64:ff9b:1::1]/",
            "http://[fec0::1]/",
            "http://metadata/computeMetadata/v1/",
            "http://metadata./",
            "http://kubernetes.default.svc/",
            "http://kubernetes.default.svc.cluster.local/",
            "http://router.home.arpa/",
            "http://printer.LAN/",
            "http://198.18.0.1/",
            "http://0.1.2.3/",
        ] {
            assert!(validate_target_url("url", url, false).is_err(), "{url} should be refused");
            assert!(validate_target_url("url", url, true).is_ok(), "{url} should pass when allowed");
        }
        for url in ["http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/", "https://api.telegram.org/"] {
            assert!(validate_target_url("url", url, false).is_ok(), "{url} reaches a public address");
        }
        assert!(validate_target_url("url", "https://graph.facebook.com/v21.0", false).is_ok());
        assert!(validate_target_url("url", "ftp://example.com/", true).is_err());
        assert!(validate_target_url("url", "not a url", true).is_err());
    }
}
