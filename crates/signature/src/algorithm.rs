//! The signature families: computing a MAC, checking a MAC, an Ed25519 or ECDSA signature, or
//! a shared token against one key. ring provides the primitives (it is already what rustls
//! uses); only the choice of primitive per family is written here.

use ring::{digest, hmac, signature};
use subtle::ConstantTimeEq;

use crate::message::Message;
use crate::scheme::Algorithm;

/// What a match under `key` fingerprints, if a candidate matches: the computed MAC for HMAC
/// families (equal to the candidate that matched, so that which one did is not revealed), the
/// string-to-sign for the public-key ones (an ECDSA signature can be re-encoded into another
/// valid one, so the signature itself would not name the request), the candidate for a token.
pub(crate) fn check(
    algorithm: Algorithm,
    key: &[u8],
    message: &Message<'_>,
    candidates: &[Vec<u8>],
) -> Option<Vec<u8>> {
    match algorithm {
        Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512 => {
            let expected = mac(algorithm, key, message.pieces())?;
            matches_any(&expected, candidates).then_some(expected)
        }
        Algorithm::Ed25519 | Algorithm::EcdsaP256Sha256 => {
            let which: &dyn signature::VerificationAlgorithm = match algorithm {
                Algorithm::Ed25519 => &signature::ED25519,
                _ => &signature::ECDSA_P256_SHA256_ASN1,
            };
            let public = signature::UnparsedPublicKey::new(which, key);
            let joined = message.joined();
            candidates
                .iter()
                .any(|c| public.verify(&joined, c).is_ok())
                .then_some(joined)
        }
        Algorithm::Token => {
            // Digests first, so that the comparison takes as long whatever the token's length.
            let want = digest::digest(&digest::SHA256, key);
            candidates
                .iter()
                .find(|c| {
                    let got = digest::digest(&digest::SHA256, c);
                    bool::from(got.as_ref().ct_eq(want.as_ref()))
                })
                .cloned()
        }
        Algorithm::AwsSns | Algorithm::None => None,
    }
}

/// Whether `expected` is one of `candidates`, compared against every one without an early
/// exit: `ct_eq` is constant time for equal lengths, and lengths are public.
pub(crate) fn matches_any(expected: &[u8], candidates: &[Vec<u8>]) -> bool {
    candidates
        .iter()
        .fold(false, |acc, c| acc | bool::from(expected.ct_eq(c)))
}

/// A MAC computation under `key`, to be fed; `None` for an algorithm that is not a MAC.
pub(crate) fn mac_context(algorithm: Algorithm, key: &[u8]) -> Option<hmac::Context> {
    let which = match algorithm {
        Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::HmacSha256 => hmac::HMAC_SHA256,
        Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        _ => return None,
    };
    Some(hmac::Context::with_key(&hmac::Key::new(which, key)))
}

/// The MAC of the concatenation of `pieces`, fed one after another rather than joined first;
/// `None` for an algorithm that is not a MAC.
pub(crate) fn mac<'p>(
    algorithm: Algorithm,
    key: &[u8],
    pieces: impl IntoIterator<Item = &'p [u8]>,
) -> Option<Vec<u8>> {
    let mut context = mac_context(algorithm, key)?;
    for piece in pieces {
        context.update(piece);
    }
    Some(context.sign().as_ref().to_vec())
}

/// The lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}
