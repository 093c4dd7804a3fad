//! Properties over every scheme: whatever the key, id, time and body, a request signed the
//! provider's way verifies, and changing any one byte of the body or of the signature makes it
//! fail.

use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_700_000_000;

fn signature_header(scheme: &Scheme) -> String {
    scheme.signature_headers[0].to_string()
}

proptest! {
    #[test]
    fn sign_then_verify_passes(
        key in prop::collection::vec(any::<u8>(), 1..64),
        id in "[a-zA-Z0-9_-]{1,40}",
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        for scheme in every_scheme() {
            let (v, h) = signed_request(&scheme, &key, &id, &body, NOW);
            prop_assert!(v.verify(&h, &body, at(NOW)).is_ok(), "{}", scheme.name());
        }
    }

    #[test]
    fn any_single_byte_change_of_the_body_fails(
        key in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 1..2048),
        at_index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        for scheme in every_scheme() {
            let (v, h) = signed_request(&scheme, &key, "evt_1", &body, NOW);
            let mut tampered = body.clone();
            let i = at_index.index(tampered.len());
            tampered[i] ^= flip;
            prop_assert_eq!(
                v.verify(&h, &tampered, at(NOW)).map(|_| ()),
                Err(VerifyError::Mismatch),
                "{}", scheme.name()
            );
        }
    }

    #[test]
    fn any_single_byte_change_of_the_signature_fails(
        key in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 0..512),
        at_index in any::<prop::sample::Index>(),
        replacement in "[a-zA-Z0-9+/=,.:_ -]",
    ) {
        for scheme in every_scheme() {
            let (v, mut h) = signed_request(&scheme, &key, "evt_1", &body, NOW);
            let name = signature_header(&scheme);
            let original = h.get(name.as_str()).and_then(|v| v.to_str().ok()).expect("signed").to_owned();
            let mut bytes = original.clone().into_bytes();
            let i = at_index.index(bytes.len());
            let new = replacement.as_bytes()[0];
            // Hex digests are read case-insensitively: `A` for `a` is the same MAC, not
            // a forgery, so only changes beyond letter case count.
            prop_assume!(!bytes[i].eq_ignore_ascii_case(&new));
            // Base64 padding may be left off (some senders do): dropping it is the same MAC.
            prop_assume!(bytes[i] != b'=');
            // Between `key=value` pairs a space separates as the separator does (Persona's
            // rotation groups): swapping one for the other is the same header.
            if let SignatureFormat::Params { separator, .. } = &scheme.format {
                let separates = |b: u8| b == b' ' || char::from(b) == *separator;
                prop_assume!(!(separates(bytes[i]) && separates(new)));
            }
            bytes[i] = new;
            let changed = String::from_utf8(bytes).expect("ascii");
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(&changed).expect("value"),
            );
            prop_assert!(
                v.verify(&h, &body, at(NOW)).is_err(),
                "{}: {original} -> {changed} still verifies", scheme.name()
            );
        }
    }
}

/// Public-key schemes, signed with ring's own signers (the verifying side is under test), and
/// a token scheme.
mod public_key {
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING,
    };

    use super::*;

    fn scheme(algorithm: Algorithm) -> Scheme {
        Scheme::new("pk", algorithm, "x-signature")
            .encoding(Encoding::Base64)
            .timestamp(Field::Header("x-time".into()), TimestampFormat::Seconds)
            .template(Template::parse("{timestamp}.{body}").expect("template"))
    }

    /// A verifier holding the public key, and a signer of the string-to-sign.
    fn ed25519(seed: [u8; 32]) -> (Verifier, impl Fn(&[u8]) -> Vec<u8>) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
        let v = verifier_with(
            scheme(Algorithm::Ed25519),
            pair.public_key().as_ref().to_vec(),
        );
        (v, move |m: &[u8]| pair.sign(m).as_ref().to_vec())
    }

    fn ecdsa() -> (Verifier, impl Fn(&[u8]) -> Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        let v = verifier_with(
            scheme(Algorithm::EcdsaP256Sha256),
            pair.public_key().as_ref().to_vec(),
        );
        (v, move |m: &[u8]| {
            pair.sign(&rng, m).expect("sign").as_ref().to_vec()
        })
    }

    fn verifier_with(scheme: Scheme, key: Vec<u8>) -> Verifier {
        let ring = SecretRing::new(vec![Secret {
            id: "k".into(),
            key,
            not_after: None,
        }]);
        Verifier::new(scheme, ring, DEFAULT_TOLERANCE)
    }

    fn request(signature: &[u8]) -> HeaderMap {
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD.encode(signature);
        headers(&[("x-time", &NOW.to_string()), ("x-signature", &sig)])
    }

    fn message(body: &[u8]) -> Vec<u8> {
        [format!("{NOW}.").as_bytes(), body].concat()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn signed_verifies_and_any_changed_byte_fails(
            seed in any::<[u8; 32]>(),
            body in prop::collection::vec(any::<u8>(), 1..512),
            at_index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (ed, ed_sign) = ed25519(seed);
            let (ec, ec_sign) = ecdsa();
            for (v, sig) in [(ed, ed_sign(&message(&body))), (ec, ec_sign(&message(&body)))] {
                let h = request(&sig);
                prop_assert!(v.verify(&h, &body, at(NOW)).is_ok());
                let mut tampered = body.clone();
                let i = at_index.index(tampered.len());
                tampered[i] ^= flip;
                prop_assert_eq!(v.verify(&h, &tampered, at(NOW)).map(|_| ()), Err(VerifyError::Mismatch));
                let mut forged = sig.clone();
                let j = at_index.index(forged.len());
                forged[j] ^= flip;
                prop_assert!(v.verify(&request(&forged), &body, at(NOW)).is_err());
            }
        }

        #[test]
        fn a_token_matches_only_itself(
            token in "[ -~]{1,64}",
            at_index in any::<prop::sample::Index>(),
            replacement in "[!-~]",
        ) {
            let scheme = Scheme::new("t", Algorithm::Token, "x-token").encoding(Encoding::Text);
            let v = verifier_with(scheme, token.trim().as_bytes().to_vec());
            prop_assume!(!token.trim().is_empty());
            let h = headers(&[("x-token", token.trim())]);
            prop_assert!(v.verify(&h, b"", at(NOW)).is_ok());
            let mut other = token.trim().as_bytes().to_vec();
            let i = at_index.index(other.len());
            prop_assume!(other[i] != replacement.as_bytes()[0]);
            other[i] = replacement.as_bytes()[0];
            let other = String::from_utf8(other).expect("ascii");
            prop_assert!(v.verify(&headers(&[("x-token", &other)]), b"", at(NOW)).is_err());
        }
    }
}
