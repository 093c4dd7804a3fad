//! Webhook signature verification over the raw request body.
//!
//! Every provider's scheme is data (a [`Scheme`]): an algorithm family (HMAC with SHA-1,
//! SHA-256 or SHA-512, Ed25519, ECDSA P-256, a shared token), where the signature, the id and
//! the timestamp travel, and a template of what is signed. One routine interprets them all, so
//! a provider preset is a value, not code. AWS SNS, whose signed values, signature and key
//! location all travel in the JSON body, has its own module, [`sns`].
//!
//! The crate is pure and synchronous: it takes a request, the secrets and "now", and answers.
//! It also signs HMAC schemes ([`sign`], [`Signer`]), so that tests, the demo and the load
//! generator send exactly what providers send.

mod algorithm;
mod extract;
mod message;
mod scheme;
mod secret;
mod signer;
pub mod sns;
mod streamed;
mod template;

pub use scheme::{
    Algorithm, Encoding, Field, Scheme, SecretFormat, SignatureFormat, Text, TimestampFormat,
    TimestampSpec,
};
pub use secret::{Secret, SecretError, SecretRing};
pub use signer::{sign, sign_request, sign_streamed, SignError, SignInput, Signer, StreamedSigner};
pub use streamed::StreamedCheck;
pub use template::{Part, Template, TemplateError};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use message::Message;

/// A request as verification sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper case, e.g. `POST`.
    pub method: &'a str,
    /// The full URL the sender called, query included, for schemes that sign it.
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    /// The raw body, decoded from any `Content-Encoding`.
    pub body: &'a [u8],
}

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
    #[error("missing field {0} in the body")]
    MissingField(String),
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    #[error("{0}")]
    Certificate(String),
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
            Self::MissingField(_) => "field_missing",
            Self::MalformedMessage(_) => "malformed_message",
            Self::Certificate(_) => "certificate_invalid",
        }
    }

    /// True when the request was well-formed but not authentic (401), false when it was
    /// malformed or outside the replay window (400).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Self::MissingHeader(_) | Self::Mismatch | Self::NoActiveSecret | Self::Certificate(_)
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
    /// the body but neither a timestamp nor an event id (GitHub, Shopify, generic templates
    /// without `{id}` and `{timestamp}`), whose provider's delivery id travels unsigned: a
    /// captured request resent under a fresh id would verify as a new one. It is the
    /// lowercase hex SHA-256 of the MAC that matched (for a public-key scheme, of the signed
    /// string). It is the same for every copy of a request whatever its unsigned headers say
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

    /// The replay window.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The hex HMAC of `data` with the secret `key_id`, in the scheme's algorithm (Zoom's
    /// handshake answers with one); `None` for a key it does not hold or a scheme that is not
    /// an HMAC.
    pub fn mac_hex(&self, key_id: &str, data: &[u8]) -> Option<String> {
        let secret = self.ring.get(key_id)?;
        algorithm::mac(self.scheme.algorithm, &secret.key, [data]).map(hex::encode)
    }

    /// The ids of the secrets this verifier holds.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.ring.ids()
    }

    /// A [`Signer`] with the ring's first secret (expired or not), signing as the provider
    /// would; `None` when the ring is empty, as for the `none` scheme. `id_header`: see
    /// [`Signer::new`].
    pub fn signer(&self, id_header: Option<String>) -> Option<Signer> {
        let secret = self.ring.first()?;
        Signer::new(self.scheme.clone(), secret.key.clone(), id_header)
    }

    /// Verifies a POST of `body` with `headers` as of `now`, for schemes that sign neither
    /// the URL nor the method.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        self.verify_request(
            &Request {
                method: "POST",
                url: "",
                headers,
                body,
            },
            now,
        )
    }

    /// Verifies `request` as of `now`.
    pub fn verify_request(
        &self,
        request: &Request<'_>,
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        if self.scheme.algorithm == Algorithm::AwsSns {
            return Err(VerifyError::Certificate(
                "an SNS message is verified with its signing certificate (sns::SnsMessage)".into(),
            ));
        }
        let Some(parts) = extract::signature_parts(&self.scheme, request)? else {
            return Ok(Verified {
                key_id: None,
                signed_id: None,
                replay_key: None,
            });
        };
        if let Some((_, ts)) = parts.timestamp {
            check_tolerance(ts, now, self.tolerance)?;
        }
        let message = Message::new(&self.scheme, &parts, request)?;
        let mut any_active = false;
        for secret in self.ring.active(now) {
            any_active = true;
            let matched = algorithm::check(
                self.scheme.algorithm,
                &secret.key,
                &message,
                &parts.candidates,
            );
            if let Some(matched) = matched {
                return Ok(self.proved(&secret.id, parts.id.as_ref(), &matched));
            }
        }
        Err(unmatched(any_active))
    }

    /// What a match under the secret `key_id` proved; `matched` is the MAC (or, for a
    /// public-key scheme, the signed string) that matched.
    fn proved(&self, key_id: &str, signed_id: Option<&String>, matched: &[u8]) -> Verified {
        Verified {
            key_id: Some(key_id.to_owned()),
            signed_id: self.scheme.signs_id().then(|| signed_id.cloned()).flatten(),
            replay_key: self
                .scheme
                .needs_replay_key()
                .then(|| algorithm::sha256_hex(matched)),
        }
    }
}

/// No secret matched: a mismatch, or no secret was active to try.
fn unmatched(any_active: bool) -> VerifyError {
    if any_active {
        VerifyError::Mismatch
    } else {
        VerifyError::NoActiveSecret
    }
}

pub(crate) fn check_tolerance(
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

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

#[cfg(test)]
mod tests;
