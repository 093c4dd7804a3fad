//! JSON Schema checking (draft 2020-12) through the `jsonschema` crate.

use std::path::Path;

use crate::{SchemaError, Violation};

/// A compiled JSON Schema.
#[derive(Debug)]
pub(crate) struct JsonSchema {
    validator: jsonschema::Validator,
}

impl JsonSchema {
    pub(crate) fn load(path: &Path) -> Result<Self, SchemaError> {
        let text = std::fs::read(path).map_err(|source| SchemaError::Read {
            path: path.to_owned(),
            source,
        })?;
        let schema: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| SchemaError::NotJson {
                path: path.to_owned(),
                source,
            })?;
        // Built without the crate's file and HTTP resolvers: a schema naming another
        // document fails here, at load, rather than fetching anything while records wait.
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| SchemaError::BadJsonSchema {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self { validator })
    }

    pub(crate) fn check(&self, record: &[u8]) -> Result<(), Vec<Violation>> {
        let value: serde_json::Value = serde_json::from_slice(record).map_err(|e| {
            vec![Violation {
                reason: "not_json".into(),
                path: String::new(),
                message: e.to_string(),
            }]
        })?;
        // The first failures only: a hostile record could fail once per element.
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(&value)
            .take(crate::MAX_VIOLATIONS)
            .map(|e| Violation {
                reason: reason_of(e.schema_path().as_str()),
                path: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// The keyword that failed, in snake case: the last step of the schema path
/// (`/properties/kwh/minimum` is `minimum`). Its values come from the schema, which the
/// operator wrote, never from the record, so it can label a metric.
fn reason_of(schema_path: &str) -> String {
    let keyword = schema_path.rsplit('/').next().unwrap_or_default();
    let mut out = String::with_capacity(keyword.len() + 4);
    for c in keyword.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        }
    }
    if out.is_empty() {
        "invalid".to_owned()
    } else {
        out
    }
}
