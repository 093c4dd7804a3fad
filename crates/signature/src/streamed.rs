//! Verifying a body that arrives in pieces and is never held whole (a large body streamed to
//! object storage): what the scheme signs before the body is fed to a MAC per active secret
//! at the start, each piece of the body as it comes, what follows the body at the end.
//!
//! Only schemes whose signed string can be built that way stream: HMAC schemes whose
//! signature, id and timestamp travel in headers and that sign the body itself (not its
//! sorted form parameters), and the token and `none` schemes, which do not sign the body (a
//! token sent in the body does not stream).
//! Public-key schemes (Ed25519, ECDSA) verify a whole message, and reading a value from the
//! JSON body needs the body: those do not stream.

use std::time::SystemTime;

use ring::hmac;

use crate::algorithm::{mac_context, matches_any};
use crate::extract;
use crate::message::Message;
use crate::scheme::{Field, Scheme};
use crate::template::Part;
use crate::{check_tolerance, unmatched, Algorithm, Request, Verified, Verifier, VerifyError};

/// A verification in progress over a streamed body.
pub struct StreamedCheck {
    state: State,
}

enum State {
    /// Decided before the body (token and `none` schemes sign no body).
    Decided(Verified),
    /// One MAC per active secret, fed the string-to-sign up to the body.
    Macs {
        macs: Vec<(String, hmac::Context)>,
        /// What the scheme signs after the body.
        suffix: Vec<u8>,
        candidates: Vec<Vec<u8>>,
        signed_id: Option<String>,
    },
}

impl std::fmt::Debug for StreamedCheck {
    // Never print MAC state: it is derived from the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedCheck").finish_non_exhaustive()
    }
}

// === impl Verifier ===

impl Verifier {
    /// Whether a body can be verified while it streams, never held whole.
    pub fn streams(&self) -> bool {
        let scheme = &self.scheme;
        let in_headers = |f: Option<&Field>| !matches!(f, Some(Field::Json(_)));
        let values_in_headers = scheme.signature_pointer.is_none()
            && in_headers(scheme.id.as_ref())
            && in_headers(scheme.timestamp.as_ref().map(|t| &t.at));
        match scheme.algorithm {
            Algorithm::None => true,
            Algorithm::Token => values_in_headers,
            Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512 => {
                values_in_headers && !scheme.template.uses(&Part::Form)
            }
            Algorithm::Ed25519 | Algorithm::EcdsaP256Sha256 | Algorithm::AwsSns => false,
        }
    }

    /// Starts verifying `request` (whose `body` is ignored: it comes through
    /// [`StreamedCheck::update`]) as of `now`. What can be refused without the body is
    /// refused here: a missing or malformed header, a timestamp out of tolerance, a token
    /// that does not match. `None` when the scheme does not stream ([`Verifier::streams`]).
    pub fn begin_streamed(
        &self,
        request: &Request<'_>,
        now: SystemTime,
    ) -> Option<Result<StreamedCheck, VerifyError>> {
        if !self.streams() {
            return None;
        }
        let headers_only = Request {
            body: &[],
            ..*request
        };
        Some(self.begin(&headers_only, now))
    }

    fn begin(&self, request: &Request<'_>, now: SystemTime) -> Result<StreamedCheck, VerifyError> {
        if matches!(self.scheme.algorithm, Algorithm::None | Algorithm::Token) {
            let verified = self.verify_request(request, now)?;
            return Ok(StreamedCheck {
                state: State::Decided(verified),
            });
        }
        let Some(parts) = extract::signature_parts(&self.scheme, request)? else {
            return Err(VerifyError::Mismatch);
        };
        if let Some((_, ts)) = parts.timestamp {
            check_tolerance(ts, now, self.tolerance)?;
        }
        let message = Message::new(&self.scheme, &parts, request)?;
        let (before, suffix) = around_body(&self.scheme, &message);
        let macs: Vec<(String, hmac::Context)> = self
            .ring
            .active(now)
            .filter_map(|secret| {
                let mut mac = mac_context(self.scheme.algorithm, &secret.key)?;
                before.iter().for_each(|piece| mac.update(piece));
                Some((secret.id.clone(), mac))
            })
            .collect();
        if macs.is_empty() {
            return Err(VerifyError::NoActiveSecret);
        }
        Ok(StreamedCheck {
            state: State::Macs {
                macs,
                suffix,
                candidates: parts.candidates,
                signed_id: parts.id,
            },
        })
    }
}

/// What `scheme` signs of `message` (built with an empty body) before the body, piece by
/// piece, and after it, joined.
pub(crate) fn around_body<'m>(
    scheme: &Scheme,
    message: &'m Message<'_>,
) -> (Vec<&'m [u8]>, Vec<u8>) {
    let layout = scheme.template.parts();
    let body_at = layout
        .iter()
        .position(|p| *p == Part::Body)
        .unwrap_or(layout.len());
    let mut pieces: Vec<&[u8]> = message.pieces().collect();
    let after = pieces.split_off(body_at.min(pieces.len()));
    let suffix = after
        .iter()
        .skip(1)
        .flat_map(|p| p.iter().copied())
        .collect();
    (pieces, suffix)
}

// === impl StreamedCheck ===

impl StreamedCheck {
    /// The next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        if let State::Macs { macs, .. } = &mut self.state {
            macs.iter_mut().for_each(|(_, mac)| mac.update(piece));
        }
    }

    /// The body is complete: what `verifier` (the one that began it) proved, or why not.
    pub fn finish(self, verifier: &Verifier) -> Result<Verified, VerifyError> {
        let (macs, suffix, candidates, signed_id) = match self.state {
            State::Decided(verified) => return Ok(verified),
            State::Macs {
                macs,
                suffix,
                candidates,
                signed_id,
            } => (macs, suffix, candidates, signed_id),
        };
        for (key_id, mut mac) in macs {
            mac.update(&suffix);
            let expected = mac.sign();
            if matches_any(expected.as_ref(), &candidates) {
                return Ok(verifier.proved(&key_id, signed_id.as_ref(), expected.as_ref()));
            }
        }
        Err(unmatched(true))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;
    use crate::{sign, Scheme, Secret, SecretRing};

    fn verifier(scheme: Scheme) -> Verifier {
        let ring = SecretRing::new(vec![Secret {
            id: "k1".into(),
            key: b"a-secret".to_vec(),
            not_after: None,
        }]);
        Verifier::new(scheme, ring, Duration::from_secs(300))
    }

    fn headers(pairs: Vec<(String, String)>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(&v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn what_needs_no_body_is_refused_before_it_comes() {
        let scheme = Scheme::standard_webhooks();
        let signed = headers(sign(&scheme, b"a-secret", "msg_1", 1_000, b"body").expect("signs"));
        let request = Request {
            method: "POST",
            url: "",
            headers: &signed,
            body: &[],
        };
        let v = verifier(scheme);
        let late = UNIX_EPOCH + Duration::from_secs(1_000 + 3_600);
        let refused = v.begin_streamed(&request, late).expect("streams");
        assert!(matches!(refused, Err(VerifyError::StaleTimestamp { .. })));
        let bare = HeaderMap::new();
        let unsigned = Request {
            headers: &bare,
            ..request
        };
        let on_time = UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(matches!(
            v.begin_streamed(&unsigned, on_time).expect("streams"),
            Err(VerifyError::MissingHeader(_))
        ));
        let mut check = v
            .begin_streamed(&request, on_time)
            .expect("streams")
            .expect("begins");
        check.update(b"bo");
        check.update(b"dy");
        let verified = check.finish(&v).expect("verifies");
        assert_eq!(verified.key_id.as_deref(), Some("k1"));
        assert_eq!(verified.signed_id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn public_key_schemes_do_not_stream_and_none_needs_nothing() {
        let v1a = verifier(Scheme::standard_webhooks_v1a());
        assert!(!v1a.streams());
        let empty = HeaderMap::new();
        let request = Request {
            method: "POST",
            url: "",
            headers: &empty,
            body: &[],
        };
        assert!(v1a.begin_streamed(&request, UNIX_EPOCH).is_none());
        let none = verifier(Scheme::none());
        let mut check = none
            .begin_streamed(&request, UNIX_EPOCH)
            .expect("streams")
            .expect("begins");
        check.update(b"anything");
        assert_eq!(check.finish(&none).expect("none").key_id, None);
    }
}
