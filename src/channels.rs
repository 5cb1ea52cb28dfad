//! Provider wire formats: how WhatsApp, Telegram and our generic webhook encode inbound messages and
//! outbound sends, how their requests are authenticated, and the per-client channel settings.
//!
//! Pure functions over bytes and JSON; the HTTP calls themselves live in [`crate::outbox`] and the routes in
//! [`crate::http`].

pub mod telegram;
pub mod webhook;
pub mod whatsapp;

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::Invalid;

/// Shortest accepted secret that callers must present (webhook secrets, verify tokens, signing keys).
pub const MIN_SECRET_LEN: usize = 16;

/// What `Debug` shows in place of a secret.
const REDACTED: &str = "[redacted]";

/// A message extracted from a provider payload, before it becomes an [`crate::domain::InboundMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMessage {
    /// The provider's id, unique per client and channel.
    pub external_id: String,
    /// Who wrote (the handle we reply to).
    pub handle: String,
    /// Their display name, if given.
    pub name: Option<String>,
    /// The text, or a description of non-text content.
    pub text: String,
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
/// Host names are checked by their literal form only; an operator who fears DNS rebinding keeps outbound
/// traffic behind an egress proxy.
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
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name.ends_with(".internal")
        }
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
    };
    if internal {
        return Err(Invalid::new(field, "must not point at a loopback, private or link-local address"));
    }
    Ok(())
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64.0.0/10, carrier-grade NAT
                || v4.octets()[0] >= 224
        }
        IpAddr::V6(v6) => {
            if let Some(mapped) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(mapped));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.is_multicast()
        }
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
        ] {
            assert!(validate_target_url("url", url, false).is_err(), "{url} should be refused");
            assert!(validate_target_url("url", url, true).is_ok(), "{url} should pass when allowed");
        }
        assert!(validate_target_url("url", "https://graph.facebook.com/v21.0", false).is_ok());
        assert!(validate_target_url("url", "ftp://example.com/", true).is_err());
        assert!(validate_target_url("url", "not a url", true).is_err());
    }
}
