//! Secrets and secret rings: a secret's text turned into key bytes as its scheme says, and the
//! set a source accepts at once, so that a rotation (new secret issued, old one still signing
//! in-flight retries) never rejects a genuine request.

use std::time::SystemTime;

use base64::Engine as _;

use crate::scheme::{Algorithm, Scheme, SecretFormat};

/// One secret: raw key bytes (already decoded from the provider's text form; for a public-key
/// scheme the public key), the id recorded when it matches, and an optional end of validity.
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
    #[error("secret is not valid base64{0}")]
    NotBase64(&'static str),
    #[error("secret is not hex digits")]
    NotHex,
    #[error("not a public key of this scheme: {0}")]
    NotPublicKey(&'static str),
}

// === impl SecretError ===

impl SecretError {
    /// The kind of `e` without its byte, offset or length (see [`SecretError::NotBase64`]).
    fn not_base64(e: &base64::DecodeError) -> Self {
        use base64::DecodeError as E;
        Self::NotBase64(match e {
            E::InvalidByte(..) => ": a character outside the base64 alphabet, or one after padding",
            E::InvalidLength(_) => ": its length is not a possible base64 length",
            E::InvalidLastSymbol(..) => ": its last character has bits set beyond the last byte",
            E::InvalidPadding => ": missing, extra or misplaced padding",
        })
    }
}

// === impl Scheme ===

impl Scheme {
    /// Turns a secret as the provider shows it into key bytes: the text itself for most HMAC
    /// providers (Stripe's `whsec_...` included), base64 after `whsec_` for Standard Webhooks,
    /// and for public-key schemes the public key (Ed25519: 32 bytes; ECDSA: a
    /// SubjectPublicKeyInfo, base64 DER or PEM, reduced to its point).
    pub fn decode_secret(&self, text: &str) -> Result<Vec<u8>, SecretError> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        if self.algorithm == Algorithm::EcdsaP256Sha256 {
            return ecdsa_point(text);
        }
        let bytes = match &self.secret {
            SecretFormat::Text => text.as_bytes().to_vec(),
            SecretFormat::Hex => hex::decode(text.trim()).map_err(|_| SecretError::NotHex)?,
            // Standard Webhooks names its keys: `whsk_` is the sender's, never the receiver's.
            SecretFormat::Base64 { prefix } if prefix == "whpk_" && text.starts_with("whsk_") => {
                return Err(SecretError::NotPublicKey(
                    "whsk_ is the sender's private key: give the source its public key, whpk_...",
                ))
            }
            SecretFormat::Base64 { prefix } => {
                let encoded = text.strip_prefix(prefix.as_ref()).unwrap_or(text).trim();
                crate::b64()
                    .decode(encoded)
                    .map_err(|e| SecretError::not_base64(&e))?
            }
        };
        if self.algorithm == Algorithm::Ed25519 && bytes.len() != 32 {
            return Err(SecretError::NotPublicKey(
                "an Ed25519 public key is 32 bytes",
            ));
        }
        Ok(bytes)
    }
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo given as PEM or as base64 DER.
fn ecdsa_point(text: &str) -> Result<Vec<u8>, SecretError> {
    use x509_parser::prelude::FromDer as _;
    use x509_parser::x509::SubjectPublicKeyInfo;
    let der = if text.trim_start().starts_with("-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text.trim().as_bytes())
            .map_err(|_| SecretError::NotPublicKey("the PEM block cannot be read"))?;
        pem.contents
    } else {
        crate::b64()
            .decode(text.trim())
            .map_err(|e| SecretError::not_base64(&e))?
    };
    let (_, spki) = SubjectPublicKeyInfo::from_der(&der)
        .map_err(|_| SecretError::NotPublicKey("not a DER SubjectPublicKeyInfo"))?;
    let p256 = x509_parser::oid_registry::OID_EC_P256;
    let curve_ok = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == p256);
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        || !curve_ok
    {
        return Err(SecretError::NotPublicKey("expected an EC key on P-256"));
    }
    let point = spki.subject_public_key.data.to_vec();
    if point.len() != 65 || point[0] != 4 {
        return Err(SecretError::NotPublicKey(
            "expected an uncompressed P-256 point",
        ));
    }
    Ok(point)
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

    /// The ids of every secret, valid or not.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|s| s.id.as_str())
    }

    /// The secret `id`, valid or not.
    pub(crate) fn get(&self, id: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.id == id)
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
