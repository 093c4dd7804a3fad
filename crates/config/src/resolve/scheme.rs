//! A source's verification scheme: built from its `verify` section, with the defaults each
//! scheme implies (dedupe key, event type, forwarded headers) and the key sources it allows.

use spillway_core::key::KeySource;
use spillway_signature::{Encoding, GenericHmac, Scheme, Template};

use crate::error::SchemeError;
use crate::model::{EncodingConfig, VerifyConfig};

/// The scheme a `verify` section describes.
pub(crate) fn build(verify: &VerifyConfig) -> Result<Scheme, SchemeError> {
    Ok(match verify {
        VerifyConfig::StandardWebhooks => Scheme::StandardWebhooks,
        VerifyConfig::Github => Scheme::Github,
        VerifyConfig::Stripe => Scheme::Stripe,
        VerifyConfig::Shopify => Scheme::Shopify,
        VerifyConfig::Slack => Scheme::Slack,
        VerifyConfig::None => Scheme::None,
        VerifyConfig::Hmac {
            header,
            prefix,
            encoding,
            template,
            id_header,
            timestamp_header,
        } => Scheme::Generic(build_generic(
            header,
            prefix,
            *encoding,
            template,
            id_header.as_deref(),
            timestamp_header.as_deref(),
        )?),
    })
}

/// The generic HMAC scheme: header names checked, the template parsed and held to the headers
/// its placeholders need.
fn build_generic(
    header: &str,
    prefix: &str,
    encoding: EncodingConfig,
    template: &str,
    id_header: Option<&str>,
    timestamp_header: Option<&str>,
) -> Result<GenericHmac, SchemeError> {
    for h in std::iter::once(header)
        .chain(id_header)
        .chain(timestamp_header)
    {
        http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|source| {
            SchemeError::HeaderName {
                name: h.to_owned(),
                source,
            }
        })?;
    }
    let template_error = |source| SchemeError::Template { source };
    let generic = GenericHmac {
        signature_header: header.to_ascii_lowercase(),
        prefix: prefix.to_owned(),
        encoding: match encoding {
            EncodingConfig::Hex => Encoding::Hex,
            EncodingConfig::Base64 => Encoding::Base64,
        },
        template: Template::parse(template).map_err(template_error)?,
        id_header: id_header.map(str::to_ascii_lowercase),
        timestamp_header: timestamp_header.map(str::to_ascii_lowercase),
    };
    generic.validate().map_err(template_error)?;
    Ok(generic)
}

/// The scheme's own event id where it has one, else a hash of the body.
pub(super) fn default_dedupe(scheme: &Scheme) -> KeySource {
    let header = |name: &str| KeySource::Header { name: name.into() };
    match scheme {
        Scheme::StandardWebhooks => KeySource::SignedId,
        Scheme::Github => header("x-github-delivery"),
        Scheme::Stripe => KeySource::JsonPointer {
            pointer: "/id".into(),
        },
        Scheme::Shopify => header("x-shopify-webhook-id"),
        Scheme::Generic(g) if g.id_header.is_some() => KeySource::SignedId,
        Scheme::Slack | Scheme::Generic(_) | Scheme::None => KeySource::BodyHash,
    }
}

/// Where each provider says what kind of event it sent.
pub(super) fn default_event_type(scheme: &Scheme) -> Option<KeySource> {
    let header = |name: &str| Some(KeySource::Header { name: name.into() });
    let pointer = |p: &str| Some(KeySource::JsonPointer { pointer: p.into() });
    match scheme {
        Scheme::Github => header("x-github-event"),
        Scheme::Shopify => header("x-shopify-topic"),
        Scheme::Stripe | Scheme::StandardWebhooks | Scheme::Slack => pointer("/type"),
        Scheme::Generic(_) | Scheme::None => None,
    }
}

/// The signature headers (so consumers can verify again) and the provider's event metadata.
pub(super) fn default_forward_headers(scheme: &Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::StandardWebhooks => &[
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "svix-id",
            "svix-timestamp",
            "svix-signature",
        ],
        Scheme::Github => &[
            "x-hub-signature-256",
            "x-github-event",
            "x-github-delivery",
            "x-github-hook-id",
        ],
        Scheme::Stripe => &["stripe-signature"],
        Scheme::Shopify => &[
            "x-shopify-hmac-sha256",
            "x-shopify-topic",
            "x-shopify-shop-domain",
            "x-shopify-webhook-id",
            "x-shopify-api-version",
        ],
        Scheme::Slack => &[
            "x-slack-signature",
            "x-slack-request-timestamp",
            "x-slack-retry-num",
        ],
        Scheme::Generic(_) | Scheme::None => &[],
    }
}

/// What is wrong with `key` as a key source of a source verified with `scheme` (`None`: the
/// scheme itself is invalid, so only the key's own shape is checked).
pub(super) fn check_key_source(key: &KeySource, scheme: Option<&Scheme>) -> Option<String> {
    match key {
        KeySource::Header { name }
            if http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() =>
        {
            Some(format!("{name:?} is not a header name"))
        }
        KeySource::JsonPointer { pointer } if !(pointer.is_empty() || pointer.starts_with('/')) => {
            Some(format!(
                "{pointer:?} is not a JSON pointer; it must start with '/'"
            ))
        }
        KeySource::SignedId => match scheme {
            Some(Scheme::StandardWebhooks) => None,
            Some(Scheme::Generic(g)) if g.id_header.is_some() => None,
            Some(s) => Some(format!(
                "from: signed_id needs a scheme that signs an event id; {} does not",
                s.name()
            )),
            None => None,
        },
        _ => None,
    }
}
