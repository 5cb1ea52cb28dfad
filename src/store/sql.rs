//! The one SQL interface of the store's queries, over both backends (SQLite and PostgreSQL).
//!
//! Every query of the store is written once, against [`Connection`]: statements with numbered parameters
//! (`?1`, `?2`: SQLite's own syntax, rewritten to PostgreSQL's `$1`, `$2` before a statement is prepared,
//! outside string literals), values bound through [`ToSql`] and read back through [`FromSql`]. The two traits
//! go through one small set of [`Value`]s (null, integer, real, text, bytes), so a domain type says once how it
//! is stored and both backends agree: ids, slugs and state names are text, times are milliseconds in an
//! integer. The method names are rusqlite's, which the store was first written against.
//!
//! The PostgreSQL schema stores integers as `BIGINT`, text as `TEXT` and bytes as `BYTEA`, so a value binds
//! without casts; a parameter whose type PostgreSQL cannot infer from the statement needs a `CAST` in the
//! statement, which SQLite reads the same way. Where the dialects differ (schema, locking), the caller asks
//! [`Connection::dialect`].
//!
//! Ids are trusted as stored (only their own type ever wrote them); slugs and state names are parsed, and a
//! value that does not parse is a decoding error naming the column's type rather than a silent default.

use std::borrow::Cow;

use super::{Error, Result};
use crate::domain::{
    ArticleId, ChannelKind, ChannelName, ClientSlug, ContactId, ConversationId, ConversationStatus, DeliveryState,
    Direction, EscalationId, HookKind, MediaId, MediaState, MessageId, MessageKind, MessageState, OutboxId, PersonId,
    PluginId, PluginState, Priority, Role, SessionId, SlaState, Timestamp,
};

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The embedded default.
    Sqlite,
    /// The scale-out store.
    Postgres,
}

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Text(_) => "text",
            Self::Blob(_) => "bytes",
        }
    }
}

/// An owned value, for statements whose parameters are gathered at run time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OwnedValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A Rust value that can be bound to a statement's parameter.
pub(crate) trait ToSql {
    /// The value to bind.
    fn to_sql(&self) -> Result<Value<'_>>;
}

/// A Rust value that can be read from a column.
pub(crate) trait FromSql: Sized {
    /// Decodes a column's value; the error says what was found.
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Result<Value<'_>> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Result<Value<'_>> {
        self.as_ref().map_or(Ok(Value::Null), ToSql::to_sql)
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            value => T::from_sql(value).map(Some),
        }
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(*self)
    }
}

impl ToSql for OwnedValue {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(match self {
            Self::Null => Value::Null,
            Self::Integer(n) => Value::Integer(*n),
            Self::Real(x) => Value::Real(*x),
            Self::Text(text) => Value::Text(text),
            Self::Blob(bytes) => Value::Blob(bytes),
        })
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl ToSql for Cow<'_, str> {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Integer(i64::from(*self)))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Real(*self))
    }
}

impl FromSql for String {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.to_owned()),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.to_vec()),
            Value::Text(text) => Ok(text.as_bytes().to_vec()),
            other => Err(format!("expected bytes, found {}", other.kind())),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Real(x) => Ok(x),
            // Integers up to 2^53 are exact in a double; the figures read this way are far below that.
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(n) => Ok(n as f64),
            other => Err(format!("expected a number, found {}", other.kind())),
        }
    }
}

impl FromSql for bool {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        i64::from_sql(value).map(|n| n != 0)
    }
}

impl FromSql for OwnedValue {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        match value {
            Value::Null => Ok(Self::Null),
            Value::Integer(n) => Ok(Self::Integer(n)),
            Value::Real(x) => Ok(Self::Real(x)),
            Value::Text(text) => Ok(Self::Text(text.to_owned())),
            Value::Blob(bytes) => Ok(Self::Blob(bytes.to_owned())),
        }
    }
}

/// Integers: stored as 64-bit; a value that does not fit the Rust type is an error, not a wrap.
macro_rules! integer_columns {
    ($($ty:ty),+) => {$(
        impl ToSql for $ty {
            fn to_sql(&self) -> Result<Value<'_>> {
                i64::try_from(*self)
                    .map(Value::Integer)
                    .map_err(|_| Error::Value(format!("{self} does not fit a 64-bit integer column")))
            }
        }

        impl FromSql for $ty {
            fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
                match value {
                    Value::Integer(n) => <$ty>::try_from(n).map_err(|_| format!("{n} does not fit {}", stringify!($ty))),
                    other => Err(format!("expected an integer, found {}", other.kind())),
                }
            }
        }
    )+};
}

integer_columns!(i64, i32, i16, u8, u16, u32, u64, usize);

/// Values stored as their text (`as_str`): ids are trusted as stored (only their own type ever wrote them);
/// slugs and state names are parsed.
macro_rules! text_columns {
    (@one $name:ident, $decode:expr) => {
        impl ToSql for $name {
            fn to_sql(&self) -> Result<Value<'_>> {
                Ok(Value::Text(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
                match value {
                    Value::Text(text) => $decode(text),
                    other => Err(format!("expected text, found {}", other.kind())),
                }
            }
        }
    };
    (ids: $($name:ident),+ $(,)?) => {$(
        text_columns!(@one $name, |text: &str| Ok($name::from_stored(text.to_owned())));
    )+};
    (parsed: $($name:ident),+ $(,)?) => {$(
        text_columns!(@one $name, |text: &str| text
            .parse::<$name>()
            .map_err(|error| format!("not a {}: {error}", stringify!($name))));
    )+};
}

text_columns!(ids: ConversationId, MessageId, ContactId, OutboxId, PluginId, EscalationId, MediaId, PersonId, SessionId);
text_columns!(
    parsed:
    ChannelKind,
    ChannelName,
    ClientSlug,
    ArticleId,
    ConversationStatus,
    DeliveryState,
    Direction,
    HookKind,
    MessageKind,
    MediaState,
    MessageState,
    PluginState,
    Priority,
    Role,
    SlaState
);

impl ToSql for Timestamp {
    fn to_sql(&self) -> Result<Value<'_>> {
        Ok(Value::Integer(self.millis()))
    }
}

impl FromSql for Timestamp {
    fn from_sql(value: Value<'_>) -> std::result::Result<Self, String> {
        i64::from_sql(value).map(Timestamp)
    }
}

/// The parameters of one statement.
pub(crate) trait Params {
    /// The values, in order.
    fn values(&self) -> Result<Vec<Value<'_>>>;
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Result<Vec<Value<'_>>> {
        self.iter().map(|value| value.to_sql()).collect()
    }
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Result<Vec<Value<'_>>> {
        Ok(Vec::new())
    }
}

/// Arrays of one type (`[id]`), from one element on: the empty array is the `&dyn ToSql` one above.
macro_rules! array_params {
    ($($n:literal)+) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Result<Vec<Value<'_>>> {
                self.iter().map(ToSql::to_sql).collect()
            }
        }
    )+};
}

array_params!(1 2 3 4 5 6 7 8);

/// Parameters gathered at run time.
pub(crate) struct ParamsFromIter(Vec<OwnedValue>);

/// Binds the values in order.
pub(crate) fn params_from_iter(values: impl IntoIterator<Item = OwnedValue>) -> ParamsFromIter {
    ParamsFromIter(values.into_iter().collect())
}

impl Params for ParamsFromIter {
    fn values(&self) -> Result<Vec<Value<'_>>> {
        self.0.iter().map(ToSql::to_sql).collect()
    }
}

/// Parameters of mixed types: `params![client, id, at]`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::sql::ToSql]
    };
    ($($value:expr),+ $(,)?) => {
        &[$(&$value as &dyn $crate::store::sql::ToSql),+] as &[&dyn $crate::store::sql::ToSql]
    };
}

pub(crate) use params;

/// `.optional()` on a query for one row: no row is `None` rather than an error.
pub(crate) trait OptionalExtension<T> {
    /// `Ok(None)` when the query found no row.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(Error::NoRow) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A column position. (A trait, as in rusqlite, so that `row.get::<_, T>(0)` reads as it always has.)
pub(crate) trait ColumnIndex {
    /// The zero-based position.
    fn position(self) -> usize;
}

impl ColumnIndex for usize {
    fn position(self) -> usize {
        self
    }
}

/// A row a write locks before it reads what it will change, so that two transactions changing the same thing
/// take turns: on PostgreSQL, where transactions of every node run side by side, `SELECT ... FOR UPDATE`; on
/// SQLite, whose one writer runs them one at a time already, nothing.
pub(crate) enum Lock<'a> {
    /// A client's row (its profile is read, changed and written back).
    Client(&'a ClientSlug),
    /// A conversation's row (its routing, tags or first reply are read and then written).
    Conversation(&'a ConversationId),
    /// The contact of a conversation: what ingest holds while it finds or opens the contact's conversation,
    /// so reopening one cannot race a message opening another. Take it before the conversation's own lock,
    /// in ingest's order.
    ContactOf(&'a ConversationId),
    /// An article (checked against the version the editor saw, or added to, then written).
    Article(&'a ClientSlug, &'a ArticleId),
    /// A message (its reactions or text are read and then written).
    Message(&'a ClientSlug, &'a MessageId),
}

/// A connection inside a transaction (the writer's savepoint, a read snapshot, or a PostgreSQL transaction).
pub(crate) struct Connection<'c> {
    backend: Backend<'c>,
}

enum Backend<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(postgres::Transaction<'c>),
}

impl<'c> Connection<'c> {
    /// Queries through a SQLite connection.
    pub(crate) fn sqlite(connection: &'c rusqlite::Connection) -> Self {
        Self { backend: Backend::Sqlite(connection) }
    }

    /// Queries through an open PostgreSQL transaction, from a thread that may block on `runtime`.
    pub(crate) fn postgres(
        transaction: &'c deadpool_postgres::Transaction<'c>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self { backend: Backend::Postgres(postgres::Transaction { transaction, runtime }) }
    }

    /// The database behind it.
    pub(crate) fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Locks `row` until the transaction ends (PostgreSQL; nothing on SQLite, see [`Lock`]). A row that does
    /// not exist is not an error: there is nothing to take turns on.
    pub(crate) fn lock(&self, row: Lock<'_>) -> Result<()> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(());
        }
        match row {
            Lock::Client(slug) => self.execute("SELECT 1 FROM clients WHERE id = ?1 FOR UPDATE", [slug])?,
            Lock::Conversation(id) => self.execute("SELECT 1 FROM conversations WHERE id = ?1 FOR UPDATE", [id])?,
            Lock::ContactOf(id) => self.execute(
                "SELECT 1 FROM contacts k JOIN conversations c ON c.client_id = k.client_id AND c.contact_id = k.id
                 WHERE c.id = ?1 FOR UPDATE OF k",
                [id],
            )?,
            Lock::Article(client, id) => self.execute(
                "SELECT 1 FROM articles WHERE client_id = ?1 AND id = ?2 FOR UPDATE",
                [client.as_str(), id.as_str()],
            )?,
            Lock::Message(client, id) => self.execute(
                "SELECT 1 FROM messages WHERE client_id = ?1 AND id = ?2 FOR UPDATE",
                [client.as_str(), id.as_str()],
            )?,
        };
        Ok(())
    }

    /// A statement, prepared once per connection and kept.
    pub(crate) fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            inner: match &self.backend {
                Backend::Sqlite(connection) => StatementInner::Sqlite(connection.prepare_cached(sql)?),
                Backend::Postgres(transaction) => {
                    StatementInner::Postgres { transaction, sql: postgres::numbered_parameters(sql) }
                }
            },
        })
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs a query for exactly one row ([`Error::NoRow`] when there is none).
    pub(crate) fn query_row<P: Params, T, F>(&self, sql: &str, params: P, map: F) -> Result<T>
    where
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, map)
    }
}

/// A prepared statement.
pub(crate) struct Statement<'c> {
    inner: StatementInner<'c>,
}

enum StatementInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres { transaction: &'c postgres::Transaction<'c>, sql: String },
}

/// Binds our values to a SQLite statement.
impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(n),
            Value::Real(x) => ValueRef::Real(x),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl Statement<'_> {
    /// Runs it; returns the number of rows it changed.
    pub(crate) fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values()?;
        match &mut self.inner {
            StatementInner::Sqlite(statement) => Ok(statement.execute(rusqlite::params_from_iter(values))?),
            StatementInner::Postgres { transaction, sql } => transaction.execute(sql, &values),
        }
    }

    /// Runs it for exactly one row ([`Error::NoRow`] when there is none; rows after the first are ignored).
    pub(crate) fn query_row<P: Params, T, F>(&mut self, params: P, map: F) -> Result<T>
    where
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => map(&row),
            None => Err(Error::NoRow),
        }
    }

    /// Runs it and maps each row.
    pub(crate) fn query_map<P: Params, T, F>(&mut self, params: P, map: F) -> Result<MappedRows<'_, F>>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows { rows: self.query(params)?, map })
    }

    /// Runs it; rows are read one at a time with [`Rows::next`].
    pub(crate) fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let values = params.values()?;
        Ok(Rows {
            inner: match &mut self.inner {
                StatementInner::Sqlite(statement) => {
                    RowsInner::Sqlite(statement.query(rusqlite::params_from_iter(values))?)
                }
                StatementInner::Postgres { transaction, sql } => {
                    RowsInner::Postgres(transaction.query(sql, &values)?.into_iter())
                }
            },
        })
    }
}

/// The rows of a query, read one at a time.
pub(crate) struct Rows<'s> {
    inner: RowsInner<'s>,
}

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Postgres(std::vec::IntoIter<tokio_postgres::Row>),
}

impl Rows<'_> {
    /// The next row, if any.
    #[allow(clippy::should_implement_trait)] // A lending iterator: each row borrows the statement.
    pub(crate) fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsInner::Sqlite(rows) => Ok(rows.next()?.map(|row| Row { inner: RowInner::Sqlite(row) })),
            RowsInner::Postgres(rows) => Ok(rows.next().map(|row| Row { inner: RowInner::Postgres(row) })),
        }
    }
}

/// The rows of a query, each mapped.
pub(crate) struct MappedRows<'s, F> {
    rows: Rows<'s>,
    map: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.map)(&row)),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        }
    }
}

/// One row of a result.
pub(crate) struct Row<'r> {
    inner: RowInner<'r>,
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `index`, decoded.
    pub(crate) fn get<I: ColumnIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let column = index.position();
        let value = self.get_ref(column)?;
        T::from_sql(value).map_err(|message| Error::Decode { column, message })
    }

    /// Column `index` as it is stored, borrowed from the row.
    pub(crate) fn get_ref<I: ColumnIndex>(&self, index: I) -> Result<Value<'_>> {
        let column = index.position();
        match &self.inner {
            RowInner::Sqlite(row) => {
                use rusqlite::types::ValueRef;
                Ok(match row.get_ref(column)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Integer(n),
                    ValueRef::Real(x) => Value::Real(x),
                    ValueRef::Text(bytes) => {
                        Value::Text(std::str::from_utf8(bytes).map_err(|error| Error::Decode {
                            column,
                            message: format!("text is not UTF-8: {error}"),
                        })?)
                    }
                    ValueRef::Blob(bytes) => Value::Blob(bytes),
                })
            }
            RowInner::Postgres(row) => row
                .try_get::<_, Value<'_>>(column)
                .map_err(|error| Error::Decode { column, message: error.to_string() }),
        }
    }
}

mod postgres {
    //! The PostgreSQL side: parameters rewritten, values converted, each statement awaited on the runtime from
    //! the blocking thread the store's job runs on.

    use std::error::Error as StdError;

    use bytes::BytesMut;
    use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

    use super::Value;
    use crate::store::Result;
    // A lost connection is `Error::Unavailable` (503, `/readyz` red), whichever statement met it.
    use crate::store::postgres::classify;

    /// An open transaction and the runtime its connection's I/O runs on.
    pub(super) struct Transaction<'c> {
        pub(super) transaction: &'c deadpool_postgres::Transaction<'c>,
        pub(super) runtime: tokio::runtime::Handle,
    }

    impl Transaction<'_> {
        pub(super) fn execute(&self, sql: &str, values: &[Value<'_>]) -> Result<usize> {
            let bound: Vec<Bound<'_>> = values.iter().copied().map(Bound).collect();
            let parameters: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
            let changed = self
                .runtime
                .block_on(async {
                    let statement = self.transaction.prepare_cached(sql).await?;
                    self.transaction.execute(&statement, &parameters).await
                })
                .map_err(classify)?;
            Ok(usize::try_from(changed).unwrap_or(usize::MAX))
        }

        pub(super) fn query(&self, sql: &str, values: &[Value<'_>]) -> Result<Vec<tokio_postgres::Row>> {
            let bound: Vec<Bound<'_>> = values.iter().copied().map(Bound).collect();
            let parameters: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
            self.runtime
                .block_on(async {
                    let statement = self.transaction.prepare_cached(sql).await?;
                    self.transaction.query(&statement, &parameters).await
                })
                .map_err(classify)
        }
    }

    /// Rewrites SQLite's numbered parameters (`?1`) to PostgreSQL's (`$1`), leaving string literals, quoted
    /// names and comments alone. A bare `?` takes the number after the highest so far, as in SQLite.
    pub(super) fn numbered_parameters(sql: &str) -> String {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut chars = sql.chars().peekable();
        let mut highest = 0_u32;
        while let Some(c) = chars.next() {
            match c {
                '\'' | '"' => {
                    out.push(c);
                    for inner in chars.by_ref() {
                        out.push(inner);
                        // A doubled quote inside is an escaped one: the next pass reopens the literal.
                        if inner == c {
                            break;
                        }
                    }
                }
                '-' if chars.peek() == Some(&'-') => {
                    out.push(c);
                    for inner in chars.by_ref() {
                        out.push(inner);
                        if inner == '\n' {
                            break;
                        }
                    }
                }
                '?' => {
                    let mut digits = String::new();
                    while let Some(digit) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        digits.push(*digit);
                        chars.next();
                    }
                    let number = digits.parse::<u32>().unwrap_or(highest + 1);
                    highest = highest.max(number);
                    out.push('$');
                    out.push_str(&number.to_string());
                }
                other => out.push(other),
            }
        }
        out
    }

    /// A value as PostgreSQL receives it: converted to the parameter's type, which the server inferred.
    #[derive(Debug)]
    struct Bound<'a>(Value<'a>);

    impl ToSql for Bound<'_> {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut BytesMut,
        ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
            match (self.0, ty) {
                (Value::Null, _) => Ok(IsNull::Yes),
                (Value::Integer(n), &Type::INT8) => n.to_sql(ty, out),
                (Value::Integer(n), &Type::INT4) => i32::try_from(n)?.to_sql(ty, out),
                (Value::Integer(n), &Type::INT2) => i16::try_from(n)?.to_sql(ty, out),
                (Value::Integer(n), &Type::BOOL) => (n != 0).to_sql(ty, out),
                // Integers up to 2^53 are exact in a double.
                #[allow(clippy::cast_precision_loss)]
                (Value::Integer(n), &Type::FLOAT8) => (n as f64).to_sql(ty, out),
                (Value::Real(x), &Type::FLOAT8) => x.to_sql(ty, out),
                (Value::Text(text), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::UNKNOWN) => {
                    text.to_sql(&Type::TEXT, out)
                }
                (Value::Blob(bytes), &Type::BYTEA) => bytes.to_sql(ty, out),
                (value, ty) => Err(format!("a {} value cannot be bound to a {ty} parameter", value.kind()).into()),
            }
        }

        fn accepts(_: &Type) -> bool {
            // Checked per value in `to_sql`, which names the mismatch.
            true
        }

        to_sql_checked!();
    }

    impl<'a> FromSql<'a> for Value<'a> {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
            Ok(match *ty {
                Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
                Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
                Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
                Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
                Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
                Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
                Type::BYTEA => Value::Blob(<&[u8]>::from_sql(ty, raw)?),
                _ => Value::Text(<&str>::from_sql(&Type::TEXT, raw)?),
            })
        }

        fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
            Ok(Value::Null)
        }

        fn accepts(ty: &Type) -> bool {
            matches!(
                *ty,
                Type::INT8
                    | Type::INT4
                    | Type::INT2
                    | Type::BOOL
                    | Type::FLOAT8
                    | Type::FLOAT4
                    | Type::BYTEA
                    | Type::TEXT
                    | Type::VARCHAR
                    | Type::BPCHAR
                    | Type::NAME
            )
        }
    }

    #[cfg(test)]
    mod tests {
        use super::numbered_parameters;

        #[test]
        fn parameters_are_renumbered_outside_literals_names_and_comments() {
            assert_eq!(
                numbered_parameters("SELECT '?1', \"a?2\", x FROM t WHERE a = ?1 AND b = ?12 -- ?3\n AND c = ?"),
                "SELECT '?1', \"a?2\", x FROM t WHERE a = $1 AND b = $12 -- ?3\n AND c = $13"
            );
            assert_eq!(numbered_parameters("SELECT 'it''s ?1' || ?2"), "SELECT 'it''s ?1' || $2");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_round_trip_through_a_column_and_bad_text_is_an_error() {
        let sqlite = rusqlite::Connection::open_in_memory().expect("memory database");
        let connection = Connection::sqlite(&sqlite);
        let id = MessageId::generate();
        let (back, state, at): (MessageId, DeliveryState, Timestamp) = connection
            .query_row("SELECT ?1, ?2, ?3", params![id, DeliveryState::Delivered, Timestamp(42)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("round trip");
        assert_eq!((back, state, at), (id, DeliveryState::Delivered, Timestamp(42)));
        let error = connection.query_row("SELECT 'lost'", params![], |row| row.get::<_, DeliveryState>(0));
        assert!(error.expect_err("not a state").to_string().contains("DeliveryState"));
        let missing = connection.query_row("SELECT 1 WHERE 0", params![], |row| row.get::<_, i64>(0)).optional();
        assert_eq!(missing.expect("no row is not an error"), None);
    }

    #[test]
    fn integers_that_do_not_fit_are_errors_not_wraps() {
        let sqlite = rusqlite::Connection::open_in_memory().expect("memory database");
        let connection = Connection::sqlite(&sqlite);
        let error = connection.query_row("SELECT ?1", [u64::MAX], |row| row.get::<_, i64>(0));
        assert!(matches!(error, Err(Error::Value(_))), "{error:?}");
        let error = connection.query_row("SELECT -1", params![], |row| row.get::<_, u32>(0));
        assert!(matches!(error, Err(Error::Decode { column: 0, .. })), "{error:?}");
    }
}
