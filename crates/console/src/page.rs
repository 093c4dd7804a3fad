//! The console's web page: one HTML shell for every view under `/ui/` (so each view has a
//! link that can be shared and reloaded), a script that renders the JSON API into it, and a
//! style sheet. The three are embedded in the binary: nothing is built with Node.js, nothing
//! is fetched from elsewhere, and the Content-Security-Policy allows this origin only.

use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue};

use crate::state::Shared;

const SHELL: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// Scripts and styles from this origin only, no inline script, no framing, no plugins: what
/// an event carries can never run in an operator's browser.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The page's routes: `/` leads to the events, `/ui/...` is the shell, `/assets/...` its
/// script and style.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/events") }))
        .route("/ui", get(shell))
        .route("/ui/{*view}", get(shell))
        .route(
            "/assets/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

async fn shell() -> Response {
    // The version in the assets' URLs makes a new release's browsers fetch them anew.
    let html = SHELL.replace("__VERSION__", env!("CARGO_PKG_VERSION"));
    with_headers(html, "text/html; charset=utf-8", "no-cache")
}

fn asset(text: &'static str, kind: &'static str) -> Response {
    with_headers(text, kind, "public, max-age=3600")
}

fn with_headers(body: impl IntoResponse, kind: &'static str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shell names only assets that are served, and loads no script inline (the policy
    /// would block it).
    #[test]
    fn the_shell_loads_only_its_own_assets() {
        assert!(SHELL.contains("src=\"/assets/app.js?v=__VERSION__\""));
        assert!(SHELL.contains("href=\"/assets/app.css?v=__VERSION__\""));
        assert_eq!(SHELL.matches("<script").count(), 1, "one script, external");
        assert!(!SHELL.contains("style=\""), "no inline style");
        assert!(
            !SCRIPT.contains("innerHTML"),
            "data is written as text only"
        );
    }
}
