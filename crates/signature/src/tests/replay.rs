//! [`Verified::replay_key`]: set for the schemes that sign neither a timestamp nor an event id,
//! the same for every copy of a request whatever its unsigned headers, and different for a
//! different request.

use super::*;

/// The replay key of the request `pairs` describes, which must verify.
fn replay_key(v: &Verifier, pairs: &[(&str, &str)], body: &[u8], now: u64) -> Option<String> {
    v.verify(&headers(pairs), body, at(now))
        .expect("a verified request")
        .replay_key
}

const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn github_replays_under_a_fresh_delivery_id_share_the_replay_key() {
    let v = verifier(github(), &[("gh", "It's a Secret to Everybody")]);
    let body = b"Hello, World!";
    let first = replay_key(
        &v,
        &[
            ("x-hub-signature-256", GH_SIG),
            ("x-github-delivery", "d-1"),
        ],
        body,
        0,
    );
    let replayed = replay_key(
        &v,
        &[
            ("x-hub-signature-256", GH_SIG),
            ("x-github-delivery", "d-2"),
        ],
        body,
        0,
    );
    // The published vector's MAC through Python's hashlib.sha256, an independent implementation.
    let expected = "4b2c2f8c5f2a5269013398b55029e6ba2e29ef189731046522149a0181bfe157";
    assert_eq!(first.as_deref(), Some(expected));
    assert_eq!(replayed, first);
    // The same MAC in upper-case hex is the same request, not a new one.
    let shouted = format!("sha256={}", GH_SIG["sha256=".len()..].to_uppercase());
    let upper = replay_key(&v, &[("x-hub-signature-256", &shouted)], body, 0);
    assert_eq!(upper, first);
}

#[test]
fn shopify_replays_under_a_fresh_webhook_id_share_the_replay_key() {
    let v = verifier(shopify(), &[("sh", "shpss_test_secret")]);
    let body = br#"{"id":820982911946154508}"#;
    let sig = "AU5n5C4JV1EbE8g4yEzV+ZHbqkXpM29HXkzNAa5zicA=";
    let keys: Vec<_> = ["w-1", "w-2"]
        .iter()
        .map(|id| {
            let pairs = [("x-shopify-hmac-sha256", sig), ("x-shopify-webhook-id", id)];
            replay_key(&v, &pairs, body, 0)
        })
        .collect();
    // As above, from Python's hashlib.
    let expected = "c63ca8e66953ca949a9867d6ceb8149b794b8fd0c11219c2d20d74ad31e84f80";
    assert_eq!(keys, [Some(expected.to_owned()), Some(expected.to_owned())]);
}

#[test]
fn a_different_body_has_a_different_replay_key() {
    for scheme in [github(), shopify(), generic("{body}")] {
        let (v, h) = signed_request(&scheme, b"k", "d-1", b"one", 0);
        let one = v.verify(&h, b"one", at(0)).expect("one").replay_key;
        let (v, h) = signed_request(&scheme, b"k", "d-1", b"two", 0);
        let two = v.verify(&h, b"two", at(0)).expect("two").replay_key;
        assert!(one.is_some(), "{}", scheme.name());
        assert_ne!(one, two, "{}", scheme.name());
    }
}

#[test]
fn schemes_that_sign_a_timestamp_or_an_id_have_no_replay_key() {
    let now = 1_700_000_000;
    let signing = [
        Scheme::standard_webhooks(),
        stripe(),
        slack(),
        device_scheme(),
        generic("{id}.{body}"),
        generic("{timestamp}.{body}"),
    ];
    for scheme in signing {
        let (v, h) = signed_request(&scheme, b"k", "evt_1", b"body", now);
        let verified = v.verify(&h, b"body", at(now)).expect("signed, so verifies");
        assert_eq!(verified.replay_key, None, "{}", scheme.name());
    }
    // The published vectors too, verified by headers we did not sign.
    let v = verifier(Scheme::standard_webhooks(), &[("k1", SW_SECRET)]);
    let sw = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", SW_SIG),
    ];
    assert_eq!(replay_key(&v, &sw, SW_BODY, 1_614_265_330), None);
    let v = verifier(slack(), &[("s", "8f742231b10e8888abcd99yyyzzz85a5")]);
    let slack = [
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ];
    let key = replay_key(&v, &slack, SLACK_BODY.as_bytes(), 1_531_420_618);
    assert_eq!(key, None);
}

#[test]
fn the_none_scheme_has_no_replay_key() {
    let v = Verifier::new(Scheme::none(), SecretRing::default(), DEFAULT_TOLERANCE);
    assert_eq!(replay_key(&v, &[], b"anything", 0), None);
}

#[test]
fn a_generic_timestamp_header_outside_the_template_is_not_signed() {
    // The header is read (and held to the window) but not signed, so it tells a replay from
    // the original no better than a delivery id does.
    let scheme = generic("{body}");
    assert!(scheme.signs_timestamp());
    let (v, h) = signed_request(&scheme, b"k", "evt_1", b"body", 1_700_000_000);
    let verified = v.verify(&h, b"body", at(1_700_000_000)).expect("verifies");
    assert!(verified.replay_key.is_some());
}

/// A generic scheme with `template`, reading an id and a timestamp header.
fn generic(template: &str) -> Scheme {
    Scheme::new("hmac", Algorithm::HmacSha256, "x-device-signature")
        .id(Field::Header("x-device-id".into()))
        .timestamp(
            Field::Header("x-device-time".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::parse(template).expect("test template"))
}

#[test]
fn a_form_template_without_id_or_timestamp_has_a_replay_key() {
    // Twilio's layout: the URL and the sorted form. A rewritten body that signs the same
    // (parameters reordered) has the same replay key, so it cannot pass as a new event.
    let scheme = families::sha1_url();
    let v = verifier(scheme.clone(), &[("t", "12345")]);
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let body = b"Digits=1234&To=%2B18005551212&From=%2B12349013030&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
    let reordered = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    let h = headers(&[("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")]);
    let key = |body: &[u8]| {
        let request = Request {
            method: "POST",
            url,
            headers: &h,
            body,
        };
        v.verify_request(&request, at(0)).expect("valid").replay_key
    };
    assert!(key(body).is_some());
    assert_eq!(key(body), key(reordered));
}
