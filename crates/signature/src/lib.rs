//! Webhook signature verification over the raw request body.
//!
//! Every scheme here is an HMAC-SHA256 over some string-to-sign built from the body and, for
//! schemes with replay protection, a timestamp (and an id). The schemes differ only in where the
//! pieces live in the headers and how the MAC is encoded, so each provider preset is expressed as
//! a [`Scheme`] value that the one verification routine interprets.
//!
//! The crate is pure and synchronous: it takes headers, a body and "now", and answers. It also
//! signs ([`sign`], [`Signer`]), so that tests, the demo and the load generator produce exactly
//! what providers send.

mod scheme;
mod secret;
mod signer;
mod to_sign;

pub use scheme::{Encoding, GenericHmac, Scheme, Template, TemplateError};
pub use secret::{Secret, SecretError, SecretRing};
pub use signer::Signer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use to_sign::ToSign;

type HmacSha256 = Hmac<Sha256>;

/// The default replay window: a timestamp older (or further in the future) than this is refused.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a request was not accepted as authentic. Each variant has a stable code for the JSON
/// error body and a status class: a request we could not even parse is a client error (400), a
/// request whose signature is absent or wrong is unauthorised (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("malformed header {header}: {reason}")]
    MalformedHeader { header: String, reason: String },
    #[error("timestamp is {age_secs} s old, outside the {tolerance_secs} s tolerance")]
    StaleTimestamp { age_secs: u64, tolerance_secs: u64 },
    #[error("timestamp is {ahead_secs} s in the future, outside the {tolerance_secs} s tolerance")]
    FutureTimestamp {
        ahead_secs: u64,
        tolerance_secs: u64,
    },
    #[error("no signature matches any active secret")]
    Mismatch,
    #[error("the source has no active secret (all have expired)")]
    NoActiveSecret,
}

// === impl VerifyError ===

impl VerifyError {
    /// The stable error code clients and dashboards can rely on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "signature_missing",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::StaleTimestamp { .. } => "timestamp_too_old",
            Self::FutureTimestamp { .. } => "timestamp_in_future",
            Self::Mismatch => "signature_mismatch",
            Self::NoActiveSecret => "no_active_secret",
        }
    }

    /// True when the request was well-formed but not authentic (401), false when it was
    /// malformed or outside the replay window (400).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Self::MissingHeader(_) | Self::Mismatch | Self::NoActiveSecret
        )
    }
}

/// What a successful verification proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The id of the secret whose MAC matched; `None` for the `none` scheme.
    pub key_id: Option<String>,
    /// The event id the signature covers, for schemes that sign one.
    pub signed_id: Option<String>,
    /// A fingerprint of the authenticated request, for the schemes whose signature covers
    /// neither a timestamp nor an event id (GitHub, Shopify, generic templates without `{id}`
    /// and `{timestamp}`; see [`Scheme`] on replays): the lowercase hex SHA-256 of the MAC that
    /// matched. It is the same for every copy of a request whatever its unsigned headers say
    /// (a fresh delivery id, hex in upper case), so it catches replays that the delivery id
    /// cannot. Two genuine events with the same body and secret share it too. `None` for every
    /// other scheme and for `none`.
    pub replay_key: Option<String>,
}

/// A scheme, the secrets it may be signed with, and the replay window.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Scheme,
    ring: SecretRing,
    tolerance: Duration,
}

// === impl Verifier ===

impl Verifier {
    pub fn new(scheme: Scheme, ring: SecretRing, tolerance: Duration) -> Self {
        Self {
            scheme,
            ring,
            tolerance,
        }
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// A [`Signer`] with the ring's first secret (expired or not), signing as the provider
    /// would; `None` when the ring is empty, as for the `none` scheme. `id_header`: see
    /// [`Signer::new`].
    pub fn signer(&self, id_header: Option<String>) -> Option<Signer> {
        let secret = self.ring.first()?;
        Some(Signer::new(
            self.scheme.clone(),
            secret.key.clone(),
            id_header,
        ))
    }

    /// Verifies `body` against `headers` as of `now`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let Some(parts) = self.scheme.signature_parts(headers)? else {
            return Ok(Verified {
                key_id: None,
                signed_id: None,
                replay_key: None,
            });
        };
        if let Some(ts) = parts.timestamp {
            check_tolerance(ts, now, self.tolerance)?;
        }
        let signed = ToSign::new(&self.scheme, &parts, body);
        let mut any_active = false;
        for secret in self.ring.active(now) {
            any_active = true;
            let expected = mac(&secret.key, signed.pieces());
            // Compare against every candidate without an early exit on the first byte that
            // differs: `ct_eq` is constant-time for equal lengths, and lengths are public.
            let matched = parts
                .candidates
                .iter()
                .fold(false, |acc, cand| acc | bool::from(expected.ct_eq(cand)));
            if matched {
                return Ok(Verified {
                    key_id: Some(secret.id.clone()),
                    signed_id: parts.id.clone(),
                    // `expected` equals the candidate that matched: hashing it spares finding
                    // out which candidate that was, which the fold above does not reveal.
                    replay_key: self
                        .scheme
                        .needs_replay_key()
                        .then(|| replay_key(&expected)),
                });
            }
        }
        if any_active {
            Err(VerifyError::Mismatch)
        } else {
            Err(VerifyError::NoActiveSecret)
        }
    }
}

/// The pieces of a signed request, extracted from its headers by a scheme.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignatureParts {
    pub(crate) id: Option<String>,
    pub(crate) timestamp: Option<i64>,
    /// Decoded MAC values offered by the sender (several during the provider's own rotation).
    pub(crate) candidates: Vec<Vec<u8>>,
}

/// The MAC of the concatenation of `pieces`, fed one after another rather than joined first.
fn mac<'p>(key: &[u8], pieces: impl IntoIterator<Item = &'p [u8]>) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for piece in pieces {
        mac.update(piece);
    }
    mac.finalize().into_bytes().to_vec()
}

/// See [`Verified::replay_key`]. The MAC's bytes, not the header's text, so that a re-encoded
/// signature (hex in upper case) is the same request.
fn replay_key(mac: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(Sha256::digest(mac))
}

fn check_tolerance(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let now_secs = unix_seconds(now);
    let tolerance_secs = tolerance.as_secs();
    if now_secs >= timestamp {
        let age_secs = now_secs.abs_diff(timestamp);
        if age_secs > tolerance_secs {
            return Err(VerifyError::StaleTimestamp {
                age_secs,
                tolerance_secs,
            });
        }
    } else {
        let ahead_secs = timestamp.abs_diff(now_secs);
        if ahead_secs > tolerance_secs {
            return Err(VerifyError::FutureTimestamp {
                ahead_secs,
                tolerance_secs,
            });
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch; a clock before 1970 counts as negative.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Signs a request the way the scheme's provider does, returning the headers to send.
///
/// `id` is the event or delivery id: signed by Standard Webhooks and generic templates with
/// `{id}`, sent as the delivery-id header by GitHub and Shopify. `timestamp` is used where the
/// scheme signs one. `key` is the raw secret (already decoded).
pub fn sign(
    scheme: &Scheme,
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let parts = SignatureParts {
        id: Some(id.to_owned()),
        timestamp: Some(timestamp),
        candidates: Vec::new(),
    };
    let raw = mac(key, ToSign::new(scheme, &parts, body).pieces());
    scheme.signature_headers(id, timestamp, &raw)
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    b64().encode(bytes)
}

#[cfg(test)]
mod tests;
