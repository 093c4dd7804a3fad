//! The dedupe-key extractor against arbitrary headers and bodies, for every kind of key source:
//! a key within the size limit, or a reason; never a panic.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use spillway_core::key::{KeyInput, KeySource, MAX_KEY_BYTES};

#[derive(Debug, Arbitrary)]
struct Input {
    source: u8,
    pointer: String,
    headers: Vec<(bool, Vec<u8>)>,
    body: Vec<u8>,
    signed_id: Option<String>,
    client_subject: Option<String>,
}

fuzz_target!(|input: Input| {
    let source = match input.source % 6 {
        0 => KeySource::Header {
            name: "x-delivery".into(),
        },
        1 => KeySource::JsonPointer {
            pointer: input.pointer.clone(),
        },
        2 => KeySource::BodyHash,
        3 => KeySource::SignedId,
        4 => KeySource::ClientCertificate,
        _ => KeySource::None,
    };
    let mut headers = HeaderMap::new();
    for (ours, value) in &input.headers {
        let name = if *ours { "x-delivery" } else { "x-other" };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    let key_input = KeyInput::new(&headers, &input.body, input.signed_id.as_deref())
        .with_client_subject(input.client_subject.as_deref());
    if let Ok(Some(key)) = source.extract(&key_input) {
        assert!(!key.is_empty(), "an empty key");
        assert!(key.len() <= MAX_KEY_BYTES, "a key of {} bytes", key.len());
    }
});
