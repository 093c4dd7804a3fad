//! Every provider preset and generic scheme against arbitrary headers and bodies: it must
//! answer (accept or refuse), never panic, and never accept a request it did not see signed.
#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use spillway_signature::{
    Algorithm, Encoding, Field, Scheme, Secret, SecretRing, Template, TimestampFormat, Verifier,
};

#[derive(Debug, Arbitrary)]
struct Input {
    scheme: u16,
    /// Names are drawn from the headers the schemes read, so the parsers see their own headers.
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
}

/// A P-256 public key and an Ed25519 one whose private halves the fuzzer never sees.
const EC_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAES4orOknBoc6PdGdZ14hABKCBvoPKtMle9cT+6zXlCCce8G/GlTXyiE/OcUuIHh02EjzGHZc3ylDh8nMDL0T+qg==";
const ED_PUBLIC: [u8; 32] = [
    0xea, 0x4a, 0x6c, 0x63, 0xe2, 0x9c, 0x52, 0x0a, 0xbe, 0xf5, 0x50, 0x7b, 0x13, 0x2e, 0xc5,
    0xf9, 0x95, 0x47, 0x76, 0xae, 0xbe, 0xbe, 0x7b, 0x92, 0x42, 0x1e, 0xea, 0x69, 0x14, 0x46,
    0xd2, 0x2c,
];

/// Every preset that signs (a token scheme's secret could be guessed from this very file) and
/// two generic templates, each with a key the fuzzer cannot sign with.
fn schemes() -> Vec<(Scheme, Vec<u8>)> {
    let generic = |encoding| {
        Scheme::new("hmac", Algorithm::HmacSha512, "x-meter-signature")
            .prefix("v1=")
            .encoding(encoding)
            .id(Field::Header("x-meter-reading-id".into()))
            .timestamp(Field::Header("x-meter-time".into()), TimestampFormat::Rfc3339)
            .template(Template::parse("{id}:{timestamp}:{body}").expect("template"))
    };
    let presets = spillway_providers::all().iter().map(|p| p.scheme.clone());
    presets
        .chain([generic(Encoding::Hex), generic(Encoding::Base64Url)])
        .filter(|s| s.algorithm != Algorithm::Token)
        .map(|scheme| {
            let key = match scheme.algorithm {
                Algorithm::Ed25519 => ED_PUBLIC.to_vec(),
                Algorithm::EcdsaP256Sha256 => scheme.decode_secret(EC_PUBLIC).expect("P-256 key"),
                _ => b"fuzzing-secret-key".to_vec(),
            };
            (scheme, key)
        })
        .collect()
}

/// Every header name a scheme reads, under its alias too.
fn names(schemes: &[(Scheme, Vec<u8>)]) -> Vec<HeaderName> {
    let mut names: Vec<String> = vec!["svix-id".into(), "svix-timestamp".into(), "svix-signature".into()];
    for (scheme, _) in schemes {
        names.extend(scheme.signature_headers.iter().map(|h| h.to_string()));
        for field in [scheme.id.clone(), scheme.timestamp.as_ref().map(|t| t.at.clone())]
            .into_iter()
            .flatten()
        {
            if let Field::Header(h) = field {
                names.push(h.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
        .iter()
        .map(|n| HeaderName::from_bytes(n.as_bytes()).expect("header name"))
        .collect()
}

fuzz_target!(|input: Input| {
    let schemes = schemes();
    let names = names(&schemes);
    let (scheme, key) = schemes[usize::from(input.scheme) % schemes.len()].clone();
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let name = names[usize::from(*name) % names.len()].clone();
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let ring = SecretRing::new(vec![Secret {
        id: "k".into(),
        key,
        not_after: None,
    }]);
    let verifier = Verifier::new(scheme, ring, Duration::from_secs(300));
    // The fuzzer cannot compute a signature under a key it never sees: an acceptance is a
    // forgery.
    if let Ok(verified) = verifier.verify(&headers, &input.body, SystemTime::now()) {
        panic!("accepted an unsigned request: {verified:?}");
    }
});
