//! API tokens: only a SHA-256 of each secret is stored; the whole token is shown once, at creation.
//!
//! A token made by or for a person acts as that person (their role, their clients, their name) and stops
//! working when they are disabled; a token without a person is an integration's, named, with the role it was
//! made with.

use super::sql::{Connection, OptionalExtension, Row, params};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::access::{Caller, Credential, Scope, caller_for_person};
use super::clients::{audit, ensure_client};
use super::people::{COLUMNS as PERSON_COLUMNS, find_person, person_from_row};
use super::{Db, Error, PersonRef, Result};
use crate::domain::{ClientSlug, Invalid, PersonId, Role, Timestamp};

/// Prefix of every token, so leaked tokens are easy to recognise (and to scan for).
const TOKEN_PREFIX: &str = "rcd_";

/// A stored token (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// The public id (the part between the prefix and the secret).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// The client it is bound to (client role only).
    pub client: Option<ClientSlug>,
    /// A label: what it is for.
    pub name: String,
    /// The person it acts as; `None` for an integration's token.
    pub person: Option<PersonId>,
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

/// A fresh token's id, secret and whole text.
fn new_token() -> (String, String) {
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    (hex::encode(bytes), secret)
}

/// Stores a token and answers it with its whole text.
fn insert_token(
    connection: &Connection,
    role: Role,
    client: Option<ClientSlug>,
    name: String,
    person: Option<PersonId>,
    actor: &str,
) -> Result<NewToken> {
    let (id, secret) = new_token();
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let now = Timestamp::now();
    connection.execute(
        "INSERT INTO tokens (id, secret_hash, role, client_id, name, created_at, person_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, hash_secret(&secret).as_slice(), role, client, name, now, person],
    )?;
    let detail = serde_json::json!({ "token_id": id, "role": role, "name": name, "person_id": person });
    audit(connection, client.as_ref(), actor, "token.create", &detail)?;
    Ok(NewToken { record: TokenRecord { id, role, client, name, person, created_at: now, revoked_at: None }, token })
}

impl Db {
    /// Creates an integration's token (not a person's). A client token needs an existing client; other roles
    /// must not name one.
    pub async fn create_token(&self, role: Role, client: Option<ClientSlug>, name: String) -> Result<NewToken> {
        self.write(move |connection| {
            match (role, &client) {
                (Role::Client, None) => {
                    return Err(Invalid::new("client", "a client token must name its client").into());
                }
                (Role::Client, Some(slug)) => ensure_client(connection, slug)?,
                (_, Some(_)) => return Err(Invalid::new("client", "only client tokens are bound to a client").into()),
                (_, None) => {}
            }
            insert_token(connection, role, client.clone(), name.clone(), None, "cli")
        })
        .await
    }

    /// Creates a token that acts as a person, with their role and client.
    pub async fn create_person_token(&self, who: PersonRef, name: String, actor: String) -> Result<NewToken> {
        self.write(move |connection| {
            let person = find_person(connection, &who)?;
            if person.disabled {
                return Err(Invalid::new("person", format!("{} is disabled", person.email)).into());
            }
            insert_token(connection, person.role, person.client, name.clone(), Some(person.id), &actor)
        })
        .await
    }

    /// Tokens, newest first: those acting as `owner`, or every token when `owner` is `None`.
    pub async fn tokens(&self, owner: Option<PersonId>) -> Result<Vec<TokenRecord>> {
        self.read(move |connection| {
            let rows = connection
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE (CAST(?1 AS TEXT) IS NULL OR person_id = ?1)
                     ORDER BY created_at DESC, id DESC"
                ))?
                .query_map([&owner], |row| Ok(token_from_row(row)?.0))?
                .collect::<Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// Revokes a token by its id (or by the whole token text), from the command line. Revoking twice is fine.
    pub async fn revoke_token(&self, id_or_token: String) -> Result<TokenRecord> {
        self.revoke_token_of(id_or_token, None, "cli".into()).await
    }

    /// [`Db::revoke_token`] recording `actor`; with `owner`, only a token acting as that person is found and
    /// any other is [`Error::NotFound`].
    pub async fn revoke_token_of(
        &self,
        id_or_token: String,
        owner: Option<PersonId>,
        actor: String,
    ) -> Result<TokenRecord> {
        let id = split_token(&id_or_token).map(|(id, _)| id.to_owned()).unwrap_or(id_or_token);
        self.write(move |connection| {
            let record = load_token(connection, &id)?.ok_or(Error::NotFound("token"))?.0;
            if owner.as_ref().is_some_and(|owner| record.person.as_ref() != Some(owner)) {
                return Err(Error::NotFound("token"));
            }
            connection.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, Timestamp::now()],
            )?;
            audit(connection, record.client.as_ref(), &actor, "token.revoke", &serde_json::json!({ "token_id": id }))?;
            Ok(load_token(connection, &id)?.ok_or(Error::NotFound("token"))?.0)
        })
        .await
    }

    /// Checks a bearer token. Returns the caller of a valid, unrevoked token (whose person, if any, is not
    /// disabled) and `None` for anything else.
    pub async fn authenticate(&self, token: String) -> Result<Option<Caller>> {
        let Some((id, secret)) = split_token(&token) else { return Ok(None) };
        if id.len() > 64 {
            return Ok(None);
        }
        let (id, presented) = (id.to_owned(), hash_secret(secret));
        self.read(move |connection| {
            let Some((record, stored)) = load_token(connection, &id)? else { return Ok(None) };
            let matches: bool = stored.as_slice().ct_eq(presented.as_slice()).into();
            if !matches || record.revoked_at.is_some() {
                return Ok(None);
            }
            let credential = Credential::Token(record.id.clone());
            let Some(person) = &record.person else {
                let scope = match &record.client {
                    Some(client) if record.role == Role::Client => Scope::Client(client.clone()),
                    // An integration's admin or assistant token works for the whole agency.
                    _ => Scope::All,
                };
                return Ok(Some(Caller {
                    credential,
                    person: None,
                    role: record.role,
                    client: record.client,
                    name: record.name,
                    scope,
                }));
            };
            let person = connection
                .prepare_cached(&format!("SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = ?1 AND p.disabled = 0"))?
                .query_row([person], |row| person_from_row(row, 0))
                .optional()?;
            person.map(|person| caller_for_person(connection, person, credential)).transpose()
        })
        .await
    }
}

const TOKEN_COLUMNS: &str = "id, role, client_id, name, person_id, created_at, revoked_at, secret_hash";

fn token_from_row(row: &Row<'_>) -> Result<(TokenRecord, Vec<u8>)> {
    Ok((
        TokenRecord {
            id: row.get(0)?,
            role: row.get(1)?,
            client: row.get(2)?,
            name: row.get(3)?,
            person: row.get(4)?,
            created_at: row.get(5)?,
            revoked_at: row.get(6)?,
        },
        row.get(7)?,
    ))
}

fn load_token(connection: &Connection, id: &str) -> Result<Option<(TokenRecord, Vec<u8>)>> {
    connection
        .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))?
        .query_row([id], token_from_row)
        .optional()
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
