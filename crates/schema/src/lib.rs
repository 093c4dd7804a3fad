//! Record schemas: a record is checked against a JSON Schema (draft 2020-12) or a Protobuf
//! message type from a descriptor set, and each failure is named by a stable reason.
//!
//! Checking is the libraries' work (`jsonschema`, `prost-reflect`); what is Spillway's here is
//! what counts as a Protobuf record (no unknown fields, every `required` field present, so
//! that random bytes do not pass) and the bounded reason names metrics are labelled with.

mod json;
mod protobuf;

use std::path::{Path, PathBuf};

pub use protobuf::Message;

/// The most failures listed for one record: a hostile record could otherwise fail once per
/// element, each failure an allocation.
pub const MAX_VIOLATIONS: usize = 64;

/// A loaded schema records are checked against.
#[derive(Debug)]
pub struct Schema {
    kind: Kind,
    /// Where it came from (file and message type), for messages and equality.
    origin: String,
}

#[derive(Debug)]
enum Kind {
    Json(json::JsonSchema),
    Protobuf(protobuf::ProtobufSchema),
}

/// One way a record fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// A bounded, stable name: the JSON Schema keyword in snake case (`type`, `required`,
    /// `additional_properties`...), `not_json`, or for Protobuf `not_protobuf`,
    /// `unknown_field` and `missing_required_field`.
    pub reason: String,
    /// Where in the record: a JSON pointer, or a Protobuf field path (`reading.value`).
    pub path: String,
    pub message: String,
}

/// A record that passed its schema: for Protobuf, the decoded message its keys are read from.
#[derive(Debug)]
pub struct Valid(Option<Message>);

/// Why a schema cannot be loaded, or a field path is not in it.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is not a valid JSON Schema: {message}")]
    BadJsonSchema { path: PathBuf, message: String },
    #[error("{path} is not a Protobuf descriptor set (protoc --descriptor_set_out --include_imports): {source}")]
    BadDescriptorSet {
        path: PathBuf,
        #[source]
        source: prost_reflect::DescriptorError,
    },
    #[error("{path} has no message type {message} (give its full name, package included)")]
    NoSuchMessage { path: PathBuf, message: String },
    #[error("{message} has no field path {field}: {why}")]
    NoSuchField {
        message: String,
        field: String,
        why: String,
    },
    #[error("field paths name fields of a Protobuf message; this schema is a JSON Schema")]
    NotProtobuf,
}

/// Why a record could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("the record is not a {message}: {reason}")]
    Invalid { message: String, reason: String },
    #[error("the schema is not a Protobuf message type")]
    NotProtobuf,
}

// === impl Schema ===

impl Schema {
    /// Loads a JSON Schema (draft 2020-12, formats checked). It must be self-contained:
    /// `$ref`s point into the file itself (`#/$defs/...`), never to other files or URLs.
    pub fn json_schema(path: &Path) -> Result<Self, SchemaError> {
        Ok(Self {
            kind: Kind::Json(json::JsonSchema::load(path)?),
            origin: path.display().to_string(),
        })
    }

    /// Loads message type `message` (its full name, e.g. `fleet.v1.Reading`) from a descriptor
    /// set written by `protoc --descriptor_set_out=FILE --include_imports`.
    pub fn protobuf(descriptor_set: &Path, message: &str) -> Result<Self, SchemaError> {
        Ok(Self {
            kind: Kind::Protobuf(protobuf::ProtobufSchema::load(descriptor_set, message)?),
            origin: format!("{} {message}", descriptor_set.display()),
        })
    }

    /// The record, checked: its failures (the first [`MAX_VIOLATIONS`]) when it fails.
    pub fn check(&self, record: &[u8]) -> Result<Valid, Vec<Violation>> {
        match &self.kind {
            Kind::Json(schema) => schema.check(record).map(|()| Valid(None)),
            Kind::Protobuf(schema) => schema.check(record).map(|m| Valid(Some(m))),
        }
    }

    /// A record that was checked when it came in, read again without the checks (a field the
    /// descriptor has since lost, or a new one it does not know yet, does not stop it): for
    /// its keys and event type. None when it is not Protobuf or does not decode.
    pub fn read(&self, record: &[u8]) -> Option<Valid> {
        match &self.kind {
            Kind::Protobuf(schema) => schema.read(record).ok().map(|m| Valid(Some(m))),
            Kind::Json(_) => None,
        }
    }

    pub fn is_protobuf(&self) -> bool {
        matches!(self.kind, Kind::Protobuf(_))
    }

    /// Whether `path` (dotted field names, e.g. `meter.id`) names a scalar field of the
    /// message type, for checking a key's configuration before any record comes.
    pub fn check_field_path(&self, path: &str) -> Result<(), SchemaError> {
        match &self.kind {
            Kind::Protobuf(schema) => schema.check_field_path(path),
            Kind::Json(_) => Err(SchemaError::NotProtobuf),
        }
    }

    /// A Protobuf record in the proto3 JSON mapping (field names in lowerCamelCase, 64-bit
    /// integers as strings, bytes as base64), for subscriptions that take JSON. Read as
    /// [`Schema::read`] reads: fields the descriptor does not know are left out.
    pub fn to_json(&self, record: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        match &self.kind {
            Kind::Protobuf(schema) => schema.to_json(record),
            Kind::Json(_) => Err(TranscodeError::NotProtobuf),
        }
    }

    /// Where the schema came from: its file (and message type).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Two schemas are equal when they came from the same place: what a reload compares.
impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin
    }
}

impl Eq for Schema {}

// === impl Valid ===

impl Valid {
    /// The text of the scalar at field path `path` of a Protobuf record; None when the field
    /// is unset (a proto3 scalar at its default counts as unset) or the record is not
    /// Protobuf.
    pub fn field_text(&self, path: &str) -> Option<String> {
        self.0.as_ref().and_then(|m| m.field_text(path))
    }
}

impl spillway_core::key::Fields for Valid {
    fn field_text(&self, path: &str) -> Option<String> {
        Valid::field_text(self, path)
    }
}

#[cfg(test)]
mod tests;
