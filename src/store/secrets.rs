//! Channel secrets encrypted at rest: the bot tokens, access tokens and signing keys in `channels.config`
//! are sealed with XChaCha20-Poly1305 under a key kept outside the database, so a copied database file
//! (a backup, a support bundle) does not give them away.
//!
//! The key is 32 random bytes, base64 in a file: `storage.secrets_key_file`, or `secrets.key` in the data
//! directory, created (mode 0600) on the first start. A sealed value is `enc:v1:` and the base64 of a
//! random 24-byte nonce followed by the ciphertext; the client and the channel kind are its associated
//! data, so a sealed value copied to another client's row does not open. Rows written before encryption
//! existed are plain JSON: they are read as they are and sealed when the store opens.

use std::path::Path;

use super::sql::{Connection, params};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};

use super::{Error, Result};

/// Marks a sealed value.
const PREFIX: &str = "enc:v1:";

/// The key that seals channel secrets.
pub(super) struct SecretKey {
    cipher: XChaCha20Poly1305,
    /// Its [`key_id`].
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// Reads the key from `path`, creating it when `create` and it does not exist.
    ///
    /// # Errors
    /// The file cannot be read or written, or does not hold 32 bytes in base64.
    pub(super) fn load(path: &Path, create: bool) -> Result<Self> {
        let unavailable = |e: std::io::Error| Error::Unavailable(format!("secrets key {}: {e}", path.display()));
        if create && !path.exists() {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let key: [u8; 32] = rand::random();
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(unavailable)?;
            file.write_all(format!("{}\n", BASE64.encode(key)).as_bytes()).map_err(unavailable)?;
            file.sync_all().map_err(unavailable)?;
        }
        let bytes = read_key(path)?;
        Ok(Self { cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)), id: id_of(&bytes) })
    }

    /// The key's id ([`key_id`]).
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`, bound to `context`.
    pub(super) fn seal(&self, plaintext: &str, context: &str) -> Result<String> {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            .map_err(|_| Error::Unavailable("sealing a channel secret failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", BASE64.encode(bytes)))
    }

    /// Opens a value written by [`SecretKey::seal`] with the same `context`; a value written before
    /// encryption (plain JSON) is returned as it is.
    ///
    /// # Errors
    /// The value was sealed under another key or for another context, or is damaged.
    pub(super) fn open(&self, stored: &str, context: &str) -> Result<String> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_owned()) };
        let wrong = || {
            Error::Unavailable(format!(
                "a channel secret of {context} cannot be opened with this secrets key (another key, or a damaged value)"
            ))
        };
        let bytes = BASE64.decode(encoded).map_err(|_| wrong())?;
        if bytes.len() < 24 {
            return Err(wrong());
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plaintext = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: context.as_bytes() })
            .map_err(|_| wrong())?;
        String::from_utf8(plaintext).map_err(|_| wrong())
    }

    /// Seals every channel row still in plain text (written before encryption existed).
    pub(super) fn seal_plain_rows(&self, connection: &Connection) -> Result<usize> {
        let rows: Vec<(String, String, String)> = connection
            .prepare_cached("SELECT client_id, kind, config FROM channels WHERE config NOT LIKE 'enc:v1:%'")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_>>()?;
        for (client, kind, config) in &rows {
            let sealed = self.seal(config, &context(client, kind))?;
            connection.execute(
                "UPDATE channels SET config = ?3 WHERE client_id = ?1 AND kind = ?2",
                params![client, kind, sealed],
            )?;
        }
        Ok(rows.len())
    }
}

/// The 32 bytes of the key file at `path`.
fn read_key(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Unavailable(format!("secrets key {}: {e}", path.display())))?;
    BASE64
        .decode(text.trim())
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| Error::Unavailable(format!("secrets key {}: not 32 bytes in base64", path.display())))
}

/// A name for the key in the file at `path` that tells keys apart without revealing them: the first 16 hex
/// digits of a SHA-256 of the key under a fixed label. A backup records it, so a restore can tell whether
/// the key it is given is the one the backup's channel secrets were sealed with.
///
/// # Errors
/// The file cannot be read or does not hold a key.
pub fn key_id(path: &Path) -> Result<String> {
    Ok(id_of(&read_key(path)?))
}

fn id_of(key: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new().chain_update(b"recado secrets key id\0").chain_update(key).finalize();
    hex::encode(&digest[..8])
}

impl super::Db {
    /// With a shared database (PostgreSQL), every node must seal and open channel secrets with the same key:
    /// the first node records its key's id, and a node with another key is refused before it writes a secret
    /// the others could not open.
    pub(super) async fn check_secrets_key(&self) -> Result<()> {
        let node = self.inner.secrets.id().to_owned();
        let mine = node.clone();
        let database = self
            .write(move |connection| {
                connection.execute(
                    "INSERT INTO installation (id, secrets_key_id) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
                    params![mine],
                )?;
                connection
                    .query_row("SELECT secrets_key_id FROM installation WHERE id = 1", params![], |row| row.get(0))
            })
            .await?;
        if database == node { Ok(()) } else { Err(Error::SecretsKeyMismatch { database, node }) }
    }
}

/// The associated data of a channel row.
pub(super) fn context(client: &str, kind: &str) -> String {
    format!("channel:{client}:{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str) -> SecretKey {
        SecretKey::load(&dir.join(name), true).expect("key")
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_context() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (one, other) = (key(dir.path(), "one.key"), key(dir.path(), "other.key"));
        let sealed = one.seal(r#"{"bot_token":"1:AAsecret"}"#, "channel:a:telegram").expect("sealed");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("AAsecret"), "{sealed}");
        assert_eq!(one.open(&sealed, "channel:a:telegram").expect("opens"), r#"{"bot_token":"1:AAsecret"}"#);
        assert!(one.open(&sealed, "channel:b:telegram").is_err(), "moved to another client's row");
        assert!(other.open(&sealed, "channel:a:telegram").is_err(), "another key");
        assert_eq!(one.open("{\"plain\":1}", "channel:a:telegram").expect("legacy"), "{\"plain\":1}");
        assert_ne!(sealed, one.seal(r#"{"bot_token":"1:AAsecret"}"#, "channel:a:telegram").expect("sealed"));
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secrets.key");
        let sealed = SecretKey::load(&path, true).expect("created").seal("x", "c").expect("sealed");
        assert_eq!(std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777, 0o600);
        assert_eq!(SecretKey::load(&path, false).expect("read").open(&sealed, "c").expect("opens"), "x");
        assert!(SecretKey::load(&dir.path().join("missing.key"), false).is_err(), "a configured key must exist");
        std::fs::write(&path, "too short").expect("write");
        assert!(SecretKey::load(&path, false).is_err());
    }
}
