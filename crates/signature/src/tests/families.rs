//! The families beyond HMAC-SHA256 and the layouts beyond the original five: SHA-1 and SHA-512,
//! timestamps in milliseconds and RFC 3339, URL and form templates, Ed25519, ECDSA P-256,
//! tokens and Basic credentials.

use super::*;

/// Twilio's layout: base64 HMAC-SHA1 over the URL and the sorted form parameters.
pub(super) fn sha1_url() -> Scheme {
    Scheme::new("sha1-url", Algorithm::HmacSha1, "x-twilio-signature")
        .encoding(Encoding::Base64)
        .template(Template::parse("{url}{form}").expect("template"))
}

pub(super) fn sha512_rfc3339() -> Scheme {
    Scheme::new("sha512", Algorithm::HmacSha512, "x-signature")
        .id(Field::Header("x-id".into()))
        .timestamp(Field::Header("x-time".into()), TimestampFormat::Rfc3339)
        .template(Template::parse("{id}.{timestamp}.{body}").expect("template"))
}

pub(super) fn millis() -> Scheme {
    Scheme::new("millis", Algorithm::HmacSha256, "x-signature")
        .timestamp(Field::Header("x-time".into()), TimestampFormat::Millis)
        .template(Template::parse("{timestamp}.{body}").expect("template"))
}

fn hex_keyed(scheme: Scheme) -> Scheme {
    scheme.secret(SecretFormat::Hex)
}

fn request<'a>(url: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> Request<'a> {
    Request {
        method: "POST",
        url,
        headers,
        body,
    }
}

#[test]
fn twilio_published_example_signs_the_url_and_sorted_form() {
    // https://www.twilio.com/docs/usage/security#validating-requests
    let v = verifier(sha1_url(), &[("t", "12345")]);
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let body = b"Digits=1234&To=%2B18005551212&From=%2B12349013030&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
    let h = headers(&[("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")]);
    assert!(v.verify_request(&request(url, &h, body), at(0)).is_ok());
    let other_url = "https://mycompany.com/myapp.php?foo=1&bar=3";
    assert_eq!(
        v.verify_request(&request(other_url, &h, body), at(0)),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn hmac_sha1_and_sha512_rfc_vectors() {
    // RFC 2202 test case 1 and RFC 4231 test case 1: key 0x0b x 20, data "Hi There".
    let key = "0b".repeat(20);
    let sha1 = hex_keyed(Scheme::new("s1", Algorithm::HmacSha1, "x-sig"));
    let sha512 = hex_keyed(Scheme::new("s512", Algorithm::HmacSha512, "x-sig"));
    let cases = [
        (sha1, "b617318655057264e28bc0b6fb378c8ef146be00"),
        (sha512, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
    ];
    for (scheme, mac) in cases {
        let v = verifier(scheme, &[("k", &key)]);
        let h = headers(&[("x-sig", mac)]);
        assert!(v.verify(&h, b"Hi There", at(0)).is_ok());
        assert_eq!(v.verify(&h, b"Hi there", at(0)), Err(VerifyError::Mismatch));
    }
}

#[test]
fn timestamps_in_milliseconds_and_rfc3339() {
    // Made with Python's hmac module.
    let ms = verifier(millis(), &[("k", "meter-key")]);
    let h = headers(&[
        ("x-time", "1700000000123"),
        (
            "x-signature",
            "63e6dfa8552c8c7c5311619a6cdf453c6634855eeb5b275306576965c9752696",
        ),
    ]);
    assert!(ms.verify(&h, br#"{"r":1}"#, at(1_700_000_000)).is_ok());
    let stale = ms.verify(&h, br#"{"r":1}"#, at(1_700_000_400));
    assert_eq!(stale.expect_err("stale").code(), "timestamp_too_old");

    let rfc = verifier(sha512_rfc3339(), &[("k", "meter-key")]);
    let h = headers(&[
        ("x-id", "m-1"),
        ("x-time", "2023-11-14T22:13:20Z"),
        ("x-signature", "be841d0db96269c2b82b7b406fd67bc9eced1930b7ecfa3b34b1e0be781703538ebb6494d476eba2088accc428ffc679520364baaf2cc5192491dd054c578728"),
    ]);
    let ok = rfc
        .verify(&h, br#"{"r":1}"#, at(1_700_000_000))
        .expect("valid");
    assert_eq!(ok.signed_id.as_deref(), Some("m-1"));
    let seconds = headers(&[
        ("x-id", "m-1"),
        ("x-time", "1700000000"),
        ("x-signature", "00"),
    ]);
    let e = rfc
        .verify(&seconds, br#"{"r":1}"#, at(1_700_000_000))
        .expect_err("format");
    assert_eq!(e.code(), "malformed_header");
    assert!(e.to_string().contains("RFC 3339"), "{e}");
}

fn ed25519() -> Scheme {
    Scheme::new("ed", Algorithm::Ed25519, "x-signature-ed25519")
        .secret(SecretFormat::Hex)
        .timestamp(
            Field::Header("x-signature-timestamp".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::parse("{timestamp}{body}").expect("template"))
}

#[test]
fn ed25519_rfc8032_vector() {
    // RFC 8032 section 7.1, test 2: the message is the one byte 0x72.
    let scheme = Scheme::new("ed", Algorithm::Ed25519, "x-sig").secret(SecretFormat::Hex);
    let v = verifier(
        scheme,
        &[(
            "k",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        )],
    );
    let h = headers(&[("x-sig", "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")]);
    let ok = v.verify(&h, &[0x72], at(0)).expect("valid");
    assert!(ok.replay_key.is_some(), "the body alone is signed");
    assert_eq!(v.verify(&h, &[0x73], at(0)), Err(VerifyError::Mismatch));
}

#[test]
fn an_ed25519_key_of_the_wrong_length_is_refused() {
    assert_eq!(
        ed25519().decode_secret("abcd"),
        Err(SecretError::NotPublicKey(
            "an Ed25519 public key is 32 bytes"
        ))
    );
}

const EC_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAES4orOknBoc6PdGdZ14hABKCBvoPKtMle9cT+6zXlCCce8G/GlTXyiE/OcUuIHh02EjzGHZc3ylDh8nMDL0T+qg==";

fn ecdsa() -> Scheme {
    Scheme::new("ec", Algorithm::EcdsaP256Sha256, "x-ec-signature")
        .encoding(Encoding::Base64)
        .timestamp(
            Field::Header("x-ec-timestamp".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::parse("{timestamp}{body}").expect("template"))
}

#[test]
fn ecdsa_p256_vector_made_with_openssl() {
    // `openssl dgst -sha256 -sign` over `1700000000{"event":"processed"}`.
    let v = verifier(ecdsa(), &[("k", EC_PUBLIC)]);
    let h = headers(&[
        ("x-ec-timestamp", "1700000000"),
        ("x-ec-signature", "MEYCIQCbRTe5k0Ij7ndzRAzNm3JOgWb1WcMymQFW7kYwd8ShsgIhAIMLxKuDgeqBhWIdK2FRZEbDc7xA4aXpW2dTLFdpgw7y"),
    ]);
    assert!(v
        .verify(&h, br#"{"event":"processed"}"#, at(1_700_000_000))
        .is_ok());
    assert_eq!(
        v.verify(&h, br#"{"event":"processes"}"#, at(1_700_000_000)),
        Err(VerifyError::Mismatch)
    );
    // The same key as PEM.
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{EC_PUBLIC}\n-----END PUBLIC KEY-----\n");
    assert_eq!(
        ecdsa().decode_secret(&pem),
        ecdsa().decode_secret(EC_PUBLIC)
    );
    // An Ed25519 key, or text that is no key, is not a P-256 key.
    assert!(matches!(
        ecdsa().decode_secret("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="),
        Err(SecretError::NotPublicKey(_))
    ));
    assert!(ecdsa().decode_secret("bm90IGEga2V5").is_err());
}

#[test]
fn tokens_and_basic_credentials_are_compared_whole() {
    let token = Scheme::new("token", Algorithm::Token, "x-gitlab-token").encoding(Encoding::Text);
    let v = verifier(token, &[("k", "s3cret-token")]);
    assert!(v
        .verify(
            &headers(&[("x-gitlab-token", "s3cret-token")]),
            b"{}",
            at(0)
        )
        .is_ok());
    for wrong in ["s3cret-toke", "s3cret-token2", "S3cret-token"] {
        let h = headers(&[("x-gitlab-token", wrong)]);
        assert_eq!(
            v.verify(&h, b"{}", at(0)),
            Err(VerifyError::Mismatch),
            "{wrong}"
        );
    }
    let ok = v.verify(
        &headers(&[("x-gitlab-token", "s3cret-token")]),
        b"{}",
        at(0),
    );
    assert_eq!(ok.expect("valid").replay_key, None, "a token signs nothing");

    let basic = Scheme::new("basic", Algorithm::Token, "authorization")
        .prefix("Basic ")
        .encoding(Encoding::Base64);
    let v = verifier(basic, &[("k", "hooks:pa55")]);
    // "hooks:pa55" in base64, with the scheme name in any case.
    assert!(v
        .verify(
            &headers(&[("authorization", "basic aG9va3M6cGE1NQ==")]),
            b"",
            at(0)
        )
        .is_ok());
    let wrong = headers(&[("authorization", "Basic aG9va3M6cGE1Ng==")]);
    assert_eq!(v.verify(&wrong, b"", at(0)), Err(VerifyError::Mismatch));
    let bearer = headers(&[("authorization", "Bearer aG9va3M6cGE1NQ==")]);
    assert_eq!(
        v.verify(&bearer, b"", at(0)).expect_err("bearer").code(),
        "malformed_header"
    );
}

#[test]
fn values_in_the_body() {
    // Mailgun's layout: the signature, its token and its timestamp in the JSON body. Made with
    // Python: hmac.new(b"key-1", b"1700000000tok", hashlib.sha256).hexdigest().
    let scheme = Scheme::new("in-body", Algorithm::HmacSha256, "")
        .signature_in_body("/signature/signature")
        .id(Field::Json("/signature/token".into()))
        .timestamp(
            Field::Json("/signature/timestamp".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::of(&[Part::Timestamp, Part::Id]));
    let v = verifier(scheme, &[("k", "key-1")]);
    let body = |token: &str| {
        format!(
            r#"{{"signature":{{"timestamp":"1700000000","token":"{token}","signature":"dc8bfeb77b457e9967c657a5bf176acfc5f802cebb6f075c5975259ec2a0ff54"}},"event-data":{{}}}}"#
        )
    };
    let none = HeaderMap::new();
    assert!(v
        .verify(&none, body("tok").as_bytes(), at(1_700_000_000))
        .is_ok());
    assert_eq!(
        v.verify(&none, body("tok2").as_bytes(), at(1_700_000_000)),
        Err(VerifyError::Mismatch)
    );
    let e = v
        .verify(&none, b"not json", at(1_700_000_000))
        .expect_err("not json");
    assert_eq!(e.code(), "malformed_header");
}

#[test]
fn a_second_signature_header_is_read_too() {
    // Box sends a primary and a secondary signature, each with its own key.
    let scheme = Scheme::new("two", Algorithm::HmacSha256, "x-primary").also_header("x-secondary");
    let v = verifier(scheme.clone(), &[("secondary", "key-2")]);
    let mac = sign(&scheme, b"key-2", "", 0, b"x").expect("signs")[0]
        .1
        .clone();
    let h = headers(&[("x-primary", "00"), ("x-secondary", &mac)]);
    let ok = v.verify(&h, b"x", at(0)).expect("valid");
    assert_eq!(ok.key_id.as_deref(), Some("secondary"));
    assert_eq!(
        v.verify(&HeaderMap::new(), b"x", at(0)),
        Err(VerifyError::MissingHeader("x-primary".into()))
    );
}
