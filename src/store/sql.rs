//! How domain types are written to and read from SQLite columns, so rows decode straight into typed ids,
//! states and times inside the store, and no `String` id or `== "running"` comparison leaves it.
//!
//! Ids are trusted as stored (only their own type ever wrote them); slugs and state names are parsed, and a
//! value that does not parse is a decoding error naming the column's type rather than a silent default.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::{
    ArticleId, ChannelKind, ChannelName, ClientSlug, ContactId, ConversationId, ConversationStatus, DeliveryState,
    Direction, EscalationId, HookKind, MediaId, MediaState, MessageId, MessageKind, MessageState, OutboxId, PersonId,
    PluginId, PluginState, Priority, Role, SessionId, SlaState, Timestamp,
};

/// Values stored as their text (`as_str`): ids are trusted as stored (only their own type ever wrote them);
/// slugs and state names are parsed.
macro_rules! text_columns {
    (@one $name:ident, $decode:expr) => {
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                $decode(value)
            }
        }
    };
    (ids: $($name:ident),+ $(,)?) => {$(
        text_columns!(@one $name, |value| String::column_result(value).map($name::from_stored));
    )+};
    (parsed: $($name:ident),+ $(,)?) => {$(
        text_columns!(@one $name, parsed::<$name>);
    )+};
}

/// A slug or state name read back, parsed where it lies (reports read hundreds of thousands); a value that is
/// not one is an error naming its type.
fn parsed<T: std::str::FromStr<Err = crate::domain::Invalid>>(value: ValueRef<'_>) -> FromSqlResult<T> {
    value.as_str()?.parse().map_err(|error: crate::domain::Invalid| FromSqlError::Other(error.into()))
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
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.millis()))
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn typed_values_round_trip_through_a_column_and_bad_text_is_an_error() {
        let connection = Connection::open_in_memory().expect("memory database");
        let id = MessageId::generate();
        let (back, state, at): (MessageId, DeliveryState, Timestamp) = connection
            .query_row("SELECT ?1, ?2, ?3", rusqlite::params![id, DeliveryState::Delivered, Timestamp(42)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("round trip");
        assert_eq!((back, state, at), (id, DeliveryState::Delivered, Timestamp(42)));
        let error = connection.query_row("SELECT 'lost'", [], |row| row.get::<_, DeliveryState>(0));
        assert!(error.expect_err("not a state").to_string().contains("DeliveryState"));
    }
}
