#![allow(clippy::expect_used)]
//! Checking one record against its schema: a reading of about 200 bytes against the fleet JSON
//! Schema, and protoc's reading against the Protobuf type (dev/fleet-schemas), valid and not.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use spillway_schema::Schema;

fn schemas() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dev/fleet-schemas")
}

fn checking(c: &mut Criterion) {
    let json = Schema::json_schema(&schemas().join("reading.schema.json")).expect("schema");
    let proto =
        Schema::protobuf(&schemas().join("fleet.desc"), "fleet.v1.Reading").expect("descriptor");
    let valid_json =
        br#"{"id":"r-00000042","device":"meter-0042","kwh":12.345,"taken_at":"2026-12-02T10:00:42Z"}"#;
    let invalid_json = br#"{"id":"","device":"pump-0042","kwh":-1,"extra":true}"#;
    let valid_proto = std::fs::read(schemas().join("valid.bin")).expect("record");
    let mut group = c.benchmark_group("schema_check");
    group.bench_function("json_valid", |b| {
        b.iter(|| json.check(black_box(valid_json)).is_ok());
    });
    group.bench_function("json_invalid", |b| {
        b.iter(|| json.check(black_box(invalid_json)).is_err());
    });
    group.bench_function("protobuf_valid", |b| {
        b.iter(|| proto.check(black_box(&valid_proto)).is_ok());
    });
    group.bench_function("protobuf_to_json", |b| {
        b.iter(|| proto.to_json(black_box(&valid_proto)).is_ok());
    });
    group.finish();
}

criterion_group!(benches, checking);
criterion_main!(benches);
