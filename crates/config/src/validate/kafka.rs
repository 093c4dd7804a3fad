//! Validation of the `kafka` section: brokers, producer bounds, topic creation, and the
//! durability settings no property may override.

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
    if kafka.replication_factor < 1 {
        errors.push(err("kafka.replication_factor", "must be at least 1"));
    }
    for key in kafka.properties.keys() {
        if matches!(
            key.as_str(),
            "acks" | "request.required.acks" | "enable.idempotence"
        ) {
            errors.push(err(
                format!("kafka.properties.{key}"),
                "is fixed by Spillway (acks=all, enable.idempotence=true) and cannot be overridden",
            ));
        }
    }
}
