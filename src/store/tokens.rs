//! API tokens: only a SHA-256 of each secret is stored; the whole token is shown once, at creation.

use base64::Engine as _;
use rand::RngCore as _;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::clients::{audit, ensure_client};
use super::{Db, Error, Result};
use crate::domain::{ClientSlug, Invalid, Role, Timestamp};

/// Prefix of every token, so leaked tokens are easy to recognise (and to scan for).
const TOKEN_PREFIX: &str = "rcd_";

/// A stored token (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public id (the part between the prefix and the secret).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// The client it is bound to (client role only).
    pub client: Option<ClientSlug>,
    /// A label: the assistant's name, the integration's purpose.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A freshly created token: the record and the whole token text, which is not stored anywhere.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The stored record.
    pub record: TokenRecord,
    /// The bearer token to hand to its user.
    pub token: String,
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits `rcd_<id>_<secret>` into its id and secret.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

impl Db {
    /// Creates a token. A client token needs an existing client; other roles must not name one.
    pub async fn create_token(&self, role: Role, client: Option<ClientSlug>, name: String) -> Result<NewToken> {
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let id: String = {
            let mut bytes = [0u8; 8];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        let token = format!("{TOKEN_PREFIX}{id}_{secret}");
        let hash = hash_secret(&secret);
        self.write(move |connection| {
            match (role, &client) {
                (Role::Client, None) => return Err(Invalid::new("client", "a client token must name its client").into()),
                (Role::Client, Some(slug)) => ensure_client(connection, slug)?,
                (_, Some(_)) => return Err(Invalid::new("client", "only client tokens are bound to a client").into()),
                (_, None) => {}
            }
            let now = Timestamp::now();
            connection.execute(
                "INSERT INTO tokens (id, secret_hash, role, client_id, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, hash.as_slice(), role.as_str(), client.as_ref().map(ClientSlug::as_str), name, now.millis()],
            )?;
            audit(
                connection,
                client.as_ref(),
                "cli",
                "token.create",
                &serde_json::json!({ "token_id": id, "role": role.as_str(), "name": name }),
            )?;
            Ok(NewToken {
                record: TokenRecord { id, role, client, name, created_at: now, revoked_at: None },
                token,
            })
        })
        .await
    }

    /// Revokes a token by its id (or by the whole token text). Revoking twice is fine.
    pub async fn revoke_token(&self, id_or_token: String) -> Result<TokenRecord> {
        let id = split_token(&id_or_token).map(|(id, _)| id.to_owned()).unwrap_or(id_or_token);
        self.write(move |connection| {
            connection.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, Timestamp::now().millis()],
            )?;
            let record = load_token(connection, &id)?.ok_or(Error::NotFound("token"))?.0;
            audit(connection, record.client.as_ref(), "cli", "token.revoke", &serde_json::json!({ "token_id": id }))?;
            Ok(record)
        })
        .await
    }

    /// Checks a bearer token. Returns the record of a valid, unrevoked token and `None` for anything else.
    pub async fn authenticate(&self, token: String) -> Result<Option<TokenRecord>> {
        let Some((id, secret)) = split_token(&token) else { return Ok(None) };
        if id.len() > 64 {
            return Ok(None);
        }
        let (id, presented) = (id.to_owned(), hash_secret(secret));
        self.read(move |connection| {
            let Some((record, stored)) = load_token(connection, &id)? else { return Ok(None) };
            let matches: bool = stored.as_slice().ct_eq(presented.as_slice()).into();
            Ok((matches && record.revoked_at.is_none()).then_some(record))
        })
        .await
    }
}

fn load_token(connection: &rusqlite::Connection, id: &str) -> Result<Option<(TokenRecord, Vec<u8>)>> {
    let row = connection
        .query_row(
            "SELECT id, secret_hash, role, client_id, name, created_at, revoked_at FROM tokens WHERE id = ?1",
            [id],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((id, hash, role, client, name, created_at, revoked_at)) = row else { return Ok(None) };
    let role = role.parse().map_err(|e: crate::domain::Invalid| Error::Conflict(e.to_string()))?;
    let client = client.map(|slug| ClientSlug::parse(&slug)).transpose().map_err(|e| Error::Conflict(e.to_string()))?;
    let record = TokenRecord {
        id,
        role,
        client,
        name,
        created_at: Timestamp(created_at),
        revoked_at: revoked_at.map(Timestamp),
    };
    Ok(Some((record, hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_into_id_and_secret() {
        assert_eq!(split_token("rcd_abc_s3cr_et"), Some(("abc", "s3cr_et")));
        assert_eq!(split_token("rcd_abc_"), None);
        assert_eq!(split_token("Bearer rcd_abc_x"), None);
        assert_eq!(split_token("abc_def"), None);
    }
}
