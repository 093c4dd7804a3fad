//! Dedupe key extraction (and the record's headers) per request: header, JSON pointer into a
//! 1 KiB body, and the body hash at 1 KiB and 64 KiB.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue};
use spillway_core::key::{KeyInput, KeySource};
use spillway_core::{trace, Envelope, EventId};

fn body(size: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_1NmPq2Lk","type":"invoice.paid","device":"meter-7","pad":""#;
    let mut text = head.to_owned();
    text.push_str(&"x".repeat(size.saturating_sub(head.len() + 2)));
    text.push_str("\"}");
    text.into_bytes()
}

fn extraction(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    let mut group = c.benchmark_group("dedupe_key");
    let small = body(1024);
    let cases = [
        (
            "header",
            KeySource::Header {
                name: "x-github-delivery".into(),
            },
            &small,
        ),
        (
            "json_pointer",
            KeySource::JsonPointer {
                pointer: "/id".into(),
            },
            &small,
        ),
        ("body_hash", KeySource::BodyHash, &small),
    ];
    for (name, source, body) in cases {
        group.bench_with_input(BenchmarkId::new(name, body.len()), body, |b, body| {
            b.iter(|| source.extract(&KeyInput::new(black_box(&headers), black_box(body), None)))
        });
    }
    let large = body(64 * 1024);
    group.bench_with_input(
        BenchmarkId::new("body_hash", large.len()),
        &large,
        |b, body| {
            b.iter(|| {
                KeySource::BodyHash.extract(&KeyInput::new(
                    black_box(&headers),
                    black_box(body),
                    None,
                ))
            })
        },
    );
    group.finish();
}

fn record(c: &mut Criterion) {
    let envelope = Envelope {
        id: EventId::new_v4(),
        source: "stripe".into(),
        received_at_ms: 1_795_000_000_000,
        dedupe_key: Some("evt_1NmPq2Lk".into()),
        scheme: "stripe".into(),
        key_id: Some("stripe-live".into()),
        device_id: None,
        content_type: Some("application/json".into()),
        traceparent: trace::new_traceparent(),
        forwarded: vec![("stripe-signature".into(), Bytes::from_static(b"t=1,v1=abc"))],
        record_key: Some("evt_1NmPq2Lk".into()),
        hops: 0,
        batch: None,
        invalid: None,
        stored: None,
        event_type: None,
        body: Bytes::from(body(1024)),
    };
    c.bench_function("record_headers", |b| {
        b.iter(|| black_box(&envelope).record_headers())
    });
}

criterion_group!(benches, extraction, record);
criterion_main!(benches);
