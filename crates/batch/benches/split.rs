//! Splitting a batch body into its records: NDJSON, a JSON array and length-delimited
//! Protobuf, of 1, 10, 100 and 1,000 records of about 200 bytes (a meter reading).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spillway_batch::{split, BatchFormat, Limits};

/// A reading of about 200 bytes, different for each `i`.
fn reading(i: usize) -> String {
    format!(
        r#"{{"id":"r-{i:08}","device":"meter-{:04}","site":"north-substation-7","kind":"energy","kwh":{}.{:03},"taken_at":"2026-12-02T10:{:02}:{:02}Z","firmware":"4.2.1"}}"#,
        i % 1000,
        i % 97,
        i % 1000,
        (i / 60) % 60,
        i % 60
    )
}

fn body(format: BatchFormat, records: usize) -> Bytes {
    let readings: Vec<String> = (0..records).map(reading).collect();
    Bytes::from(match format {
        BatchFormat::Ndjson => readings.join("\n").into_bytes(),
        BatchFormat::JsonArray => format!("[{}]", readings.join(",")).into_bytes(),
        BatchFormat::ProtobufDelimited => {
            let mut out = Vec::new();
            for r in &readings {
                prost::encoding::encode_varint(r.len() as u64, &mut out);
                out.extend_from_slice(r.as_bytes());
            }
            out
        }
    })
}

fn splitting(c: &mut Criterion) {
    let limits = Limits {
        max_records: 10_000,
        max_record_bytes: 256 * 1024,
    };
    for format in [
        BatchFormat::Ndjson,
        BatchFormat::JsonArray,
        BatchFormat::ProtobufDelimited,
    ] {
        let mut group = c.benchmark_group(format!("split_{}", format.name()));
        for records in [1usize, 10, 100, 1000] {
            let body = body(format, records);
            group.throughput(Throughput::Elements(records as u64));
            group.bench_with_input(BenchmarkId::from_parameter(records), &body, |b, body| {
                b.iter(|| split(format, black_box(body), limits).map(|pieces| pieces.len()));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, splitting);
criterion_main!(benches);
