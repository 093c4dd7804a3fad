//! Body sizes against what has to hold them: the ingress's body budget (`max_body_memory`)
//! and the process's memory limit, and the producer's largest record (`message.max.bytes`).

use crate::field::{err, FieldError};
use crate::model::Config;

/// Bytes a record carries beside its body: the forwarded and Spillway headers and the key.
/// A body of `max_body_bytes` makes a record of at most this much more.
pub const RECORD_OVERHEAD_BYTES: u64 = 16 * 1024;

/// librdkafka's `message.max.bytes` when `kafka.properties` does not set it.
pub const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;

/// The memory a process needs besides its request bodies, librdkafka's copies of them and its
/// connections: code, caches, the producer's own buffers, and what the allocator keeps of
/// memory already freed. The last grows when the process is short of CPU: the memory-pressure
/// fault case, with two busy loops on the same two cores, peaked at 90-98 MiB in a release
/// build with mimalloc, where the rule with 64 MiB promised 97 (57-65 MiB of it this share),
/// and at 78-82 MiB with jemalloc, the allocator since (89-93 MiB in a debug build, whose code
/// is larger). 96 MiB keeps room for an allocator or a load that keeps more.
pub const MEMORY_HEADROOM_BYTES: u64 = 96 * 1024 * 1024;

/// What one open connection may cost outside the body budget: hyper's buffers, the request's
/// state and the allocator's share. The memory-pressure fault case measured about 47 KiB per
/// stalled upload (400 of them added 18.5 MiB of peak resident memory).
pub const CONNECTION_BYTES: u64 = 64 * 1024;

/// librdkafka's bounds of `message.max.bytes`.
const MESSAGE_MAX_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1000..=1_000_000_000;

/// `ingress.max_body_memory` holds one largest body, and `ingress.memory_limit` holds it twice
/// over (bodies as read, and librdkafka's copy of each record), `max_connections` connections
/// and the headroom.
pub(super) fn check_memory(config: &Config, errors: &mut Vec<FieldError>) {
    let ingress = &config.ingress;
    let budget = ingress.max_body_memory;
    let objects = config.objects.is_some();
    let largest = config
        .sources
        .iter()
        .map(|(name, source)| (name, source.max_body(objects)))
        .max_by_key(|(_, max)| *max);
    match largest {
        _ if budget == 0 => errors.push(err("ingress.max_body_memory", "must be at least 1")),
        Some((name, max)) if max > budget => errors.push(err(
            "ingress.max_body_memory",
            format!(
                "{} is less than sources.{name}.max_body_bytes ({}): a body that large could \
                 never be admitted; raise max_body_memory or lower max_body_bytes",
                size(budget),
                size(max)
            ),
        )),
        _ => {}
    }
    if let Some(store) = &config.objects {
        let upload = store.upload_bytes();
        if upload > budget {
            errors.push(err(
                "ingress.max_body_memory",
                format!(
                    "{} is less than one upload to object storage holds ({}: three of \
                     objects.part_bytes); raise max_body_memory or lower objects.part_bytes",
                    size(budget),
                    size(upload)
                ),
            ));
        }
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
    let connections = u64::try_from(ingress.max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(CONNECTION_BYTES);
    let needed = budget
        .saturating_mul(2)
        .saturating_add(MEMORY_HEADROOM_BYTES)
        .saturating_add(connections);
    if budget > 0 && needed > limit {
        errors.push(err(
            "ingress.memory_limit",
            format!(
                "{} does not hold 2 x {} (max_body_memory; each body is held twice, as read \
                 and as librdkafka's copy of its record) + {} connections (max_connections) x \
                 {} + {} for the rest of the process = {}; {}",
                size(limit),
                size(budget),
                ingress.max_connections,
                size(CONNECTION_BYTES),
                size(MEMORY_HEADROOM_BYTES),
                size(needed),
                memory_fix(limit, budget, connections, needed)
            ),
        ));
    }
}

/// What would make the memory rule hold: less body budget, fewer connections, or more memory.
fn memory_fix(limit: u64, budget: u64, connections: u64, needed: u64) -> String {
    let spare = limit.saturating_sub(MEMORY_HEADROOM_BYTES);
    let mut ways = Vec::new();
    let budget_at_most = spare.saturating_sub(connections) / 2;
    if budget_at_most >= 1 {
        ways.push(format!(
            "lower max_body_memory to at most {}",
            size(budget_at_most)
        ));
    }
    let connections_at_most = spare.saturating_sub(budget.saturating_mul(2)) / CONNECTION_BYTES;
    if connections_at_most >= 1 {
        ways.push(format!(
            "lower max_connections to at most {connections_at_most}"
        ));
    }
    ways.push(format!(
        "raise the memory limit to at least {}",
        size(needed)
    ));
    ways.join(", or ")
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
    let objects = config.objects.is_some();
    for (name, source) in &config.sources {
        // A batch's records are written one by one: the largest record, not the body, must
        // fit. A body over `inline_max_bytes` goes to object storage, not into the record.
        let (field, largest) = match (source.batch, source.inline_max(objects)) {
            (Some(batch), _) => (
                "batch.max_record_bytes",
                u64::try_from(batch.max_record_bytes)
                    .unwrap_or(u64::MAX)
                    .min(source.max_body(objects)),
            ),
            (None, Some(_)) => ("inline_max_bytes", source.largest_inline(objects)),
            (None, None) => ("max_body_bytes", source.max_body(objects)),
        };
        let record = largest.saturating_add(RECORD_OVERHEAD_BYTES);
        if largest == 0 || record <= limit {
            continue;
        }
        errors.push(err(
            format!("sources.{name}.{field}"),
            format!(
                "{largest} + {RECORD_OVERHEAD_BYTES} bytes of record headers and key = {record} is \
                 more than the producer's message.max.bytes ({limit}{whose}): a record that \
                 large would be accepted and then refused by Kafka. Lower {field} to at most {}, \
                 or raise kafka.properties message.max.bytes and the topics' max.message.bytes \
                 (and the brokers' message.max.bytes) to at least {record}",
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
