//! The sending side: requests signed the way a source's provider signs them, which is what
//! `spillway demo`, the load generator and the tests send, and how the workers sign deliveries.

use base64::Engine as _;

use crate::extract::SignatureParts;
use crate::message::Message;
use crate::scheme::{Encoding, Field, SignatureFormat, TimestampFormat};
use crate::{algorithm, Request, Scheme};

/// What a request to be signed is made of.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The event or delivery id: signed where the scheme signs one, else sent as the
    /// provider's delivery-id header.
    pub id: &'a str,
    /// Unix seconds, written as the scheme writes timestamps.
    pub timestamp: i64,
    pub method: &'a str,
    pub url: &'a str,
    pub body: &'a [u8],
}

/// Why a scheme cannot be signed here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheme {0} cannot be signed by Spillway: it needs the sender's private key, or values in the body")]
pub struct SignError(pub String);

/// Signs a POST of `body` as event `id` at `timestamp` the way the scheme's provider does,
/// returning the headers to send. `key` is the raw secret (already decoded).
pub fn sign(
    scheme: &Scheme,
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, SignError> {
    sign_request(
        scheme,
        key,
        &SignInput {
            id,
            timestamp,
            method: "POST",
            url: "",
            body,
        },
    )
}

/// Signs `input` as [`sign`] does, for schemes that also sign the URL or the method.
pub fn sign_request(
    scheme: &Scheme,
    key: &[u8],
    input: &SignInput<'_>,
) -> Result<Vec<(String, String)>, SignError> {
    let unsupported = || SignError(scheme.name().to_owned());
    if !scheme.can_sign() {
        return Err(unsupported());
    }
    let timestamp = timestamp_text(scheme, input.timestamp);
    let parts = parts_of(input.id, timestamp.as_deref(), input.timestamp);
    let no_headers = http::HeaderMap::new();
    let request = Request {
        method: input.method,
        url: input.url,
        headers: &no_headers,
        body: input.body,
    };
    let message = Message::new(scheme, &parts, &request).map_err(|_| unsupported())?;
    let raw = algorithm::mac(scheme.algorithm, key, message.pieces()).ok_or_else(unsupported)?;
    signed_headers(scheme, input.id, timestamp, &raw)
}

/// The timestamp as `scheme` writes it.
fn timestamp_text(scheme: &Scheme, timestamp: i64) -> Option<String> {
    scheme.timestamp.as_ref().map(|spec| match spec.format {
        TimestampFormat::Seconds => timestamp.to_string(),
        TimestampFormat::Millis => (i128::from(timestamp) * 1000).to_string(),
        TimestampFormat::Rfc3339 => time::OffsetDateTime::from_unix_timestamp(timestamp)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
    })
}

fn parts_of(id: &str, timestamp: Option<&str>, at: i64) -> SignatureParts {
    SignatureParts {
        id: Some(id.to_owned()),
        timestamp: timestamp.map(|t| (t.to_owned(), at)),
        candidates: Vec::new(),
    }
}

/// The headers carrying the MAC `raw` of event `id` at `timestamp`, as `scheme` sends them.
fn signed_headers(
    scheme: &Scheme,
    id: &str,
    timestamp: Option<String>,
    raw: &[u8],
) -> Result<Vec<(String, String)>, SignError> {
    let unsupported = || SignError(scheme.name().to_owned());
    let encoded = match scheme.encoding {
        Encoding::Hex => hex::encode(raw),
        Encoding::Base64 => crate::b64().encode(raw),
        Encoding::Base64Url => base64::engine::general_purpose::URL_SAFE.encode(raw),
        Encoding::Text => return Err(unsupported()),
    };
    let ts_param = match &scheme.timestamp {
        Some(spec) => match &spec.at {
            Field::Param(k) => Some(k.as_ref()),
            _ => None,
        },
        None => None,
    };
    let value = match &scheme.format {
        SignatureFormat::Plain { prefix } => format!("{prefix}{encoded}"),
        SignatureFormat::List { label, .. } => format!("{label}{encoded}"),
        SignatureFormat::Params { separator, key } => match (ts_param, &timestamp) {
            (Some(t), Some(ts)) => format!("{t}={ts}{separator}{key}={encoded}"),
            _ => format!("{key}={encoded}"),
        },
    };
    let header = scheme.signature_headers.first().ok_or_else(unsupported)?;
    let mut headers = vec![(header.to_string(), value)];
    if let Some(Field::Header(h)) = &scheme.id {
        headers.push((h.to_string(), id.to_owned()));
    }
    if let (Some(spec), Some(ts)) = (&scheme.timestamp, timestamp) {
        if let Field::Header(h) = &spec.at {
            headers.push((h.to_string(), ts));
        }
    }
    if let Some(h) = &scheme.delivery_id_header {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h)) {
            headers.push((h.to_string(), id.to_owned()));
        }
    }
    Ok(headers)
}

/// Signing a body that is read in pieces and never held whole (a large body streamed from
/// object storage): what the scheme signs before the body goes into one MAC per key at the
/// start, each piece as it comes, what follows the body at the end.
pub struct StreamedSigner {
    scheme: Scheme,
    id: String,
    timestamp: Option<String>,
    macs: Vec<ring::hmac::Context>,
    suffix: Vec<u8>,
}

impl std::fmt::Debug for StreamedSigner {
    // Never print MAC state: it is derived from the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedSigner").finish_non_exhaustive()
    }
}

/// Starts signing a POST as event `id` at `timestamp` with each of `keys`, the body to come
/// through [`StreamedSigner::update`]. The same headers as [`sign`] over the whole body.
pub fn sign_streamed(
    scheme: &Scheme,
    keys: &[&[u8]],
    id: &str,
    timestamp: i64,
) -> Result<StreamedSigner, SignError> {
    let unsupported = || SignError(scheme.name().to_owned());
    if !scheme.can_sign() || scheme.template.uses(&crate::template::Part::Form) {
        return Err(unsupported());
    }
    let timestamp_text = timestamp_text(scheme, timestamp);
    let parts = parts_of(id, timestamp_text.as_deref(), timestamp);
    let no_headers = http::HeaderMap::new();
    let request = Request {
        method: "POST",
        url: "",
        headers: &no_headers,
        body: &[],
    };
    let message = Message::new(scheme, &parts, &request).map_err(|_| unsupported())?;
    let (before, suffix) = crate::streamed::around_body(scheme, &message);
    let macs = keys
        .iter()
        .map(|key| {
            let mut mac = algorithm::mac_context(scheme.algorithm, key)?;
            before.iter().for_each(|piece| mac.update(piece));
            Some(mac)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(unsupported)?;
    Ok(StreamedSigner {
        scheme: scheme.clone(),
        id: id.to_owned(),
        timestamp: timestamp_text,
        macs,
        suffix,
    })
}

// === impl StreamedSigner ===

impl StreamedSigner {
    /// The next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        self.macs.iter_mut().for_each(|mac| mac.update(piece));
    }

    /// The body is complete: the headers each key signs it with, in the order of the keys.
    pub fn finish(self) -> Result<Vec<Vec<(String, String)>>, SignError> {
        let Self {
            scheme,
            id,
            timestamp,
            macs,
            suffix,
        } = self;
        macs.into_iter()
            .map(|mut mac| {
                mac.update(&suffix);
                signed_headers(&scheme, &id, timestamp.clone(), mac.sign().as_ref())
            })
            .collect()
    }
}

/// Signs requests for one source as its provider does: the scheme's signature headers, a JSON
/// content type, and the event id under the source's id header when the scheme does not send
/// that header itself.
#[derive(Clone)]
pub struct Signer {
    scheme: Scheme,
    key: Vec<u8>,
    id_header: Option<String>,
}

impl std::fmt::Debug for Signer {
    // Never print key material, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme)
            .field("key", &"<redacted>")
            .field("id_header", &self.id_header)
            .finish()
    }
}

// === impl Signer ===

impl Signer {
    /// `key` is the raw secret, already decoded (as [`crate::Secret::key`]). `id_header` names
    /// a header that must carry the event id, such as the one a source takes its dedupe key
    /// from: a provider that does not send it on its own gets it added. `None` when the scheme
    /// cannot be signed here (see [`Scheme::can_sign`]).
    pub fn new(scheme: Scheme, key: Vec<u8>, id_header: Option<String>) -> Option<Self> {
        scheme.can_sign().then_some(Self {
            scheme,
            key,
            id_header,
        })
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The headers for `body` sent as event `id` at `timestamp` (Unix seconds).
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        self.headers_with_key(&self.key, id, timestamp, body)
    }

    /// As [`Signer::headers`], signed with another key (a tampered request).
    pub fn headers_with_key(
        &self,
        key: &[u8],
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Vec<(String, String)> {
        // `new` admitted only schemes that sign.
        let mut headers = sign(&self.scheme, key, id, timestamp, body).unwrap_or_default();
        headers.push(("content-type".into(), "application/json".into()));
        if let Some(name) = &self.id_header {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                headers.push((name.clone(), id.to_owned()));
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue};

    use crate::{Secret, SecretRing, Verifier, DEFAULT_TOLERANCE};

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    fn verifier(scheme: Scheme, keys: &[&[u8]]) -> Verifier {
        let secrets = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Secret {
                id: format!("k{i}"),
                key: key.to_vec(),
                not_after: None,
            })
            .collect();
        Verifier::new(scheme, SecretRing::new(secrets), DEFAULT_TOLERANCE)
    }

    fn header_map(pairs: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        map
    }

    fn at(secs: i64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    }

    #[test]
    fn a_signer_from_a_verifier_signs_with_its_first_secret() {
        let verifier = verifier(Scheme::standard_webhooks(), &[b"first", b"second"]);
        let signer = verifier.signer(None).expect("a secret");
        let headers = signer.headers("evt_1", NOW, BODY);
        let verified = verifier
            .verify(&header_map(&headers), BODY, at(NOW))
            .expect("verifies");
        assert_eq!(verified.key_id.as_deref(), Some("k0"));
        assert!(headers.contains(&("content-type".into(), "application/json".into())));

        let tampered = signer.headers_with_key(b"not-the-secret", "evt_1", NOW, BODY);
        assert!(verifier
            .verify(&header_map(&tampered), BODY, at(NOW))
            .is_err());
    }

    #[test]
    fn no_secret_no_signer() {
        assert!(verifier(Scheme::none(), &[]).signer(None).is_none());
    }

    #[test]
    fn the_id_header_is_added_only_when_the_scheme_does_not_send_it() {
        let named = |headers: &[(String, String)], name: &str| {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .count()
        };
        // GitHub sends its delivery id itself: not a second time.
        let github = Signer::new(
            crate::tests::github(),
            b"k".to_vec(),
            Some("X-GitHub-Delivery".into()),
        )
        .expect("signs");
        assert_eq!(
            named(&github.headers("d-1", NOW, BODY), "x-github-delivery"),
            1
        );
        // Stripe sends no id: the source's header carries it.
        let stripe = Signer::new(
            crate::tests::stripe(),
            b"k".to_vec(),
            Some("x-event-id".into()),
        )
        .expect("signs");
        let headers = stripe.headers("evt_1", NOW, BODY);
        assert!(headers.contains(&("x-event-id".into(), "evt_1".into())));
        let plain = Signer::new(crate::tests::stripe(), b"k".to_vec(), None).expect("signs");
        assert_eq!(plain.headers("evt_1", NOW, BODY).len(), headers.len() - 1);
    }

    #[test]
    fn the_schemes_that_sign_a_timestamp() {
        use crate::tests::{github, shopify, slack, stripe};
        let signing: Vec<bool> = [
            Scheme::standard_webhooks(),
            stripe(),
            slack(),
            github(),
            shopify(),
            Scheme::none(),
        ]
        .iter()
        .map(Scheme::signs_timestamp)
        .collect();
        assert_eq!(signing, [true, true, true, false, false, false]);
    }

    #[test]
    fn public_key_and_in_body_schemes_cannot_be_signed_here() {
        let ed = Scheme::new("ed", crate::Algorithm::Ed25519, "x-sig");
        assert!(!ed.can_sign());
        assert!(Signer::new(ed.clone(), vec![0; 32], None).is_none());
        assert_eq!(
            sign(&ed, b"k", "id", NOW, BODY),
            Err(SignError("ed".into()))
        );
        let in_body = Scheme::new("mg", crate::Algorithm::HmacSha256, "").signature_in_body("/s");
        assert!(!in_body.can_sign());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let signer =
            Signer::new(crate::tests::github(), b"hunter2-secret".to_vec(), None).expect("signs");
        let printed = format!("{signer:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains("104, 117"), "{printed}"); // the key's first bytes
    }
}
