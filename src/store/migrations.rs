//! Schema migrations driven by `PRAGMA user_version`.
//!
//! Each migration is a SQL file applied once, in order, inside one IMMEDIATE transaction together with the
//! version bump, so a crash mid-migration leaves the previous schema intact. A database written by a newer
//! recado is refused rather than misread.

use rusqlite::Connection;

use super::{Error, Result};

/// The migrations, in order: `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_articles.sql"),
    include_str!("migrations/0003_suggestions.sql"),
    include_str!("migrations/0004_plugins.sql"),
    include_str!("migrations/0005_sla.sql"),
    include_str!("migrations/0006_channels.sql"),
    include_str!("migrations/0007_contact_tags.sql"),
    include_str!("migrations/0008_people.sql"),
    include_str!("migrations/0009_access.sql"),
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(connection: &mut Connection) -> Result<()> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::IncompatibleSchema { found, supported: SCHEMA_VERSION });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        transaction.execute_batch(sql)?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    // PRAGMA takes no bound parameters; the value is our own constant.
    transaction.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    transaction.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_sets_the_version() {
        let mut connection = Connection::open_in_memory().expect("open");
        migrate(&mut connection).expect("first");
        migrate(&mut connection).expect("second");
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut connection = Connection::open_in_memory().expect("open");
        connection.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1)).expect("bump");
        let error = migrate(&mut connection).expect_err("newer schema");
        assert!(matches!(error, Error::IncompatibleSchema { .. }), "{error}");
    }
}
