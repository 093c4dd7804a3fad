//! One source resolved: its route (topic, forwarded headers, event type), which the workers
//! need, and its verification (scheme, secrets, keys, limits), which only the ingress needs.

use std::time::Duration;

use spillway_core::headers::RESERVED_PREFIX;
use spillway_core::key::KeySource;
use spillway_signature::{Algorithm, Scheme, Secret, SecretRing, Verifier};

use super::scheme;
use crate::field::{all_or_errors, err, FieldError};
use crate::model::{Config, FailMode, SourceConfig};
use crate::secrets::{check_secret_name, SecretAccess};

/// A source ready to serve.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub name: String,
    pub verifier: Verifier,
    pub topic: String,
    pub dedupe: KeySource,
    pub partition_key: Option<KeySource>,
    pub on_redis_unavailable: FailMode,
    pub max_body_bytes: u64,
    /// Empty: any client address.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    pub require_client_cert: bool,
    pub rate_limit: Option<crate::RateLimitConfig>,
    /// Lower-cased header names copied into the record.
    pub forward_headers: Vec<String>,
    /// Where the worker reads the event type from.
    pub event_type: Option<KeySource>,
    /// The dedupe key is the preset's default: a request without it is keyed by the body's
    /// hash (and counted) rather than refused, so a provider changing its headers loses no
    /// event.
    pub dedupe_fallback: bool,
    /// `scheme://host[:port]` the provider called, for schemes that sign the URL.
    pub public_url: Option<String>,
    /// The registration handshake the ingress answers for this source's provider.
    pub handshake: Option<spillway_providers::Handshake>,
    /// Meta's `hub.verify_token`; read only by the ingress.
    pub verify_token: Option<String>,
}

/// What a worker needs of a source to route its records: no secret, nothing of verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRoute {
    pub name: String,
    /// The Kafka topic its events are written to.
    pub topic: String,
    /// Lower-cased header names the ingress copies into the record.
    pub forward_headers: Vec<String>,
    /// Where the event type is read from (a forwarded header or the body); subscriptions
    /// filter on it.
    pub event_type: Option<KeySource>,
}

// === impl ResolvedSource ===

impl ResolvedSource {
    /// The routing part of this source.
    pub fn route(&self) -> SourceRoute {
        SourceRoute {
            name: self.name.clone(),
            topic: self.topic.clone(),
            forward_headers: self.forward_headers.clone(),
            event_type: self.event_type.clone(),
        }
    }
}

// === impl Config ===

impl Config {
    /// Resolves every source, secrets read, or returns every problem found.
    pub fn resolve_sources(&self) -> Result<Vec<ResolvedSource>, Vec<FieldError>> {
        all_or_errors(self.sources.iter().map(|(name, source)| {
            check_source(self, name, source, SecretAccess::Read).map(|c| c.resolved(source))
        }))
    }

    /// The route of every source, for the workers: every source is checked as
    /// [`Config::resolve_sources`] checks it, but no secret is read (environment or file), so a
    /// process without the providers' secrets can run it.
    pub fn resolve_source_routes(&self) -> Result<Vec<SourceRoute>, Vec<FieldError>> {
        all_or_errors(self.sources.iter().map(|(name, source)| {
            check_source(self, name, source, SecretAccess::NameOnly).map(|c| c.route)
        }))
    }

    /// Every file the sources read (secrets, verify tokens): what a reload watches beside the
    /// config file itself.
    pub fn source_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = self
            .sources
            .values()
            .flat_map(|s| {
                let secrets = s.secrets.iter().filter_map(|secret| secret.file.clone());
                secrets.chain(s.verify_token.as_ref().and_then(|t| t.file.clone()))
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// The topic of every source, for topic creation and read-back.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .sources
            .iter()
            .map(|(name, s)| topic_of(self, name, s))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

/// Every problem of every source, its secrets read or not as `access` says.
pub(crate) fn source_errors(config: &Config, access: SecretAccess) -> Vec<FieldError> {
    let checked = config
        .sources
        .iter()
        .map(|(name, source)| check_source(config, name, source, access));
    all_or_errors(checked).err().unwrap_or_default()
}

fn topic_of(config: &Config, name: &str, source: &SourceConfig) -> String {
    source
        .topic
        .clone()
        .unwrap_or_else(|| format!("{}{name}", config.kafka.topic_prefix))
}

/// A source that passed every check.
struct Checked {
    route: SourceRoute,
    scheme: Scheme,
    tolerance: Duration,
    dedupe: KeySource,
    dedupe_fallback: bool,
    /// Empty unless the secrets were read ([`SecretAccess::Read`]).
    secrets: Vec<Secret>,
    handshake: Option<spillway_providers::Handshake>,
    verify_token: Option<String>,
}

impl Checked {
    fn resolved(self, source: &SourceConfig) -> ResolvedSource {
        let SourceRoute {
            name,
            topic,
            forward_headers,
            event_type,
        } = self.route;
        ResolvedSource {
            name,
            verifier: Verifier::new(self.scheme, SecretRing::new(self.secrets), self.tolerance),
            topic,
            dedupe: self.dedupe,
            partition_key: source.partition_key.clone(),
            on_redis_unavailable: source.on_redis_unavailable,
            max_body_bytes: source.max_body_bytes,
            allow_cidrs: source.allow_cidrs.clone(),
            require_client_cert: source.require_client_cert,
            rate_limit: source.rate_limit,
            forward_headers,
            event_type,
            dedupe_fallback: self.dedupe_fallback,
            public_url: source
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            handshake: self.handshake,
            verify_token: self.verify_token,
        }
    }
}

/// The problems of one source, each under `sources.<name>`.
struct Problems<'a> {
    name: &'a str,
    found: Vec<FieldError>,
}

impl Problems<'_> {
    /// A problem with `sources.<name>.<field>`.
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.found
            .push(err(format!("sources.{}.{field}", self.name), message));
    }
}

/// Checks one source and works out its defaults. The checks run in a fixed order, and so
/// their errors come out in it, whichever process asks.
fn check_source(
    config: &Config,
    name: &str,
    source: &SourceConfig,
    access: SecretAccess,
) -> Result<Checked, Vec<FieldError>> {
    let mut problems = Problems {
        name,
        found: Vec::new(),
    };
    check_name(&mut problems);
    let built = scheme::build(&source.verify)
        .map_err(|e| problems.push("verify", e.to_string()))
        .ok();
    let scheme = built.as_ref().map(|b| b.scheme.clone());
    let topic = topic_of(config, name, source);
    check_topic(&topic, &mut problems);
    check_limits(source, &mut problems);
    check_public_url(source, &mut problems);
    let verify_token = verify_token(source, access, &mut problems);
    let forward_headers = forward_headers(source, built.as_ref(), &mut problems);
    let secrets = match &scheme {
        Some(scheme) => secrets(source, scheme, access, &mut problems),
        None => Vec::new(),
    };
    let (dedupe, event_type) = keys(source, built.as_ref(), &forward_headers, &mut problems);
    let tolerance = match &built {
        Some(b) => b.tolerance(source),
        None => source
            .tolerance
            .unwrap_or(spillway_signature::DEFAULT_TOLERANCE),
    };
    check_client_side(config, source, tolerance, &dedupe, &mut problems);

    if !problems.found.is_empty() {
        return Err(problems.found);
    }
    let Some(scheme) = scheme else {
        return Err(vec![err(format!("sources.{name}.verify"), "invalid")]);
    };
    Ok(Checked {
        route: SourceRoute {
            name: name.to_owned(),
            topic,
            forward_headers,
            event_type,
        },
        scheme,
        tolerance,
        dedupe_fallback: source.dedupe.is_none() && dedupe != KeySource::BodyHash,
        dedupe,
        secrets,
        handshake: built
            .as_ref()
            .and_then(|b| b.preset)
            .and_then(|p| p.handshake),
        verify_token,
    })
}

/// Meta's verify token, read with `access` [`SecretAccess::Read`], named only otherwise.
fn verify_token(
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
fn check_name(problems: &mut Problems<'_>) {
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

fn check_topic(topic: &str, problems: &mut Problems<'_>) {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        problems.push(
            "topic",
            format!("{topic:?} is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
        );
    }
}

/// The body size and the rate limit.
fn check_limits(source: &SourceConfig, problems: &mut Problems<'_>) {
    if source.max_body_bytes == 0 {
        problems.push("max_body_bytes", "must be at least 1");
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
fn forward_headers(
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
fn secrets(
    source: &SourceConfig,
    scheme: &Scheme,
    access: SecretAccess,
    problems: &mut Problems<'_>,
) -> Vec<Secret> {
    let needs_secrets = scheme.algorithm != Algorithm::None;
    if needs_secrets && source.secrets.is_empty() {
        problems.push(
            "secrets",
            format!("scheme {} needs at least one secret", scheme.name()),
        );
    }
    if !needs_secrets && !source.secrets.is_empty() {
        problems.push("secrets", "scheme none takes no secrets");
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
fn keys(
    source: &SourceConfig,
    built: Option<&scheme::Built>,
    forward_headers: &[String],
    problems: &mut Problems<'_>,
) -> (KeySource, Option<KeySource>) {
    let dedupe = match (&source.dedupe, built) {
        (Some(d), _) => d.clone(),
        (None, Some(b)) => b.default_dedupe(),
        (None, None) => KeySource::BodyHash,
    };
    let event_type = match (&source.event_type, built) {
        (Some(e), _) => Some(e.clone()),
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
fn check_public_url(source: &SourceConfig, problems: &mut Problems<'_>) {
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
fn check_client_side(
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
