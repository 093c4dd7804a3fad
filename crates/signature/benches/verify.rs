//! Verification cost per scheme at 1 KiB and 64 KiB bodies: what each accepted webhook spends
//! on its signature check.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use spillway_signature::{
    sign, unix_seconds, Algorithm, Encoding, Field, Scheme, Secret, SecretRing, Template,
    TimestampFormat, Verifier,
};

/// One scheme per HMAC family and layout; the provider presets are these layouts as data.
fn schemes() -> Vec<(&'static str, Scheme)> {
    let template = |t: &str| Template::parse(t).unwrap_or_else(|e| panic!("{e}"));
    let meters = Scheme::new("hmac", Algorithm::HmacSha256, "x-meter-signature")
        .prefix("v1=")
        .id(Field::Header("x-meter-reading-id".into()))
        .timestamp(
            Field::Header("x-meter-time".into()),
            TimestampFormat::Seconds,
        )
        .template(template("{id}:{timestamp}:{body}"));
    vec![
        (
            "hmac-sha256-body",
            Scheme::new("github", Algorithm::HmacSha256, "x-hub-signature-256").prefix("sha256="),
        ),
        (
            "hmac-sha1-body",
            Scheme::new("sha1", Algorithm::HmacSha1, "x-signature").encoding(Encoding::Base64),
        ),
        (
            "hmac-sha512-body",
            Scheme::new("sha512", Algorithm::HmacSha512, "x-signature"),
        ),
        (
            "stripe-params",
            Scheme::new("stripe", Algorithm::HmacSha256, "stripe-signature")
                .params(',', "v1")
                .timestamp(Field::Param("t".into()), TimestampFormat::Seconds)
                .template(template("{timestamp}.{body}")),
        ),
        ("standard-webhooks", Scheme::standard_webhooks()),
        ("hmac", meters),
    ]
}

fn verification(c: &mut Criterion) {
    let key = b"a-webhook-signing-secret-of-32-b".to_vec();
    let mut group = c.benchmark_group("verify");
    for size in [1024usize, 64 * 1024] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        for (name, scheme) in schemes() {
            let now = SystemTime::now();
            let mut headers = HeaderMap::new();
            for (k, v) in sign(&scheme, &key, "evt_1", unix_seconds(now), &body).unwrap_or_default()
            {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    headers.insert(k, v);
                }
            }
            let verifier = Verifier::new(
                scheme,
                SecretRing::new(vec![Secret {
                    id: "k".into(),
                    key: key.clone(),
                    not_after: None,
                }]),
                Duration::from_secs(300),
            );
            group.bench_with_input(BenchmarkId::new(name, size), &body, |b, body| {
                b.iter(|| verifier.verify(black_box(&headers), black_box(body), now))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
