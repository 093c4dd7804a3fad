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
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(&value)
            .map(|e| Violation {
                reason: reason_of(e.kind()),
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

/// The keyword that failed, in snake case, from the error kind's variant name: a name from
/// a closed set (the crate's enum), so it can label a metric, unlike the schema path, which
/// may end in a property name.
fn reason_of(kind: &jsonschema::error::ValidationErrorKind) -> String {
    let debug = format!("{kind:?}");
    let variant = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    let mut out = String::with_capacity(variant.len() + 4);
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
