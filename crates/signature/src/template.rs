//! The string-to-sign of a scheme, such as `{timestamp}.{body}`: literal text with placeholders
//! for the pieces of the request.

use std::borrow::Cow;

/// A string-to-sign: literal text with `{id}`, `{timestamp}`, `{body}`, `{url}`, `{method}`
/// and `{form}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// One piece of a string-to-sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Cow<'static, [u8]>),
    /// The id as sent.
    Id,
    /// The timestamp's text as sent (not re-formatted: `1700000000`, `2026-12-02T10:00:00Z`).
    Timestamp,
    /// The raw body.
    Body,
    /// The full URL the sender called, query included (Twilio, HubSpot).
    Url,
    /// The request method, upper case.
    Method,
    /// The form parameters of an `application/x-www-form-urlencoded` body, sorted by name,
    /// each written as name then value with nothing between (Twilio).
    Form,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; use {{id}}, {{timestamp}}, {{body}}, {{url}}, {{method}} or {{form}}")]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in template")]
    Unclosed,
    #[error("template must contain {{body}} (or {{form}}) exactly once, so that what was sent is signed")]
    BodyCount,
    #[error("template uses {{{0}}} but no {0}_header is configured")]
    MissingHeader(&'static str),
}

// === impl Part ===

impl Part {
    pub const fn dot() -> Self {
        Self::Literal(Cow::Borrowed(b"."))
    }
}

// === impl Template ===

impl std::fmt::Display for Template {
    /// The template as configuration writes it, e.g. `v0:{timestamp}:{body}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => f.write_str(&String::from_utf8_lossy(bytes))?,
                Part::Id => f.write_str("{id}")?,
                Part::Timestamp => f.write_str("{timestamp}")?,
                Part::Body => f.write_str("{body}")?,
                Part::Url => f.write_str("{url}")?,
                Part::Method => f.write_str("{method}")?,
                Part::Form => f.write_str("{form}")?,
            }
        }
        Ok(())
    }
}

impl Template {
    /// The body alone.
    pub fn body_only() -> Self {
        Self {
            parts: vec![Part::Body],
        }
    }

    /// A template of the given parts, unchecked (the presets' fixed layouts).
    pub fn of(parts: &[Part]) -> Self {
        Self {
            parts: parts.to_vec(),
        }
    }

    /// Parses `text`. The content must be signed: `{body}` or `{form}` exactly once. A preset
    /// that signs less (Mailgun signs a token and a timestamp only) uses [`Template::of`].
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(Cow::Owned(rest.as_bytes()[..open].to_vec())));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            parts.push(match &after[..close] {
                "id" => Part::Id,
                "timestamp" => Part::Timestamp,
                "body" => Part::Body,
                "url" => Part::Url,
                "method" => Part::Method,
                "form" => Part::Form,
                other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(Cow::Owned(rest.as_bytes().to_vec())));
        }
        let content = parts
            .iter()
            .filter(|p| matches!(p, Part::Body | Part::Form))
            .count();
        if content != 1 {
            return Err(TemplateError::BodyCount);
        }
        Ok(Self { parts })
    }

    pub fn uses(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }

    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }
}
