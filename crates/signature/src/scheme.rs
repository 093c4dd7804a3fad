//! The providers' signature schemes: where each keeps its id, timestamp and signature, what it
//! signs, and how the MAC is encoded.

use std::borrow::Cow;

use base64::Engine as _;
use http::HeaderMap;

use crate::{b64, b64_encode, SecretError, SignatureParts, VerifyError};

/// How a signature value is encoded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// A verification scheme. The provider presets fix every detail; [`GenericHmac`] lets a source
/// describe any other HMAC-SHA256 sender.
///
/// Replays: a scheme that signs a timestamp refuses a captured request once it leaves the
/// replay window, and one that signs an event id lets the dedupe key on that id catch it
/// within. GitHub, Shopify and generic templates with neither `{id}` nor `{timestamp}` sign the
/// body alone, and their delivery ids travel unsigned: a captured request resent under a fresh
/// id verifies as a new one. For those schemes (and only those; not `none`, which proves
/// nothing) verification returns [`crate::Verified::replay_key`], the SHA-256 of the MAC, which
/// is the same for every copy of the request whatever its unsigned headers say, so that the
/// ingress can claim it as a second dedupe key. Their event-type headers (`X-GitHub-Event`,
/// `X-Shopify-Topic`) are not signed either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// standardwebhooks.com: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// over `id.timestamp.body`; the `svix-*` header names are accepted too.
    StandardWebhooks,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]` over `ts.body`.
    Stripe,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:ts:body`, `X-Slack-Request-Timestamp`.
    Slack,
    Generic(GenericHmac),
    /// No verification. A source must choose this explicitly.
    None,
}

/// A configurable HMAC-SHA256 scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub signature_header: String,
    /// Text before the encoded MAC, e.g. `sha256=`; may be empty.
    pub prefix: String,
    pub encoding: Encoding,
    pub template: Template,
    /// Required when the template uses `{id}`.
    pub id_header: Option<String>,
    /// Required when the template uses `{timestamp}`; enables the replay window.
    pub timestamp_header: Option<String>,
}

/// A string-to-sign such as `{timestamp}.{body}`: literal text with `{id}`, `{timestamp}` and
/// `{body}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// One piece of a string-to-sign. Literals are borrowed for the presets' fixed layouts (see
/// `to_sign`) and owned for parsed templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(Cow<'static, [u8]>),
    Id,
    Timestamp,
    Body,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; use {{id}}, {{timestamp}} or {{body}}")]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in template")]
    Unclosed,
    #[error("template must contain {{body}} exactly once")]
    BodyCount,
    #[error("template uses {{{0}}} but no {0}_header is configured")]
    MissingHeader(&'static str),
}

// === impl Template ===

impl Template {
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
                other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(Cow::Owned(rest.as_bytes().to_vec())));
        }
        if parts.iter().filter(|p| **p == Part::Body).count() != 1 {
            return Err(TemplateError::BodyCount);
        }
        Ok(Self { parts })
    }

    fn uses(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }

    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }
}

// === impl GenericHmac ===

impl GenericHmac {
    /// Checks that every placeholder the template uses has a header to come from.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.template.uses(&Part::Id) && self.id_header.is_none() {
            return Err(TemplateError::MissingHeader("id"));
        }
        if self.template.uses(&Part::Timestamp) && self.timestamp_header.is_none() {
            return Err(TemplateError::MissingHeader("timestamp"));
        }
        Ok(())
    }
}

// === impl Scheme ===

impl Scheme {
    /// The name used in configuration and in the record's verification-scheme header.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::Generic(_) => "hmac",
            Self::None => "none",
        }
    }

    /// Whether requests carry a timestamp that verification holds to the replay window: only
    /// then can a sender make a request that is refused as stale.
    pub fn signs_timestamp(&self) -> bool {
        match self {
            Self::StandardWebhooks | Self::Stripe | Self::Slack => true,
            Self::Generic(g) => g.timestamp_header.is_some(),
            Self::Github | Self::Shopify | Self::None => false,
        }
    }

    /// Whether a verified request gets a [`crate::Verified::replay_key`]: its signature covers
    /// neither a timestamp nor an event id, so nothing signed tells a replay from the original
    /// (see the replay rule above). A generic scheme counts what its template signs, not which
    /// headers it reads: a timestamp header outside the template is not signed.
    pub(crate) fn needs_replay_key(&self) -> bool {
        match self {
            Self::Github | Self::Shopify => true,
            Self::Generic(g) => !(g.template.uses(&Part::Id) || g.template.uses(&Part::Timestamp)),
            Self::StandardWebhooks | Self::Stripe | Self::Slack | Self::None => false,
        }
    }

    /// Turns a secret as the provider shows it into key bytes. Standard Webhooks secrets are
    /// `whsec_` followed by base64; every other provider uses the secret text itself as the key
    /// (Stripe's `whsec_...` included).
    pub fn decode_secret(&self, text: &str) -> Result<Vec<u8>, SecretError> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        match self {
            Self::StandardWebhooks => {
                let encoded = text.strip_prefix("whsec_").unwrap_or(text);
                b64()
                    .decode(encoded)
                    .map_err(|e| SecretError::not_base64(&e))
            }
            _ => Ok(text.as_bytes().to_vec()),
        }
    }

    /// Reads the id, timestamp and offered signatures; `None` for the `none` scheme.
    pub(crate) fn signature_parts(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<SignatureParts>, VerifyError> {
        let parts = match self {
            Self::None => return Ok(None),
            Self::StandardWebhooks => {
                // Svix sends the same scheme under its own header names.
                let (id_h, ts_h, sig_h) = if headers.contains_key("webhook-signature") {
                    ("webhook-id", "webhook-timestamp", "webhook-signature")
                } else if headers.contains_key("svix-signature") {
                    ("svix-id", "svix-timestamp", "svix-signature")
                } else {
                    return Err(VerifyError::MissingHeader("webhook-signature".into()));
                };
                let id = required(headers, id_h)?.to_owned();
                let timestamp = Some(parse_timestamp(ts_h, required(headers, ts_h)?)?);
                let candidates = required(headers, sig_h)?
                    .split(' ')
                    .filter_map(|entry| entry.strip_prefix("v1,"))
                    .map(|sig| decode(sig_h, Encoding::Base64, sig))
                    .collect::<Result<Vec<_>, _>>()?;
                SignatureParts {
                    id: Some(id),
                    timestamp,
                    candidates,
                }
            }
            Self::Github => {
                let h = "x-hub-signature-256";
                let value = required(headers, h)?;
                let hex = value
                    .strip_prefix("sha256=")
                    .ok_or_else(|| malformed(h, "expected sha256=<hex>"))?;
                SignatureParts {
                    candidates: vec![decode(h, Encoding::Hex, hex)?],
                    ..SignatureParts::default()
                }
            }
            Self::Stripe => {
                let h = "stripe-signature";
                let mut timestamp = None;
                let mut candidates = Vec::new();
                for item in required(headers, h)?.split(',') {
                    let (k, v) = item
                        .trim()
                        .split_once('=')
                        .ok_or_else(|| malformed(h, "expected comma-separated key=value pairs"))?;
                    match k {
                        "t" if timestamp.is_some() => return Err(malformed(h, "more than one t=")),
                        "t" => timestamp = Some(parse_timestamp(h, v)?),
                        "v1" => candidates.push(decode(h, Encoding::Hex, v)?),
                        // v0 (test mode legacy) and future versions are not ours to check.
                        _ => {}
                    }
                }
                SignatureParts {
                    id: None,
                    timestamp: Some(timestamp.ok_or_else(|| malformed(h, "no t= timestamp"))?),
                    candidates,
                }
            }
            Self::Shopify => {
                let h = "x-shopify-hmac-sha256";
                SignatureParts {
                    candidates: vec![decode(h, Encoding::Base64, required(headers, h)?)?],
                    ..SignatureParts::default()
                }
            }
            Self::Slack => {
                let sig_h = "x-slack-signature";
                let ts_h = "x-slack-request-timestamp";
                let sig = required(headers, sig_h)?;
                let timestamp = Some(parse_timestamp(ts_h, required(headers, ts_h)?)?);
                let hex = sig
                    .strip_prefix("v0=")
                    .ok_or_else(|| malformed(sig_h, "expected v0=<hex>"))?;
                SignatureParts {
                    id: None,
                    timestamp,
                    candidates: vec![decode(sig_h, Encoding::Hex, hex)?],
                }
            }
            Self::Generic(g) => {
                let sig_h = g.signature_header.as_str();
                let value = required(headers, sig_h)?;
                let encoded = value
                    .strip_prefix(g.prefix.as_str())
                    .ok_or_else(|| malformed(sig_h, &format!("expected prefix {:?}", g.prefix)))?;
                let id = match &g.id_header {
                    Some(h) => Some(required(headers, h)?.to_owned()),
                    None => None,
                };
                let timestamp = match &g.timestamp_header {
                    Some(h) => Some(parse_timestamp(h, required(headers, h)?)?),
                    None => None,
                };
                SignatureParts {
                    id,
                    timestamp,
                    candidates: vec![decode(sig_h, g.encoding, encoded)?],
                }
            }
        };
        Ok(Some(parts))
    }

    pub(crate) fn signature_headers(&self, id: &str, ts: i64, raw: &[u8]) -> Vec<(String, String)> {
        let hexed = || hex::encode(raw);
        let pairs: Vec<(&str, String)> = match self {
            Self::StandardWebhooks => vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", format!("v1,{}", b64_encode(raw))),
            ],
            // The provider's delivery id travels beside the signature (unsigned): it is the
            // natural dedupe key of these schemes.
            Self::Github => vec![
                ("x-hub-signature-256", format!("sha256={}", hexed())),
                ("x-github-delivery", id.to_owned()),
            ],
            Self::Stripe => vec![("stripe-signature", format!("t={ts},v1={}", hexed()))],
            Self::Shopify => vec![
                ("x-shopify-hmac-sha256", b64_encode(raw)),
                ("x-shopify-webhook-id", id.to_owned()),
            ],
            Self::Slack => vec![
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-signature", format!("v0={}", hexed())),
            ],
            Self::Generic(g) => {
                let encoded = match g.encoding {
                    Encoding::Hex => hexed(),
                    Encoding::Base64 => b64_encode(raw),
                };
                let mut v = vec![(
                    g.signature_header.as_str(),
                    format!("{}{encoded}", g.prefix),
                )];
                if let Some(h) = &g.id_header {
                    v.push((h.as_str(), id.to_owned()));
                }
                if let Some(h) = &g.timestamp_header {
                    v.push((h.as_str(), ts.to_string()));
                }
                v
            }
            Self::None => Vec::new(),
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

fn malformed(header: &str, reason: &str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The single value of a header. A header sent twice is refused rather than guessed at: two
/// timestamps or two signature headers mean a confused or hostile sender.
fn required<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?;
    if values.next().is_some() {
        return Err(malformed(name, "header appears more than once"));
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| malformed(name, "not visible ASCII"))
}

fn parse_timestamp(header: &str, value: &str) -> Result<i64, VerifyError> {
    value
        .parse::<i64>()
        .map_err(|_| malformed(header, "timestamp is not an integer number of seconds"))
}

fn decode(header: &str, encoding: Encoding, text: &str) -> Result<Vec<u8>, VerifyError> {
    match encoding {
        Encoding::Hex => hex::decode(text).map_err(|_| malformed(header, "signature is not hex")),
        Encoding::Base64 => b64()
            .decode(text)
            .map_err(|_| malformed(header, "signature is not base64")),
    }
}
