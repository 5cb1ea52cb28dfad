//! Moving an installation to another database (`recado export`, `recado import`): every table of the
//! embedded SQLite database, row by row, into a file of JSON lines, and from such a file into an empty
//! database at the same schema version, typically PostgreSQL, in one transaction.
//!
//! The file: a header line `{"format":"recado-export","version":1,"schema":N,"secrets_key_id":"..."}`; for
//! each table a line `{"table":T,"columns":[...]}` followed by one JSON array per row (a blob as
//! `{"base64":"..."}`); a last line `{"end":{"rows":N}}`, so that a file cut short is refused instead of half
//! imported. It holds everything the database does (sealed channel secrets, token and password hashes), so it
//! is created readable by its owner only, and the channel secrets in it open only with the same secrets key:
//! an import with another key is refused.
//!
//! Not copied: claims on work in progress (`processing_leases`, which end with the process that held them) and
//! the per-day message counts (`message_counts`), which the target's triggers count again as the messages are
//! inserted.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::migrations::SCHEMA_VERSION;
use super::sql::{Connection, Dialect, OwnedValue, Value, params_from_iter};
use super::{Db, Error, Result};

const FORMAT: &str = "recado-export";
const VERSION: u32 = 1;

/// Tables left out (see the module's docs).
const NOT_COPIED: [&str; 2] = ["processing_leases", "message_counts"];

/// Tables written first, in this order, so that the rows a foreign key points to are there before it.
const FIRST: [&str; 7] = ["clients", "people", "tokens", "sessions", "contacts", "conversations", "messages"];

/// Tables whose rows are ordered by SQLite's implicit row id, which PostgreSQL's schema has as a column.
const WITH_ROWID: [&str; 1] = ["message_edits"];

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    schema: i64,
    secrets_key_id: String,
}

/// The line before a table's rows.
#[derive(Debug, Serialize, Deserialize)]
struct TableStart {
    table: String,
    columns: Vec<String>,
}

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
struct End {
    end: Totals,
}

#[derive(Debug, Serialize, Deserialize)]
struct Totals {
    rows: u64,
}

/// What an export or import moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferReport {
    /// Tables.
    pub tables: usize,
    /// Rows, all tables together.
    pub rows: u64,
}

/// Writes `value` as one line.
fn write_line(writer: &mut impl std::io::Write, value: &impl Serialize, path: &std::path::Path) -> Result<()> {
    let written =
        serde_json::to_writer(&mut *writer, value).map_err(std::io::Error::from).and_then(|()| writer.write_all(b"\n"));
    written.map_err(|error| broken(format!("writing {}: {error}", path.display())))
}

fn broken(what: impl std::fmt::Display) -> Error {
    Error::Transfer(what.to_string())
}

/// A name read from the database's own catalogue, quoted for a statement.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn to_json(value: Value<'_>) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(n) => n.into(),
        Value::Real(x) => x.into(),
        Value::Text(text) => text.into(),
        Value::Blob(bytes) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
        }
    }
}

fn from_json(value: serde_json::Value) -> Result<OwnedValue> {
    Ok(match value {
        serde_json::Value::Null => OwnedValue::Null,
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(n) => OwnedValue::Integer(n),
            None => OwnedValue::Real(number.as_f64().ok_or_else(|| broken(format!("the number {number}")))?),
        },
        serde_json::Value::String(text) => OwnedValue::Text(text),
        serde_json::Value::Object(object) => match object.get("base64").and_then(serde_json::Value::as_str) {
            Some(encoded) => {
                OwnedValue::Blob(base64::engine::general_purpose::STANDARD.decode(encoded).map_err(broken)?)
            }
            None => return Err(broken("a value that is neither a scalar nor {\"base64\": ...}")),
        },
        other => return Err(broken(format!("a value of an unknown kind: {other}"))),
    })
}

/// The tables of the database with their columns, in the order they are moved.
fn tables(connection: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let mut names: Vec<String> = match connection.dialect() {
        Dialect::Sqlite => connection
            .prepare_cached(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_>>()?,
        Dialect::Postgres => connection
            .prepare_cached(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_>>()?,
    };
    names.retain(|name| !NOT_COPIED.contains(&name.as_str()));
    names.sort_by_key(|name| FIRST.iter().position(|first| first == name).unwrap_or(FIRST.len()));
    names
        .into_iter()
        .map(|name| {
            let columns: Vec<String> = match connection.dialect() {
                Dialect::Sqlite => connection
                    .prepare_cached("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
                    .query_map([name.as_str()], |row| row.get(0))?
                    .collect::<Result<_>>()?,
                Dialect::Postgres => connection
                    .prepare_cached(
                        "SELECT column_name::text FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
                    )?
                    .query_map([name.as_str()], |row| row.get(0))?
                    .collect::<Result<_>>()?,
            };
            Ok((name, columns))
        })
        .collect()
}

impl Db {
    /// Writes every table of this database to a new file at `out` (see the module's docs), from one read
    /// snapshot, so a server may keep running meanwhile (what it writes later is not in the file).
    ///
    /// # Errors
    /// The database is PostgreSQL's (moved with PostgreSQL's own tools), `out` exists or cannot be written.
    pub async fn export(&self, out: PathBuf) -> Result<TransferReport> {
        if self.is_postgres() {
            return Err(broken("export reads the embedded SQLite database; a PostgreSQL one moves with pg_dump"));
        }
        let secrets_key_id = self.secrets_key_id().to_owned();
        self.read(move |connection| {
            use std::os::unix::fs::OpenOptionsExt as _;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .map_err(|error| broken(format!("cannot create {}: {error}", out.display())))?;
            let mut writer = std::io::BufWriter::new(file);
            let header = Header { format: FORMAT.into(), version: VERSION, schema: SCHEMA_VERSION, secrets_key_id };
            write_line(&mut writer, &header, &out)?;
            let tables = tables(connection)?;
            let mut rows = 0u64;
            for (table, mut columns) in tables.iter().cloned() {
                if WITH_ROWID.contains(&table.as_str()) {
                    columns.insert(0, "rowid".into());
                }
                let select = format!(
                    "SELECT {} FROM {}",
                    columns.iter().map(|column| quoted(column)).collect::<Vec<_>>().join(", "),
                    quoted(&table)
                );
                write_line(&mut writer, &TableStart { table: table.clone(), columns: columns.clone() }, &out)?;
                let mut statement = connection.prepare_cached(&select)?;
                let mut found = statement.query([])?;
                while let Some(row) = found.next()? {
                    let values: Vec<serde_json::Value> =
                        (0..columns.len()).map(|index| row.get_ref(index).map(to_json)).collect::<Result<_>>()?;
                    write_line(&mut writer, &values, &out)?;
                    rows += 1;
                }
            }
            write_line(&mut writer, &End { end: Totals { rows } }, &out)?;
            writer.flush().map_err(|error| broken(format!("writing {}: {error}", out.display())))?;
            writer.get_ref().sync_all().map_err(|error| broken(format!("writing {}: {error}", out.display())))?;
            Ok(TransferReport { tables: tables.len(), rows })
        })
        .await
    }

    /// Reads an export into this database, which must hold no client, person, token or message yet (a new
    /// database: the server creates its schema on the first start, or `recado migrate` does), all in one
    /// transaction: a file that is cut short, from another schema version or for another secrets key leaves
    /// the database as it was.
    ///
    /// # Errors
    /// [`Error::Transfer`] for a file that is not a whole export this build can read; [`Error::Conflict`] when
    /// the database already holds data.
    pub async fn import(&self, file: PathBuf) -> Result<TransferReport> {
        let secrets_key_id = self.secrets_key_id().to_owned();
        self.write(move |connection| {
            let opened =
                std::fs::File::open(&file).map_err(|error| broken(format!("cannot read {}: {error}", file.display())))?;
            let mut lines = std::io::BufReader::new(opened).lines();
            let mut next = || -> Result<Option<String>> {
                lines.next().transpose().map_err(|error| broken(format!("reading {}: {error}", file.display())))
            };
            let header: Header = serde_json::from_str(&next()?.ok_or_else(|| broken("the file is empty"))?)
                .map_err(|_| broken("not a recado export (no header line)"))?;
            if header.format != FORMAT || header.version != VERSION {
                return Err(broken(format!("not a recado export this build reads ({} {})", header.format, header.version)));
            }
            if header.schema != SCHEMA_VERSION {
                return Err(broken(format!(
                    "the export is of schema version {}, this recado's is {SCHEMA_VERSION}: export and import with the same version",
                    header.schema
                )));
            }
            if header.secrets_key_id != secrets_key_id {
                return Err(broken(format!(
                    "the export's channel secrets are sealed with the key {}, this node's key is {secrets_key_id}: \
                     import with the same key (storage.secrets_key_file)",
                    header.secrets_key_id
                )));
            }
            let holds_data: bool = connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM clients) OR EXISTS (SELECT 1 FROM people)
                     OR EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM messages)",
                [],
                |row| row.get(0),
            )?;
            if holds_data {
                return Err(Error::Conflict("the database already holds data: import into a new one".into()));
            }
            let known = tables(connection)?;
            let mut tables = 0;
            let mut rows = 0u64;
            let mut insert: Option<(String, usize)> = None;
            loop {
                let line = next()?.ok_or_else(|| broken("the file ends before its last line: it was cut short"))?;
                let value: serde_json::Value =
                    serde_json::from_str(&line).map_err(|error| broken(format!("a line is not JSON: {error}")))?;
                match value {
                    serde_json::Value::Array(values) => {
                        let (sql, width) = insert.as_ref().ok_or_else(|| broken("a row before any table"))?;
                        if values.len() != *width {
                            return Err(broken(format!("a row of {} values where {width} columns were named", values.len())));
                        }
                        let values: Vec<OwnedValue> = values.into_iter().map(from_json).collect::<Result<_>>()?;
                        connection.prepare_cached(sql)?.execute(params_from_iter(values))?;
                        rows += 1;
                    }
                    value if value.get("end").is_some() => {
                        let end: End = serde_json::from_value(value).map_err(broken)?;
                        if end.end.rows != rows {
                            return Err(broken(format!("the file says {} rows and holds {rows}", end.end.rows)));
                        }
                        break;
                    }
                    value => {
                        let start: TableStart =
                            serde_json::from_value(value).map_err(|error| broken(format!("a line of no known kind: {error}")))?;
                        // Names go into a statement: only the target's own tables and columns are accepted.
                        let Some((_, columns)) = known.iter().find(|(name, _)| *name == start.table) else {
                            return Err(broken(format!("this database has no table {:?}", start.table)));
                        };
                        if let Some(unknown) = start.columns.iter().find(|column| !columns.contains(column)) {
                            return Err(broken(format!("the table {} has no column {unknown:?}", start.table)));
                        }
                        let names = start.columns.iter().map(|column| quoted(column)).collect::<Vec<_>>().join(", ");
                        let slots = (1..=start.columns.len()).map(|n| format!("?{n}")).collect::<Vec<_>>().join(", ");
                        // PostgreSQL numbers some columns itself (`message_edits.rowid`): the file's values win.
                        let overriding = match connection.dialect() {
                            Dialect::Sqlite => "",
                            Dialect::Postgres => " OVERRIDING SYSTEM VALUE",
                        };
                        let sql = format!("INSERT INTO {} ({names}){overriding} VALUES ({slots})", quoted(&start.table));
                        insert = Some((sql, start.columns.len()));
                        tables += 1;
                    }
                }
            }
            if next()?.is_some_and(|line| !line.trim().is_empty()) {
                return Err(broken("the file goes on after its last line"));
            }
            if connection.dialect() == Dialect::Postgres {
                // Positions and row numbers PostgreSQL gives next start after the ones imported.
                connection.execute(
                    "UPDATE log_positions SET last = GREATEST(last, COALESCE((SELECT MAX(seq) FROM events), 0),
                            COALESCE((SELECT MAX(through_seq) FROM event_log_trim), 0))
                     WHERE log = 'events'",
                    [],
                )?;
                connection.execute(
                    "UPDATE log_positions SET last = GREATEST(last, COALESCE((SELECT MAX(seq) FROM kb_changes), 0))
                     WHERE log = 'kb_changes'",
                    [],
                )?;
                connection.query_row(
                    "SELECT setval(pg_get_serial_sequence('message_edits', 'rowid'), COALESCE(MAX(rowid), 0) + 1, false)
                     FROM message_edits",
                    [],
                    |_| Ok(()),
                )?;
            }
            Ok(TransferReport { tables, rows })
        })
        .await
    }
}
