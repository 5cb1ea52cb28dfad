//! The web console as the server serves it: the page, its files and the headers that keep a browser safe.
//! (What it does in a browser is in `tests/api/browser.rs`.)

use reqwest::StatusCode;

use crate::helpers::spawn_app;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   media-src 'self' blob:; connect-src 'self'; font-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

#[tokio::test]
async fn the_page_and_every_module_it_loads_are_served_with_a_strict_policy_and_cached_by_version() {
    let app = spawn_app().await;
    let response = app.http.get(format!("{}/", app.base)).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-cache", "the page names the current files: never cached");
    let page = response.text().await.expect("text");
    let start = page.find("/assets/").expect("the page loads its files from /assets/");
    let version = page[start + "/assets/".len()..].split('/').next().expect("a version").to_owned();
    assert_eq!(version.len(), 16, "{version}");

    // Every module reachable from app.js by its relative imports is served, as JavaScript, cached for good.
    let mut pending = vec!["app.js".to_owned(), "style.css".to_owned()];
    let mut seen = Vec::new();
    while let Some(name) = pending.pop() {
        if seen.contains(&name) {
            continue;
        }
        let response = app.http.get(format!("{}/assets/{version}/{name}", app.base)).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(response.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(response.headers()["content-security-policy"], CSP);
        let kind = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        let text = response.text().await.expect("text");
        if name.ends_with(".js") {
            assert_eq!(kind, "text/javascript; charset=utf-8");
            assert!(!text.contains("eval(") && !text.contains("new Function"), "{name} evaluates no strings");
            for import in text.split("from '").skip(1).chain(text.split("from \"").skip(1)) {
                let target = import.split(['\'', '"']).next().expect("a specifier");
                if let Some(relative) = target.strip_prefix("./") {
                    let folder = name.rsplit_once('/').map_or(String::new(), |(folder, _)| format!("{folder}/"));
                    pending.push(format!("{folder}{relative}"));
                }
            }
        }
        seen.push(name);
    }
    assert!(seen.iter().any(|name| name.starts_with("vendor/")), "{seen:?}");

    // Another version, the page itself, or a path out of the folder: not found.
    for path in [
        "/assets/0000000000000000/app.js".to_owned(),
        format!("/assets/{version}/index.html"),
        format!("/assets/{version}/../Cargo.toml"),
        format!("/assets/{version}/nothing.js"),
    ] {
        let response = app.http.get(format!("{}{path}", app.base)).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
