//! Refuses requests that change something when a browser makes them on another site's behalf
//! (cross-site request forgery). Behind an authenticating proxy the proxy's session cookie
//! goes along with any form a foreign page posts to the console, so a request other than
//! GET or HEAD must come from the console's own page (`Sec-Fetch-Site: same-origin`, or an
//! `Origin` naming the host it was sent to) or from a client that is no browser (it sends
//! neither header). Bearer tokens alone would not need this; the proxy's cookie does.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, Method, StatusCode};

use crate::problem::ApiError;

/// The middleware: passes reads and same-origin or non-browser writes on, refuses the rest
/// with 403 `cross_site`.
pub async fn same_origin(request: Request, next: Next) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads {
        if let Some(why) = cross_site(request.headers()) {
            return ApiError::new(StatusCode::FORBIDDEN, "cross_site", why).into_response();
        }
    }
    next.run(request).await
}

/// Why a request that changes something is refused as cross-site; None when it may go on.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    // Every current browser sends it: it says what the browser knows, whatever the proxies
    // in between did to Host.
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            other => Some(format!(
                "a {} request from another site may not change anything here",
                String::from_utf8_lossy(other)
            )),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    // The first proxy's X-Forwarded-Host is what the browser used; Host is the last hop's.
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(',').next());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same = [forwarded, host].into_iter().flatten().any(|host| {
        Some(without_default_port(host.trim())) == origin_host.map(without_default_port)
    });
    (!same).then(|| "a request from another origin may not change anything here".to_owned())
}

/// `host:443` and `host:80` as a browser writes them in Origin: without the port.
fn without_default_port(host: &str) -> &str {
    host.strip_suffix(":443")
        .or_else(|| host.strip_suffix(":80"))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn the_console_s_own_page_and_api_clients_may_act() {
        assert_eq!(
            cross_site(&headers(&[("sec-fetch-site", "same-origin")])),
            None
        );
        assert_eq!(cross_site(&headers(&[("sec-fetch-site", "none")])), None);
        assert_eq!(cross_site(&headers(&[])), None, "curl, scripts");
        let same = [
            ("origin", "https://console.example"),
            ("host", "console.example"),
        ];
        assert_eq!(cross_site(&headers(&same)), None);
        let proxied = [
            ("origin", "https://console.example"),
            ("host", "spillway-console:80"),
            ("x-forwarded-host", "console.example, spillway-console"),
        ];
        assert_eq!(cross_site(&headers(&proxied)), None);
        let port = [
            ("origin", "https://console.example"),
            ("host", "console.example:443"),
        ];
        assert_eq!(cross_site(&headers(&port)), None);
    }

    #[test]
    fn another_site_may_not() {
        for fetch_site in ["cross-site", "same-site"] {
            let pairs = [
                ("sec-fetch-site", fetch_site),
                ("origin", "https://console.example"),
                ("host", "console.example"),
            ];
            assert!(cross_site(&headers(&pairs)).is_some(), "{fetch_site}");
        }
        let foreign = [
            ("origin", "https://evil.example"),
            ("host", "console.example"),
        ];
        assert!(cross_site(&headers(&foreign)).is_some());
        assert!(cross_site(&headers(&[("origin", "null"), ("host", "console.example")])).is_some());
    }
}
