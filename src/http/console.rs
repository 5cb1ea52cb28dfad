//! The web console: the files under `console/` (native ES modules, one stylesheet, vendored libraries),
//! embedded in the binary at compile time and served from it, so `cargo build` alone produces the console and
//! nothing else runs beside the server.
//!
//! `GET /` is the page; everything it loads is under `/assets/<version>/`, where the version is a hash of
//! every embedded file: a release that changes any file changes every address, so the files are cached for a
//! year (`immutable`) and the page itself not at all. The console calls only the public JSON API.
//!
//! Every answer here carries a strict Content-Security-Policy (only this origin's scripts, styles, images and
//! connections; no inline script or style, no `eval`; no framing), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;
use sha2::{Digest, Sha256};
use tower_http::set_header::SetResponseHeaderLayer;

use super::error::ApiError;

/// The console's files, embedded (in debug builds too, so tests serve what a release serves).
#[derive(Embed)]
#[folder = "console/"]
struct Files;

/// What every console answer is allowed to do in the browser.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page and the version its files are served under, worked out once at start.
#[derive(Clone)]
struct Console {
    version: Arc<str>,
    page: Arc<str>,
}

impl Console {
    fn new() -> Self {
        let mut names: Vec<_> = Files::iter().collect();
        names.sort();
        let mut hash = Sha256::new();
        for name in &names {
            if let Some(file) = Files::get(name) {
                hash.update(name.as_bytes());
                hash.update(file.metadata.sha256_hash());
            }
        }
        let version = hex::encode(&hash.finalize()[..8]);
        let page = Files::get("index.html")
            .map(|file| String::from_utf8_lossy(&file.data).replace("{{version}}", &version))
            .unwrap_or_default();
        Self { version: version.into(), page: page.into() }
    }
}

/// The console's routes (pages and their files; not part of the API or its OpenAPI document).
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    Router::new()
        .route("/", get(page))
        .route("/assets/{version}/{*path}", get(asset))
        .with_state(Console::new())
        .layer(header(HeaderName::from_static("content-security-policy"), CONTENT_SECURITY_POLICY))
        .layer(header(HeaderName::from_static("x-content-type-options"), "nosniff"))
        .layer(header(HeaderName::from_static("referrer-policy"), "no-referrer"))
        .layer(header(HeaderName::from_static("x-frame-options"), "DENY"))
}

/// `GET /`: the console's page, never cached (it names the current version of the files).
async fn page(State(console): State<Console>) -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-cache")], console.page.to_string())
        .into_response()
}

/// `GET /assets/{version}/{path}`: an embedded file of the current version, cached for a year.
async fn asset(
    State(console): State<Console>,
    Path((version, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let file = Files::get(&path)
        .filter(|_| version == *console.version && path != "index.html")
        .ok_or_else(|| ApiError::NotFound("file".into()))?;
    let kind = match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    Ok(([(CONTENT_TYPE, kind), (CACHE_CONTROL, "public, max-age=31536000, immutable")], file.data.into_owned())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_files_by_version_and_holds_no_inline_script_or_style() {
        let console = Console::new();
        assert_eq!(console.version.len(), 16);
        assert!(console.page.contains(&format!("/assets/{}/app.js", console.version)));
        assert!(!console.page.contains("{{version}}"));
        // Only external scripts: every <script> has a src; no style attribute or element.
        assert_eq!(
            console.page.matches("<script").count(),
            console.page.matches("<script type=\"module\" src=").count()
        );
        assert!(!console.page.contains("<style") && !console.page.contains("style="));
    }

    #[test]
    fn every_vendored_file_comes_with_its_licence() {
        let vendored: Vec<_> = Files::iter().filter(|name| name.starts_with("vendor/")).collect();
        assert!(!vendored.is_empty());
        for name in vendored.iter().filter(|name| name.ends_with(".js")) {
            let licence = format!("{}.LICENSE.txt", name.trim_end_matches(".js"));
            assert!(Files::get(&licence).is_some(), "{name} has {licence}");
        }
    }
}
