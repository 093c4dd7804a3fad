//! One source per signature family and one per handshake, through a running ingress: each
//! provider's request gets the answer the provider expects; an accepted event is in Kafka
//! exactly once under the provider's own dedupe key, with its event type; a handshake is
//! answered and written nowhere. (That each preset's scheme matches its provider is proven
//! against the providers' own vectors in spillway-providers; these requests are signed here.)

use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::json;
use spillway_core::headers;
use spillway_signature::{sign_request, unix_seconds, SignInput};
use spillway_testkit::spillway::{preset_scheme, ready_ingress, Setup, TestSource};
use spillway_testkit::{read_topic, Client, IngressProcess, Reply};

/// A P-256 key made with `openssl ecparam -genkey`, as PKCS#8, and its public key as
/// SendGrid shows it (base64 SubjectPublicKeyInfo).
const EC_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgN2Gt5yk9gKV+NhkcOOGzSmknosc25iqCZzI7J0LnTjuhRANCAARLiis6ScGhzo90Z1nXiEAEoIG+g8q0yV71xP7rNeUIJx7wb8aVNfKIT85xS4geHTYSPMYdlzfKUOHycwMvRP6q";
const EC_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAES4orOknBoc6PdGdZ14hABKCBvoPKtMle9cT+6zXlCCce8G/GlTXyiE/OcUuIHh02EjzGHZc3ylDh8nMDL0T+qg==";
/// The Ed25519 key pair whose seed is 32 bytes of 7, and its public key in hex.
const ED_SEED: [u8; 32] = [7; 32];
const ED_PUBLIC: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

fn src(name: &'static str, secret: &'static str) -> TestSource {
    TestSource {
        name,
        scheme: preset_scheme(name),
        secret,
    }
}

fn sources() -> Vec<TestSource> {
    vec![
        src("stripe", "whsec_e2e_stripe"),
        src("twilio", "twilio-auth-token"),
        src("onfleet", "0badc0ffee"),
        src("discord", ED_PUBLIC),
        src("sendgrid", EC_PUBLIC),
        src("gitlab", "gitlab-token"),
        src("postmark", "hooks:pa55word"),
        src("slack", "slack-signing-secret"),
        src("zoom", "zoom-secret-token"),
        src("twitch", "twitch-eventsub-secret"),
        src("meta", "meta-app-secret"),
        src("dropbox", "dropbox-app-secret"),
        src("microsoft-graph", "graph-client-state"),
        src("okta", "Bearer okta-hook-token"),
        src("asana", "asana-hook-secret"),
    ]
}

fn now() -> i64 {
    unix_seconds(std::time::SystemTime::now())
}

/// `body` signed as `source`'s provider signs a POST to `url`.
fn hmac_signed(source: &TestSource, id: &str, url: &str, body: &str) -> Vec<(String, String)> {
    let input = SignInput {
        id,
        timestamp: now(),
        method: "POST",
        url,
        body: body.as_bytes(),
    };
    sign_request(&source.scheme, &source.key(), &input).expect("an HMAC preset")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn post(
    ingress: &IngressProcess,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &str,
) -> Reply {
    let url = ingress.hook_url(path_and_query);
    Client::http1()
        .send(Method::POST, &url, headers, Bytes::from(body.to_owned()))
        .await
        .expect("request")
}

/// The one record of `source`'s topic, checked to carry `dedupe` as its key.
async fn the_record(
    setup: &Setup,
    source: &str,
    dedupe: &str,
) -> spillway_kafka::reader::ReadRecord {
    let records = read_topic(&setup.brokers, &setup.topic(source)).await;
    assert_eq!(records.len(), 1, "{source}: exactly one record");
    let record = records.into_iter().next().expect("one");
    assert_eq!(record.header(headers::DEDUPE_KEY), Some(dedupe), "{source}");
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_through_a_running_ingress() {
    let sources = sources();
    let (setup, ingress) = ready_ingress(&sources, json!({})).await;
    let by_name = |n: &str| {
        sources
            .iter()
            .find(|s| s.name == n)
            .expect("source")
            .clone()
    };
    let host = ingress
        .hook_url("")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .to_owned();

    // HMAC-SHA256 (Stripe): the event id in the body is the key, its type the event type.
    let body = r#"{"id":"evt_e2e_1","object":"event","type":"charge.succeeded"}"#;
    let reply = post(
        &ingress,
        "stripe",
        &hmac_signed(&by_name("stripe"), "", "", body),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let record = the_record(&setup, "stripe", "evt_e2e_1").await;
    assert_eq!(record.value, body.as_bytes());

    // HMAC-SHA1 over the URL and sorted form (Twilio), keyed by its idempotency token.
    let body = "CallSid=CA123&From=%2B15550001&To=%2B15550002&CallStatus=ringing";
    let url = format!("https://{host}/v1/hooks/twilio");
    let mut h = hmac_signed(&by_name("twilio"), "", &url, body);
    h.extend(pairs(&[
        ("i-twilio-idempotency-token", "idem-1"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]));
    let reply = post(&ingress, "twilio", &h, body).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    the_record(&setup, "twilio", "idem-1").await;

    // HMAC-SHA512 with a hex key (Onfleet): no id of its own, so the body's hash.
    let body = r#"{"triggerName":"taskCompleted","taskId":"t1"}"#;
    let reply = post(
        &ingress,
        "onfleet",
        &hmac_signed(&by_name("onfleet"), "", "", body),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    use sha2::Digest as _;
    the_record(&setup, "onfleet", &hex::encode(sha2::Sha256::digest(body))).await;

    // Ed25519 (Discord): an application command is an event keyed by its id.
    let pair = Ed25519KeyPair::from_seed_unchecked(&ED_SEED).expect("seed");
    let body = r#"{"type":2,"id":"853498","data":{"name":"hello"}}"#;
    let ts = now().to_string();
    let sig = hex::encode(pair.sign(format!("{ts}{body}").as_bytes()));
    let h = pairs(&[
        ("x-signature-ed25519", &sig),
        ("x-signature-timestamp", &ts),
    ]);
    let reply = post(&ingress, "discord", &h, body).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    the_record(&setup, "discord", "853498").await;

    // ECDSA P-256 (SendGrid): a batch of events, keyed by its hash.
    let rng = ring::rand::SystemRandom::new();
    let der = base64::engine::general_purpose::STANDARD
        .decode(EC_PRIVATE)
        .expect("base64");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng).expect("key");
    let body = r#"[{"email":"a@example.com","event":"delivered","sg_event_id":"sg1"}]"#;
    let sig = pair
        .sign(&rng, format!("{ts}{body}").as_bytes())
        .expect("sign");
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
    let h = pairs(&[
        ("x-twilio-email-event-webhook-signature", &sig),
        ("x-twilio-email-event-webhook-timestamp", &ts),
    ]);
    let reply = post(&ingress, "sendgrid", &h, body).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    the_record(&setup, "sendgrid", &hex::encode(sha2::Sha256::digest(body))).await;

    // A token (GitLab): the event type header is forwarded, the token is not.
    let body = r#"{"object_kind":"push"}"#;
    let h = pairs(&[
        ("x-gitlab-token", "gitlab-token"),
        ("x-gitlab-event", "Push Hook"),
        ("idempotency-key", "gl-1"),
    ]);
    let reply = post(&ingress, "gitlab", &h, body).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let record = the_record(&setup, "gitlab", "gl-1").await;
    assert_eq!(record.header("x-gitlab-event"), Some("Push Hook"));
    assert_eq!(record.header("x-gitlab-token"), None);
    let wrong = pairs(&[("x-gitlab-token", "guess"), ("idempotency-key", "gl-2")]);
    assert_eq!(post(&ingress, "gitlab", &wrong, body).await.status, 401);

    // Basic credentials (Postmark).
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hooks:pa55word")
    );
    let body = r#"{"RecordType":"Delivery","MessageID":"m1"}"#;
    let reply = post(
        &ingress,
        "postmark",
        &pairs(&[("authorization", &basic)]),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    the_record(&setup, "postmark", &hex::encode(sha2::Sha256::digest(body))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handshake_through_a_running_ingress() {
    let sources = sources();
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("meta-verify-token");
    std::fs::write(&token, "meta-verify-token").expect("token");
    let (setup, ingress) = ready_ingress(
        &sources,
        json!({ "sources": { "meta": { "verify_token": { "file": token.display().to_string() } } } }),
    )
    .await;
    let by_name = |n: &str| {
        sources
            .iter()
            .find(|s| s.name == n)
            .expect("source")
            .clone()
    };
    let client = Client::http1();
    let text = |r: &Reply| String::from_utf8_lossy(&r.body).into_owned();

    let body = r#"{"type":"url_verification","challenge":"slack-challenge-1"}"#;
    let r = post(
        &ingress,
        "slack",
        &hmac_signed(&by_name("slack"), "", "", body),
        body,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"challenge": "slack-challenge-1"}))
    );

    let body =
        r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event":"endpoint.url_validation"}"#;
    let r = post(
        &ingress,
        "zoom",
        &hmac_signed(&by_name("zoom"), "", "", body),
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["encryptedToken"],
        "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3"
    );

    let body = r#"{"challenge":"twitch-challenge-1"}"#;
    let mut h = hmac_signed(&by_name("twitch"), "msg-1", "", body);
    h.push((
        "twitch-eventsub-message-type".into(),
        "webhook_callback_verification".into(),
    ));
    let r = post(&ingress, "twitch", &h, body).await;
    assert_eq!(
        (r.status.as_u16(), text(&r)),
        (200, "twitch-challenge-1".into())
    );

    let pair = Ed25519KeyPair::from_seed_unchecked(&ED_SEED).expect("seed");
    let ts = now().to_string();
    let body = r#"{"type":1}"#;
    let sig = hex::encode(pair.sign(format!("{ts}{body}").as_bytes()));
    let r = post(
        &ingress,
        "discord",
        &pairs(&[
            ("x-signature-ed25519", &sig),
            ("x-signature-timestamp", &ts),
        ]),
        body,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"type": 1})));

    let r = client
        .get(&ingress.hook_url(
            "meta?hub.mode=subscribe&hub.verify_token=meta-verify-token&hub.challenge=42",
        ))
        .await
        .expect("get");
    assert_eq!((r.status.as_u16(), text(&r)), (200, "42".into()));

    let r = client
        .get(&ingress.hook_url("dropbox?challenge=db-1"))
        .await
        .expect("get");
    assert_eq!((r.status.as_u16(), text(&r)), (200, "db-1".into()));
    assert_eq!(
        r.headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );

    let r = post(&ingress, "microsoft-graph?validationToken=graph-1", &[], "").await;
    assert_eq!((r.status.as_u16(), text(&r)), (200, "graph-1".into()));

    let r = client
        .send(
            Method::GET,
            &ingress.hook_url("okta"),
            &pairs(&[
                ("x-okta-verification-challenge", "okta-1"),
                ("authorization", "Bearer okta-hook-token"),
            ]),
            Bytes::new(),
        )
        .await
        .expect("get");
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"verification": "okta-1"}))
    );

    let r = post(
        &ingress,
        "asana",
        &pairs(&[("x-hook-secret", "asana-1")]),
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("x-hook-secret").map(|v| v.as_bytes()),
        Some(&b"asana-1"[..])
    );

    let metrics = ingress.metrics().await;
    for source in [
        "slack",
        "zoom",
        "twitch",
        "discord",
        "meta",
        "dropbox",
        "microsoft-graph",
        "okta",
        "asana",
    ] {
        assert!(
            metrics.contains(&format!(
                "spillway_http_requests_total{{outcome=\"handshake\",source=\"{source}\"}} 1"
            )),
            "{source}: one handshake counted"
        );
        let records = read_topic(&setup.brokers, &setup.topic(source)).await;
        assert!(records.is_empty(), "{source}: a handshake is not an event");
    }
}
