//! A source's verification scheme: a provider preset by name, a generic `hmac` template, or
//! `none`, with the defaults it implies (dedupe key, event type, forwarded headers, replay
//! window) and the key sources it allows.

use spillway_core::key::KeySource;
use spillway_providers::Preset;
use spillway_signature::{
    Algorithm, Encoding, Field, Scheme, Template, TimestampFormat, DEFAULT_TOLERANCE,
};

use crate::error::SchemeError;
use crate::model::{
    EncodingConfig, HmacAlgorithmConfig, SourceConfig, TimestampFormatConfig, VerifyConfig,
};

/// The scheme a `verify` section describes, and the preset it names, if any.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub(crate) scheme: Scheme,
    pub(crate) preset: Option<&'static Preset>,
}

/// The scheme a `verify` section describes.
pub(crate) fn build(verify: &VerifyConfig) -> Result<Built, SchemeError> {
    match verify.scheme.as_str() {
        "hmac" => Ok(Built {
            scheme: build_generic(verify)?,
            preset: None,
        }),
        other => {
            let generic_fields = [
                ("header", verify.header.is_some()),
                ("prefix", verify.prefix.is_some()),
                ("encoding", verify.encoding.is_some()),
                ("algorithm", verify.algorithm.is_some()),
                ("template", verify.template.is_some()),
                ("id_header", verify.id_header.is_some()),
                ("timestamp_header", verify.timestamp_header.is_some()),
                ("timestamp_format", verify.timestamp_format.is_some()),
            ];
            if let Some((field, _)) = generic_fields.iter().find(|(_, set)| *set) {
                return Err(SchemeError::NotGeneric {
                    field,
                    scheme: other.to_owned(),
                });
            }
            if other == "none" {
                return Ok(Built {
                    scheme: Scheme::none(),
                    preset: None,
                });
            }
            let preset = spillway_providers::find(other).ok_or_else(|| SchemeError::Unknown {
                name: other.to_owned(),
                close: spillway_providers::suggestions(other).join(", "),
            })?;
            Ok(Built {
                scheme: preset.scheme.clone(),
                preset: Some(preset),
            })
        }
    }
}

/// The generic HMAC scheme: header names checked, the template parsed and held to the headers
/// its placeholders need.
fn build_generic(verify: &VerifyConfig) -> Result<Scheme, SchemeError> {
    let header = verify
        .header
        .as_deref()
        .ok_or(SchemeError::Missing("header"))?;
    let encoding = verify.encoding.ok_or(SchemeError::Missing("encoding"))?;
    for h in std::iter::once(header)
        .chain(verify.id_header.as_deref())
        .chain(verify.timestamp_header.as_deref())
    {
        http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|source| {
            SchemeError::HeaderName {
                name: h.to_owned(),
                source,
            }
        })?;
    }
    let template_error = |source| SchemeError::Template { source };
    let template =
        Template::parse(verify.template.as_deref().unwrap_or("{body}")).map_err(template_error)?;
    let algorithm = match verify.algorithm.unwrap_or(HmacAlgorithmConfig::Sha256) {
        HmacAlgorithmConfig::Sha1 => Algorithm::HmacSha1,
        HmacAlgorithmConfig::Sha256 => Algorithm::HmacSha256,
        HmacAlgorithmConfig::Sha512 => Algorithm::HmacSha512,
    };
    let mut scheme = Scheme::new("hmac", algorithm, header.to_ascii_lowercase())
        .prefix(verify.prefix.clone().unwrap_or_default())
        .encoding(match encoding {
            EncodingConfig::Hex => Encoding::Hex,
            EncodingConfig::Base64 => Encoding::Base64,
            EncodingConfig::Base64url => Encoding::Base64Url,
        })
        .template(template);
    if let Some(h) = &verify.id_header {
        scheme = scheme.id(Field::Header(h.to_ascii_lowercase().into()));
    }
    if let Some(h) = &verify.timestamp_header {
        let format = match verify
            .timestamp_format
            .unwrap_or(TimestampFormatConfig::Seconds)
        {
            TimestampFormatConfig::Seconds => TimestampFormat::Seconds,
            TimestampFormatConfig::Milliseconds => TimestampFormat::Millis,
            TimestampFormatConfig::Rfc3339 => TimestampFormat::Rfc3339,
        };
        scheme = scheme.timestamp(Field::Header(h.to_ascii_lowercase().into()), format);
    } else if verify.timestamp_format.is_some() {
        return Err(SchemeError::Missing("timestamp_header"));
    }
    scheme.check().map_err(template_error)?;
    Ok(scheme)
}

// === impl Built ===

impl Built {
    /// The preset's own event id where it has one, the id a generic scheme signs, else a hash
    /// of the body.
    pub(super) fn default_dedupe(&self) -> KeySource {
        match self.preset.and_then(|p| p.dedupe.clone()) {
            Some(key) => key,
            None if self.scheme.signs_id() => KeySource::SignedId,
            None => KeySource::BodyHash,
        }
    }

    /// Where the preset says what kind of event it sent.
    pub(super) fn default_event_type(&self) -> Option<KeySource> {
        self.preset.and_then(|p| p.event_type.clone())
    }

    /// The preset's signature headers (so consumers can verify again) and event metadata.
    pub(super) fn default_forward_headers(&self) -> Vec<String> {
        self.preset.map(Preset::forward_headers).unwrap_or_default()
    }

    /// The source's replay window: its own, else the preset's, else the default.
    pub(super) fn tolerance(&self, source: &SourceConfig) -> std::time::Duration {
        source
            .tolerance
            .or_else(|| self.preset.and_then(|p| p.tolerance))
            .unwrap_or(DEFAULT_TOLERANCE)
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
            Some(s) if s.signs_id() => None,
            Some(s) => Some(format!(
                "from: signed_id needs a scheme that signs an event id; {} does not",
                s.name()
            )),
            None => None,
        },
        _ => None,
    }
}
