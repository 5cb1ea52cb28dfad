//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every route, generated from the handlers'
//! `#[utoipa::path]` attributes as the router registers them (see `http::router`), with the schemas of their
//! bodies and answers derived from the Rust types (`utoipa::ToSchema`), rendered once at start.

use std::sync::Arc;

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// The document every route adds itself to: what recado is, and how callers authenticate.
pub(super) fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("recado")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "A self-hosted server for virtual assistants who answer customers' messages for many small \
             businesses. Every error is `{\"error\": {\"code\", \"message\"}}`; lists page with `limit` and \
             `cursor` (the previous page's `next_cursor`).",
        ))
        .build();
    let mut document = OpenApiBuilder::new().info(info).build();
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("rcd_<id>_<secret>").build(),
        ),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            super::extract::SESSION_COOKIE,
            "set by POST /api/v1/session; changes made with it must come from recado's own pages",
        ))),
    );
    document
}

/// The rendered document.
#[derive(Clone)]
pub(super) struct Document(Arc<String>);

impl Document {
    /// Renders `document` once.
    pub(super) fn new(document: &OpenApi) -> Self {
        // Serialising a document of strings and maps cannot fail.
        Self(Arc::new(document.to_pretty_json().unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))))
    }
}

impl IntoResponse for Document {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, "application/json")], self.0.as_str().to_owned()).into_response()
    }
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document of every route", content_type = "application/json")))]
pub(super) async fn openapi_json(Extension(document): Extension<Document>) -> Document {
    document
}
