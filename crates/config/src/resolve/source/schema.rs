//! The checks of a source's `schema`: one kind named, the file loaded, the record format
//! agreeing with it, Protobuf field keys naming scalar fields of its message type, and the
//! quarantine topic.

use std::sync::Arc;

use spillway_core::key::KeySource;
use spillway_schema::Schema;

use super::checks::check_topic;
use super::{Problems, SourceSchema};
use crate::model::{SchemaConfig, SourceConfig};

/// `<topic>.quarantine` unless the schema names one.
pub(super) fn quarantine_topic_of(schema: &SchemaConfig, topic: &str) -> String {
    schema
        .quarantine_topic
        .clone()
        .unwrap_or_else(|| format!("{topic}.quarantine"))
}

/// The loaded schema, or None with the problems pushed; a Protobuf field key without a
/// Protobuf schema is a problem too.
pub(super) fn check_schema(
    source: &SourceConfig,
    topic: &str,
    dedupe: &KeySource,
    event_type: Option<&KeySource>,
    problems: &mut Problems<'_>,
) -> Option<SourceSchema> {
    let keys = [
        ("dedupe", Some(dedupe)),
        ("partition_key", source.partition_key.as_ref()),
        ("event_type", event_type),
    ];
    let Some(config) = &source.schema else {
        for (field, key) in keys {
            if matches!(key, Some(KeySource::ProtobufField { .. })) {
                problems.push(
                    field,
                    "a Protobuf field is read from a record decoded as the source's message type: name it in schema.protobuf",
                );
            }
        }
        return None;
    };
    let loaded = match (&config.json_schema, &config.protobuf) {
        (Some(path), None) => Schema::json_schema(path),
        (None, Some(protobuf)) => Schema::protobuf(&protobuf.descriptor_set, &protobuf.message),
        _ => {
            problems.push("schema", "name exactly one of json_schema and protobuf");
            return None;
        }
    };
    let schema = match loaded {
        Ok(schema) => schema,
        Err(e) => {
            problems.push("schema", e.to_string());
            return None;
        }
    };
    if let Some(batch) = &source.batch {
        if batch.format.is_json() == schema.is_protobuf() {
            problems.push(
                "schema",
                format!(
                    "{} records cannot be checked against a {} schema",
                    batch.format.name(),
                    if schema.is_protobuf() {
                        "Protobuf"
                    } else {
                        "JSON"
                    }
                ),
            );
        }
    }
    for (field, key) in keys {
        match key {
            Some(KeySource::ProtobufField { field: path }) => {
                if let Err(e) = schema.check_field_path(path) {
                    problems.push(field, e.to_string());
                }
            }
            // Said once for batch sources (their record format names it), here for the others.
            Some(KeySource::JsonPointer { .. })
                if schema.is_protobuf() && source.batch.is_none() =>
            {
                problems.push(
                    field,
                    "a JSON pointer cannot reach into a Protobuf record: use from: protobuf_field",
                );
            }
            _ => {}
        }
    }
    let quarantine_topic = quarantine_topic_of(config, topic);
    check_topic("schema.quarantine_topic", &quarantine_topic, problems);
    Some(SourceSchema {
        schema: Arc::new(schema),
        on_invalid: config.on_invalid,
        quarantine_topic,
    })
}
