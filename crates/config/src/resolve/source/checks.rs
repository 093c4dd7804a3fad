//! The checks of one source, field by field, each pushing what it finds under
//! `sources.<name>`; [`super::check_source`] runs them in a fixed order.

use std::time::Duration;

use spillway_core::headers::RESERVED_PREFIX;
use spillway_core::key::KeySource;
use spillway_signature::{Algorithm, Scheme, Secret};

use super::super::scheme;
use super::Problems;
use crate::field::err;
use crate::model::{Config, SourceConfig};
use crate::secrets::{check_secret_name, SecretAccess};

/// Meta's verify token, read with `access` [`SecretAccess::Read`], named only otherwise.
pub(super) fn verify_token(
    source: &SourceConfig,
    access: SecretAccess,
    problems: &mut Problems<'_>,
) -> Option<String> {
    let credential = source.verify_token.as_ref()?;
    let read = match access {
        SecretAccess::Read => credential.read().map(Some),
        SecretAccess::NameOnly => match (&credential.env, &credential.file) {
            (Some(_), Some(_)) => Err(crate::error::CredentialError::Both),
            (None, None) => Err(crate::error::CredentialError::Neither),
            _ => Ok(None),
        },
    };
    match read {
        Ok(Some(token)) if token.is_empty() => {
            problems.push("verify_token", "is empty");
            None
        }
        Ok(token) => token,
        Err(e) => {
            problems.push("verify_token", e.to_string());
            None
        }
    }
}

/// Source names appear in URLs, metric labels and Redis keys.
pub(super) fn check_name(problems: &mut Problems<'_>) {
    let name = problems.name;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        problems.found.push(err(
            format!("sources.{name}"),
            "source names are 1 to 64 characters of a-z, 0-9, '-' and '_' (they appear in URLs and metric labels)",
        ));
    }
}

/// `field` names where the topic was configured (or defaulted from).
pub(super) fn check_topic(field: &str, topic: &str, problems: &mut Problems<'_>) {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        problems.push(
            field,
            format!("{topic:?} is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
        );
    }
}

/// The body sizes and the rate limit.
pub(super) fn check_limits(config: &Config, source: &SourceConfig, problems: &mut Problems<'_>) {
    if source.max_body_bytes == Some(0) {
        problems.push("max_body_bytes", "must be at least 1");
    }
    match source.inline_max_bytes {
        Some(_) if config.objects.is_none() => problems.push(
            "inline_max_bytes",
            "needs `objects:` configured: larger bodies go to object storage",
        ),
        Some(_) if source.batch.is_some() => problems.push(
            "inline_max_bytes",
            "a batch source's records are written one by one; bound them with \
             batch.max_record_bytes",
        ),
        Some(_) if source.schema.is_some() => problems.push(
            "inline_max_bytes",
            "a source with a schema keeps its bodies in its records, where they are checked, \
             quarantined and redriven",
        ),
        Some(0) => problems.push("inline_max_bytes", "must be at least 1"),
        _ => {}
    }
    if let Some(limit) = &source.rate_limit {
        if limit.requests == 0 {
            problems.push("rate_limit.requests", "must be at least 1");
        }
        if limit.window < Duration::from_millis(100) {
            problems.push("rate_limit.window", "must be at least 100ms");
        }
    }
}

/// The headers copied into the record, lower-cased: the configured ones, else the scheme's.
pub(super) fn forward_headers(
    source: &SourceConfig,
    built: Option<&scheme::Built>,
    problems: &mut Problems<'_>,
) -> Vec<String> {
    let requested = match (&source.forward_headers, built) {
        (Some(list), _) => list.clone(),
        (None, Some(b)) => b.default_forward_headers(),
        (None, None) => Vec::new(),
    };
    let mut forward = Vec::new();
    for (i, header) in requested.iter().enumerate() {
        let lower = header.to_ascii_lowercase();
        let field = format!("forward_headers[{i}]");
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            problems.push(&field, format!("{header:?} is not a header name"));
        } else if lower.starts_with(RESERVED_PREFIX)
            || lower == "content-type"
            || lower == "traceparent"
        {
            // The ingress writes these itself; a forwarded copy would let a sender forge them.
            problems.push(
                &field,
                format!("{header:?} is written by Spillway itself and cannot be forwarded"),
            );
        } else {
            forward.push(lower);
        }
    }
    forward
}

/// The source's secrets, read and decoded with `access` [`SecretAccess::Read`]; otherwise
/// only their names are checked and none is returned.
pub(super) fn secrets(
    source: &SourceConfig,
    scheme: &Scheme,
    access: SecretAccess,
    problems: &mut Problems<'_>,
) -> Vec<Secret> {
    let needs_secrets = !matches!(scheme.algorithm, Algorithm::None | Algorithm::AwsSns);
    if needs_secrets && source.secrets.is_empty() {
        problems.push(
            "secrets",
            format!("scheme {} needs at least one secret", scheme.name()),
        );
    }
    if !needs_secrets && !source.secrets.is_empty() {
        problems.push(
            "secrets",
            format!("scheme {} takes no secrets", scheme.name()),
        );
    }
    let mut secrets = Vec::new();
    for (i, secret) in source.secrets.iter().enumerate() {
        let read = match access {
            SecretAccess::Read => secret.read(scheme).map(Some),
            SecretAccess::NameOnly => check_secret_name(secret).map(|()| None),
        };
        match read {
            Ok(read) => secrets.extend(read),
            Err(e) => problems.push(&format!("secrets[{i}]"), e.to_string()),
        }
    }
    let mut ids: Vec<&str> = source.secrets.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        problems.push("secrets", "secret ids must be unique");
    }
    secrets
}

/// The dedupe key and the event type, defaults filled in from the scheme, with the partition
/// key checked beside them.
pub(super) fn keys(
    source: &SourceConfig,
    built: Option<&scheme::Built>,
    forward_headers: &[String],
    problems: &mut Problems<'_>,
) -> (KeySource, Option<KeySource>) {
    let dedupe = match (&source.dedupe, built) {
        (Some(d), _) => d.clone(),
        // A batch's records are keyed each by its own hash: a preset's id (a delivery
        // header, a signed id) is the request's, shared by all its records.
        (None, _) if source.batch.is_some() => KeySource::BodyHash,
        (None, Some(b)) => b.default_dedupe(),
        (None, None) => KeySource::BodyHash,
    };
    let event_type = match (&source.event_type, built) {
        (Some(e), _) => Some(e.clone()),
        // A preset's default pointer is for its JSON events, not a Protobuf record.
        (None, Some(b)) if source.batch.is_some_and(|batch| !batch.format.is_json()) => b
            .default_event_type()
            .filter(|k| !matches!(k, KeySource::JsonPointer { .. })),
        (None, Some(b)) => b.default_event_type(),
        (None, None) => None,
    };
    let scheme = built.map(|b| &b.scheme);
    for (field, key) in [
        ("dedupe", Some(&dedupe)),
        ("event_type", source.event_type.as_ref()),
        ("partition_key", source.partition_key.as_ref()),
    ] {
        let Some(key) = key else { continue };
        if let Some(message) = scheme::check_key_source(key, scheme) {
            problems.push(field, message);
        }
    }
    if let Some(KeySource::Header { name: h }) = &event_type {
        if !forward_headers.contains(&h.to_ascii_lowercase()) {
            problems.push(
                "event_type",
                format!("header {h:?} must be in forward_headers: the workers read it from the Kafka record"),
            );
        }
    }
    if source.partition_key == Some(KeySource::None) {
        problems.push("partition_key", "omit partition_key instead of from: none");
    }
    (dedupe, event_type)
}

/// `public_url` is a scheme and an authority, nothing more: the request's path and query are
/// appended to it.
pub(super) fn check_public_url(source: &SourceConfig, problems: &mut Problems<'_>) {
    let Some(url) = &source.public_url else {
        return;
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let valid = rest.is_some_and(|authority| {
        let authority = authority.trim_end_matches('/');
        !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@', ' '])
            && http::uri::Authority::try_from(authority).is_ok()
    });
    if !valid {
        problems.push(
            "public_url",
            format!("{url:?} must be http(s)://host[:port], without a path: the request's path and query are appended"),
        );
    }
}

/// The replay window, and what mutual TLS needs: a CA to check client certificates against,
/// and `require_client_cert` for every key read from the certificate.
pub(super) fn check_client_side(
    config: &Config,
    source: &SourceConfig,
    tolerance: Duration,
    dedupe: &KeySource,
    problems: &mut Problems<'_>,
) {
    if tolerance < Duration::from_secs(1) {
        problems.push("tolerance", "must be at least 1s");
    }
    let client_ca = config
        .ingress
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    if source.require_client_cert && !client_ca {
        problems.push(
            "require_client_cert",
            "needs ingress.tls with a client_ca_file to check the certificates against",
        );
    }
    for (field, key) in [
        ("dedupe", Some(dedupe)),
        ("partition_key", source.partition_key.as_ref()),
        ("event_type", source.event_type.as_ref()),
    ] {
        if key == Some(&KeySource::ClientCertificate) && !source.require_client_cert {
            problems.push(
                field,
                "from: client_certificate needs require_client_cert: true",
            );
        }
    }
}

/// The topics of an `aws-sns` source: required there, refused elsewhere, each a full SNS ARN.
pub(super) fn topic_arns(
    source: &SourceConfig,
    scheme: Option<&Scheme>,
    problems: &mut Problems<'_>,
) {
    let Some(scheme) = scheme else { return };
    let sns = scheme.algorithm == Algorithm::AwsSns;
    if sns && source.topic_arns.is_empty() {
        problems.push(
            "topic_arns",
            "scheme aws-sns needs the ARNs of the topics it accepts: AWS signs every account's topics alike",
        );
    }
    if !sns && !source.topic_arns.is_empty() {
        problems.push(
            "topic_arns",
            format!(
                "only scheme aws-sns takes topic_arns, not {}",
                scheme.name()
            ),
        );
    }
    for (i, arn) in source.topic_arns.iter().enumerate() {
        let parts: Vec<&str> = arn.split(':').collect();
        let valid = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "sns"
            && parts[3..].iter().all(|p| !p.is_empty());
        if !valid {
            problems.push(
                &format!("topic_arns[{i}]"),
                format!("{arn:?} is not a topic ARN (arn:aws:sns:<region>:<account>:<topic>)"),
            );
        }
    }
}
