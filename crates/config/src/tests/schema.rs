//! Source schemas: loaded once, agreeing with the record format, Protobuf field keys naming
//! scalar fields of the message type, and the quarantine topic among the topics.

use crate::{parse_str, OnInvalid, Process};

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/fleet-schemas");

fn config(sources: &str) -> crate::Config {
    let text = format!(
        "kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:7000\"] }}\nsources:\n{}",
        sources.replace("{schemas}", SCHEMAS)
    );
    parse_str(&text).expect("parses")
}

fn errors_of(sources: &str) -> Vec<String> {
    config(sources)
        .validate_for(Process::All)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_protobuf_source_resolves_with_its_quarantine_among_the_topics() {
    let config = config(
        "  meters:\n    verify: { scheme: none }\n    batch: { format: protobuf_delimited }\n    \
         dedupe: { from: protobuf_field, field: id }\n    partition_key: { from: protobuf_field, field: meter.id }\n    \
         schema: { protobuf: { descriptor_set: \"{schemas}/fleet.desc\", message: fleet.v1.Reading }, on_invalid: reject }\n",
    );
    let routes = config.resolve_source_routes().expect("valid");
    let schema = routes[0].schema.as_ref().expect("schema");
    assert!(schema.schema.is_protobuf());
    assert_eq!(schema.on_invalid, OnInvalid::Reject);
    assert_eq!(schema.quarantine_topic, "spillway.meters.quarantine");
    assert_eq!(
        config.topics(),
        ["spillway.meters", "spillway.meters.quarantine"]
    );
    assert_eq!(
        config.source_topics(),
        ["spillway.meters"],
        "the workers never consume a quarantine"
    );
    assert!(
        config
            .source_files()
            .iter()
            .any(|f| f.ends_with("fleet.desc")),
        "a reload watches the descriptor set"
    );
}

#[test]
fn schema_mistakes_are_named_by_field() {
    let found = errors_of(
        "  a:\n    verify: { scheme: none }\n    batch: { format: ndjson }\n    \
         schema: { protobuf: { descriptor_set: \"{schemas}/fleet.desc\", message: fleet.v1.Reading } }\n  \
         b:\n    verify: { scheme: none }\n    dedupe: { from: protobuf_field, field: id }\n  \
         c:\n    verify: { scheme: none }\n    batch: { format: protobuf_delimited }\n    \
         dedupe: { from: protobuf_field, field: value }\n    \
         schema: { protobuf: { descriptor_set: \"{schemas}/fleet.desc\", message: fleet.v1.Nope } }\n  \
         d:\n    verify: { scheme: none }\n    schema: { json_schema: \"{schemas}/absent.json\" }\n  \
         e:\n    verify: { scheme: none }\n    schema: {}\n  \
         f:\n    verify: { scheme: none }\n    batch: { format: protobuf_delimited }\n    \
         dedupe: { from: protobuf_field, field: value }\n    \
         schema: { protobuf: { descriptor_set: \"{schemas}/fleet.desc\", message: fleet.v1.Reading }, quarantine_topic: spillway.f }\n",
    );
    let has = |field: &str, text: &str| {
        assert!(
            found
                .iter()
                .any(|e| e.starts_with(&format!("sources.{field}")) && e.contains(text)),
            "{field}: {text} in {found:#?}"
        );
    };
    has(
        "a.schema",
        "ndjson records cannot be checked against a Protobuf schema",
    );
    has("b.dedupe", "name it in schema.protobuf");
    has("c.schema", "has no message type fleet.v1.Nope");
    has("d.schema", "cannot read");
    has("e.schema", "exactly one of json_schema and protobuf");
    has("f.dedupe", "value is a floating-point number");
    has(
        "f.schema.quarantine_topic",
        "spillway.f is a source's topic: its records would be delivered",
    );
}
