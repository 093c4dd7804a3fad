//! The checks of a batch source (`batch:`): its limits, and keys that can tell its records
//! apart, since every record of a batch is keyed on its own.

use spillway_core::key::KeySource;

use super::Problems;
use crate::model::{Config, SourceConfig};

/// The most records one request may be split into: each is claimed and produced at once, and
/// each costs an envelope and a producer queue entry beside its bytes, which the body budget
/// does not count.
const MAX_RECORDS_CEILING: usize = 10_000;

/// The limits, and the keys: a dedupe key read from the request (a header, the signed id,
/// the client certificate) would be the same for every record, and all but the first would
/// be dropped as duplicates; a JSON pointer cannot reach into a Protobuf record.
pub(super) fn check_batch(
    config: &Config,
    source: &SourceConfig,
    dedupe: &KeySource,
    event_type: Option<&KeySource>,
    problems: &mut Problems<'_>,
) {
    let Some(batch) = &source.batch else {
        return;
    };
    if batch.max_records == 0 || batch.max_records > MAX_RECORDS_CEILING {
        problems.push(
            "batch.max_records",
            format!("must be 1 to {MAX_RECORDS_CEILING}"),
        );
    }
    // One batch is produced at once: it must leave room in the producer's queue for the
    // other requests, or every full batch would meet a full queue.
    let queue = usize::try_from(config.kafka.max_queued_messages).unwrap_or(usize::MAX);
    if batch.max_records > queue / 2 {
        problems.push(
            "batch.max_records",
            format!(
                "{} is more than half of kafka.max_queued_messages ({queue}): one batch would fill the producer's queue; lower it or raise the queue",
                batch.max_records
            ),
        );
    }
    if batch.max_record_bytes == 0 {
        problems.push("batch.max_record_bytes", "must be at least 1");
    }
    match dedupe {
        KeySource::Header { .. } | KeySource::SignedId | KeySource::ClientCertificate => {
            problems.push(
                "dedupe",
                "a batch source reads its dedupe key from each record (from: json_pointer, protobuf_field or body_hash) or has none (from: none): a key of the request is the same for all its records, and all but the first would be dropped as duplicates",
            );
        }
        KeySource::JsonPointer { .. }
        | KeySource::ProtobufField { .. }
        | KeySource::BodyHash
        | KeySource::None => {}
    }
    if batch.format.is_json() {
        return;
    }
    for (field, key) in [
        ("dedupe", Some(dedupe)),
        ("partition_key", source.partition_key.as_ref()),
        ("event_type", event_type),
    ] {
        if matches!(key, Some(KeySource::JsonPointer { .. })) {
            problems.push(
                field,
                format!(
                    "a JSON pointer cannot reach into a {} record",
                    batch.format.name()
                ),
            );
        }
    }
}
