//! Schema migrations: SQLite's driven by `PRAGMA user_version`, PostgreSQL's by the `recado_schema` table.
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
    include_str!("migrations/0010_report_counts.sql"),
    include_str!("migrations/0011_waiting_by_client.sql"),
    include_str!("migrations/0012_plugin_contract.sql"),
    include_str!("migrations/0013_processing_leases.sql"),
    include_str!("migrations/0014_log_positions.sql"),
    include_str!("migrations/0015_row_security.sql"),
    include_str!("migrations/0016_message_count_shards.sql"),
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// PostgreSQL's schema starts at this version: its first file creates the whole schema as it was then.
const POSTGRES_BASELINE: (i64, &str) = (12, include_str!("migrations/postgres/0012_baseline.sql"));

/// PostgreSQL's migrations after the baseline: `POSTGRES_MIGRATIONS[i]` brings it to version
/// `baseline + i + 1`, as `MIGRATIONS[baseline + i]` does for SQLite. Every new version needs both files.
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0013_processing_leases.sql"),
    include_str!("migrations/postgres/0014_log_positions.sql"),
    include_str!("migrations/postgres/0015_row_security.sql"),
    include_str!("migrations/postgres/0016_message_count_shards.sql"),
];

const _: () = assert!(
    POSTGRES_BASELINE.0 + POSTGRES_MIGRATIONS.len() as i64 == SCHEMA_VERSION,
    "every schema version needs a PostgreSQL migration too"
);

/// Any number, the same for every node: the advisory lock nodes starting together migrate under.
const POSTGRES_MIGRATION_LOCK: i64 = 0x7265_6361_646f_0001;

/// Brings a PostgreSQL database up to [`SCHEMA_VERSION`], in one transaction under an advisory lock: nodes
/// starting together migrate one after the other, and the later ones find nothing to do. The version is kept
/// in `recado_schema`.
pub(crate) async fn migrate_postgres(client: &mut deadpool_postgres::Object) -> Result<()> {
    let transaction = client.transaction().await.map_err(super::postgres::classify)?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&POSTGRES_MIGRATION_LOCK]).await?;
    // Asked first rather than `CREATE TABLE IF NOT EXISTS`, whose notice would be logged at every start.
    let exists: bool = transaction.query_one("SELECT to_regclass('recado_schema') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        transaction
            .batch_execute(
                "CREATE TABLE recado_schema (
                     id      BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
                     version BIGINT NOT NULL
                 )",
            )
            .await?;
    }
    let found: i64 =
        transaction.query_opt("SELECT version FROM recado_schema WHERE id = 1", &[]).await?.map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(Error::IncompatibleSchema { found, supported: SCHEMA_VERSION });
    }
    let (baseline, baseline_sql) = POSTGRES_BASELINE;
    if found < baseline {
        transaction.batch_execute(baseline_sql).await?;
        tracing::info!(version = baseline, "created the PostgreSQL schema");
    }
    for (index, sql) in POSTGRES_MIGRATIONS.iter().enumerate() {
        let version = baseline + 1 + index as i64;
        if version > found {
            transaction.batch_execute(sql).await?;
            tracing::info!(version, "applied schema migration");
        }
    }
    transaction
        .execute(
            "INSERT INTO recado_schema (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
            &[&SCHEMA_VERSION],
        )
        .await?;
    transaction.commit().await.map_err(super::postgres::classify)?;
    Ok(())
}

/// Fails if the database was written by a newer recado (a schema version this build does not know).
pub(crate) fn refuse_newer(connection: &Connection) -> Result<()> {
    let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::IncompatibleSchema { found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

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
    fn messages_written_before_the_counts_existed_are_counted_by_the_migration() {
        let mut connection = Connection::open_in_memory().expect("open");
        for sql in &MIGRATIONS[..9] {
            connection.execute_batch(sql).expect("older schema");
        }
        // Only the messages matter here, not the client and conversation they would belong to.
        connection.execute_batch("PRAGMA user_version = 9; PRAGMA foreign_keys = OFF").expect("version");
        let day = 86_400_000_i64;
        for (id, direction, kind, author, at) in [
            ("msg_1", "in", "customer", None, 20_000 * day + 5),
            ("msg_2", "in", "customer", None, 20_000 * day + 9),
            ("msg_3", "out", "assistant", Some("prs_a"), 20_000 * day + 10),
            ("msg_4", "in", "customer", None, 20_001 * day),
        ] {
            connection
                .execute(
                    "INSERT INTO messages (client_id, id, conversation_id, direction, kind, channel, author_id, text,
                                           created_at, state)
                     VALUES ('acme', ?1, 'cnv_1', ?2, ?3, 'whatsapp', ?4, '', ?5, 'processed')",
                    rusqlite::params![id, direction, kind, author, at],
                )
                .expect("message");
        }
        migrate(&mut connection).expect("migrate");
        let counts: Vec<(i64, String, String, i64)> = connection
            .prepare("SELECT day, kind, author_id, count FROM message_counts ORDER BY day, kind")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            counts,
            [
                (20_000, "assistant".to_owned(), "prs_a".to_owned(), 1),
                (20_000, "customer".to_owned(), String::new(), 2),
                (20_001, "customer".to_owned(), String::new(), 1),
            ]
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut connection = Connection::open_in_memory().expect("open");
        connection.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1)).expect("bump");
        let error = migrate(&mut connection).expect_err("newer schema");
        assert!(matches!(error, Error::IncompatibleSchema { .. }), "{error}");
    }
}
