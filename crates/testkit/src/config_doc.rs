//! Spillway config files for tests, built as data: a document edited by key path or merged
//! with a patch, then written as YAML to the file the binary or `spillway_config::load` reads.
//!
//! Tests used to splice YAML text (`yaml.replace("  fenced:\n", …)`), which broke silently
//! when an indent or the order of keys changed and could produce a file that parsed into
//! something else. A document cannot: a key is set where its path says, or the test fails.

use std::path::Path;

use serde_json::{Map, Value};

/// A config document. Paths are dot-separated map keys (`sources.github.max_body_bytes`);
/// keys that contain a dot themselves (librdkafka properties) go inside a value instead:
/// `set("kafka.properties", json!({"batch.num.messages": "1"}))`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDoc {
    root: Value,
}

impl ConfigDoc {
    /// A document from a JSON value (`serde_json::json!`), which must be a map.
    pub fn new(root: Value) -> Self {
        assert!(root.is_object(), "a config document is a map, not {root}");
        Self { root }
    }

    /// A document parsed from YAML text, for configs produced elsewhere as text.
    pub fn from_yaml(text: &str) -> Self {
        let root: Value = serde_yaml::from_str(text)
            .unwrap_or_else(|e| panic!("config YAML does not parse ({e}):\n{text}"));
        Self::new(root)
    }

    /// Sets the value at `path`, creating the maps on the way.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) -> &mut Self {
        *self.entry(path) = value.into();
        self
    }

    /// Appends `item` to the list at `path`, creating the list when there is none.
    pub fn push(&mut self, path: &str, item: impl Into<Value>) -> &mut Self {
        let entry = self.entry(path);
        if entry.is_null() {
            *entry = Value::Array(Vec::new());
        }
        match entry {
            Value::Array(items) => items.push(item.into()),
            other => panic!("{path} is not a list: {other}"),
        }
        self
    }

    /// Merges `patch` into the document: maps key by key, recursively; anything else (a list,
    /// a scalar, an explicit null) replaces what was there. Unlike a JSON merge patch, null is
    /// kept as a value, since the config gives `key: null` a meaning of its own (off).
    pub fn merge(&mut self, patch: Value) -> &mut Self {
        assert!(patch.is_object(), "a patch is a map, not {patch}");
        merge(&mut self.root, patch);
        self
    }

    /// The value at `path`, if there is one.
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.')
            .try_fold(&self.root, |value, key| value.get(key))
    }

    /// The whole document.
    pub fn value(&self) -> &Value {
        &self.root
    }

    /// The document as YAML text.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.root)
            .unwrap_or_else(|e| panic!("config document to YAML: {e}: {}", self.root))
    }

    /// Writes the document as YAML to `file`.
    pub fn write(&self, file: &Path) {
        std::fs::write(file, self.to_yaml())
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    }

    /// The value at `path`, made a map all the way down when it is missing.
    fn entry(&mut self, path: &str) -> &mut Value {
        let mut at = &mut self.root;
        let mut walked: Vec<&str> = Vec::new();
        for key in path.split('.') {
            if at.is_null() {
                *at = Value::Object(Map::new());
            }
            at = match at {
                Value::Object(map) => map.entry(key).or_insert(Value::Null),
                other => panic!(
                    "{} is not a map, so it has no key {key}: {other}",
                    walked.join(".")
                ),
            };
            walked.push(key);
        }
        at
    }
}

/// Merges `patch` into `into` as [`ConfigDoc::merge`] does, for a part of a document (one
/// subscription, say) built before it is set.
pub fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (slot, value) => *slot = value,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_set_merges_extend_and_lists_grow() {
        let mut doc = ConfigDoc::new(json!({
            "sources": { "github": { "verify": { "scheme": "github" } } },
            "ingress": { "block_failing_clients": { "failures": 3 } },
        }));
        doc.set("sources.github.max_body_bytes", 1024)
            .merge(json!({
                "sources": { "github": { "verify": { "scheme": "github" }, "dedupe": { "from": "none" } } },
                "ingress": { "block_failing_clients": null },
                "kafka": { "properties": { "batch.num.messages": "1" } },
            }))
            .push("subscriptions", json!({ "id": "a" }))
            .push("subscriptions", json!({ "id": "b" }));
        assert_eq!(doc.get("sources.github.max_body_bytes"), Some(&json!(1024)));
        assert_eq!(doc.get("sources.github.dedupe.from"), Some(&json!("none")));
        assert_eq!(
            doc.get("sources.github.verify.scheme"),
            Some(&json!("github"))
        );
        assert_eq!(doc.get("ingress.block_failing_clients"), Some(&Value::Null));
        assert_eq!(
            doc.get("subscriptions"),
            Some(&json!([{ "id": "a" }, { "id": "b" }]))
        );
        let yaml = doc.to_yaml();
        assert!(yaml.contains("block_failing_clients: null"), "{yaml}");
        assert!(
            yaml.contains("batch.num.messages: '1'"),
            "a string stays a string: {yaml}"
        );
        assert_eq!(ConfigDoc::from_yaml(&yaml), doc);
    }

    #[test]
    #[should_panic(expected = "sources.github.verify.scheme is not a map")]
    fn a_path_through_a_scalar_fails() {
        ConfigDoc::new(json!({ "sources": { "github": { "verify": { "scheme": "github" } } } }))
            .set("sources.github.verify.scheme.x", 1);
    }
}
