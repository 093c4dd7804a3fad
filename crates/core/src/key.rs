//! Where a request's dedupe key (or partition key) comes from: a header, a JSON pointer into the
//! body, or a hash of the body.

use std::cell::OnceCell;

use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Longest key accepted. Keys are stored in Redis and Kafka: an unbounded one would let a sender
/// grow both at will.
pub const MAX_KEY_BYTES: usize = 512;

/// A configured key source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// The value of a request header, e.g. `webhook-id` or `X-GitHub-Delivery`.
    Header { name: String },
    /// A JSON pointer (RFC 6901) into the body, e.g. `/id`; the body must be JSON.
    JsonPointer { pointer: String },
    /// The hex SHA-256 of the raw body: identical bodies are duplicates.
    BodyHash,
    /// The event id covered by the signature (Standard Webhooks `webhook-id`/`svix-id`, or a
    /// generic scheme's `id_header`), so a retry under the svix header names dedupes too.
    SignedId,
    /// The subject of the client's TLS certificate (its common name): the device id of a
    /// fleet that authenticates with mutual TLS (`require_client_cert`).
    ClientCertificate,
    /// A scalar field of a Protobuf record, by its dotted path (`meter.id`): the source must
    /// name the record's message type (`schema.protobuf`), which decodes it.
    ProtobufField { field: String },
    /// No key: the source does not deduplicate.
    None,
}

/// A decoded record whose fields keys can be read from: a Protobuf message.
pub trait Fields: std::fmt::Debug {
    /// The scalar at dotted field path `path` as text; None when it is unset.
    fn field_text(&self, path: &str) -> Option<String>;
}

/// Why no key could be taken from a request. Each is the sender's fault (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("header {0} is missing")]
    MissingHeader(String),
    #[error("header {0} is not visible ASCII")]
    BadHeader(String),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body has nothing at JSON pointer {0}")]
    MissingPointer(String),
    #[error("value at JSON pointer {0} is not a string or a number")]
    NotScalar(String),
    #[error("the verification scheme signs no event id")]
    NoSignedId,
    #[error("the request came without a client certificate")]
    NoClientCertificate,
    #[error("record has no field {0}")]
    MissingField(String),
    #[error("the record was not decoded as a Protobuf message, so field {0} cannot be read")]
    NotDecoded(String),
    #[error("key is empty")]
    Empty,
    #[error("key is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
}

// === impl KeyError ===

impl KeyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) | Self::BadHeader(_) => "key_header_invalid",
            Self::NotJson(_) => "body_not_json",
            Self::MissingPointer(_) | Self::NotScalar(_) | Self::MissingField(_) => {
                "key_not_in_body"
            }
            Self::NotDecoded(_) => "body_not_protobuf",
            Self::Empty | Self::TooLong | Self::NoSignedId | Self::NoClientCertificate => {
                "key_invalid"
            }
        }
    }
}

/// What keys are read from. The body is parsed as JSON at most once, however many keys of a
/// request point into it.
#[derive(Debug)]
pub struct KeyInput<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    signed_id: Option<&'a str>,
    client_subject: Option<&'a str>,
    fields: Option<&'a dyn Fields>,
    /// The body's SHA-256 in hex, when the body is not here (it was streamed to object
    /// storage and hashed on the way).
    body_sha256: Option<&'a str>,
    json: OnceCell<Result<serde_json::Value, String>>,
}

// === impl KeyInput ===

impl<'a> KeyInput<'a> {
    /// `signed_id` is the id the verifier authenticated, if its scheme signs one.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8], signed_id: Option<&'a str>) -> Self {
        Self {
            headers,
            body,
            signed_id,
            client_subject: None,
            fields: None,
            body_sha256: None,
            json: OnceCell::new(),
        }
    }

    /// The subject of the client certificate the TLS handshake verified, if any.
    pub fn with_client_subject(mut self, subject: Option<&'a str>) -> Self {
        self.client_subject = subject;
        self
    }

    /// The body decoded as a Protobuf message, for [`KeySource::ProtobufField`].
    pub fn with_fields(mut self, fields: Option<&'a dyn Fields>) -> Self {
        self.fields = fields;
        self
    }

    /// The hash of a body that is not here: what [`KeySource::BodyHash`] gives.
    pub fn with_body_sha256(mut self, sha256: Option<&'a str>) -> Self {
        self.body_sha256 = sha256;
        self
    }

    fn json(&self) -> Result<&serde_json::Value, KeyError> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.body).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| KeyError::NotJson(e.clone()))
    }
}

// === impl KeySource ===

impl KeySource {
    /// Whether the key is read from inside the body (a JSON pointer, a Protobuf field): such
    /// a key cannot be read from a body streamed to object storage.
    pub fn reads_body(&self) -> bool {
        matches!(self, Self::JsonPointer { .. } | Self::ProtobufField { .. })
    }

    /// Extracts the key, or `Ok(None)` for [`KeySource::None`].
    pub fn extract(&self, input: &KeyInput<'_>) -> Result<Option<String>, KeyError> {
        let key = match self {
            Self::None => return Ok(None),
            Self::SignedId => input.signed_id.ok_or(KeyError::NoSignedId)?.to_owned(),
            Self::ClientCertificate => input
                .client_subject
                .ok_or(KeyError::NoClientCertificate)?
                .to_owned(),
            Self::BodyHash => match input.body_sha256 {
                Some(sha256) => sha256.to_owned(),
                None => hex::encode(Sha256::digest(input.body)),
            },
            Self::Header { name } => input
                .headers
                .get(name.as_str())
                .ok_or_else(|| KeyError::MissingHeader(name.clone()))?
                .to_str()
                .map_err(|_| KeyError::BadHeader(name.clone()))?
                .trim()
                .to_owned(),
            Self::JsonPointer { pointer } => match input.json()?.pointer(pointer) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => return Err(KeyError::NotScalar(pointer.clone())),
                None => return Err(KeyError::MissingPointer(pointer.clone())),
            },
            Self::ProtobufField { field } => input
                .fields
                .ok_or_else(|| KeyError::NotDecoded(field.clone()))?
                .field_text(field)
                .ok_or_else(|| KeyError::MissingField(field.clone()))?,
        };
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong);
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_certificate_subject_is_a_key_only_when_there_is_one() {
        let empty = HeaderMap::new();
        let with = KeyInput::new(&empty, b"{}", None).with_client_subject(Some("meter-0042"));
        assert_eq!(
            KeySource::ClientCertificate.extract(&with),
            Ok(Some("meter-0042".into()))
        );
        let without = KeyInput::new(&empty, b"{}", None);
        assert_eq!(
            KeySource::ClientCertificate.extract(&without),
            Err(KeyError::NoClientCertificate)
        );
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, http::HeaderValue::from_static(value));
        h
    }

    #[test]
    fn header_key() {
        let src = KeySource::Header {
            name: "webhook-id".into(),
        };
        assert_eq!(
            src.extract(&KeyInput::new(&headers("webhook-id", "msg_1"), b"", None)),
            Ok(Some("msg_1".into()))
        );
        assert_eq!(
            src.extract(&KeyInput::new(&HeaderMap::new(), b"", None))
                .map_err(|e| e.code()),
            Err("key_header_invalid")
        );
    }

    #[test]
    fn json_pointer_key() {
        let src = KeySource::JsonPointer {
            pointer: "/data/id".into(),
        };
        let h = HeaderMap::new();
        assert_eq!(
            src.extract(&KeyInput::new(&h, br#"{"data":{"id":"evt_9"}}"#, None)),
            Ok(Some("evt_9".into()))
        );
        assert_eq!(
            src.extract(&KeyInput::new(&h, br#"{"data":{"id":42}}"#, None)),
            Ok(Some("42".into()))
        );
        assert_eq!(
            src.extract(&KeyInput::new(&h, b"not json", None))
                .map_err(|e| e.code()),
            Err("body_not_json")
        );
        assert_eq!(
            src.extract(&KeyInput::new(&h, br#"{"data":{}}"#, None))
                .map_err(|e| e.code()),
            Err("key_not_in_body")
        );
        assert_eq!(
            src.extract(&KeyInput::new(&h, br#"{"data":{"id":[1]}}"#, None))
                .map_err(|e| e.code()),
            Err("key_not_in_body")
        );
        assert_eq!(
            src.extract(&KeyInput::new(&h, br#"{"data":{"id":""}}"#, None)),
            Err(KeyError::Empty)
        );
    }

    #[test]
    fn body_hash_key_is_stable_and_none_is_none() {
        let h = HeaderMap::new();
        let a = KeySource::BodyHash
            .extract(&KeyInput::new(&h, b"abc", None))
            .expect("hash");
        assert_eq!(
            a.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            KeySource::None.extract(&KeyInput::new(&h, b"abc", None)),
            Ok(None)
        );
    }

    #[test]
    fn several_keys_from_one_input() {
        let h = HeaderMap::new();
        let input = KeyInput::new(&h, br#"{"id":"evt_1","device":"meter-7"}"#, None);
        let id = KeySource::JsonPointer {
            pointer: "/id".into(),
        };
        let device = KeySource::JsonPointer {
            pointer: "/device".into(),
        };
        assert_eq!(id.extract(&input), Ok(Some("evt_1".into())));
        assert_eq!(device.extract(&input), Ok(Some("meter-7".into())));
        let broken = KeyInput::new(&h, b"{", None);
        assert_eq!(
            id.extract(&broken).map_err(|e| e.code()),
            Err("body_not_json")
        );
        assert_eq!(
            device.extract(&broken).map_err(|e| e.code()),
            Err("body_not_json")
        );
    }

    #[test]
    fn signed_id_key() {
        let h = HeaderMap::new();
        assert_eq!(
            KeySource::SignedId.extract(&KeyInput::new(&h, b"", Some("msg_1"))),
            Ok(Some("msg_1".into()))
        );
        assert_eq!(
            KeySource::SignedId.extract(&KeyInput::new(&h, b"", None)),
            Err(KeyError::NoSignedId)
        );
    }

    #[test]
    fn overlong_keys_are_refused() {
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_KEY_BYTES + 1));
        let src = KeySource::JsonPointer {
            pointer: "/id".into(),
        };
        assert_eq!(
            src.extract(&KeyInput::new(&HeaderMap::new(), long.as_bytes(), None)),
            Err(KeyError::TooLong)
        );
    }
}
