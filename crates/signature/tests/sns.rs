//! AWS SNS vectors not produced by Spillway: real messages signed by AWS, with the certificate
//! served at their `SigningCertURL`, as published in AWS's own SDKs' test suites and other
//! validators' (`published-*`), and messages accepted by the AWS Labs validator `sns-validator`
//! (`sdk-*`, see dev/provider-vectors/sns.mjs). Each is checked both ways: the message as
//! sent verifies; with one byte of its message, its timestamp or its signature changed it
//! does not; and its certificate is refused outside its validity period.

#![allow(clippy::expect_used)]

use std::time::{Duration, SystemTime};

use serde_json::Value;
use spillway_signature::sns::{certificate_der, SnsKind, SnsMessage};

struct Vector {
    name: String,
    body: String,
    der: Vec<u8>,
    at: SystemTime,
}

fn vectors() -> Vec<Vector> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sns");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("vector dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let at = time::OffsetDateTime::parse(
            v["verify_at"].as_str().expect("verify_at"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("verify_at is RFC 3339");
        out.push(Vector {
            name: path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            body: v["body"].as_str().expect("body").to_owned(),
            der: certificate_der(v["certificate_pem"].as_str().expect("pem").as_bytes())
                .expect("certificate"),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp() as u64),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 8, "the vectors are missing");
    out
}

const TOLERANCE: Duration = Duration::from_secs(3900);

fn verify(body: &str, v: &Vector, at: SystemTime) -> Result<(), String> {
    let message = SnsMessage::parse(body.as_bytes()).map_err(|e| e.code().to_owned())?;
    message
        .verify(&v.der, "cert", at, TOLERANCE)
        .map(|_| ())
        .map_err(|e| e.code().to_owned())
}

/// `body` with the first occurrence of `field`'s string value changed at its `nth` character
/// (a digit for another digit, a letter for a letter).
fn tampered(body: &str, field: &str, nth: usize) -> String {
    let key = format!("\"{field}\"");
    let start = body.find(&key).expect("field") + key.len();
    let open = start + body[start..].find('"').expect("value") + 1;
    let mut bytes = body.as_bytes().to_vec();
    let mut seen = 0;
    for b in bytes[open..].iter_mut() {
        if b.is_ascii_alphanumeric() {
            if seen == nth {
                *b = match *b {
                    b'0' => b'1',
                    b'1'..=b'9' => b'0',
                    b'A' => b'B',
                    _ => b'A',
                };
                return String::from_utf8(bytes).expect("utf8");
            }
            seen += 1;
        }
    }
    panic!("{field} is too short");
}

#[test]
fn every_published_and_sdk_message_verifies_with_its_certificate() {
    for v in vectors() {
        let message = SnsMessage::parse(v.body.as_bytes()).expect(&v.name);
        let verified = message
            .verify(&v.der, "SimpleNotificationService-x", v.at, TOLERANCE)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(
            verified.signed_id.as_deref(),
            Some(message.message_id.as_str())
        );
        assert_eq!(
            verified.key_id.as_deref(),
            Some("SimpleNotificationService-x")
        );
    }
}

#[test]
fn one_changed_byte_of_message_timestamp_or_signature_is_refused() {
    for v in vectors() {
        for (field, nth, code) in [
            ("Message", 2, "signature_mismatch"),
            ("Timestamp", 16, "signature_mismatch"),
            ("Signature", 5, "signature_mismatch"),
            ("TopicArn", 4, "signature_mismatch"),
        ] {
            let changed = tampered(&v.body, field, nth);
            assert_eq!(
                verify(&changed, &v, v.at),
                Err(code.to_owned()),
                "{} with {field} changed",
                v.name
            );
        }
    }
}

#[test]
fn a_certificate_outside_its_validity_is_refused() {
    let year = Duration::from_secs(400 * 24 * 3600);
    for v in vectors() {
        for at in [v.at - year * 12, v.at + year * 12] {
            let message = SnsMessage::parse(v.body.as_bytes()).expect("parse");
            // The timestamp is judged first: move the window with the clock.
            let refused = message
                .verify(&v.der, "cert", at, Duration::from_secs(u64::MAX / 4))
                .expect_err(&v.name);
            assert_eq!(
                refused.code(),
                "certificate_invalid",
                "{}: {refused}",
                v.name
            );
        }
    }
}

#[test]
fn a_stale_message_is_refused_before_its_certificate_is_read() {
    let v = &vectors()[0];
    let late = v.at + TOLERANCE + Duration::from_secs(1);
    assert_eq!(verify(&v.body, v, late), Err("timestamp_too_old".into()));
}

#[test]
fn the_vectors_cover_every_kind_and_both_versions() {
    let messages: Vec<SnsMessage> = vectors()
        .iter()
        .map(|v| SnsMessage::parse(v.body.as_bytes()).expect("parse"))
        .collect();
    for kind in [
        SnsKind::Notification,
        SnsKind::SubscriptionConfirmation,
        SnsKind::UnsubscribeConfirmation,
    ] {
        assert!(messages.iter().any(|m| m.kind == kind), "{kind:?}");
    }
    let v2 = vectors()
        .iter()
        .filter(|v| {
            v.body.contains("\"SignatureVersion\" : \"2\"")
                || v.body.contains("\"SignatureVersion\":\"2\"")
        })
        .count();
    assert!(v2 >= 2, "SignatureVersion 2 vectors: {v2}");
}
