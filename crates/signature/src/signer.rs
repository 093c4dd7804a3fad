//! The sending side: requests signed the way a source's provider signs them, which is what
//! `spillway demo` and the load generator send.

use crate::{sign, Scheme};

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
    /// from: a provider that does not send it on its own gets it added.
    pub fn new(scheme: Scheme, key: Vec<u8>, id_header: Option<String>) -> Self {
        Self {
            scheme,
            key,
            id_header,
        }
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
        let mut headers = sign(&self.scheme, key, id, timestamp, body);
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
        let verifier = verifier(Scheme::StandardWebhooks, &[b"first", b"second"]);
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
        assert!(verifier(Scheme::None, &[]).signer(None).is_none());
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
            Scheme::Github,
            b"k".to_vec(),
            Some("X-GitHub-Delivery".into()),
        );
        assert_eq!(
            named(&github.headers("d-1", NOW, BODY), "x-github-delivery"),
            1
        );
        // Stripe sends no id: the source's header carries it.
        let stripe = Signer::new(Scheme::Stripe, b"k".to_vec(), Some("x-event-id".into()));
        let headers = stripe.headers("evt_1", NOW, BODY);
        assert!(headers.contains(&("x-event-id".into(), "evt_1".into())));
        let plain = Signer::new(Scheme::Stripe, b"k".to_vec(), None);
        assert_eq!(plain.headers("evt_1", NOW, BODY).len(), headers.len() - 1);
    }

    #[test]
    fn the_schemes_that_sign_a_timestamp() {
        let signing: Vec<bool> = [
            Scheme::StandardWebhooks,
            Scheme::Stripe,
            Scheme::Slack,
            Scheme::Github,
            Scheme::Shopify,
            Scheme::None,
        ]
        .iter()
        .map(Scheme::signs_timestamp)
        .collect();
        assert_eq!(signing, [true, true, true, false, false, false]);
        let generic = |timestamp_header: Option<&str>| {
            Scheme::Generic(crate::GenericHmac {
                signature_header: "x-signature".into(),
                prefix: String::new(),
                encoding: crate::Encoding::Hex,
                template: crate::Template::parse("{body}").expect("template"),
                id_header: None,
                timestamp_header: timestamp_header.map(str::to_owned),
            })
        };
        assert!(generic(Some("x-time")).signs_timestamp());
        assert!(!generic(None).signs_timestamp());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let signer = Signer::new(Scheme::Github, b"hunter2-secret".to_vec(), None);
        let printed = format!("{signer:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains("104, 117"), "{printed}"); // the key's first bytes
    }
}
