//! Validation of the `kafka` section: brokers, producer bounds, topic creation, and the
//! librdkafka properties that Spillway sets itself, which no property may override.

use std::time::Duration;

use crate::field::{err, FieldError};
use crate::model::KafkaConfig;

pub(super) fn validate(kafka: &KafkaConfig, errors: &mut Vec<FieldError>) {
    if kafka.brokers.trim().is_empty() {
        errors.push(err("kafka.brokers", "must name at least one broker"));
    }
    if kafka.delivery_timeout < Duration::from_millis(100) {
        errors.push(err("kafka.delivery_timeout", "must be at least 100ms"));
    }
    if kafka.max_queued_messages == 0 {
        errors.push(err("kafka.max_queued_messages", "must be at least 1"));
    }
    if kafka.partitions < 1 {
        errors.push(err("kafka.partitions", "must be at least 1"));
    }
    match kafka.replication_factor {
        -1 | 2.. => {}
        1 if kafka.single_replica => {}
        1 => errors.push(err(
            "kafka.replication_factor",
            "1 keeps every accepted event on one broker's disk: set kafka.single_replica: true \
             to allow it (development only)",
        )),
        _ => errors.push(err(
            "kafka.replication_factor",
            "must be -1 (the broker's default) or at least 1",
        )),
    }
    for key in kafka.properties.keys() {
        if let Some(why) = refusal(key) {
            errors.push(err(format!("kafka.properties.{key}"), why));
        }
    }
}

/// Why `key` may not be set in `kafka.properties` (or `properties_file`), if it may not.
///
/// librdkafka keeps aliases (`delivery.timeout.ms` for `message.timeout.ms`,
/// `queue.buffering.max.ms` for `linger.ms`) under keys of their own, so which of an alias and
/// Spillway's own setting wins would depend on the order the client config is applied in: the
/// claim window, the settle wait and the flush all assume `kafka.delivery_timeout`.
fn refusal(key: &str) -> Option<String> {
    let instead =
        |field: &str| format!("is set by Spillway from kafka.{field}; set that field instead");
    Some(match key {
        "acks" | "request.required.acks" | "enable.idempotence" => {
            "is fixed by Spillway (acks=all, enable.idempotence=true) and cannot be overridden"
                .to_owned()
        }
        "message.timeout.ms" | "delivery.timeout.ms" => instead("delivery_timeout"),
        "linger.ms" | "queue.buffering.max.ms" => instead("linger"),
        "queue.buffering.max.messages" => instead("max_queued_messages"),
        "bootstrap.servers" | "metadata.broker.list" => instead("brokers"),
        "transactional.id" => "cannot be set: Spillway's producer is idempotent, not \
                               transactional, and a transactional.id makes every send fail"
            .to_owned(),
        _ => return None,
    })
}
