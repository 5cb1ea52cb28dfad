//! Paging of every list route, one rule for all: `limit` (default 50; a value outside 1 to 200 is brought
//! into that range) and `cursor`, the `next_cursor` the previous page answered with. A cursor is the key of
//! the last item shown, as base64url-encoded JSON: opaque to callers, checked on the way back in, so a cursor
//! that was not issued here is a 400 `invalid_cursor`.

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::store::PageRequest;

/// Page size when the caller names none.
pub(super) const DEFAULT_LIMIT: usize = 50;
/// Largest page.
pub(super) const MAX_LIMIT: usize = 200;

/// The page a list route was asked for.
pub(super) fn page_request<K: DeserializeOwned>(
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<PageRequest<K>, ApiError> {
    let after = match cursor {
        Some(cursor) => Some(
            decode(cursor)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor: not one this server gave"))?,
        ),
        None => None,
    };
    Ok(PageRequest { after, limit: limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) })
}

/// The cursor of the page after the one whose last key is `next`.
pub(super) fn next_cursor<K: Serialize>(next: Option<&K>) -> Option<String> {
    // Keys are ids, times and labels: serialising them cannot fail.
    let json = serde_json::to_vec(next?).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

fn decode<K: DeserializeOwned>(cursor: &str) -> Option<K> {
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, Timestamp};

    #[test]
    fn cursors_round_trip_and_refuse_what_was_not_issued() {
        let key = (Timestamp(1_700_000_000_123), ConversationId::generate());
        let cursor = next_cursor(Some(&key)).expect("a cursor");
        let request: PageRequest<(Timestamp, ConversationId)> = page_request(Some(&cursor), None).expect("decodes");
        assert_eq!(request, PageRequest { after: Some(key), limit: DEFAULT_LIMIT });
        for garbage in ["!!!", "eA", &next_cursor(Some(&("x", 1))).expect("cursor")] {
            let error = page_request::<(Timestamp, ConversationId)>(Some(garbage), None).expect_err(garbage);
            assert!(matches!(error, ApiError::BadRequest { code: "invalid_cursor", .. }), "{garbage}");
        }
    }

    #[test]
    fn limits_are_brought_into_range() {
        let limit = |asked| page_request::<i64>(None, asked).expect("no cursor").limit;
        assert_eq!((limit(None), limit(Some(0)), limit(Some(7)), limit(Some(10_000))), (50, 1, 7, MAX_LIMIT));
    }
}
