//! The layouts many providers share, so that a preset names its headers and nothing else:
//! an HMAC of the body in one header, Stripe's `t=...,v1=...`, Slack's `v0:ts:body`, a token
//! header, Basic credentials.

use std::borrow::Cow;

use spillway_signature::{
    Algorithm, Encoding, Field, Part, Scheme, SecretFormat, Template, TimestampFormat,
};

/// Literal text in a template.
pub const fn lit(text: &'static str) -> Part {
    Part::Literal(Cow::Borrowed(text.as_bytes()))
}

/// An HMAC of the body alone, hex, in `header`, after `prefix`.
pub fn body_hmac(algorithm: Algorithm, header: &'static str, prefix: &'static str) -> Scheme {
    Scheme::new("", algorithm, header).prefix(prefix)
}

/// An HMAC-SHA256 of the body alone, hex, in `header`, with no prefix.
pub fn body_sha256(header: &'static str) -> Scheme {
    body_hmac(Algorithm::HmacSha256, header, "")
}

/// Stripe's layout: `header: t=<ts>,v1=<sig>[,v1=<sig>]` over `ts.body`, the timestamp in
/// `format`.
pub fn stripe_like(
    header: &'static str,
    separator: char,
    (ts_key, format): (&'static str, TimestampFormat),
    sig_key: &'static str,
    encoding: Encoding,
) -> Scheme {
    Scheme::new("", Algorithm::HmacSha256, header)
        .params(separator, sig_key)
        .encoding(encoding)
        .timestamp(Field::Param(ts_key.into()), format)
        .template(Template::of(&[Part::Timestamp, Part::dot(), Part::Body]))
}

/// Slack's layout: `header: v0=<hex>` over `v0:<ts>:<body>`, the timestamp in seconds in
/// `ts_header`.
pub fn slack_like(header: &'static str, ts_header: &'static str) -> Scheme {
    Scheme::new("", Algorithm::HmacSha256, header)
        .prefix("v0=")
        .timestamp(Field::Header(ts_header.into()), TimestampFormat::Seconds)
        .template(Template::of(&[
            lit("v0:"),
            Part::Timestamp,
            lit(":"),
            Part::Body,
        ]))
}

/// A shared token sent as it is in `header`, after `prefix`.
pub fn token(header: &'static str, prefix: &'static str) -> Scheme {
    Scheme::new("", Algorithm::Token, header)
        .prefix(prefix)
        .encoding(Encoding::Text)
}

/// HTTP Basic credentials; the secret is `user:password`.
pub fn basic() -> Scheme {
    Scheme::new("", Algorithm::Token, "authorization")
        .prefix("Basic ")
        .encoding(Encoding::Base64)
}

/// An Ed25519 signature over `<timestamp><separator><body>`, the public key in hex (or
/// base64 where `base64_key`).
pub fn ed25519(
    header: &'static str,
    ts_header: &'static str,
    separator: &'static str,
    encoding: Encoding,
    key: SecretFormat,
) -> Scheme {
    Scheme::new("", Algorithm::Ed25519, header)
        .encoding(encoding)
        .secret(key)
        .timestamp(Field::Header(ts_header.into()), TimestampFormat::Seconds)
        .template(Template::of(&[Part::Timestamp, lit(separator), Part::Body]))
}
