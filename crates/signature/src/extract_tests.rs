//! Layouts that only show up while a provider rotates: Persona's two `t=,v1=` groups in one
//! header. The MACs were made with Python's `hmac` module.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

use crate::{
    Algorithm, Field, Part, Scheme, Secret, SecretRing, Template, TimestampFormat, Verifier,
};

const BODY: &[u8] = br#"{"data":{"id":"evt_persona_1"}}"#;
/// hmac.new(b"wbhsec_old", b"1700000000." + BODY, sha256).hexdigest(), and with wbhsec_new.
const OLD: &str = "8e6e76bf6ba084e7335f5e12dee0502c4186384debb061297da4199b4975844d";
const NEW: &str = "ae21e6c5c5741113acff14b6fec9ac162d16df8c0afc9533cf6e46973c8f2adf";

fn persona(secret: &str) -> Verifier {
    let scheme = Scheme::new("persona", Algorithm::HmacSha256, "persona-signature")
        .params(',', "v1")
        .timestamp(Field::Param("t".into()), TimestampFormat::Seconds)
        .template(Template::of(&[Part::Timestamp, Part::dot(), Part::Body]));
    let ring = SecretRing::new(vec![Secret {
        id: "k".into(),
        key: secret.as_bytes().to_vec(),
        not_after: None,
    }]);
    Verifier::new(scheme, ring, Duration::from_secs(300))
}

fn header(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "persona-signature",
        HeaderValue::from_str(value).expect("value"),
    );
    h
}

#[test]
fn two_rotation_groups_verify_with_either_secret() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_010);
    let both = header(&format!("t=1700000000,v1={NEW} t=1700000000,v1={OLD}"));
    for secret in ["wbhsec_new", "wbhsec_old"] {
        assert!(persona(secret).verify(&both, BODY, now).is_ok(), "{secret}");
    }
    assert_eq!(
        persona("wbhsec_other")
            .verify(&both, BODY, now)
            .expect_err("other")
            .code(),
        "signature_mismatch"
    );
    // One group, as outside a rotation, and `, ` between the pairs.
    let one = header(&format!("t=1700000000, v1={NEW}"));
    assert!(persona("wbhsec_new").verify(&one, BODY, now).is_ok());
}

#[test]
fn groups_with_different_timestamps_are_refused() {
    let now: SystemTime = UNIX_EPOCH + Duration::from_secs(1_700_000_010);
    let split = header(&format!("t=1700000000,v1={NEW} t=1700000001,v1={OLD}"));
    let e = persona("wbhsec_new")
        .verify(&split, BODY, now)
        .expect_err("two t");
    assert_eq!(e.code(), "malformed_header");
    assert!(e.to_string().contains("different values"), "{e}");
}
