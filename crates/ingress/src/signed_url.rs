//! The URL a provider signed (Twilio, Square, HubSpot, Trello, Mandrill): rebuilt from the
//! source's `public_url`, or from the Host header, and the request's path and query.

use http::header;
use spillway_config::ResolvedSource;
use spillway_signature::Part;

/// The URL the provider called, for schemes that sign it: the source's `public_url` (else
/// `https://` and the Host header, or the authority of an HTTP/2 request) with the request's
/// path and query.
pub(crate) fn signed_url(source: &ResolvedSource, parts: &http::request::Parts) -> String {
    if !source.verifier.scheme().template.uses(&Part::Url) {
        return String::new();
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let base = match &source.public_url {
        Some(base) => base.clone(),
        None => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
                .unwrap_or_default();
            format!("https://{host}")
        }
    };
    format!("{base}{path}")
}
