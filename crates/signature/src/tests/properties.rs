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
