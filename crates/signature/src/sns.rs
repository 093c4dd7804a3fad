//! AWS SNS messages: the string SNS signs, and its RSA signature checked with the signing
//! certificate. Fetching that certificate needs the network, so the caller does it (the
//! ingress, through its SSRF guard) and hands the bytes here; this module stays pure.
//!
//! SNS does not fit the header-and-template [`crate::Scheme`]: the signature, the key's URL
//! and every signed value are fields of the JSON body, and which fields are signed depends on
//! the message's type. See
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html>.

use std::time::{Duration, SystemTime};

use ring::signature::{self, UnparsedPublicKey};
use serde_json::{Map, Value};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::{b64, check_tolerance, unix_seconds, Verified, VerifyError};

/// What an SNS message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsKind {
    Notification,
    /// Sent when a topic subscribes the endpoint: visiting its `SubscribeURL` confirms it.
    SubscriptionConfirmation,
    /// Sent when the subscription was deleted.
    UnsubscribeConfirmation,
}

/// The fields each kind signs, in the byte order SNS sorts them in. `Subject` is signed only
/// when the notification has one.
const NOTIFICATION_FIELDS: &[&str] = &[
    "Message",
    "MessageId",
    "Subject",
    "Timestamp",
    "TopicArn",
    "Type",
];
const CONFIRMATION_FIELDS: &[&str] = &[
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
];

/// A parsed SNS message whose signature is still to be checked.
#[derive(Debug, Clone)]
pub struct SnsMessage {
    pub kind: SnsKind,
    pub message_id: String,
    pub topic_arn: String,
    /// Where the signing certificate is; the caller checks the URL before fetching it.
    pub certificate_url: String,
    /// The confirmation URL of a (un)subscription confirmation.
    pub subscribe_url: Option<String>,
    timestamp: String,
    /// The signed string: `Name\nvalue\n` for each signed field.
    canonical: String,
    /// SignatureVersion 1 is SHA1withRSA, 2 SHA256withRSA.
    sha256: bool,
    signature: Vec<u8>,
}

// === impl SnsMessage ===

impl SnsMessage {
    /// Reads an SNS message from a request body. Every field its kind signs must be a string.
    pub fn parse(body: &[u8]) -> Result<Self, VerifyError> {
        let Ok(Fields(fields)) = serde_json::from_slice::<Fields>(body) else {
            return Err(malformed(
                "the body is not a JSON object, or names a field twice",
            ));
        };
        let fields = &fields;
        let kind = match text(fields, "Type")? {
            "Notification" => SnsKind::Notification,
            "SubscriptionConfirmation" => SnsKind::SubscriptionConfirmation,
            "UnsubscribeConfirmation" => SnsKind::UnsubscribeConfirmation,
            other => {
                return Err(malformed(&format!(
                    "Type {other:?} is not an SNS message type"
                )))
            }
        };
        let sha256 = match text(fields, "SignatureVersion")? {
            "1" => false,
            "2" => true,
            other => {
                return Err(malformed(&format!(
                    "SignatureVersion {other:?} is neither 1 (SHA1withRSA) nor 2 (SHA256withRSA)"
                )))
            }
        };
        let signature = base64::Engine::decode(&b64(), text(fields, "Signature")?)
            .map_err(|_| malformed("Signature is not base64"))?;
        let names = match kind {
            SnsKind::Notification => NOTIFICATION_FIELDS,
            _ => CONFIRMATION_FIELDS,
        };
        let mut canonical = String::new();
        for name in names {
            let value = match (*name, fields.get(*name)) {
                // Absent (or null) when the publisher gave none: then it is not signed.
                ("Subject", None | Some(Value::Null)) => continue,
                _ => text(fields, name)?,
            };
            canonical.push_str(name);
            canonical.push('\n');
            canonical.push_str(value);
            canonical.push('\n');
        }
        Ok(Self {
            kind,
            message_id: text(fields, "MessageId")?.to_owned(),
            topic_arn: text(fields, "TopicArn")?.to_owned(),
            certificate_url: text(fields, "SigningCertURL")?.to_owned(),
            subscribe_url: match kind {
                SnsKind::Notification => None,
                _ => Some(text(fields, "SubscribeURL")?.to_owned()),
            },
            timestamp: text(fields, "Timestamp")?.to_owned(),
            canonical,
            sha256,
            signature,
        })
    }

    /// The string SNS signed.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The region of the topic (`us-east-1` of `arn:aws:sns:us-east-1:123456789012:t`), whose
    /// endpoint serves its certificates.
    pub fn region(&self) -> &str {
        self.topic_arn.split(':').nth(3).unwrap_or_default()
    }

    /// Whether the message's `Timestamp` is within `tolerance` of `now`: checked before its
    /// certificate is fetched, so that a stale copy costs no fetch.
    pub fn check_timestamp(&self, now: SystemTime, tolerance: Duration) -> Result<(), VerifyError> {
        let sent = time::OffsetDateTime::parse(
            &self.timestamp,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| malformed("Timestamp is not an RFC 3339 date and time"))?;
        check_tolerance(sent.unix_timestamp(), now, tolerance)
    }

    /// Checks the signature with the certificate `der` (the PEM's DER) as of `now`: the
    /// certificate must be within its validity period and hold an RSA key of 2048 to 8192
    /// bits, and the message's `Timestamp` within `tolerance` of `now`. The key id reported is
    /// `key_id` (the certificate's name); the signed id is the `MessageId`.
    pub fn verify(
        &self,
        der: &[u8],
        key_id: &str,
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<Verified, VerifyError> {
        self.check_timestamp(now, tolerance)?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| certificate("the signing certificate is not DER X.509"))?;
        let at = unix_seconds(now);
        let validity = cert.validity();
        if at < validity.not_before.timestamp() || at > validity.not_after.timestamp() {
            return Err(certificate(&format!(
                "the signing certificate is valid from {} to {}, not now",
                validity.not_before, validity.not_after
            )));
        }
        let spki = cert.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            return Err(certificate("the signing certificate's key is not RSA"));
        }
        let algorithm: &dyn signature::VerificationAlgorithm = if self.sha256 {
            &signature::RSA_PKCS1_2048_8192_SHA256
        } else {
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
        };
        // ring reads the RSAPublicKey that the SubjectPublicKeyInfo's bit string holds.
        UnparsedPublicKey::new(algorithm, &*spki.subject_public_key.data)
            .verify(self.canonical.as_bytes(), &self.signature)
            .map_err(|_| VerifyError::Mismatch)?;
        Ok(Verified {
            key_id: Some(key_id.to_owned()),
            signed_id: Some(self.message_id.clone()),
            replay_key: None,
        })
    }
}

/// The top-level fields of a message, refused when one is named twice: the signature would
/// cover the value this parser keeps (the last), and a subscriber whose parser keeps the first
/// would read an unsigned one.
struct Fields(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object without repeated fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut fields = Map::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if fields.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("{key} appears twice")));
                    }
                    fields.insert(key, value);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, VerifyError> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(&format!("{name} is not a string"))),
        None => Err(VerifyError::MissingField(name.to_owned())),
    }
}

fn malformed(reason: &str) -> VerifyError {
    VerifyError::MalformedMessage(reason.to_owned())
}

fn certificate(reason: &str) -> VerifyError {
    VerifyError::Certificate(reason.to_owned())
}

/// The DER of the first certificate in `pem`.
pub fn certificate_der(pem: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| certificate("the signing certificate is not a PEM certificate"))?;
    if block.label != "CERTIFICATE" {
        return Err(certificate(
            "the signing certificate is not a PEM certificate",
        ));
    }
    Ok(block.contents)
}

#[cfg(test)]
#[path = "sns_tests.rs"]
mod tests;
