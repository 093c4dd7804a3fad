//! Each family and layout against vectors not made by this crate: published ones (Standard
//! Webhooks, GitHub, Slack, Twilio, RFC 2202, RFC 4231, RFC 8032) and, where none is published,
//! ones made with Python's `hmac` module or the `openssl` command. The provider presets are
//! tested against their providers' own vectors in `spillway-providers`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
            HeaderValue::from_str(v).expect("test header value"),
        );
    }
    map
}

fn ring(scheme: &Scheme, secrets: &[(&str, &str)]) -> SecretRing {
    SecretRing::new(
        secrets
            .iter()
            .map(|(id, text)| Secret {
                id: (*id).into(),
                key: scheme.decode_secret(text).expect("test secret"),
                not_after: None,
            })
            .collect(),
    )
}

fn verifier(scheme: Scheme, secrets: &[(&str, &str)]) -> Verifier {
    let ring = ring(&scheme, secrets);
    Verifier::new(scheme, ring, DEFAULT_TOLERANCE)
}

/// The layouts of the five original presets, as the catalogue defines them.
pub(crate) fn github() -> Scheme {
    Scheme::new("github", Algorithm::HmacSha256, "x-hub-signature-256")
        .prefix("sha256=")
        .delivery_id("x-github-delivery")
}

pub(crate) fn stripe() -> Scheme {
    Scheme::new("stripe", Algorithm::HmacSha256, "stripe-signature")
        .params(',', "v1")
        .timestamp(Field::Param("t".into()), TimestampFormat::Seconds)
        .template(Template::parse("{timestamp}.{body}").expect("template"))
}

pub(crate) fn shopify() -> Scheme {
    Scheme::new("shopify", Algorithm::HmacSha256, "x-shopify-hmac-sha256")
        .encoding(Encoding::Base64)
        .delivery_id("x-shopify-webhook-id")
}

pub(crate) fn slack() -> Scheme {
    Scheme::new("slack", Algorithm::HmacSha256, "x-slack-signature")
        .prefix("v0=")
        .timestamp(
            Field::Header("x-slack-request-timestamp".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::parse("v0:{timestamp}:{body}").expect("template"))
}

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

#[test]
fn standard_webhooks_published_vector() {
    let v = verifier(Scheme::standard_webhooks(), &[("k1", SW_SECRET)]);
    let h = headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", SW_SIG),
    ]);
    let ok = v.verify(&h, SW_BODY, at(1_614_265_330)).expect("valid");
    assert_eq!(ok.key_id.as_deref(), Some("k1"));
    assert_eq!(
        ok.signed_id.as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
}

#[test]
fn standard_webhooks_accepts_svix_names_and_several_signatures() {
    let v = verifier(Scheme::standard_webhooks(), &[("k1", SW_SECRET)]);
    let h = headers(&[
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        ("svix-signature", &format!("v1,Ym9ndXM= v1a,xyz {SW_SIG}")),
    ]);
    assert!(v.verify(&h, SW_BODY, at(1_614_265_400)).is_ok());
}

#[test]
fn standard_webhooks_rejects_tampering_and_replays() {
    let v = verifier(Scheme::standard_webhooks(), &[("k1", SW_SECRET)]);
    let h = headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", SW_SIG),
    ]);
    let tampered = br#"{"test": 2432232315}"#;
    assert_eq!(
        v.verify(&h, tampered, at(1_614_265_330)),
        Err(VerifyError::Mismatch)
    );
    let stale = v
        .verify(&h, SW_BODY, at(1_614_265_330 + 301))
        .expect_err("stale");
    assert_eq!(stale.code(), "timestamp_too_old");
    assert!(!stale.is_unauthorized());
    let future = v
        .verify(&h, SW_BODY, at(1_614_265_330 - 301))
        .expect_err("future");
    assert_eq!(future.code(), "timestamp_in_future");
    // Exactly at the edge of the window is still accepted.
    assert!(v.verify(&h, SW_BODY, at(1_614_265_330 + 300)).is_ok());
}

#[test]
fn github_published_vector() {
    let v = verifier(github(), &[("gh", "It's a Secret to Everybody")]);
    let h = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    assert!(v.verify(&h, b"Hello, World!", at(0)).is_ok());
    assert_eq!(
        v.verify(&h, b"Hello, World?", at(0)),
        Err(VerifyError::Mismatch)
    );
}

const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

#[test]
fn slack_published_vector() {
    let v = verifier(slack(), &[("s", "8f742231b10e8888abcd99yyyzzz85a5")]);
    let h = headers(&[
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    assert!(v
        .verify(&h, SLACK_BODY.as_bytes(), at(1_531_420_618))
        .is_ok());
}

#[test]
fn stripe_vector_with_several_v1_values() {
    let v = verifier(stripe(), &[("st", "whsec_test_secret")]);
    let body = br#"{"id":"evt_1","object":"event"}"#;
    let h = headers(&[(
        "Stripe-Signature",
        "t=1700000000,v1=00ff,v1=0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd,v0=abcd",
    )]);
    assert!(v.verify(&h, body, at(1_700_000_100)).is_ok());
    let no_t = headers(&[("Stripe-Signature", "v1=00ff")]);
    assert_eq!(
        v.verify(&no_t, body, at(0)).expect_err("no t").code(),
        "malformed_header"
    );
}

#[test]
fn shopify_vector() {
    let v = verifier(shopify(), &[("sh", "shpss_test_secret")]);
    let h = headers(&[(
        "X-Shopify-Hmac-Sha256",
        "AU5n5C4JV1EbE8g4yEzV+ZHbqkXpM29HXkzNAa5zicA=",
    )]);
    assert!(v.verify(&h, br#"{"id":820982911946154508}"#, at(0)).is_ok());
}

pub(crate) fn device_scheme() -> Scheme {
    Scheme::new("hmac", Algorithm::HmacSha256, "x-device-signature")
        .prefix("hmac-sha256=")
        .encoding(Encoding::Base64)
        .id(Field::Header("x-device-id".into()))
        .timestamp(
            Field::Header("x-device-time".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::parse("{timestamp}:{id}:{body}").expect("template"))
}

#[test]
fn template_errors_are_explained() {
    assert_eq!(
        Template::parse("{ts}.{body}"),
        Err(TemplateError::UnknownPlaceholder("ts".into()))
    );
    assert_eq!(
        Template::parse("{timestamp}"),
        Err(TemplateError::BodyCount)
    );
    assert_eq!(Template::parse("{body"), Err(TemplateError::Unclosed));
    let mut no_id = device_scheme();
    no_id.id = None;
    assert_eq!(no_id.check(), Err(TemplateError::MissingHeader("id")));
    let mut no_time = device_scheme();
    no_time.timestamp = None;
    assert_eq!(
        no_time.check(),
        Err(TemplateError::MissingHeader("timestamp"))
    );
    assert_eq!(device_scheme().check(), Ok(()));
}

#[test]
fn rotation_records_the_matching_key_and_skips_expired_ones() {
    let scheme = github();
    let old = Secret {
        id: "old".into(),
        key: b"old-secret".to_vec(),
        not_after: Some(at(1_000)),
    };
    let new = Secret {
        id: "new".into(),
        key: b"new-secret".to_vec(),
        not_after: None,
    };
    let v = Verifier::new(
        scheme.clone(),
        SecretRing::new(vec![old, new]),
        DEFAULT_TOLERANCE,
    );
    let signed_old: HeaderMap =
        to_headers(sign(&scheme, b"old-secret", "", 0, b"x").expect("signs"));
    let signed_new: HeaderMap =
        to_headers(sign(&scheme, b"new-secret", "", 0, b"x").expect("signs"));
    assert_eq!(
        v.verify(&signed_old, b"x", at(999))
            .expect("old ok")
            .key_id
            .as_deref(),
        Some("old")
    );
    assert_eq!(
        v.verify(&signed_new, b"x", at(999))
            .expect("new ok")
            .key_id
            .as_deref(),
        Some("new")
    );
    assert_eq!(
        v.verify(&signed_old, b"x", at(1_000)),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn all_secrets_expired_is_reported() {
    let scheme = github();
    let only = Secret {
        id: "gone".into(),
        key: b"k".to_vec(),
        not_after: Some(at(10)),
    };
    let v = Verifier::new(
        scheme.clone(),
        SecretRing::new(vec![only]),
        DEFAULT_TOLERANCE,
    );
    let h = to_headers(sign(&scheme, b"k", "", 0, b"x").expect("signs"));
    assert_eq!(v.verify(&h, b"x", at(11)), Err(VerifyError::NoActiveSecret));
}

#[test]
fn missing_and_duplicated_headers() {
    let v = verifier(github(), &[("gh", "s")]);
    let err = v
        .verify(&HeaderMap::new(), b"x", at(0))
        .expect_err("missing");
    assert_eq!(err.code(), "signature_missing");
    assert!(err.is_unauthorized());
    // A plain signature header sent twice: two candidates, neither of which matches here...
    let twice = headers(&[
        ("x-hub-signature-256", "sha256=00"),
        ("x-hub-signature-256", "sha256=00"),
    ]);
    assert_eq!(v.verify(&twice, b"x", at(0)), Err(VerifyError::Mismatch));
    // ... and either of which may (Mollie sends one per secret while it rotates).
    let good = &sign(&github(), b"s", "", 0, b"x").expect("signs")[0].1;
    let either = headers(&[
        ("x-hub-signature-256", "sha256=00"),
        ("x-hub-signature-256", good),
    ]);
    assert!(v.verify(&either, b"x", at(0)).is_ok());
    // More signatures than any rotation needs: refused before any is checked.
    let many = vec![("x-hub-signature-256", "sha256=00"); 17];
    assert_eq!(
        v.verify(&headers(&many), b"x", at(0))
            .expect_err("many")
            .code(),
        "malformed_header"
    );
    // A token sent twice would be two guesses for one request: refused.
    let token = Scheme::new("t", Algorithm::Token, "x-token").encoding(Encoding::Text);
    let token = verifier(token, &[("k", "tok")]);
    let twice = headers(&[("x-token", "guess"), ("x-token", "tok")]);
    assert_eq!(
        token.verify(&twice, b"", at(0)).expect_err("twice").code(),
        "malformed_header"
    );
    // A key=value header sent twice would carry two timestamps: refused.
    let stripe = verifier(stripe(), &[("st", "s")]);
    let two = headers(&[
        ("stripe-signature", "t=1,v1=00"),
        ("stripe-signature", "t=2,v1=00"),
    ]);
    assert_eq!(
        stripe.verify(&two, b"x", at(0)).expect_err("twice").code(),
        "malformed_header"
    );
    let garbage = headers(&[("x-hub-signature-256", "sha256=zz")]);
    assert_eq!(
        v.verify(&garbage, b"x", at(0)).expect_err("garbage").code(),
        "malformed_header"
    );
}

/// Every scheme that signs: the original layouts and one per other HMAC family and timestamp
/// format.
fn every_scheme() -> Vec<Scheme> {
    vec![
        Scheme::standard_webhooks(),
        github(),
        stripe(),
        shopify(),
        slack(),
        device_scheme(),
        Scheme::new("sha1", Algorithm::HmacSha1, "x-sha1").encoding(Encoding::Base64Url),
        families::sha512_rfc3339(),
        families::millis(),
    ]
}

/// A verifier holding `key` alone, and the headers of `body` signed with it at `now`.
fn signed_request(
    scheme: &Scheme,
    key: &[u8],
    id: &str,
    body: &[u8],
    now: u64,
) -> (Verifier, HeaderMap) {
    let v = Verifier::new(
        scheme.clone(),
        SecretRing::new(vec![Secret {
            id: "k".into(),
            key: key.to_vec(),
            not_after: None,
        }]),
        DEFAULT_TOLERANCE,
    );
    let now = i64::try_from(now).expect("a test time");
    (
        v,
        to_headers(sign(scheme, key, id, now, body).expect("signs")),
    )
}

#[test]
fn sign_then_verify_for_every_scheme() {
    for scheme in every_scheme() {
        let (v, h) = signed_request(
            &scheme,
            b"0123456789abcdef",
            "evt_1",
            b"body",
            1_700_000_000,
        );
        assert!(
            v.verify(&h, b"body", at(1_700_000_000)).is_ok(),
            "{}",
            scheme.name()
        );
        assert_eq!(
            v.verify(&h, b"bodY", at(1_700_000_000)),
            Err(VerifyError::Mismatch),
            "{}",
            scheme.name()
        );
    }
}

#[test]
fn none_scheme_accepts_anything() {
    let v = Verifier::new(Scheme::none(), SecretRing::default(), DEFAULT_TOLERANCE);
    assert_eq!(
        v.verify(&HeaderMap::new(), b"", at(0)),
        Ok(Verified {
            key_id: None,
            signed_id: None,
            replay_key: None,
        })
    );
}

#[test]
fn standard_webhooks_secret_must_be_base64() {
    assert!(matches!(
        Scheme::standard_webhooks().decode_secret("whsec_!!!"),
        Err(SecretError::NotBase64(_))
    ));
    assert_eq!(github().decode_secret(""), Err(SecretError::Empty));
    // v1a: the source holds the sender's public key; its signing key is refused by name.
    let v1a = Scheme::standard_webhooks_v1a();
    let public = v1a
        .decode_secret("whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=")
        .expect("public key");
    assert_eq!(public.len(), 32);
    let private = v1a.decode_secret("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbc=");
    assert!(
        matches!(&private, Err(SecretError::NotPublicKey(why)) if why.contains("whpk_")),
        "{private:?}"
    );
}

#[test]
fn a_malformed_secret_is_not_quoted_in_its_error() {
    // One secret per kind of base64 error; the secrets are digits, `$` and `=` where the
    // base64 crate's own text would name a byte value, an offset or a length in digits.
    let malformed = [
        "whsec_1234$678", // a byte outside the alphabet: `$`, 36, at offset 4
        "whsec_AB==",     // last symbol with stray bits: `B`, 66, at offset 1
        "whsec_12345",    // impossible length: 5
        "whsec_123",      // missing padding
    ];
    for secret in malformed {
        let e = Scheme::standard_webhooks()
            .decode_secret(secret)
            .expect_err(secret);
        assert!(matches!(e, SecretError::NotBase64(_)), "{secret}: {e:?}");
        for text in [e.to_string(), format!("{e:?}")] {
            // The one number the text may hold is the 64 of "base64" (and of `NotBase64`).
            let rest = text.to_lowercase().replace("base64", "");
            assert!(
                !rest.contains(|c: char| c.is_ascii_digit() || c == '$' || c == '='),
                "{secret}: {text}"
            );
        }
        assert!(std::error::Error::source(&e).is_none(), "{secret}");
    }
    // The text depends on the kind of error alone, not on the secret.
    assert_eq!(
        Scheme::standard_webhooks().decode_secret("whsec_1234$678"),
        Scheme::standard_webhooks().decode_secret("whsec_zz*y")
    );
}

fn to_headers(pairs: Vec<(String, String)>) -> HeaderMap {
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers(&borrowed)
}

mod families;
mod properties;
mod replay;

#[test]
fn a_body_signed_in_pieces_gets_the_published_signature() {
    use base64::Engine as _;
    let key = b64()
        .decode(SW_SECRET.trim_start_matches("whsec_"))
        .expect("key");
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    for piece in [1, 7, SW_BODY.len()] {
        let other: &[u8] = b"another key";
        let mut signer = sign_streamed(
            &Scheme::standard_webhooks(),
            &[&key, other],
            id,
            1_614_265_330,
        )
        .expect("signs");
        SW_BODY.chunks(piece).for_each(|p| signer.update(p));
        let signed = signer.finish().expect("headers");
        let signature = |headers: &[(String, String)]| {
            headers
                .iter()
                .find(|(name, _)| name == "webhook-signature")
                .map(|(_, value)| value.clone())
        };
        assert_eq!(signature(&signed[0]).as_deref(), Some(SW_SIG), "{piece}");
        let whole = sign(
            &Scheme::standard_webhooks(),
            other,
            id,
            1_614_265_330,
            SW_BODY,
        )
        .expect("signs");
        assert_eq!(signed[1], whole, "the second key's, as the whole body's");
    }
}

#[test]
fn what_follows_the_body_is_signed_after_it_and_forms_do_not_stream() {
    let tail = Scheme::new("tail", Algorithm::HmacSha256, "x-sig")
        .timestamp(Field::Header("x-ts".into()), TimestampFormat::Seconds)
        .template(Template::parse("{body}.{timestamp}").expect("template"));
    let mut signer = sign_streamed(&tail, &[b"k"], "e-1", 1_700_000_000).expect("signs");
    signer.update(b"hello ");
    signer.update(b"world");
    let whole = sign(&tail, b"k", "e-1", 1_700_000_000, b"hello world").expect("signs");
    assert_eq!(signer.finish().expect("headers"), vec![whole]);

    let form = Scheme::new("form", Algorithm::HmacSha256, "x-sig")
        .template(Template::parse("{url}{form}").expect("template"));
    assert!(sign_streamed(&form, &[b"k"], "e-1", 1).is_err());
}
