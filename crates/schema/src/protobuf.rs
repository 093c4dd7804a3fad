//! Protobuf checking through `prost-reflect`: a record decodes as the message type, with no
//! field the type does not declare and every `required` field present.

use std::path::Path;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

use crate::{SchemaError, TranscodeError, Violation};

/// One message type of a descriptor set.
#[derive(Debug)]
pub(crate) struct ProtobufSchema {
    message: MessageDescriptor,
}

/// A record decoded as its message type.
#[derive(Debug)]
pub struct Message(DynamicMessage);

impl ProtobufSchema {
    pub(crate) fn load(descriptor_set: &Path, message: &str) -> Result<Self, SchemaError> {
        let bytes = std::fs::read(descriptor_set).map_err(|source| SchemaError::Read {
            path: descriptor_set.to_owned(),
            source,
        })?;
        let pool = DescriptorPool::decode(bytes.as_slice()).map_err(|source| {
            SchemaError::BadDescriptorSet {
                path: descriptor_set.to_owned(),
                source,
            }
        })?;
        let message =
            pool.get_message_by_name(message)
                .ok_or_else(|| SchemaError::NoSuchMessage {
                    path: descriptor_set.to_owned(),
                    message: message.to_owned(),
                })?;
        Ok(Self { message })
    }

    /// The record decoded, fields the type does not declare kept aside, required ones not
    /// checked: for reading a record that was checked when it came in, with a descriptor that
    /// may since have changed.
    pub(crate) fn read(&self, record: &[u8]) -> Result<Message, prost_reflect::prost::DecodeError> {
        DynamicMessage::decode(self.message.clone(), record).map(Message)
    }

    pub(crate) fn check(&self, record: &[u8]) -> Result<Message, Vec<Violation>> {
        let Message(decoded) = self.read(record).map_err(|e| {
            vec![Violation {
                reason: "not_protobuf".into(),
                path: String::new(),
                message: format!("not a {}: {e}", self.message.full_name()),
            }]
        })?;
        // Every byte string decodes as some message, its fields unknown: a record is one of
        // this type only if the type declares each field it carries.
        let mut violations = Vec::new();
        walk(&decoded, "", &mut violations);
        if violations.is_empty() {
            Ok(Message(decoded))
        } else {
            Err(violations)
        }
    }

    pub(crate) fn check_field_path(&self, path: &str) -> Result<(), SchemaError> {
        let no_field = |why: String| SchemaError::NoSuchField {
            message: self.message.full_name().to_owned(),
            field: path.to_owned(),
            why,
        };
        let mut message = self.message.clone();
        let mut names = path.split('.').peekable();
        while let Some(name) = names.next() {
            let field = message
                .get_field_by_name(name)
                .ok_or_else(|| no_field(format!("{} has no field {name}", message.full_name())))?;
            if field.is_list() || field.is_map() {
                return Err(no_field(format!("{name} is repeated")));
            }
            match (field.kind(), names.peek()) {
                (Kind::Message(inner), Some(_)) => message = inner,
                (Kind::Message(_), None) => {
                    return Err(no_field(format!("{name} is a message, not a scalar")))
                }
                (_, Some(_)) => return Err(no_field(format!("{name} is not a message"))),
                (Kind::Double | Kind::Float, None) => {
                    return Err(no_field(format!("{name} is a floating-point number")))
                }
                (_, None) => {}
            }
        }
        Ok(())
    }

    pub(crate) fn to_json(&self, record: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        let invalid = |reason: String| TranscodeError::Invalid {
            message: self.message.full_name().to_owned(),
            reason,
        };
        let Message(decoded) = self.read(record).map_err(|e| invalid(e.to_string()))?;
        serde_json::to_vec(&decoded).map_err(|e| invalid(e.to_string()))
    }
}

/// Collects the unknown fields and the missing `required` fields of `message` and of every
/// message inside it; `at` is the path of `message` in the record.
fn walk(message: &DynamicMessage, at: &str, out: &mut Vec<Violation>) {
    if out.len() >= crate::MAX_VIOLATIONS {
        return;
    }
    let path = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    for unknown in message.unknown_fields().take(crate::MAX_VIOLATIONS) {
        out.push(Violation {
            reason: "unknown_field".into(),
            path: path(&unknown.number().to_string()),
            message: format!(
                "{} declares no field number {}",
                message.descriptor().full_name(),
                unknown.number()
            ),
        });
    }
    for field in message.descriptor().fields() {
        if field.is_required() && !message.has_field(&field) {
            out.push(Violation {
                reason: "missing_required_field".into(),
                path: path(field.name()),
                message: format!("required field {} is missing", field.name()),
            });
        }
    }
    for (field, value) in message.fields() {
        walk_value(value, &path(field.name()), out);
    }
}

fn walk_value(value: &Value, at: &str, out: &mut Vec<Violation>) {
    match value {
        Value::Message(inner) => walk(inner, at, out),
        Value::List(items) => items.iter().for_each(|v| walk_value(v, at, out)),
        Value::Map(entries) => entries.values().for_each(|v| walk_value(v, at, out)),
        _ => {}
    }
}

impl Message {
    pub(crate) fn field_text(&self, path: &str) -> Option<String> {
        let mut message = &self.0;
        let mut names = path.split('.').peekable();
        while let Some(name) = names.next() {
            let field = message.descriptor().get_field_by_name(name)?;
            if !message.has_field(&field) {
                return None;
            }
            let value = message.get_field_by_name(name)?;
            if names.peek().is_none() {
                return scalar_text(&field, &value);
            }
            match value {
                std::borrow::Cow::Borrowed(Value::Message(inner)) => message = inner,
                _ => return None,
            }
        }
        None
    }
}

/// A scalar as key text: integers in decimal, an enum by its value's name, bytes in hex.
fn scalar_text(field: &FieldDescriptor, value: &Value) -> Option<String> {
    Some(match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::Bytes(b) => b.iter().map(|byte| format!("{byte:02x}")).collect(),
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
            _ => n.to_string(),
        },
        Value::F32(_) | Value::F64(_) | Value::Message(_) | Value::List(_) | Value::Map(_) => {
            return None
        }
    })
}
