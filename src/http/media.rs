//! `/api/v1/media`: the files customers sent, served only to those who may see their conversation.
//!
//! A file is sent with the type sniffed from its bytes, `X-Content-Type-Options: nosniff`, a sandboxing
//! Content-Security-Policy and a `Content-Disposition` that shows images, audio and video in place and
//! makes everything else a download: a customer's upload never runs as a page on our origin.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_util::io::ReaderStream;

use super::AppState;
use super::error::ApiError;
use super::extract::{IdPath, Principal};
use crate::domain::{MediaId, MediaState};
use crate::store::MediaView;

/// A media file as the API lists it on its message: the stored view and, once stored, where it is served.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MediaBody {
    #[serde(flatten)]
    media: MediaView,
    url: Option<String>,
}

impl From<MediaView> for MediaBody {
    fn from(media: MediaView) -> Self {
        let url = (media.state == MediaState::Stored).then(|| format!("/api/v1/media/{}", media.id));
        Self { media, url }
    }
}

/// `GET /api/v1/media/{id}`: the file's bytes. 404 for another client's file; 409 while it is not stored.
#[utoipa::path(get, path = "/api/v1/media/{id}", tag = "media", params(("id" = String, Path, description = "the object's id")), responses((status = 200, description = "the file, with its sniffed type"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn media_show(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<MediaId>,
) -> Result<Response, ApiError> {
    let media = state.db.media(principal.scope(), id).await?;
    let (Some(sha256), MediaState::Stored) = (media.sha256.as_deref(), media.state) else {
        let message = match &media.last_error {
            Some(error) => format!("the file is {}: {error}", media.state),
            None => format!("the file is {}", media.state),
        };
        return Err(ApiError::State { code: "media_not_stored", message });
    };
    let file = state.blobs.open_file(sha256).await.map_err(|error| ApiError::Internal(error.into()))?;
    let content_type = media.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    let disposition = if crate::media::shown_inline(&content_type) { "inline" } else { "attachment" };
    let filename = media.filename.clone().unwrap_or_else(|| media.id.to_string());
    let disposition = format!("{disposition}; filename*=UTF-8''{}", percent_encode(&filename));
    let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, header(&content_type));
    headers.insert(CONTENT_DISPOSITION, header(&disposition));
    if let Some(size) = media.size {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(response)
}

/// `POST /api/v1/media/{id}/retry`: queues a failed download again.
#[utoipa::path(post, path = "/api/v1/media/{id}/retry", tag = "media", params(("id" = String, Path, description = "the object's id")), responses((status = 200, description = "queued again", body = MediaBody), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn media_retry(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<MediaId>,
) -> Result<(StatusCode, Json<MediaBody>), ApiError> {
    let media = state.db.retry_media(principal.scope(), id).await?;
    state.media.wake();
    Ok((StatusCode::ACCEPTED, Json(MediaBody::from(media))))
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// RFC 5987 encoding of a filename: everything but unreserved characters as `%XX` of its UTF-8 bytes.
fn percent_encode(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_encoded_so_no_header_can_be_injected() {
        assert_eq!(percent_encode("radiografía 1.pdf"), "radiograf%C3%ADa%201.pdf");
        assert_eq!(percent_encode("a\r\nSet-Cookie: x"), "a%0D%0ASet-Cookie%3A%20x");
    }
}
