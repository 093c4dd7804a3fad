//! Verification cost per scheme at 1 KiB and 64 KiB bodies: what each accepted webhook spends
//! on its signature check.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use spillway_signature::{
    sign, unix_seconds, Encoding, GenericHmac, Scheme, Secret, SecretRing, Template, Verifier,
};

fn schemes() -> Vec<(&'static str, Scheme)> {
    let generic = GenericHmac {
        signature_header: "x-meter-signature".into(),
        prefix: "v1=".into(),
        encoding: Encoding::Hex,
        template: Template::parse("{id}:{timestamp}:{body}").unwrap_or_else(|e| panic!("{e}")),
        id_header: Some("x-meter-reading-id".into()),
        timestamp_header: Some("x-meter-time".into()),
    };
    vec![
        ("github", Scheme::Github),
        ("stripe", Scheme::Stripe),
        ("shopify", Scheme::Shopify),
        ("slack", Scheme::Slack),
        ("standard-webhooks", Scheme::StandardWebhooks),
        ("hmac", Scheme::Generic(generic)),
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
            for (k, v) in sign(&scheme, &key, "evt_1", unix_seconds(now), &body) {
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
