//! `ApiError`: every failure of every route, as one JSON shape `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::Invalid;
use crate::store;

/// An error answered to an API caller.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: the request is malformed (bad JSON syntax, bad query string, bad cursor).
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 401: no valid token, or a webhook whose signature or secret does not match.
    #[error("{message}")]
    Unauthorized {
        /// Stable machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 403: the token's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 403: a write authenticated by the session cookie came from another site (or did not say where from).
    #[error("{0}")]
    CrossSite(String),
    /// 404: no such object, or not visible to this token.
    #[error("{0} not found")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 409 with its own code: the object is not in a state that allows this (a file not downloaded yet, a
    /// WhatsApp conversation whose reply window has closed).
    #[error("{message}")]
    State {
        /// Stable machine-readable code.
        code: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// 409 for an edit of a version that is no longer current; carries the current object.
    #[error("the version you edited is no longer current")]
    StaleVersion(Box<crate::store::Article>),
    /// 428: an edit must name the version it changes.
    #[error("{0}")]
    PreconditionRequired(String),
    /// 408: the body did not arrive in time (slower than the minimum rate). The connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    /// 429: this address (or principal) is sending too much; retry later.
    #[error("{message}")]
    TooManyRequests {
        /// What is wrong.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u32,
    },
    /// 413: the body is larger than this route accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid (a field breaks a rule; an unknown field).
    #[error("{0}")]
    Invalid(String),
    /// 422 with its own code: an upload that was understood but refused (not a component, fails to compile).
    #[error("{message}")]
    Rejected {
        /// Stable machine-readable code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// 503: overloaded or storage unavailable; retry later.
    #[error("{message}")]
    Unavailable {
        /// Stable machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u32,
    },
    /// 504: the request took longer than the server allows.
    #[error("the request timed out")]
    Timeout,
    /// 500: a bug or an unexpected failure; the details are logged, never returned.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// The logged cause of a 500, carried to the logging middleware in the response extensions.
#[derive(Clone)]
pub(super) struct InternalCause(pub(super) Arc<anyhow::Error>);

impl ApiError {
    /// A 401 with the `unauthorized` code.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized { code: "unauthorized", message: message.into() }
    }

    /// A 400 with `code`.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::CrossSite(_) => (StatusCode::FORBIDDEN, "cross_site"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::State { code, .. } => (StatusCode::CONFLICT, code),
            Self::StaleVersion(_) => (StatusCode::CONFLICT, "version_conflict"),
            Self::PreconditionRequired(_) => (StatusCode::PRECONDITION_REQUIRED, "version_required"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            Self::Rejected { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The one shape of every error answer: `{"error": {"code", "message"}}`, and for a stale edit the current
/// object beside it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
    /// The current article, when an edit named a version that is no longer current.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    current: Option<&'a crate::store::Article>,
}

/// What went wrong: a stable code to branch on, and words for people.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// Builds the JSON error response for `status`, `code` and `message`.
pub(super) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody { error: ErrorDetail { code, message }, current: None })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match self {
            Self::Internal(error) => {
                let mut response = error_response(status, code, "internal error");
                response.extensions_mut().insert(InternalCause(Arc::new(error)));
                response
            }
            Self::TooManyRequests { retry_after, ref message } => {
                let mut response = error_response(status, code, message);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::RequestTimeout(ref message) => {
                let mut response = error_response(status, code, message);
                // The rest of the body may still be on its way; the connection cannot be reused.
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            Self::Unavailable { retry_after, ref message, .. } => {
                let mut response = error_response(status, code, message);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::StaleVersion(ref current) => {
                let message = self.to_string();
                let body = ErrorBody { error: ErrorDetail { code, message: &message }, current: Some(current) };
                (status, Json(body)).into_response()
            }
            other => error_response(status, code, &other.to_string()),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(error: Invalid) -> Self {
        Self::Invalid(error.to_string())
    }
}

impl From<crate::pipeline::ReplayError> for ApiError {
    fn from(error: crate::pipeline::ReplayError) -> Self {
        use crate::pipeline::ReplayError;
        match error {
            // An outage is a 503 (retry later), a missing plugin a 404: the store's own mapping.
            ReplayError::Store(error) => Self::from(error),
            // The version was admitted once; if it no longer loads, its caller needs to know why.
            ReplayError::Load(error) => Self::State {
                code: "plugin_not_loadable",
                message: format!("the plugin version cannot be loaded: {error}"),
            },
            ReplayError::Task(error) => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

impl From<crate::people::PasswordError> for ApiError {
    fn from(error: crate::people::PasswordError) -> Self {
        match error {
            crate::people::PasswordError::Busy => Self::Unavailable {
                code: "overloaded",
                message: "too many sign-ins are in progress; retry shortly".into(),
                retry_after: 1,
            },
            crate::people::PasswordError::Invalid(invalid) => Self::Invalid(invalid.to_string()),
            crate::people::PasswordError::Failed(error) => Self::Internal(error),
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NotFound(what) => Self::NotFound(what.to_owned()),
            store::Error::Conflict(message) => Self::Conflict(message),
            store::Error::WindowClosed { closed_at } => Self::State {
                code: "reply_window_closed",
                message: match closed_at {
                    Some(at) => format!(
                        "WhatsApp delivers free-form replies only within 24 hours of the customer's last message; \
                         this conversation's window closed at {}. Send an approved template instead \
                         (POST /api/v1/conversations/{{id}}/templates).",
                        at.to_rfc3339()
                    ),
                    None => "the customer has not written on WhatsApp yet, so no free-form reply can be delivered; \
                             send an approved template instead (POST /api/v1/conversations/{id}/templates)"
                        .to_owned(),
                },
            },
            store::Error::Invalid(invalid) => Self::Invalid(invalid.to_string()),
            store::Error::Unavailable(_) | store::Error::Closed => {
                tracing::warn!(%error, "storage unavailable");
                Self::Unavailable {
                    code: "storage_unavailable",
                    message: "storage is unavailable; retry later".into(),
                    retry_after: 1,
                }
            }
            store::Error::IncompatibleSchema { .. }
            | store::Error::Sqlite(_)
            | store::Error::SecretsKeyMismatch { .. }
            | store::Error::LeaseLost
            | store::Error::Transfer(_)
            | store::Error::Postgres(_)
            | store::Error::NoRow
            | store::Error::Decode { .. }
            | store::Error::Value(_)
            | store::Error::Json(_)
            | store::Error::Join(_) => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

impl From<crate::kb::Error> for ApiError {
    fn from(error: crate::kb::Error) -> Self {
        match error {
            crate::kb::Error::Store(error) => error.into(),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(error) => Self::bad_request("invalid_json", error.body_text()),
            JsonRejection::JsonDataError(error) => Self::Invalid(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                Self::UnsupportedMediaType("expected a body with Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(error) => from_bytes_rejection(error),
            other => Self::bad_request("invalid_request", other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        from_bytes_rejection(rejection)
    }
}

fn from_bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the request body is larger than this route accepts".into())
    } else {
        ApiError::bad_request("invalid_body", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}
