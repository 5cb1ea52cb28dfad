//! People who sign in: their accounts and password hashes. Hashing is not done here (it is slow on purpose;
//! see `crate::people`): the store keeps the PHC string it is given and hands it back to be verified.

use super::sql::{Connection, OptionalExtension, Row, params};

use super::clients::{audit, ensure_client};
use super::{Db, Error, Result};
use crate::domain::{ClientSlug, Email, Invalid, PersonId, Role, SessionId, Timestamp};

/// A person's account, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PersonRecord {
    /// Their id.
    pub id: PersonId,
    /// The address they sign in with, as given.
    pub email: String,
    /// Their name, as shown to others.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The client a client person belongs to.
    pub client: Option<ClientSlug>,
    /// True if and only if they may no longer sign in.
    pub disabled: bool,
    /// When the account was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When they last signed in.
    pub last_sign_in_at: Option<Timestamp>,
}

/// A person to create.
#[derive(Debug, Clone)]
pub struct NewPerson {
    /// The address they sign in with.
    pub email: Email,
    /// Their name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Their client (client people only).
    pub client: Option<ClientSlug>,
    /// The Argon2id hash of their password (PHC string).
    pub password_hash: String,
}

/// The columns of a [`PersonRecord`], of the table aliased `p`.
pub(super) const COLUMNS: &str =
    "p.id, p.email, p.name, p.role, p.client_id, p.disabled, p.created_at, p.updated_at, p.last_sign_in_at";

/// Reads a [`PersonRecord`] from [`COLUMNS`] starting at column `at`.
pub(super) fn person_from_row(row: &Row<'_>, at: usize) -> Result<PersonRecord> {
    Ok(PersonRecord {
        id: row.get(at)?,
        email: row.get(at + 1)?,
        name: row.get(at + 2)?,
        role: row.get(at + 3)?,
        client: row.get(at + 4)?,
        disabled: row.get(at + 5)?,
        created_at: row.get(at + 6)?,
        updated_at: row.get(at + 7)?,
        last_sign_in_at: row.get(at + 8)?,
    })
}

fn record(row: &Row<'_>) -> Result<PersonRecord> {
    person_from_row(row, 0)
}

/// Which person: by id (the API) or by address (the command line).
#[derive(Debug, Clone)]
pub enum PersonRef {
    /// By id.
    Id(PersonId),
    /// By the address they sign in with, whatever its case.
    Email(Email),
}

impl PersonRef {
    /// A person's id (`prs_...`) or the address they sign in with, as a caller wrote it.
    ///
    /// # Errors
    /// Neither an id nor an email address.
    pub fn parse(text: &str) -> std::result::Result<Self, crate::domain::Invalid> {
        match PersonId::parse(text) {
            Some(id) => Ok(Self::Id(id)),
            None => Ok(Self::Email(Email::parse(text)?)),
        }
    }
}

/// The person `who` names, or [`Error::NotFound`].
pub(super) fn find_person(connection: &Connection, who: &PersonRef) -> Result<PersonRecord> {
    let found = match who {
        PersonRef::Email(email) => by_email(connection, email)?.map(|(person, _)| person),
        PersonRef::Id(id) => connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM people p WHERE p.id = ?1"))?
            .query_row([id], record)
            .optional()?,
    };
    found.ok_or(Error::NotFound("person"))
}

fn by_email(connection: &Connection, email: &Email) -> Result<Option<(PersonRecord, String)>> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS}, p.password_hash FROM people p WHERE p.email_key = ?1"))?
        .query_row([email.key()], |row| Ok((record(row)?, row.get(9)?)))
        .optional()
}

impl Db {
    /// Creates a person. A client person needs an existing client; others must not name one. An address
    /// already taken (in any case) is a conflict.
    pub async fn create_person(&self, person: NewPerson, actor: String) -> Result<PersonRecord> {
        self.write(move |connection| {
            match (&person.role, &person.client) {
                (Role::Client, Some(client)) => ensure_client(connection, client)?,
                (Role::Client, None) => return Err(Invalid::new("client", "a client person needs a client").into()),
                (_, Some(_)) => {
                    return Err(Invalid::new(
                        "client",
                        format!("a person with role {} belongs to no client", person.role),
                    )
                    .into());
                }
                (_, None) => {}
            }
            if by_email(connection, &person.email)?.is_some() {
                return Err(Error::Conflict(format!("{} already has an account", person.email)));
            }
            let (id, now) = (PersonId::generate(), Timestamp::now());
            connection.execute(
                "INSERT INTO people (id, email, email_key, name, role, client_id, password_hash, disabled, created_at,
                                     updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8)",
                params![
                    id,
                    person.email.as_str(),
                    person.email.key(),
                    person.name,
                    person.role,
                    person.client,
                    person.password_hash,
                    now
                ],
            )?;
            let detail = serde_json::json!({ "person_id": id, "email": person.email, "role": person.role });
            audit(connection, person.client.as_ref(), &actor, "person.create", &detail)?;
            Ok(by_email(connection, &person.email)?.ok_or(Error::NotFound("person"))?.0)
        })
        .await
    }

    /// The person signing in with `email`, with their password hash, if there is one.
    pub async fn person_for_sign_in(&self, email: Email) -> Result<Option<(PersonRecord, String)>> {
        self.read(move |connection| by_email(connection, &email)).await
    }

    /// One person.
    pub async fn person(&self, who: PersonRef) -> Result<PersonRecord> {
        self.read(move |connection| find_person(connection, &who)).await
    }

    /// Every person, by address.
    pub async fn people(&self) -> Result<Vec<PersonRecord>> {
        self.read(|connection| {
            connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM people p ORDER BY p.email_key"))?
                .query_map([], record)?
                .collect::<Result<_>>()
        })
        .await
    }

    /// Replaces the password hash of a person and ends their sessions, all but `keep` (the one a person
    /// changing their own password is using).
    pub async fn set_password(
        &self,
        who: PersonRef,
        password_hash: String,
        actor: String,
        keep: Option<SessionId>,
    ) -> Result<PersonRecord> {
        self.write(move |connection| {
            let person = find_person(connection, &who)?;
            let now = Timestamp::now();
            connection.execute(
                "UPDATE people SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
                params![person.id, password_hash, now],
            )?;
            connection.execute(
                "UPDATE sessions SET revoked_at = ?2
                 WHERE person_id = ?1 AND revoked_at IS NULL AND (CAST(?3 AS TEXT) IS NULL OR id <> ?3)",
                params![person.id, now, keep],
            )?;
            audit(
                connection,
                person.client.as_ref(),
                &actor,
                "person.password",
                &serde_json::json!({ "person_id": person.id }),
            )?;
            find_person(connection, &who)
        })
        .await
    }

    /// Disables a person: they can no longer sign in, their sessions and tokens stop working, and they serve no
    /// client any more.
    pub async fn disable_person(&self, who: PersonRef, actor: String) -> Result<PersonRecord> {
        self.write(move |connection| {
            let person = find_person(connection, &who)?;
            let now = Timestamp::now();
            connection
                .execute("UPDATE people SET disabled = 1, updated_at = ?2 WHERE id = ?1", params![person.id, now])?;
            // Their sessions end now; their tokens stop working because authentication checks the flag.
            connection.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE person_id = ?1 AND revoked_at IS NULL",
                params![person.id, now],
            )?;
            connection.execute("DELETE FROM client_assistants WHERE person_id = ?1", [&person.id])?;
            audit(
                connection,
                person.client.as_ref(),
                &actor,
                "person.disable",
                &serde_json::json!({ "person_id": person.id }),
            )?;
            find_person(connection, &who)
        })
        .await
    }
}
