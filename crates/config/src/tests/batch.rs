//! Batch sources: their keys must tell records apart, their limits are checked, and their
//! records (not their bodies) must fit Kafka's largest record.

use spillway_batch::BatchFormat;
use spillway_core::key::KeySource;

use crate::{parse_str, BatchConfig, Process, DEFAULT_MESSAGE_MAX_BYTES, RECORD_OVERHEAD_BYTES};

fn errors_of(sources: &str) -> Vec<String> {
    let text = format!("kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [\"redis://r:7000\"] }}\nsources:\n{sources}");
    parse_str(&text)
        .expect("parses")
        .validate_for(Process::All)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_batch_source_is_keyed_per_record_by_its_hash_unless_told_otherwise() {
    let text = "kafka: { brokers: k:9092 }\nredis: { nodes: [\"redis://r:7000\"] }\nsources:\n  \
                meters:\n    verify: { scheme: none }\n    batch: { format: ndjson }\n  \
                hooks:\n    verify: { scheme: standard-webhooks }\n    secrets: [{ id: k, env: SW }]\n    \
                batch: { format: json_array, max_records: 50, max_record_bytes: 4096 }\n    \
                dedupe: { from: json_pointer, pointer: /reading_id }\n";
    let config = parse_str(text).expect("parses");
    let routes = config.resolve_source_routes().expect("valid");
    assert_eq!(routes.len(), 2);
    let meters = &config.sources["meters"];
    assert_eq!(
        meters.batch,
        Some(BatchConfig {
            format: BatchFormat::Ndjson,
            max_records: 1000,
            max_record_bytes: 256 * 1024,
        })
    );
    figment::Jail::expect_with(|jail| {
        jail.set_env("SW", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let resolved = config.resolve_sources().expect("resolves");
        let dedupe = |name: &str| {
            resolved
                .iter()
                .find(|s| s.name == name)
                .map(|s| (s.dedupe.clone(), s.dedupe_fallback))
        };
        // The preset's `webhook-id` is the request's: every record would share it.
        assert_eq!(dedupe("meters"), Some((KeySource::BodyHash, false)));
        let pointer = KeySource::JsonPointer {
            pointer: "/reading_id".into(),
        };
        assert_eq!(dedupe("hooks"), Some((pointer, false)));
        Ok(())
    });
}

#[test]
fn keys_that_cannot_tell_records_apart_and_bad_limits_are_named() {
    let found = errors_of(
        "  a:\n    verify: { scheme: none }\n    batch: { format: ndjson, max_records: 0, max_record_bytes: 0 }\n    \
         dedupe: { from: header, name: x-id }\n  \
         p:\n    verify: { scheme: none }\n    batch: { format: protobuf_delimited }\n    \
         dedupe: { from: json_pointer, pointer: /id }\n    partition_key: { from: json_pointer, pointer: /device }\n",
    );
    let expect = [
        "sources.a.batch.max_records: must be 1 to 10000",
        "sources.a.batch.max_record_bytes: must be at least 1",
        "sources.a.dedupe: a batch source reads its dedupe key from each record",
        "sources.p.dedupe: a JSON pointer cannot reach into a protobuf_delimited record",
        "sources.p.partition_key: a JSON pointer cannot reach into a protobuf_delimited record",
    ];
    for line in expect {
        assert!(
            found.iter().any(|e| e.starts_with(line)),
            "{line}\n{found:#?}"
        );
    }
    let queue = errors_of(
        "  q:\n    verify: { scheme: none }\n    batch: { format: ndjson, max_records: 10000 }\n",
    );
    assert!(queue.is_empty(), "{queue:?}");
    let text = "kafka: { brokers: k:9092, max_queued_messages: 1000 }\nsources:\n  q:\n    \
                verify: { scheme: none }\n    dedupe: { from: none }\n    batch: { format: ndjson, max_records: 501 }\n";
    let found: Vec<String> = parse_str(text)
        .expect("parses")
        .validate_for(Process::All)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        found.len() == 1 && found[0].contains("half of kafka.max_queued_messages (1000)"),
        "{found:?}"
    );
    let unknown = parse_str(
        "kafka: { brokers: k:9092 }\nsources:\n  a:\n    verify: { scheme: none }\n    batch: { format: csv }\n",
    );
    let message = unknown.expect_err("no such format").to_string();
    assert!(
        message.contains("ndjson") && message.contains("protobuf_delimited"),
        "{message}"
    );
}

#[test]
fn a_batch_body_may_pass_kafkas_record_limit_but_not_its_records() {
    let fits = DEFAULT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD_BYTES;
    let body = "max_body_bytes: 8388608, dedupe: { from: none }";
    assert_eq!(
        errors_of(&format!(
            "  a: {{ verify: {{ scheme: none }}, {body}, batch: {{ format: ndjson, max_record_bytes: {fits} }} }}\n"
        )),
        Vec::<String>::new()
    );
    let found = errors_of(&format!(
        "  a: {{ verify: {{ scheme: none }}, {body}, batch: {{ format: ndjson, max_record_bytes: {} }} }}\n",
        fits + 1
    ));
    assert!(
        found.len() == 1 && found[0].starts_with("sources.a.batch.max_record_bytes: "),
        "{found:?}"
    );
}
