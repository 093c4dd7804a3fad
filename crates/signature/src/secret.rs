//! Secrets and secret rings. A ring holds every secret a source currently accepts, so that a
//! provider-side rotation (new secret issued, old one still signing in-flight retries) never
//! rejects a genuine request.

use std::time::SystemTime;

/// One signing secret: raw key bytes (already decoded from the provider's text form), the id
/// recorded when it matches, and an optional end of validity.
#[derive(Clone)]
pub struct Secret {
    pub id: String,
    pub key: Vec<u8>,
    pub not_after: Option<SystemTime>,
}

impl std::fmt::Debug for Secret {
    // Never print key material, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why a secret's text could not be turned into key bytes. No variant quotes any of the text:
/// these errors end up on stderr and in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret is empty")]
    Empty,
    /// What is wrong, in fixed words. The base64 crate's error is deliberately not kept as the
    /// `#[source]`: its text names the offending byte and its offset, i.e. part of the secret.
    #[error("secret is not valid base64 after the whsec_ prefix: {0}")]
    NotBase64(&'static str),
}

// === impl SecretError ===

impl SecretError {
    /// The kind of `e` without its byte, offset or length (see [`SecretError::NotBase64`]).
    pub(crate) fn not_base64(e: &base64::DecodeError) -> Self {
        use base64::DecodeError as E;
        Self::NotBase64(match e {
            E::InvalidByte(..) => "a character outside the base64 alphabet, or one after padding",
            E::InvalidLength(_) => "its length is not a possible base64 length",
            E::InvalidLastSymbol(..) => "its last character has bits set beyond the last byte",
            E::InvalidPadding => "missing, extra or misplaced padding",
        })
    }
}

/// The secrets a source accepts, tried in order.
#[derive(Debug, Clone, Default)]
pub struct SecretRing {
    secrets: Vec<Secret>,
}

// === impl SecretRing ===

impl SecretRing {
    pub fn new(secrets: Vec<Secret>) -> Self {
        Self { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The first secret, valid or not: the one a sender signs with.
    pub(crate) fn first(&self) -> Option<&Secret> {
        self.secrets.first()
    }

    /// The secrets still valid at `now`.
    pub fn active(&self, now: SystemTime) -> impl Iterator<Item = &Secret> {
        self.secrets
            .iter()
            .filter(move |s| s.not_after.is_none_or(|end| now < end))
    }
}
