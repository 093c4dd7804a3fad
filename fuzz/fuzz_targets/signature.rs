//! Every verification scheme against arbitrary headers and bodies: it must answer (accept or
//! refuse), never panic, and never accept a request it did not see signed.
#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use spillway_signature::{Encoding, GenericHmac, Scheme, Secret, SecretRing, Template, Verifier};

#[derive(Debug, Arbitrary)]
struct Input {
    scheme: u8,
    /// Names are drawn from the headers the schemes read, so the parsers see their own headers.
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
}

const NAMES: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-meter-signature",
    "x-meter-reading-id",
    "x-meter-time",
];

fn schemes() -> Vec<Scheme> {
    let template = Template::parse("{id}:{timestamp}:{body}").expect("template");
    vec![
        Scheme::StandardWebhooks,
        Scheme::Github,
        Scheme::Stripe,
        Scheme::Shopify,
        Scheme::Slack,
        Scheme::Generic(GenericHmac {
            signature_header: "x-meter-signature".into(),
            prefix: "v1=".into(),
            encoding: Encoding::Hex,
            template: template.clone(),
            id_header: Some("x-meter-reading-id".into()),
            timestamp_header: Some("x-meter-time".into()),
        }),
        Scheme::Generic(GenericHmac {
            signature_header: "x-meter-signature".into(),
            prefix: String::new(),
            encoding: Encoding::Base64,
            template,
            id_header: Some("x-meter-reading-id".into()),
            timestamp_header: Some("x-meter-time".into()),
        }),
    ]
}

fuzz_target!(|input: Input| {
    let schemes = schemes();
    let scheme = schemes[usize::from(input.scheme) % schemes.len()].clone();
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let name = HeaderName::from_static(NAMES[usize::from(*name) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let ring = SecretRing::new(vec![Secret {
        id: "k".into(),
        key: b"fuzzing-secret-key".to_vec(),
        not_after: None,
    }]);
    let verifier = Verifier::new(scheme, ring, Duration::from_secs(300));
    // The fuzzer cannot compute an HMAC under a key it never sees: an acceptance is a forgery.
    if let Ok(verified) = verifier.verify(&headers, &input.body, SystemTime::now()) {
        panic!("accepted an unsigned request: {verified:?}");
    }
});
