//! The API reference, docs/console-api.md, written from the OpenAPI document the console
//! serves, so that the page cannot drift from the code: every route, its parameters, body and
//! answers, and every schema with its fields.

use std::fmt::Write;

use serde_json::Value;
use utoipa::OpenApi;

use crate::ApiDoc;

/// The reference as Markdown.
pub fn markdown() -> String {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut out = String::from(
        "# Console API reference\n\n\
         <!-- Generated from the console's OpenAPI document by \
         `SPILLWAY_BLESS=1 cargo test -p spillway-console api_reference`; do not edit. -->\n\n\
         Every route answers JSON; errors are `{\"error\": \"<code>\", \"message\": \"...\"}` \
         with a stable code ([console.md](console.md#errors)). Every route needs a bearer \
         token or the trusted proxy's identity; viewers read, operators also act. The same \
         document is served at `/v1/openapi.json`.\n",
    );
    let tags = doc["tags"].as_array().cloned().unwrap_or_default();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for tag in &tags {
        let name = tag["name"].as_str().unwrap_or_default();
        let _ = write!(
            out,
            "\n## {}\n\n{}\n",
            title(name),
            text(&tag["description"])
        );
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == name));
                if tagged {
                    operation(&mut out, &method.to_uppercase(), path, op);
                }
            }
        }
    }
    out.push_str("\n## Schemas\n");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        schema_section(&mut out, name, schema);
    }
    out
}

fn title(tag: &str) -> String {
    let mut chars = tag.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().replace('\n', " ")
}

/// A table cell: no line breaks, no bare pipes.
fn cell(value: &str) -> String {
    value.replace('\n', " ").replace('|', "\\|")
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let summary = [&op["summary"], &op["description"]]
        .iter()
        .map(|v| text(v))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let _ = write!(out, "\n### `{method} {path}`\n\n{summary}\n");
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "\n| Parameter | In | Type | Required | Description |\n|---|---|---|---|---|\n",
        );
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                p["name"].as_str().unwrap_or_default(),
                p["in"].as_str().unwrap_or_default(),
                type_of(&p["schema"]),
                if p["required"] == true { "yes" } else { "no" },
                cell(&text(&p["description"])),
            );
        }
    }
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    if !body.is_null() {
        let _ = write!(out, "\nBody: {}\n", type_of(body));
    }
    if let Some(responses) = op["responses"].as_object() {
        let answers: Vec<String> = responses
            .iter()
            .map(|(status, r)| {
                let schema = &r["content"]["application/json"]["schema"];
                if schema.is_null() {
                    status.clone()
                } else {
                    format!("{status} {}", type_of(schema))
                }
            })
            .collect();
        let _ = write!(out, "\nAnswers: {}\n", answers.join(", "));
    }
}

/// A schema's type as a reader wants it: a link to a named schema, or the JSON type.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let kinds: Vec<String> = any
            .iter()
            .filter(|s| s["type"] != "null")
            .map(type_of)
            .collect();
        return kinds.join(" or ");
    }
    if let Some(values) = schema["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("`{v}`"))
            .collect();
        return names.join(", ");
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    };
    if kind == "array" {
        return format!("array of {}", type_of(&schema["items"]));
    }
    kind
}

fn schema_section(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(out, "\n### {name}\n\n");
    let description = text(&schema["description"]);
    if !description.is_empty() {
        let _ = write!(out, "{description}\n\n");
    }
    // A flattened struct is `allOf`: named parts (listed by link) and parts of its own.
    let parts: Vec<&Value> = std::iter::once(schema)
        .chain(schema["allOf"].as_array().into_iter().flatten())
        .collect();
    let required: Vec<&str> = parts
        .iter()
        .flat_map(|p| p["required"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let fields: Vec<(&String, &Value)> = parts
        .iter()
        .flat_map(|p| p["properties"].as_object().into_iter().flatten())
        .collect();
    for named in parts.iter().filter(|p| p["$ref"].is_string()) {
        let _ = write!(out, "Every field of {}, and:\n\n", type_of(named));
    }
    if fields.is_empty() {
        let _ = writeln!(out, "{}", type_of(schema));
        return;
    }
    out.push_str("| Field | Type | Description |\n|---|---|---|\n");
    for (field, spec) in fields {
        let optional = if required.contains(&field.as_str()) {
            ""
        } else {
            " (optional)"
        };
        let _ = writeln!(
            out,
            "| `{field}`{optional} | {} | {} |",
            type_of(spec),
            cell(&text(&spec["description"])),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/console-api.md");
        let want = markdown();
        if std::env::var_os("SPILLWAY_BLESS").is_some() {
            std::fs::write(path, &want).expect("write docs/console-api.md");
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/console-api.md is stale: run `SPILLWAY_BLESS=1 cargo test -p spillway-console api_reference`"
        );
    }

    #[test]
    fn the_reference_names_every_route_and_schema() {
        let doc = ApiDoc::openapi();
        let text = markdown();
        for path in doc.paths.paths.keys() {
            assert!(text.contains(&format!(" {path}`")), "{path}");
        }
        for name in doc.components.iter().flat_map(|c| c.schemas.keys()) {
            assert!(text.contains(&format!("\n### {name}\n")), "{name}");
        }
    }
}
