//! Reading a request as its scheme says: the offered signatures, the id and the timestamp, from
//! headers, from the signature header's own parameters, or from the JSON body.

use std::borrow::Cow;
use std::cell::OnceCell;

use base64::Engine as _;
use http::HeaderMap;

use crate::scheme::{Algorithm, Encoding, Field, Scheme, SignatureFormat, TimestampFormat};
use crate::{Request, VerifyError};

/// Most signatures one request may offer: a sender rotating its secrets sends two or three.
const MAX_CANDIDATES: usize = 16;

/// The pieces of a signed request, as its scheme found them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignatureParts {
    pub(crate) id: Option<String>,
    /// The text as sent and the Unix seconds it stands for.
    pub(crate) timestamp: Option<(String, i64)>,
    /// Decoded signatures offered by the sender (several during the provider's own rotation).
    pub(crate) candidates: Vec<Vec<u8>>,
}

/// Reads `request` as `scheme` lays it out; `Ok(None)` for a scheme that verifies nothing.
pub(crate) fn signature_parts(
    scheme: &Scheme,
    request: &Request<'_>,
) -> Result<Option<SignatureParts>, VerifyError> {
    if scheme.algorithm == Algorithm::None {
        return Ok(None);
    }
    let reader = Reader::new(scheme, request);
    let mut candidates = Vec::new();
    let mut params = Vec::new();
    let mut any = false;
    if let Some(pointer) = &scheme.signature_pointer {
        let field = Field::Json(pointer.clone());
        let value = reader.value(&field, &params)?;
        read_signatures(
            scheme,
            &reader.label(&field),
            &value,
            &mut candidates,
            &mut params,
        )?;
        any = true;
    }
    for name in &scheme.signature_headers {
        let name = reader.name(name);
        let values = all(request.headers, &name)?;
        // A plain or listed HMAC signature may come twice (Mollie sends one header per secret
        // while it rotates): each is one more candidate, and each must match a MAC. A
        // `key=value` header sent twice would carry two timestamps; a token or a public-key
        // signature sent twice would be more guesses, or more costly checks, per request.
        let hmac = matches!(
            scheme.algorithm,
            Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512
        );
        if values.len() > 1 && (!hmac || matches!(scheme.format, SignatureFormat::Params { .. })) {
            return Err(malformed(&name, "header appears more than once"));
        }
        for value in values {
            any = true;
            read_signatures(scheme, &name, value, &mut candidates, &mut params)?;
        }
    }
    if candidates.len() > MAX_CANDIDATES {
        return Err(malformed(
            &scheme
                .signature_headers
                .first()
                .map(|h| h.to_string())
                .unwrap_or_default(),
            "more signatures than any sender rotates through",
        ));
    }
    if !any {
        let first = scheme.signature_headers.first().map(|h| h.to_string());
        return Err(VerifyError::MissingHeader(first.unwrap_or_default()));
    }
    let id = match &scheme.id {
        Some(field) => Some(reader.value(field, &params)?),
        None => None,
    };
    let timestamp = match &scheme.timestamp {
        Some(spec) => {
            let text = reader.value(&spec.at, &params)?;
            let secs = parse_timestamp(&reader.label(&spec.at), &text, spec.format)?;
            Some((text, secs))
        }
        None => None,
    };
    Ok(Some(SignatureParts {
        id,
        timestamp,
        candidates,
    }))
}

/// Header names under the scheme's alias where the request uses it, and the JSON body parsed
/// at most once.
struct Reader<'s, 'r> {
    scheme: &'s Scheme,
    request: &'r Request<'r>,
    aliased: bool,
    json: OnceCell<Option<serde_json::Value>>,
}

impl<'s, 'r> Reader<'s, 'r> {
    fn new(scheme: &'s Scheme, request: &'r Request<'r>) -> Self {
        let present = |name: &str| request.headers.contains_key(name);
        let aliased = scheme.header_alias.as_ref().is_some_and(|(from, to)| {
            !scheme.signature_headers.iter().any(|h| present(h))
                && scheme.signature_headers.iter().any(|h| {
                    h.strip_prefix(from.as_ref())
                        .is_some_and(|rest| present(&format!("{to}{rest}")))
                })
        });
        Self {
            scheme,
            request,
            aliased,
            json: OnceCell::new(),
        }
    }

    fn name<'n>(&self, name: &'n str) -> Cow<'n, str> {
        match (&self.scheme.header_alias, self.aliased) {
            (Some((from, to)), true) => match name.strip_prefix(from.as_ref()) {
                Some(rest) => Cow::Owned(format!("{to}{rest}")),
                None => Cow::Borrowed(name),
            },
            _ => Cow::Borrowed(name),
        }
    }

    /// What error messages call the field.
    fn label(&self, field: &Field) -> String {
        match field {
            Field::Header(h) => self.name(h).into_owned(),
            Field::Param(p) => {
                let header = self.scheme.signature_headers.first();
                format!("{} {p}=", header.map(|h| h.as_ref()).unwrap_or_default())
            }
            Field::Json(p) => format!("body {p}"),
        }
    }

    fn value(&self, field: &Field, params: &[(String, String)]) -> Result<String, VerifyError> {
        match field {
            Field::Header(h) => Ok(required(self.request.headers, &self.name(h))?.to_owned()),
            Field::Param(key) => {
                // Repeated with one value is one value (each of Persona's rotation groups
                // carries the same `t=`); two values would leave the signed one unknown.
                let mut found = params.iter().filter(|(k, _)| k == key.as_ref());
                let Some((_, first)) = found.next() else {
                    return Err(malformed(&self.label(field), "is missing"));
                };
                if found.any(|(_, v)| v != first) {
                    return Err(malformed(
                        &self.label(field),
                        "appears more than once with different values",
                    ));
                }
                Ok(first.clone())
            }
            Field::Json(pointer) => {
                let json = self
                    .json
                    .get_or_init(|| serde_json::from_slice(self.request.body).ok());
                let value = json
                    .as_ref()
                    .ok_or_else(|| malformed("body", "is not JSON"))?
                    .pointer(pointer)
                    .ok_or_else(|| VerifyError::MissingHeader(self.label(field)))?;
                match value {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    _ => Err(malformed(&self.label(field), "is not a string or a number")),
                }
            }
        }
    }
}

/// The signatures of one header value, and its `key=value` parameters.
fn read_signatures(
    scheme: &Scheme,
    header: &str,
    value: &str,
    candidates: &mut Vec<Vec<u8>>,
    params: &mut Vec<(String, String)>,
) -> Result<(), VerifyError> {
    match &scheme.format {
        SignatureFormat::Plain { prefix } => {
            let encoded = strip_prefix(value, prefix)
                .ok_or_else(|| malformed(header, &format!("expected {prefix}<signature>")))?;
            candidates.push(decode(header, scheme.encoding, encoded)?);
        }
        SignatureFormat::List { separator, label } => {
            for item in value.split(*separator) {
                if let Some(encoded) = item.trim().strip_prefix(label.as_ref()) {
                    candidates.push(decode(header, scheme.encoding, encoded)?);
                }
            }
        }
        SignatureFormat::Params { separator, key } => {
            // Whitespace separates too: Persona sends two `t=..,v1=..` groups, space-separated,
            // while it rotates its secret (and some senders write `, ` between pairs).
            let items = value.split(|c: char| c == *separator || c.is_whitespace());
            for item in items {
                if item.is_empty() {
                    continue;
                }
                let (k, v) = item.split_once('=').ok_or_else(|| {
                    malformed(
                        header,
                        &format!("expected {separator}-separated key=value pairs"),
                    )
                })?;
                if k == key.as_ref() {
                    candidates.push(decode(header, scheme.encoding, v)?);
                } else {
                    params.push((k.to_owned(), v.to_owned()));
                }
            }
        }
    }
    Ok(())
}

/// A prefix is matched without regard to case: `SHA256=` and `sha256=` are the same label.
fn strip_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

pub(crate) fn malformed(header: &str, reason: &str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The single value of a header, if present. A header sent twice is refused rather than
/// guessed at: two timestamps or two signature headers mean a confused or hostile sender.
fn optional<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed(name, "header appears more than once"));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| malformed(name, "not visible ASCII"))
}

/// Every value of a header, in order.
fn all<'h>(headers: &'h HeaderMap, name: &str) -> Result<Vec<&'h str>, VerifyError> {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| malformed(name, "not visible ASCII"))
        })
        .collect()
}

fn required<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, VerifyError> {
    optional(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// Unix seconds of a timestamp written in `format`.
pub(crate) fn parse_timestamp(
    field: &str,
    text: &str,
    format: TimestampFormat,
) -> Result<i64, VerifyError> {
    match format {
        TimestampFormat::Seconds => text
            .parse::<i64>()
            .map_err(|_| malformed(field, "timestamp is not an integer number of seconds")),
        TimestampFormat::Millis => text
            .parse::<i64>()
            .map(|ms| ms.div_euclid(1000))
            .map_err(|_| malformed(field, "timestamp is not an integer number of milliseconds")),
        TimestampFormat::Rfc3339 => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(time::OffsetDateTime::unix_timestamp)
                .map_err(|_| malformed(field, "timestamp is not an RFC 3339 date and time"))
        }
    }
}

pub(crate) fn decode(header: &str, encoding: Encoding, text: &str) -> Result<Vec<u8>, VerifyError> {
    use base64::engine::general_purpose as b64;
    let decoded = match encoding {
        Encoding::Hex => hex::decode(text).map_err(|_| "signature is not hex"),
        Encoding::Base64 => {
            let engine = if text.ends_with('=') {
                b64::STANDARD
            } else {
                b64::STANDARD_NO_PAD
            };
            engine.decode(text).map_err(|_| "signature is not base64")
        }
        Encoding::Base64Url => {
            let engine = if text.ends_with('=') {
                b64::URL_SAFE
            } else {
                b64::URL_SAFE_NO_PAD
            };
            engine
                .decode(text)
                .map_err(|_| "signature is not base64url")
        }
        Encoding::Text => Ok(text.as_bytes().to_vec()),
    };
    decoded.map_err(|reason| malformed(header, reason))
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
