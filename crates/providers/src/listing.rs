//! The catalogue as people read it: `spillway providers` (a table or JSON) and
//! docs/providers.md, both made from the presets themselves so that neither can drift.

use std::fmt::Write as _;

use spillway_core::key::KeySource;
use spillway_signature::{Algorithm, Field, Scheme, SignatureFormat, TimestampFormat};

use crate::Preset;

/// One preset, described in words.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: &'static str,
    pub provider: &'static str,
    pub family: &'static str,
    /// Where the signature (or token) travels and how it is written.
    pub signature: String,
    /// What is signed, as a template.
    pub signs: String,
    pub timestamp: Option<String>,
    pub dedupe: String,
    pub event_type: Option<String>,
    pub forward_headers: Vec<String>,
    pub secret: &'static str,
    /// The registration handshake answered at the edge, if the provider makes one.
    pub handshake: Option<&'static str>,
    pub docs: &'static str,
    pub note: &'static str,
}

/// Every preset as a [`Row`].
pub fn rows() -> Vec<Row> {
    crate::all().iter().map(row).collect()
}

fn row(preset: &Preset) -> Row {
    let scheme = &preset.scheme;
    Row {
        name: preset.name,
        provider: preset.display,
        family: scheme.family(),
        signature: signature(scheme),
        signs: match scheme.algorithm {
            Algorithm::Token => "nothing (the secret itself is sent)".into(),
            Algorithm::AwsSns => "Message, MessageId, Subject, SubscribeURL, Timestamp, Token, TopicArn, Type (those the message type has)".into(),
            _ => scheme.template.to_string(),
        },
        timestamp: scheme.timestamp.as_ref().map(|t| {
            let format = match t.format {
                TimestampFormat::Seconds => "seconds",
                TimestampFormat::Millis => "milliseconds",
                TimestampFormat::Rfc3339 => "RFC 3339",
            };
            format!("{} ({format})", field(&t.at, scheme))
        }),
        dedupe: match &preset.dedupe {
            Some(key) => key_source(key),
            None => "body hash".into(),
        },
        event_type: preset.event_type.as_ref().map(key_source),
        forward_headers: preset.forward_headers(),
        secret: preset.secret,
        handshake: preset.handshake.map(crate::Handshake::name),
        docs: preset.docs,
        note: preset.note,
    }
}

fn signature(scheme: &Scheme) -> String {
    let value = match (&scheme.format, scheme.algorithm) {
        (_, Algorithm::Token) if scheme.encoding == spillway_signature::Encoding::Base64 => {
            "Basic <base64 user:password>".to_owned()
        }
        (SignatureFormat::Plain { prefix }, Algorithm::Token) => format!("{prefix}<secret>"),
        (SignatureFormat::Plain { prefix }, _) => format!("{prefix}<{}>", encoding(scheme)),
        (SignatureFormat::List { separator, label }, _) => {
            let sep = if *separator == ' ' {
                " ".into()
            } else {
                separator.to_string()
            };
            format!("{label}<{e}>[{sep}{label}<{e}>...]", e = encoding(scheme))
        }
        (SignatureFormat::Params { separator, key }, _) => {
            let ts = match &scheme.timestamp {
                Some(t) => match &t.at {
                    Field::Param(k) => format!("{k}=<ts>{separator}"),
                    _ => String::new(),
                },
                None => String::new(),
            };
            format!(
                "{ts}{key}=<{e}>[{separator}{key}=<{e}>...]",
                e = encoding(scheme)
            )
        }
    };
    if scheme.algorithm == Algorithm::AwsSns {
        return "body `/Signature`: `<base64>`, with the certificate at body `/SigningCertURL`"
            .into();
    }
    // In backticks: `<hex>` would otherwise be read as an HTML tag where the table renders.
    match &scheme.signature_pointer {
        Some(pointer) => format!("body `{pointer}`: `{value}`"),
        None => {
            let headers: Vec<String> = scheme
                .signature_headers
                .iter()
                .map(|h| h.to_string())
                .collect();
            format!("`{}`: `{value}`", headers.join("`, `"))
        }
    }
}

fn encoding(scheme: &Scheme) -> &'static str {
    match scheme.encoding {
        spillway_signature::Encoding::Hex => "hex",
        spillway_signature::Encoding::Base64 => "base64",
        spillway_signature::Encoding::Base64Url => "base64url",
        spillway_signature::Encoding::Text => "text",
    }
}

fn field(f: &Field, scheme: &Scheme) -> String {
    match f {
        Field::Header(h) => format!("header `{h}`"),
        Field::Param(k) => format!(
            "`{k}=` in `{}`",
            scheme
                .signature_headers
                .first()
                .map(|h| h.as_ref())
                .unwrap_or_default()
        ),
        Field::Json(p) => format!("body `{p}`"),
    }
}

fn key_source(key: &KeySource) -> String {
    match key {
        KeySource::Header { name } => format!("header `{name}`"),
        KeySource::JsonPointer { pointer } => format!("body `{pointer}`"),
        KeySource::ProtobufField { field } => format!("Protobuf field `{field}`"),
        KeySource::SignedId => "the signed id".into(),
        KeySource::BodyHash => "body hash".into(),
        KeySource::ClientCertificate => "client certificate".into(),
        KeySource::None => "none".into(),
    }
}

/// The catalogue as JSON: an array of [`Row`]s.
pub fn json() -> String {
    serde_json::to_string_pretty(&rows()).unwrap_or_default()
}

/// The catalogue as an aligned text table: name, family, dedupe key, event type.
pub fn table() -> String {
    let rows = rows();
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:width$}  {:12}  {:40}  EVENT TYPE\n",
        "NAME", "FAMILY", "DEDUPE KEY"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:width$}  {:12}  {:40}  {}",
            r.name,
            r.family,
            r.dedupe.replace('`', ""),
            r.event_type.unwrap_or_else(|| "-".into()).replace('`', "")
        );
    }
    out
}

/// The families in the order docs/providers.md presents them, with what each proves.
const FAMILIES: &[(&str, &str)] = &[
    (
        "hmac-sha256",
        "HMAC-SHA256: a MAC with the shared secret over the template.",
    ),
    (
        "hmac-sha1",
        "HMAC-SHA1: older providers; still a sound MAC.",
    ),
    ("hmac-sha512", "HMAC-SHA512."),
    (
        "ed25519",
        "Ed25519: the provider signs with its private key; the source holds its public key.",
    ),
    (
        "ecdsa-p256",
        "ECDSA P-256 with SHA-256 (DER signature); the source holds the provider's public key.",
    ),
    (
        "token",
        "A shared token sent as it is: it proves the sender knows the secret, not what it sent.",
    ),
    ("basic", "HTTP Basic credentials: like a token."),
    (
        "rsa-x509",
        "RSA with SHA-1 (SNS SignatureVersion 1) or SHA-256 (2); the key is an X.509 certificate the message names, fetched over HTTPS from an allowed host, checked and cached (see [AWS SNS](#aws-sns)).",
    ),
];

/// docs/providers.md.
pub fn markdown() -> String {
    let rows = rows();
    let mut out = String::from(include_str!("listing/intro.md"));
    for (family, what) in FAMILIES {
        let members: Vec<&Row> = rows.iter().filter(|r| r.family == *family).collect();
        if members.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "\n## {family} ({} preset{})\n\n{what}\n\n| scheme | provider | signature | signs | timestamp | dedupe key | event type |\n|---|---|---|---|---|---|---|\n",
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        );
        for r in members {
            let _ = writeln!(
                out,
                "| `{}` | [{}]({}) | {} | `{}` | {} | {} | {} |",
                r.name,
                r.provider,
                r.docs,
                r.signature.replace('|', "\\|"),
                r.signs.replace('|', "\\|"),
                r.timestamp.as_deref().unwrap_or("-"),
                r.dedupe,
                r.event_type.as_deref().unwrap_or("-"),
            );
        }
    }
    out.push_str(include_str!("listing/handshakes.md"));
    for r in rows.iter().filter(|r| r.handshake.is_some()) {
        let _ = writeln!(
            out,
            "| `{}` | `{}` |",
            r.name,
            r.handshake.unwrap_or_default()
        );
    }
    out.push_str(include_str!("listing/sns.md"));
    out.push_str("\n## Notes per provider\n\n");
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        let _ = writeln!(out, "- `{}`: {}.", r.name, r.note);
    }
    out.push_str("\n## Secrets\n\n| scheme | the secret is |\n|---|---|\n");
    for r in &rows {
        let _ = writeln!(out, "| `{}` | {} |", r.name, r.secret);
    }
    out.push_str(include_str!("listing/generic.md"));
    out
}
