//! Body sizes against what has to hold them: the ingress's body budget (`max_body_memory`)
//! and the process's memory limit, and the producer's largest record (`message.max.bytes`).

use crate::field::{err, FieldError};
use crate::model::Config;

/// Bytes a record carries beside its body: the forwarded and Spillway headers and the key.
/// A body of `max_body_bytes` makes a record of at most this much more.
pub const RECORD_OVERHEAD_BYTES: u64 = 16 * 1024;

/// librdkafka's `message.max.bytes` when `kafka.properties` does not set it.
pub const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;

/// The memory a process needs besides its request bodies and librdkafka's copies of them
/// (code, connections, caches, the producer's own buffers).
pub const MEMORY_HEADROOM_BYTES: u64 = 64 * 1024 * 1024;

/// librdkafka's bounds of `message.max.bytes`.
const MESSAGE_MAX_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1000..=1_000_000_000;

/// `ingress.max_body_memory` holds one largest body, and fits `ingress.memory_limit` twice
/// over (bodies as read, and librdkafka's copy of each record) with the headroom.
pub(super) fn check_memory(config: &Config, errors: &mut Vec<FieldError>) {
    let ingress = &config.ingress;
    let budget = ingress.max_body_memory;
    let largest = config
        .sources
        .iter()
        .max_by_key(|(_, source)| source.max_body_bytes);
    match largest {
        _ if budget == 0 => errors.push(err("ingress.max_body_memory", "must be at least 1")),
        Some((name, source)) if source.max_body_bytes > budget => errors.push(err(
            "ingress.max_body_memory",
            format!(
                "{} is less than sources.{name}.max_body_bytes ({}): a body that large could \
                 never be admitted; raise max_body_memory or lower max_body_bytes",
                size(budget),
                size(source.max_body_bytes)
            ),
        )),
        _ => {}
    }
    let Some(limit) = ingress.memory_limit else {
        return;
    };
    if limit == 0 {
        errors.push(err(
            "ingress.memory_limit",
            "must be greater than zero (leave it out when the process has no memory limit)",
        ));
        return;
    }
    let needed = budget
        .saturating_mul(2)
        .saturating_add(MEMORY_HEADROOM_BYTES);
    if budget > 0 && needed > limit {
        let at_most = limit.saturating_sub(MEMORY_HEADROOM_BYTES) / 2;
        let fix = if at_most == 0 {
            format!(
                "raise the memory limit above {}",
                size(MEMORY_HEADROOM_BYTES)
            )
        } else {
            format!(
                "lower max_body_memory to at most {} or raise the memory limit to at least {}",
                size(at_most),
                size(needed)
            )
        };
        errors.push(err(
            "ingress.max_body_memory",
            format!(
                "2 x {} + {} for the rest of the process = {} does not fit in \
                 ingress.memory_limit ({}): each body is held twice, as read and as \
                 librdkafka's copy of its record; {fix}",
                size(budget),
                size(MEMORY_HEADROOM_BYTES),
                size(needed),
                size(limit)
            ),
        ));
    }
}

/// Every source's largest record fits the producer's `message.max.bytes`; otherwise a body
/// is read, verified and claimed, and then refused by the producer.
pub(super) fn check_records(config: &Config, errors: &mut Vec<FieldError>) {
    let (limit, default) = match config.kafka.properties.get("message.max.bytes") {
        None => (DEFAULT_MESSAGE_MAX_BYTES, true),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(bytes) if MESSAGE_MAX_BYTES_RANGE.contains(&bytes) => (bytes, false),
            _ => {
                errors.push(err(
                    "kafka.properties.message.max.bytes",
                    format!(
                        "must be a number of bytes from {} to {} (librdkafka's range)",
                        MESSAGE_MAX_BYTES_RANGE.start(),
                        MESSAGE_MAX_BYTES_RANGE.end()
                    ),
                ));
                return;
            }
        },
    };
    let whose = if default {
        ", librdkafka's default"
    } else {
        ""
    };
    for (name, source) in &config.sources {
        let record = source.max_body_bytes.saturating_add(RECORD_OVERHEAD_BYTES);
        if source.max_body_bytes == 0 || record <= limit {
            continue;
        }
        errors.push(err(
            format!("sources.{name}.max_body_bytes"),
            format!(
                "{} + {RECORD_OVERHEAD_BYTES} bytes of record headers and key = {record} is more \
                 than the producer's message.max.bytes ({limit}{whose}): a body that large would \
                 be accepted and then refused by Kafka. Lower max_body_bytes to at most {}, or \
                 raise kafka.properties message.max.bytes and the topics' max.message.bytes \
                 (and the brokers' message.max.bytes) to at least {record}",
                source.max_body_bytes,
                limit.saturating_sub(RECORD_OVERHEAD_BYTES)
            ),
        ));
    }
}

/// `n` bytes for a message: in MiB or KiB when it is a whole number of them.
// `u64::is_multiple_of` is newer (1.87) than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn size(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}
