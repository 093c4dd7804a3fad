//! The schema checks against records written by hand and by Google's tools
//! (dev/fleet-schemas/generate.sh: protoc and Google's Python runtime).

use std::path::PathBuf;

use super::*;

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dev/fleet-schemas")
}

fn json_schema() -> Schema {
    Schema::json_schema(&vectors().join("reading.schema.json")).expect("schema")
}

fn reading() -> Schema {
    Schema::protobuf(&vectors().join("fleet.desc"), "fleet.v1.Reading").expect("descriptor")
}

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(vectors().join(name)).expect("vector")
}

fn reasons(violations: &[Violation]) -> Vec<(&str, &str)> {
    let mut out: Vec<_> = violations
        .iter()
        .map(|v| (v.reason.as_str(), v.path.as_str()))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn a_json_record_is_checked_keyword_by_keyword() {
    let schema = json_schema();
    assert!(schema
        .check(br#"{"id":"r-1","device":"meter-7","kwh":1.5,"taken_at":"2026-12-01T10:00:00Z"}"#)
        .is_ok());
    let violations = schema
        .check(br#"{"id":"","device":"pump-7","kwh":-1,"extra":true}"#)
        .expect_err("invalid");
    assert_eq!(
        reasons(&violations),
        [
            ("additional_properties", ""),
            ("min_length", "/id"),
            ("minimum", "/kwh"),
            ("pattern", "/device"),
        ]
    );
    let missing = schema.check(br#"{"id":"r-1"}"#).expect_err("invalid");
    assert_eq!(reasons(&missing), [("required", ""), ("required", "")]);
    assert!(missing.iter().any(|v| v.message.contains("device")));
}

#[test]
fn formats_are_checked_and_non_json_is_named() {
    let schema = json_schema();
    let bad_time = schema
        .check(br#"{"id":"r","device":"meter-1","kwh":1,"taken_at":"yesterday"}"#)
        .expect_err("a date-time format");
    assert_eq!(reasons(&bad_time), [("format", "/taken_at")]);
    let garbage = schema.check(b"{not json").expect_err("not JSON");
    assert_eq!(reasons(&garbage), [("not_json", "")]);
}

#[test]
fn a_schema_naming_another_document_or_broken_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("dir");
    let remote = dir.path().join("remote.json");
    std::fs::write(
        &remote,
        r#"{"$ref": "https://example.com/other.schema.json"}"#,
    )
    .expect("write");
    let err = Schema::json_schema(&remote).expect_err("no remote refs");
    assert!(matches!(err, SchemaError::BadJsonSchema { .. }), "{err}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"type": 12}"#).expect("write");
    assert!(Schema::json_schema(&broken).is_err());
    let missing = Schema::json_schema(&dir.path().join("absent.json")).expect_err("absent");
    assert!(matches!(missing, SchemaError::Read { .. }), "{missing}");
}

#[test]
fn a_protobuf_record_written_by_protoc_passes_and_its_fields_are_keys() {
    let schema = reading();
    let valid = schema.check(&vector("valid.bin")).expect("valid");
    assert_eq!(valid.field_text("id").as_deref(), Some("r-1"));
    assert_eq!(valid.field_text("meter.id").as_deref(), Some("meter-7"));
    assert_eq!(valid.field_text("kind").as_deref(), Some("ENERGY"));
    assert_eq!(
        valid.field_text("taken_at_ms").as_deref(),
        Some("1764000000000")
    );
    assert_eq!(valid.field_text("nope"), None);
}

#[test]
fn random_bytes_and_other_types_are_not_records() {
    let schema = reading();
    // An AlarmDraft's field 2 is a string where Reading has a message: it does not decode.
    let other = schema
        .check(&vector("alarm-draft.bin"))
        .expect_err("other type");
    assert_eq!(other[0].reason, "not_protobuf");
    // Field 9, unknown to Reading, written as a varint: decodes, with an unknown field.
    let unknown = schema.check(&[0x48, 0x01]).expect_err("unknown field");
    assert_eq!(reasons(&unknown), [("unknown_field", "9")]);
    // The same inside the nested Meter.
    let nested = schema
        .check(&[0x12, 0x02, 0x48, 0x01])
        .expect_err("unknown nested field");
    assert_eq!(reasons(&nested), [("unknown_field", "meter.9")]);
    let truncated = vector("valid.bin");
    let cut = schema
        .check(&truncated[..truncated.len() - 3])
        .expect_err("truncated");
    assert_eq!(cut[0].reason, "not_protobuf");
}

#[test]
fn a_proto2_record_without_a_required_field_is_refused() {
    let alarm = Schema::protobuf(&vectors().join("fleet.desc"), "fleet.v1.Alarm").expect("alarm");
    let violations = alarm
        .check(&vector("alarm-draft.bin"))
        .expect_err("no code");
    assert_eq!(reasons(&violations), [("missing_required_field", "code")]);
}

#[test]
fn protobuf_records_become_the_json_googles_runtime_writes() {
    let schema = reading();
    let ours: serde_json::Value =
        serde_json::from_slice(&schema.to_json(&vector("valid.bin")).expect("json")).expect("json");
    let google: serde_json::Value =
        serde_json::from_slice(&vector("valid.json")).expect("google's json");
    assert_eq!(ours, google);
    let truncated = vector("valid.bin");
    assert!(schema.to_json(&truncated[..truncated.len() - 3]).is_err());
    // A field the descriptor does not know (a newer sender) is left out, not an error.
    let mut newer = vector("valid.bin");
    newer.extend_from_slice(&[0x48, 0x01]);
    let read: serde_json::Value =
        serde_json::from_slice(&schema.to_json(&newer).expect("json")).expect("json");
    assert_eq!(read, google);
    assert_eq!(
        schema
            .read(&newer)
            .and_then(|v| v.field_text("id"))
            .as_deref(),
        Some("r-1")
    );
    assert!(matches!(
        json_schema().to_json(b"{}"),
        Err(TranscodeError::NotProtobuf)
    ));
}

#[test]
fn key_field_paths_are_checked_against_the_message_type() {
    let schema = reading();
    assert!(schema.check_field_path("id").is_ok());
    assert!(schema.check_field_path("meter.site").is_ok());
    assert!(schema.check_field_path("kind").is_ok());
    for bad in ["meter", "value", "nope", "id.more", "meter.nope"] {
        let err = schema.check_field_path(bad).expect_err(bad);
        assert!(err.to_string().contains(bad), "{err}");
    }
    assert!(matches!(
        json_schema().check_field_path("id"),
        Err(SchemaError::NotProtobuf)
    ));
    let missing = Schema::protobuf(&vectors().join("fleet.desc"), "Reading").expect_err("short");
    assert!(matches!(missing, SchemaError::NoSuchMessage { .. }));
}
