//! A signature scheme as data: the algorithm, where the signature, the id and the timestamp
//! travel, what is signed, and how the secret is written. Every provider preset is a value of
//! [`Scheme`]; one interpreter (`extract`, `message`, `algorithm`) serves them all.

use std::borrow::Cow;

use crate::template::{Part, Template};

/// Text that is `'static` for the built-in presets and owned for a configured template.
pub type Text = Cow<'static, str>;

/// How the signature is computed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha512,
    /// The sender signs with its private key; the source holds the public key.
    Ed25519,
    /// ECDSA over P-256 with SHA-256, the signature DER-encoded; the source holds the public
    /// key (SubjectPublicKeyInfo, base64 or PEM).
    EcdsaP256Sha256,
    /// A shared secret sent as it is (a token header, Basic credentials once decoded),
    /// compared in constant time. Proves the sender knows the secret, not what it sent.
    Token,
    /// AWS SNS: RSA (SHA1withRSA or SHA256withRSA) over fields of the JSON body, with the
    /// X.509 certificate at the message's `SigningCertURL`. Checked by [`crate::sns`] once the
    /// caller has fetched the certificate, not by [`crate::Verifier`].
    AwsSns,
    /// No verification at all.
    None,
}

/// How a signature value is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Either case.
    Hex,
    /// Standard alphabet, padded or not.
    Base64,
    /// URL-safe alphabet, padded or not.
    Base64Url,
    /// The bytes as sent (tokens).
    Text,
}

/// Where a value travels in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A request header (lower-case name).
    Header(Text),
    /// A `key=value` item of the signature header itself (Stripe's `t=`).
    Param(Text),
    /// A JSON pointer into the body (Mailgun's `/signature/timestamp`).
    Json(Text),
}

/// How one signature header carries its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureFormat {
    /// One signature after a fixed prefix, e.g. `sha256=<hex>`; the prefix may be empty.
    Plain { prefix: Text },
    /// Items split on `separator`; those starting with `label` are signatures, e.g.
    /// `v1,<b64> v1,<b64>` (Standard Webhooks), others are ignored.
    List { separator: char, label: Text },
    /// `key=value` pairs split on `separator`; every value under `key` is a signature, and the
    /// others can be read as [`Field::Param`], e.g. `t=<ts>,v1=<hex>,v1=<hex>` (Stripe).
    Params { separator: char, key: Text },
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Millis,
    /// RFC 3339, e.g. `2026-12-02T10:00:00.123Z`.
    Rfc3339,
}

/// Where the timestamp is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampSpec {
    pub at: Field,
    pub format: TimestampFormat,
}

/// How a secret is written where the provider shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFormat {
    /// The text itself is the key.
    Text,
    /// Base64 after an optional prefix (`whsec_` for Standard Webhooks).
    Base64 { prefix: Text },
    /// Hex digits.
    Hex,
}

/// A verification scheme: see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    /// The name used in configuration and in the record's verification-scheme header.
    pub name: Text,
    pub algorithm: Algorithm,
    /// The headers that may carry signatures, tried in order; every one present contributes
    /// candidates (Box sends a primary and a secondary). Empty for [`Algorithm::None`].
    pub signature_headers: Vec<Text>,
    /// A JSON pointer to the signature in the body, read instead of the headers (Mailgun).
    pub signature_pointer: Option<Text>,
    pub format: SignatureFormat,
    pub encoding: Encoding,
    /// An id the signature covers.
    pub id: Option<Field>,
    /// Enables the replay window.
    pub timestamp: Option<TimestampSpec>,
    pub template: Template,
    pub secret: SecretFormat,
    /// Another name for every header: when no signature header is present under the first
    /// prefix, every header name starting with it is read under the second (Svix sends
    /// Standard Webhooks as `svix-*`).
    pub header_alias: Option<(Text, Text)>,
    /// An unsigned header in which the provider sends its delivery id (`X-GitHub-Delivery`):
    /// only the signing side (demo, tests) uses it.
    pub delivery_id_header: Option<Text>,
}

// === impl Scheme ===

impl Scheme {
    /// A scheme of `algorithm` signing the body alone, with one plain signature header; the
    /// other fields are set with the builder methods below.
    pub fn new(name: impl Into<Text>, algorithm: Algorithm, header: impl Into<Text>) -> Self {
        Self {
            name: name.into(),
            algorithm,
            signature_headers: vec![header.into()],
            signature_pointer: None,
            format: SignatureFormat::Plain { prefix: "".into() },
            encoding: Encoding::Hex,
            id: None,
            timestamp: None,
            template: Template::body_only(),
            secret: SecretFormat::Text,
            header_alias: None,
            delivery_id_header: None,
        }
    }

    /// No verification. A source must choose it explicitly.
    pub fn none() -> Self {
        Self {
            signature_headers: Vec::new(),
            ..Self::new("none", Algorithm::None, "")
        }
    }

    /// AWS SNS over HTTP(S): see [`Algorithm::AwsSns`] and [`crate::sns`]. The timestamp and
    /// id are the body's `Timestamp` and `MessageId`, both signed.
    pub fn aws_sns() -> Self {
        Self {
            signature_headers: Vec::new(),
            signature_pointer: Some("/Signature".into()),
            encoding: Encoding::Base64,
            id: Some(Field::Json("/MessageId".into())),
            ..Self::new("aws-sns", Algorithm::AwsSns, "")
        }
        .timestamp(Field::Json("/Timestamp".into()), TimestampFormat::Rfc3339)
    }

    /// Standard Webhooks' asymmetric signatures: `webhook-signature: v1a,<base64>` (Ed25519)
    /// over the same `id.timestamp.body`; the source holds the sender's public key, `whpk_`
    /// and base64. `v1,` items in the same header are another scheme's and are skipped.
    pub fn standard_webhooks_v1a() -> Self {
        Self {
            algorithm: Algorithm::Ed25519,
            ..Self::standard_webhooks()
        }
        .named("standard-webhooks-v1a")
        .list(' ', "v1a,")
        .secret(SecretFormat::Base64 {
            prefix: "whpk_".into(),
        })
    }

    /// standardwebhooks.com: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>
    /// ...` over `id.timestamp.body`, the secret `whsec_` and base64; the `svix-*` header
    /// names are accepted too. Also how the workers sign their deliveries.
    pub fn standard_webhooks() -> Self {
        Self::new(
            "standard-webhooks",
            Algorithm::HmacSha256,
            "webhook-signature",
        )
        .list(' ', "v1,")
        .encoding(Encoding::Base64)
        .id(Field::Header("webhook-id".into()))
        .timestamp(
            Field::Header("webhook-timestamp".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::of(&[
            Part::Id,
            Part::dot(),
            Part::Timestamp,
            Part::dot(),
            Part::Body,
        ]))
        .secret(SecretFormat::Base64 {
            prefix: "whsec_".into(),
        })
        .alias("webhook-", "svix-")
    }

    pub fn named(mut self, name: impl Into<Text>) -> Self {
        self.name = name.into();
        self
    }

    pub fn prefix(mut self, prefix: impl Into<Text>) -> Self {
        self.format = SignatureFormat::Plain {
            prefix: prefix.into(),
        };
        self
    }

    pub fn list(mut self, separator: char, label: impl Into<Text>) -> Self {
        self.format = SignatureFormat::List {
            separator,
            label: label.into(),
        };
        self
    }

    pub fn params(mut self, separator: char, key: impl Into<Text>) -> Self {
        self.format = SignatureFormat::Params {
            separator,
            key: key.into(),
        };
        self
    }

    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// A second (third...) header that may carry signatures.
    pub fn also_header(mut self, header: impl Into<Text>) -> Self {
        self.signature_headers.push(header.into());
        self
    }

    /// The signature is read from the body at `pointer`, not from a header.
    pub fn signature_in_body(mut self, pointer: impl Into<Text>) -> Self {
        self.signature_pointer = Some(pointer.into());
        self.signature_headers.clear();
        self
    }

    pub fn id(mut self, at: Field) -> Self {
        self.id = Some(at);
        self
    }

    pub fn timestamp(mut self, at: Field, format: TimestampFormat) -> Self {
        self.timestamp = Some(TimestampSpec { at, format });
        self
    }

    pub fn template(mut self, template: Template) -> Self {
        self.template = template;
        self
    }

    pub fn secret(mut self, secret: SecretFormat) -> Self {
        self.secret = secret;
        self
    }

    pub fn alias(mut self, from: impl Into<Text>, to: impl Into<Text>) -> Self {
        self.header_alias = Some((from.into(), to.into()));
        self
    }

    pub fn delivery_id(mut self, header: impl Into<Text>) -> Self {
        self.delivery_id_header = Some(header.into());
        self
    }

    /// Checks that every value the template signs has a place to come from.
    pub fn check(&self) -> Result<(), crate::TemplateError> {
        if self.template.uses(&Part::Id) && self.id.is_none() {
            return Err(crate::TemplateError::MissingHeader("id"));
        }
        if self.template.uses(&Part::Timestamp) && self.timestamp.is_none() {
            return Err(crate::TemplateError::MissingHeader("timestamp"));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The family, as `spillway providers` and the docs name it.
    pub fn family(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256",
            Algorithm::Token if self.encoding == Encoding::Base64 => "basic",
            Algorithm::Token => "token",
            Algorithm::AwsSns => "rsa-x509",
            Algorithm::None => "none",
        }
    }

    /// Whether requests carry a timestamp that verification holds to the replay window: only
    /// then can a sender make a request that is refused as stale.
    pub fn signs_timestamp(&self) -> bool {
        self.timestamp.is_some() && self.algorithm != Algorithm::None
    }

    /// Whether the scheme signs an event id (a key source `signed_id` can use).
    pub fn signs_id(&self) -> bool {
        self.id.is_some() && self.template.uses(&Part::Id)
    }

    /// Whether a verified request gets a [`crate::Verified::replay_key`]: its signature covers
    /// the content (`{body}` or `{form}`) but neither a timestamp nor an event id, so nothing
    /// signed tells a replay from the original. What the template signs counts, not which
    /// headers the scheme reads: a timestamp header outside the template is not signed.
    pub(crate) fn needs_replay_key(&self) -> bool {
        let signs = !matches!(
            self.algorithm,
            Algorithm::Token | Algorithm::None | Algorithm::AwsSns
        );
        let content = self.template.uses(&Part::Body) || self.template.uses(&Part::Form);
        signs && content && !(self.template.uses(&Part::Id) || self.template.uses(&Part::Timestamp))
    }

    /// Whether the sending side can be played by Spillway: HMAC schemes whose values all travel
    /// in headers. Public-key schemes need the sender's private key.
    pub fn can_sign(&self) -> bool {
        let in_headers = |f: &Option<Field>| !matches!(f, Some(Field::Json(_)));
        self.signature_pointer.is_none()
            && matches!(
                self.algorithm,
                Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512
            )
            && in_headers(&self.id)
            && in_headers(&self.timestamp.as_ref().map(|t| t.at.clone()))
    }
}

impl Default for Scheme {
    fn default() -> Self {
        Self::none()
    }
}
