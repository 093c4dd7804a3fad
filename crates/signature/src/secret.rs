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

/// Why a secret's text could not be turned into key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret is empty")]
    Empty,
    #[error("secret is not valid base64 after the whsec_ prefix: {0}")]
    NotBase64(String),
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
