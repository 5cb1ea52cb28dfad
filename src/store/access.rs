//! Who is calling and what they may see: the [`Scope`] every query takes, the [`Caller`] a token or a session
//! resolves to, sign-in sessions, and which assistants serve which clients.
//!
//! An assistant's scope is checked in SQL against `client_assistants` as it stands when the query runs, so
//! taking a client away from her takes effect at once, even on an event stream she already has open.

use super::sql::{Connection, OptionalExtension, params};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use super::clients::{audit, ensure_client};
use super::people::{COLUMNS as PERSON_COLUMNS, find_person, person_from_row};
use super::{Db, Error, PersonRecord, PersonRef, Result};
use crate::domain::{ClientSlug, Email, Invalid, PersonId, Role, SessionId, Timestamp};

/// Which clients' data a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every client (admins, and integration tokens of the agency).
    All,
    /// One client only (a client's people and tokens).
    Client(ClientSlug),
    /// The clients an assistant serves: `clients` as they were when she was authenticated (for checks made
    /// outside SQL); queries check her assignments as they stand.
    Assistant {
        /// The assistant.
        person: PersonId,
        /// The clients she served when authenticated.
        clients: Vec<ClientSlug>,
    },
}

/// The value of a scope's first parameter that lets every client through. No slug can be `*`.
const EVERY_CLIENT: &str = "*";

impl Scope {
    /// Returns true if and only if this scope may see `client`'s data.
    pub fn allows(&self, client: &ClientSlug) -> bool {
        match self {
            Self::All => true,
            Self::Client(own) => own == client,
            Self::Assistant { clients, .. } => clients.contains(client),
        }
    }

    /// The SQL condition that limits `column` (a client id) to this scope, with the scope's two parameters at
    /// `?{first}` and `?{first + 1}` (bind them with [`Scope::params`]).
    pub(super) fn condition(column: &str, first: usize) -> String {
        let second = first + 1;
        format!(
            "(?{first} = '{EVERY_CLIENT}' OR {column} = ?{first} OR {column} IN \
             (SELECT sa.client_id FROM client_assistants sa WHERE sa.person_id = ?{second}))"
        )
    }

    /// The clients this scope's transactions may touch, as PostgreSQL's row-level security is told them: a
    /// comma-separated list of slugs (no slug has a comma), or `None` for every client.
    pub(super) fn row_visibility(&self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Client(slug) => Some(slug.as_str().to_owned()),
            Self::Assistant { clients, .. } => {
                Some(clients.iter().map(ClientSlug::as_str).collect::<Vec<_>>().join(","))
            }
        }
    }

    /// The two parameters of [`Scope::condition`].
    pub(super) fn params(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::All => (Some(EVERY_CLIENT), None),
            Self::Client(slug) => (Some(slug.as_str()), None),
            Self::Assistant { person, .. } => (None, Some(person.as_str())),
        }
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token, by its public id.
    Token(String),
    /// A signed-in browser.
    Session(SessionId),
}

/// An authenticated caller: a person (through a session or their own token) or an integration's token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// How they authenticated.
    pub credential: Credential,
    /// The person, unless this is an integration's token.
    pub person: Option<PersonRecord>,
    /// What they may do.
    pub role: Role,
    /// Their client, for a client's people and tokens.
    pub client: Option<ClientSlug>,
    /// The name their replies carry.
    pub name: String,
    /// Which clients' data they may see.
    pub scope: Scope,
}

impl Caller {
    /// Who made a change, as the audit log records it: the person's id, or the token's.
    pub fn actor(&self) -> String {
        match (&self.person, &self.credential) {
            (Some(person), _) => person.id.to_string(),
            (None, Credential::Token(id)) => format!("token:{id}"),
            (None, Credential::Session(id)) => format!("session:{id}"),
        }
    }
}

/// Builds the caller a person is, once authenticated by `credential`.
pub(super) fn caller_for_person(
    connection: &Connection,
    person: PersonRecord,
    credential: Credential,
) -> Result<Caller> {
    let scope = match (&person.role, &person.client) {
        (Role::Admin, _) => Scope::All,
        (Role::Client, Some(client)) => Scope::Client(client.clone()),
        // A client person always has a client (enforced at creation); without one they see nothing.
        (Role::Client, None) => Scope::Assistant { person: person.id.clone(), clients: Vec::new() },
        (Role::Assistant, _) => {
            Scope::Assistant { person: person.id.clone(), clients: served(connection, &person.id)? }
        }
    };
    Ok(Caller {
        credential,
        role: person.role,
        client: person.client.clone(),
        name: person.name.clone(),
        scope,
        person: Some(person),
    })
}

/// The clients an assistant serves, by slug.
fn served(connection: &Connection, person: &PersonId) -> Result<Vec<ClientSlug>> {
    connection
        .prepare_cached("SELECT client_id FROM client_assistants WHERE person_id = ?1 ORDER BY client_id")?
        .query_map([person], |row| row.get(0))?
        .collect::<Result<_>>()
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    /// A session ends this long after sign-in, whatever its activity.
    pub lifetime: std::time::Duration,
    /// A session unused for this long ends.
    pub idle: std::time::Duration,
}

/// A new session: its public id, the secret the cookie carries (not stored), and when it ends at the latest.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session's public id.
    pub id: SessionId,
    /// The cookie's value.
    pub secret: String,
    /// When it ends whatever happens.
    pub expires_at: Timestamp,
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Longest cookie value looked up (a real one is 43 characters).
const MAX_SECRET_LEN: usize = 128;

/// Activity is written back at most this often, so a busy session does not write on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

impl Db {
    /// Starts a session for a person who has just proved their password, and records the sign-in.
    pub async fn create_session(&self, person: PersonId, rules: SessionRules) -> Result<NewSession> {
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, random);
        let hash = hash_secret(&secret);
        self.write(move |connection| {
            let person = find_person(connection, &PersonRef::Id(person.clone()))?;
            if person.disabled {
                return Err(Error::NotFound("person"));
            }
            let (id, now) = (SessionId::generate(), Timestamp::now());
            let expires_at = now.plus(rules.lifetime);
            connection.execute(
                "INSERT INTO sessions (secret_hash, id, person_id, created_at, expires_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                params![hash.as_slice(), id, person.id, now, expires_at],
            )?;
            connection.execute("UPDATE people SET last_sign_in_at = ?2 WHERE id = ?1", params![person.id, now])?;
            audit(
                connection,
                person.client.as_ref(),
                person.id.as_str(),
                "session.create",
                &serde_json::json!({ "session_id": id }),
            )?;
            Ok(NewSession { id, secret: secret.clone(), expires_at })
        })
        .await
    }

    /// The caller a session cookie stands for, if the session is live: not revoked, not past its lifetime,
    /// used within the idle timeout, its person not disabled. Records activity at most once a minute.
    pub async fn session_caller(&self, secret: String, rules: SessionRules) -> Result<Option<Caller>> {
        if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let hash = hash_secret(&secret);
        let found = self
            .read(move |connection| {
                let now = Timestamp::now();
                let row = connection
                    .prepare_cached(&format!(
                        "SELECT s.id, s.last_seen_at, {PERSON_COLUMNS} FROM sessions s JOIN people p ON p.id = s.person_id
                         WHERE s.secret_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND s.last_seen_at > ?3
                           AND p.disabled = 0"
                    ))?
                    .query_row(params![hash.as_slice(), now, now.minus(rules.idle)], |row| {
                        Ok((row.get::<_, SessionId>(0)?, row.get::<_, Timestamp>(1)?, person_from_row(row, 2)?))
                    })
                    .optional()?;
                let Some((id, last_seen, person)) = row else { return Ok(None) };
                let caller = caller_for_person(connection, person, Credential::Session(id.clone()))?;
                Ok(Some((caller, id, last_seen)))
            })
            .await?;
        let Some((caller, id, last_seen)) = found else { return Ok(None) };
        if Timestamp::now().millis() - last_seen.millis() > TOUCH_EVERY_MS {
            self.write(move |connection| {
                connection
                    .execute("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1", params![id, Timestamp::now()])?;
                Ok(())
            })
            .await?;
        }
        Ok(Some(caller))
    }

    /// Returns true if and only if `credential` still authenticates: a session not ended, not past its
    /// lifetime, its person not disabled (its idle time is not counted: asking is activity); a token not
    /// revoked, its person (if any) not disabled. Long-lived answers (event streams) ask now and then.
    pub async fn credential_is_live(&self, credential: Credential) -> Result<bool> {
        self.read(move |connection| {
            let live = match &credential {
                Credential::Session(id) => connection
                    .prepare_cached(
                        "SELECT 1 FROM sessions s JOIN people p ON p.id = s.person_id
                         WHERE s.id = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND p.disabled = 0",
                    )?
                    .query_row(params![id, Timestamp::now()], |_| Ok(()))
                    .optional()?,
                Credential::Token(id) => connection
                    .prepare_cached(
                        "SELECT 1 FROM tokens t LEFT JOIN people p ON p.id = t.person_id
                         WHERE t.id = ?1 AND t.revoked_at IS NULL AND (t.person_id IS NULL OR p.disabled = 0)",
                    )?
                    .query_row([id], |_| Ok(()))
                    .optional()?,
            };
            Ok(live.is_some())
        })
        .await
    }

    /// Ends one session (signing out). Ending an ended session is fine.
    pub async fn end_session(&self, id: SessionId, actor: String) -> Result<()> {
        self.write(move |connection| {
            let ended = connection.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, Timestamp::now()],
            )?;
            if ended > 0 {
                audit(connection, None, &actor, "session.end", &serde_json::json!({ "session_id": id }))?;
            }
            Ok(())
        })
        .await
    }

    /// Every assignment of an assistant to a client.
    pub async fn assignments(&self) -> Result<Vec<(PersonId, ClientSlug)>> {
        self.read(|connection| {
            connection
                .prepare_cached("SELECT person_id, client_id FROM client_assistants ORDER BY person_id, client_id")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_>>()
        })
        .await
    }

    /// Deletes sessions that ended (revoked or past their lifetime) before `before`.
    pub async fn forget_sessions(&self, before: Timestamp) -> Result<usize> {
        self.write(move |connection| {
            connection.execute(
                "DELETE FROM sessions WHERE expires_at < ?1 OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
                [before],
            )
        })
        .await
    }

    /// The clients an assistant serves, by slug.
    pub async fn served_clients(&self, person: PersonId) -> Result<Vec<ClientSlug>> {
        self.read(move |connection| served(connection, &person)).await
    }

    /// Replaces the assistants who serve `client`, named by email. Each must be an assistant who is not
    /// disabled; an unknown address is a 422 naming it.
    pub async fn set_client_assistants(
        &self,
        client: ClientSlug,
        assistants: Vec<Email>,
        actor: String,
    ) -> Result<Vec<PersonRecord>> {
        self.write_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            let mut people = Vec::with_capacity(assistants.len());
            for email in &assistants {
                let person =
                    find_person(connection, &PersonRef::Email(email.clone())).map_err(|error| match error {
                        Error::NotFound(_) => {
                            Error::Invalid(Invalid::new("assistants", format!("{email} has no account")))
                        }
                        other => other,
                    })?;
                ensure_assistant(&person)?;
                if !people.iter().any(|known: &PersonRecord| known.id == person.id) {
                    people.push(person);
                }
            }
            connection.execute("DELETE FROM client_assistants WHERE client_id = ?1", [&client])?;
            let now = Timestamp::now();
            for person in &people {
                connection.execute(
                    "INSERT INTO client_assistants (client_id, person_id, assigned_at) VALUES (?1, ?2, ?3)",
                    params![client, person.id, now],
                )?;
            }
            let ids: Vec<&PersonId> = people.iter().map(|person| &person.id).collect();
            audit(connection, Some(&client), &actor, "client.assistants", &serde_json::json!({ "assistants": ids }))?;
            Ok(people)
        })
        .await
    }

    /// The assistants who serve `client`, by address.
    pub async fn client_assistants(&self, client: ClientSlug) -> Result<Vec<PersonRecord>> {
        self.read_as(&Scope::Client(client.clone()), move |connection| {
            ensure_client(connection, &client)?;
            let columns = PERSON_COLUMNS;
            connection
                .prepare_cached(&format!(
                    "SELECT {columns} FROM client_assistants a JOIN people p ON p.id = a.person_id
                     WHERE a.client_id = ?1 ORDER BY p.email_key"
                ))?
                .query_map([&client], |row| person_from_row(row, 0))?
                .collect::<Result<_>>()
        })
        .await
    }

    /// Replaces the clients an assistant serves.
    pub async fn set_served_clients(
        &self,
        person: PersonId,
        clients: Vec<ClientSlug>,
        actor: String,
    ) -> Result<Vec<ClientSlug>> {
        self.write(move |connection| {
            let person = find_person(connection, &PersonRef::Id(person.clone()))?;
            ensure_assistant(&person)?;
            for client in &clients {
                ensure_client(connection, client)?;
            }
            connection.execute("DELETE FROM client_assistants WHERE person_id = ?1", [&person.id])?;
            let now = Timestamp::now();
            for client in &clients {
                connection.execute(
                    "INSERT INTO client_assistants (client_id, person_id, assigned_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (client_id, person_id) DO NOTHING",
                    params![client, person.id, now],
                )?;
            }
            audit(
                connection,
                None,
                &actor,
                "person.clients",
                &serde_json::json!({ "person_id": person.id, "clients": clients }),
            )?;
            served(connection, &person.id)
        })
        .await
    }
}

/// Only assistants are assigned to clients (admins see every client; a client's people see their own).
fn ensure_assistant(person: &PersonRecord) -> Result<()> {
    if person.role != Role::Assistant {
        return Err(
            Invalid::new("assistants", format!("{} is not an assistant ({})", person.email, person.role)).into()
        );
    }
    if person.disabled {
        return Err(Invalid::new("assistants", format!("{} is disabled", person.email)).into());
    }
    Ok(())
}
