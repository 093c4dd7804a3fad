//! Validation, and the resolved form of a source the ingress runs with: secrets read and
//! decoded, defaults filled in from the scheme, names normalised.

use std::time::{Duration, SystemTime};

use spillway_core::headers::RESERVED_PREFIX;
use spillway_core::key::KeySource;
use spillway_signature::{Encoding, GenericHmac, Scheme, Secret, SecretRing, Template, Verifier};

use crate::model::{
    Config, CredentialConfig, EncodingConfig, FailMode, SecretConfig, SourceConfig, StoredSecret,
    SubscriptionConfig, VerifyConfig,
};

/// librdkafka's `session.timeout.ms` when the config does not set it.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// One problem with one field, e.g. `sources.github.secrets[0].env: variable GH_SECRET is not set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Field errors on one line each joined by "; ", for error messages outside check-config.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn err(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

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
}

/// A subscription ready to deliver to.
#[derive(Debug, Clone)]
pub struct ResolvedSubscription {
    pub id: String,
    pub url: http::Uri,
    /// Empty: every source.
    pub sources: Vec<String>,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// Decoded Standard Webhooks keys.
    pub secrets: Vec<Secret>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub timeout: Duration,
    /// Deliveries per second per worker process.
    pub rate_limit: Option<std::num::NonZeroU32>,
}

/// Where a subscription's signing secret comes from.
pub trait SubscriptionSecret {
    /// The decoded Standard Webhooks key, or why it cannot be had.
    fn resolve(&self) -> Result<Secret, String>;
}

impl SubscriptionSecret for SecretConfig {
    fn resolve(&self) -> Result<Secret, String> {
        read_secret(&Scheme::StandardWebhooks, self)
    }
}

impl SubscriptionSecret for StoredSecret {
    fn resolve(&self) -> Result<Secret, String> {
        if self.id.is_empty() {
            return Err("id: must not be empty".into());
        }
        Ok(Secret {
            id: self.id.clone(),
            key: Scheme::StandardWebhooks
                .decode_secret(&self.secret)
                .map_err(|e| e.to_string())?,
            not_after: self.not_after.map(SystemTime::from),
        })
    }
}

// === impl Config ===

impl Config {
    /// Every problem in the configuration, secrets included; empty when it is valid.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.sources.is_empty() {
            errors.push(err("sources", "at least one source is required"));
        }
        if self.ingress.max_in_flight == 0 {
            errors.push(err("ingress.max_in_flight", "must be at least 1"));
        }
        if self.ingress.max_header_bytes < 8192 {
            // hyper's HTTP/1 read buffer has an 8 KiB floor.
            errors.push(err("ingress.max_header_bytes", "must be at least 8192"));
        }
        if let Some(block) = &self.ingress.block_failing_clients {
            if block.failures == 0 {
                errors.push(err(
                    "ingress.block_failing_clients.failures",
                    "must be at least 1",
                ));
            }
            if block.window < Duration::from_secs(1) {
                errors.push(err(
                    "ingress.block_failing_clients.window",
                    "must be at least 1s",
                ));
            }
            if block.duration < Duration::from_secs(1) {
                errors.push(err(
                    "ingress.block_failing_clients.duration",
                    "must be at least 1s",
                ));
            }
        }
        for (field, value) in [
            ("ingress.max_headers", self.ingress.max_headers),
            (
                "ingress.http2_max_concurrent_streams",
                self.ingress.http2_max_concurrent_streams as usize,
            ),
            (
                "ingress.http2_max_pending_accept_reset_streams",
                self.ingress.http2_max_pending_accept_reset_streams,
            ),
            (
                "ingress.http2_max_local_error_reset_streams",
                self.ingress.http2_max_local_error_reset_streams,
            ),
        ] {
            if value == 0 {
                errors.push(err(field, "must be at least 1"));
            }
        }
        if let Some(tls) = &self.ingress.tls {
            for (field, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                if let Err(e) = std::fs::metadata(path) {
                    errors.push(err(
                        format!("ingress.tls.{field}"),
                        format!("{}: {e}", path.display()),
                    ));
                }
            }
        }
        if self.ingress.listen == self.admin.listen && self.admin.listen.port() != 0 {
            errors.push(err("admin.listen", "must differ from ingress.listen"));
        }
        if self.kafka.brokers.trim().is_empty() {
            errors.push(err("kafka.brokers", "must name at least one broker"));
        }
        if self.kafka.delivery_timeout < Duration::from_millis(100) {
            errors.push(err("kafka.delivery_timeout", "must be at least 100ms"));
        }
        if self.kafka.max_queued_messages == 0 {
            errors.push(err("kafka.max_queued_messages", "must be at least 1"));
        }
        if self.kafka.partitions < 1 {
            errors.push(err("kafka.partitions", "must be at least 1"));
        }
        if self.kafka.replication_factor < 1 {
            errors.push(err("kafka.replication_factor", "must be at least 1"));
        }
        for key in self.kafka.properties.keys() {
            if matches!(
                key.as_str(),
                "acks" | "request.required.acks" | "enable.idempotence"
            ) {
                errors.push(err(
                    format!("kafka.properties.{key}"),
                    "is fixed by Spillway (acks=all, enable.idempotence=true) and cannot be overridden",
                ));
            }
        }
        for (i, node) in self.redis.nodes.iter().enumerate() {
            if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                errors.push(err(
                    format!("redis.nodes[{i}]"),
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if self.redis.command_timeout.is_zero() {
            errors.push(err("redis.command_timeout", "must be greater than zero"));
        }
        if self.redis.claim_ttl < Duration::from_secs(1) {
            errors.push(err("redis.claim_ttl", "must be at least 1s"));
        }
        if self.redis.window < self.redis.claim_ttl {
            errors.push(err("redis.window", "must be at least redis.claim_ttl"));
        }
        // Every source deduplicates unless it says `from: none`.
        let dedupes = self
            .sources
            .values()
            .any(|s| s.dedupe != Some(KeySource::None));
        if dedupes && self.redis.nodes.is_empty() {
            errors.push(err(
                "redis.nodes",
                "a source deduplicates, so at least one Redis Cluster node is required",
            ));
        }
        let limits = self.sources.values().any(|s| s.rate_limit.is_some());
        if limits && !dedupes && self.redis.nodes.is_empty() {
            errors.push(err(
                "redis.nodes",
                "a source has a rate_limit, counted in the Redis Cluster: at least one node is required",
            ));
        }
        if let Err(mut source_errors) = self.resolve_sources() {
            errors.append(&mut source_errors);
        }
        if let Err(mut subscription_errors) = self.resolve_subscriptions() {
            errors.append(&mut subscription_errors);
        }
        let w = &self.worker;
        if w.max_attempts == 0 {
            errors.push(err("worker.max_attempts", "must be at least 1"));
        }
        if w.retry_initial.is_zero() || w.retry_max_delay < w.retry_initial {
            errors.push(err(
                "worker.retry_max_delay",
                "retry_initial must be positive and retry_max_delay at least retry_initial",
            ));
        }
        for (i, own) in w.ingress_urls.iter().enumerate() {
            let parsed = own.parse::<http::Uri>();
            if !parsed.is_ok_and(|u| {
                u.host().is_some() && matches!(u.scheme_str(), Some("http" | "https"))
            }) {
                errors.push(err(
                    format!("worker.ingress_urls[{i}]"),
                    format!("{own:?} is not an http(s) URL with a host"),
                ));
            }
        }
        let session = w
            .consumer_properties
            .get("session.timeout.ms")
            .and_then(|ms| ms.parse().ok())
            .map_or(DEFAULT_SESSION_TIMEOUT, Duration::from_millis);
        if w.drain_timeout.is_zero() || w.drain_timeout >= session {
            errors.push(err(
                "worker.drain_timeout",
                format!(
                    "must be positive and shorter than the consumer session timeout ({} ms): \
                     a longer drain gets the worker thrown out of its group",
                    session.as_millis()
                ),
            ));
        }
        // Only its shape: the token itself is read by the worker, whose pods alone mount it
        // (the ingress validates this config too).
        if let Some(token) = &w.api_token {
            if token.env.is_some() == token.file.is_some() {
                errors.push(err("worker.api_token", "set either env or file"));
            }
        }
        if !(0.0..1.0).contains(&w.retry_jitter) {
            errors.push(err("worker.retry_jitter", "must be in [0, 1)"));
        }
        let telemetry = &self.telemetry;
        if let Some(endpoint) = &telemetry.otlp_endpoint {
            let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !scheme_ok || endpoint.parse::<http::Uri>().is_err() {
                errors.push(err(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL such as http://otel-collector:4318",
                ));
            }
        }
        if !(0.0..=1.0).contains(&telemetry.trace_sample_ratio) {
            errors.push(err("telemetry.trace_sample_ratio", "must be in [0, 1]"));
        }
        if telemetry.export_interval.is_zero() {
            errors.push(err(
                "telemetry.export_interval",
                "must be greater than zero",
            ));
        }
        if telemetry.export_queue == 0 {
            errors.push(err("telemetry.export_queue", "must be at least 1"));
        }
        errors
    }

    /// Resolves every subscription of the config file, or returns every problem found.
    pub fn resolve_subscriptions(&self) -> Result<Vec<ResolvedSubscription>, Vec<FieldError>> {
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = Vec::new();
        for (i, sub) in self.subscriptions.iter().enumerate() {
            if !seen.insert(sub.id.as_str()) {
                duplicates.push(err(
                    format!("subscriptions[{i}].id"),
                    format!("{:?} is used by another subscription", sub.id),
                ));
            }
        }
        let resolved = all_or_errors(
            self.subscriptions
                .iter()
                .enumerate()
                .map(|(i, sub)| self.resolve_subscription(&format!("subscriptions[{i}]."), sub)),
        );
        match resolved {
            Ok(all) if duplicates.is_empty() => Ok(all),
            Ok(_) => Err(duplicates),
            Err(mut errors) => {
                errors.append(&mut duplicates);
                Err(errors)
            }
        }
    }

    /// Resolves one subscription from the config file or the registry against this config
    /// (its sources, `worker.ingress_urls`); field paths in the errors start with `at`.
    pub fn resolve_subscription<S: SubscriptionSecret>(
        &self,
        at: &str,
        sub: &SubscriptionConfig<S>,
    ) -> Result<ResolvedSubscription, Vec<FieldError>> {
        let mut errors = Vec::new();
        let field = |name: &str| format!("{at}{name}");
        if sub.id.is_empty()
            || sub.id.len() > 128
            || !sub
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            errors.push(err(field("id"), "1 to 128 characters of a-z A-Z 0-9 - _"));
        }
        let url = match sub.url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Some(u)
            }
            _ => {
                errors.push(err(
                    field("url"),
                    format!("{:?} is not an http(s) URL with a host", sub.url),
                ));
                None
            }
        };
        if let Some(u) = &url {
            if let Some(own) = self
                .worker
                .ingress_urls
                .iter()
                .find(|own| same_origin(own, u))
            {
                errors.push(err(
                    field("url"),
                    format!("points at this cluster's own ingress ({own}): its events would loop back in"),
                ));
            }
        }
        for (j, source) in sub.sources.iter().enumerate() {
            if !self.sources.contains_key(source) {
                errors.push(err(
                    field(&format!("sources[{j}]")),
                    format!("no source named {source:?}"),
                ));
            }
        }
        if sub.secrets.is_empty() {
            errors.push(err(
                field("secrets"),
                "at least one signing secret is required",
            ));
        }
        let mut secrets = Vec::new();
        for (j, secret) in sub.secrets.iter().enumerate() {
            match secret.resolve() {
                Ok(s) => secrets.push(s),
                Err(message) => errors.push(err(field(&format!("secrets[{j}]")), message)),
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &sub.headers {
            match (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => errors.push(err(field(&format!("headers.{name}")), "not a valid header")),
            }
        }
        if sub.timeout.is_zero() {
            errors.push(err(field("timeout"), "must be greater than zero"));
        }
        if sub.rate_limit == Some(0) {
            errors.push(err(
                field("rate_limit"),
                "must be at least 1 delivery per second (leave it out for no limit)",
            ));
        }
        match url {
            Some(url) if errors.is_empty() => Ok(ResolvedSubscription {
                id: sub.id.clone(),
                url,
                sources: sub.sources.clone(),
                event_types: sub.event_types.clone(),
                secrets,
                headers,
                timeout: sub.timeout,
                rate_limit: sub.rate_limit.and_then(std::num::NonZeroU32::new),
            }),
            _ => Err(errors),
        }
    }

    /// Resolves every source, or returns every problem found.
    pub fn resolve_sources(&self) -> Result<Vec<ResolvedSource>, Vec<FieldError>> {
        all_or_errors(
            self.sources
                .iter()
                .map(|(name, source)| resolve_source(self, name, source)),
        )
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

fn topic_of(config: &Config, name: &str, source: &SourceConfig) -> String {
    source
        .topic
        .clone()
        .unwrap_or_else(|| format!("{}{name}", config.kafka.topic_prefix))
}

fn resolve_source(
    config: &Config,
    name: &str,
    source: &SourceConfig,
) -> Result<ResolvedSource, Vec<FieldError>> {
    let at = |field: &str| format!("sources.{name}.{field}");
    let mut errors = Vec::new();

    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        errors.push(err(
            format!("sources.{name}"),
            "source names are 1 to 64 characters of a-z, 0-9, '-' and '_' (they appear in URLs and metric labels)",
        ));
    }

    let scheme = match build_scheme(&source.verify) {
        Ok(s) => Some(s),
        Err(message) => {
            errors.push(err(at("verify"), message));
            None
        }
    };

    let topic = topic_of(config, name, source);
    let valid_topic = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid_topic {
        errors.push(err(
            at("topic"),
            format!("{topic:?} is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
        ));
    }

    if source.max_body_bytes == 0 {
        errors.push(err(at("max_body_bytes"), "must be at least 1"));
    }
    if let Some(limit) = &source.rate_limit {
        if limit.requests == 0 {
            errors.push(err(at("rate_limit.requests"), "must be at least 1"));
        }
        if limit.window < Duration::from_millis(100) {
            errors.push(err(at("rate_limit.window"), "must be at least 100ms"));
        }
    }

    let mut forward_headers = Vec::new();
    let requested = match (&source.forward_headers, &scheme) {
        (Some(list), _) => list.clone(),
        (None, Some(s)) => default_forward_headers(s)
            .iter()
            .map(|h| (*h).to_owned())
            .collect(),
        (None, None) => Vec::new(),
    };
    for (i, header) in requested.iter().enumerate() {
        let lower = header.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            errors.push(err(
                format!("sources.{name}.forward_headers[{i}]"),
                format!("{header:?} is not a header name"),
            ));
        } else if lower.starts_with(RESERVED_PREFIX)
            || lower == "content-type"
            || lower == "traceparent"
        {
            errors.push(err(
                format!("sources.{name}.forward_headers[{i}]"),
                format!("{header:?} is written by Spillway itself and cannot be forwarded"),
            ));
        } else {
            forward_headers.push(lower);
        }
    }

    let mut secrets = Vec::new();
    if let Some(scheme) = &scheme {
        let needs_secrets = *scheme != Scheme::None;
        if needs_secrets && source.secrets.is_empty() {
            errors.push(err(
                at("secrets"),
                format!("scheme {} needs at least one secret", scheme.name()),
            ));
        }
        if !needs_secrets && !source.secrets.is_empty() {
            errors.push(err(at("secrets"), "scheme none takes no secrets"));
        }
        for (i, secret) in source.secrets.iter().enumerate() {
            match read_secret(scheme, secret) {
                Ok(s) => secrets.push(s),
                Err(message) => errors.push(err(format!("sources.{name}.secrets[{i}]"), message)),
            }
        }
        let mut ids: Vec<&str> = source.secrets.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            errors.push(err(at("secrets"), "secret ids must be unique"));
        }
    }

    let dedupe = match (&source.dedupe, &scheme) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) => default_dedupe(s),
        (None, None) => KeySource::BodyHash,
    };
    let event_type = match (&source.event_type, &scheme) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(s)) => default_event_type(s),
        (None, None) => None,
    };
    for (field, key) in [
        ("dedupe", Some(&dedupe)),
        ("event_type", source.event_type.as_ref()),
        ("partition_key", source.partition_key.as_ref()),
    ] {
        let Some(key) = key else { continue };
        if let Some(message) = check_key_source(key, scheme.as_ref()) {
            errors.push(err(at(field), message));
        }
    }
    if let Some(KeySource::Header { name: h }) = &event_type {
        if !forward_headers.contains(&h.to_ascii_lowercase()) {
            errors.push(err(
                at("event_type"),
                format!("header {h:?} must be in forward_headers: the workers read it from the Kafka record"),
            ));
        }
    }
    if source.partition_key == Some(KeySource::None) {
        errors.push(err(
            at("partition_key"),
            "omit partition_key instead of from: none",
        ));
    }

    if source.tolerance < Duration::from_secs(1) {
        errors.push(err(at("tolerance"), "must be at least 1s"));
    }
    let client_ca = config
        .ingress
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    if source.require_client_cert && !client_ca {
        errors.push(err(
            at("require_client_cert"),
            "needs ingress.tls with a client_ca_file to check the certificates against",
        ));
    }
    for (field, key) in [
        ("dedupe", Some(&dedupe)),
        ("partition_key", source.partition_key.as_ref()),
        ("event_type", source.event_type.as_ref()),
    ] {
        if key == Some(&KeySource::ClientCertificate) && !source.require_client_cert {
            errors.push(err(
                at(field),
                "from: client_certificate needs require_client_cert: true",
            ));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(scheme) = scheme else {
        return Err(vec![err(at("verify"), "invalid")]);
    };
    Ok(ResolvedSource {
        name: name.to_owned(),
        verifier: Verifier::new(scheme, SecretRing::new(secrets), source.tolerance),
        topic,
        dedupe,
        partition_key: source.partition_key.clone(),
        on_redis_unavailable: source.on_redis_unavailable,
        max_body_bytes: source.max_body_bytes,
        allow_cidrs: source.allow_cidrs.clone(),
        require_client_cert: source.require_client_cert,
        rate_limit: source.rate_limit,
        forward_headers,
        event_type,
    })
}

fn build_scheme(verify: &VerifyConfig) -> Result<Scheme, String> {
    Ok(match verify {
        VerifyConfig::StandardWebhooks => Scheme::StandardWebhooks,
        VerifyConfig::Github => Scheme::Github,
        VerifyConfig::Stripe => Scheme::Stripe,
        VerifyConfig::Shopify => Scheme::Shopify,
        VerifyConfig::Slack => Scheme::Slack,
        VerifyConfig::None => Scheme::None,
        VerifyConfig::Hmac {
            header,
            prefix,
            encoding,
            template,
            id_header,
            timestamp_header,
        } => {
            for h in std::iter::once(header)
                .chain(id_header)
                .chain(timestamp_header)
            {
                if http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).is_err() {
                    return Err(format!("{h:?} is not a header name"));
                }
            }
            let generic = GenericHmac {
                signature_header: header.to_ascii_lowercase(),
                prefix: prefix.clone(),
                encoding: match encoding {
                    EncodingConfig::Hex => Encoding::Hex,
                    EncodingConfig::Base64 => Encoding::Base64,
                },
                template: Template::parse(template).map_err(|e| format!("template: {e}"))?,
                id_header: id_header.as_ref().map(|h| h.to_ascii_lowercase()),
                timestamp_header: timestamp_header.as_ref().map(|h| h.to_ascii_lowercase()),
            };
            generic.validate().map_err(|e| format!("template: {e}"))?;
            Scheme::Generic(generic)
        }
    })
}

/// Reads and decodes one configured secret, as the verifier will use it. The demo and the load
/// generator sign with it, as the provider would.
pub fn read_secret(scheme: &Scheme, secret: &SecretConfig) -> Result<Secret, String> {
    if secret.id.is_empty() {
        return Err("id: must not be empty".into());
    }
    let text = match (&secret.value, &secret.env, &secret.file) {
        (Some(_), _, _) => {
            return Err("inline secret values are not accepted; put the secret in an environment variable (env:) or a file (file:)".into())
        }
        (None, env, file) => read_credential(&CredentialConfig {
            env: env.clone(),
            file: file.clone(),
        })?,
    };
    let key = scheme.decode_secret(&text).map_err(|e| e.to_string())?;
    Ok(Secret {
        id: secret.id.clone(),
        key,
        not_after: secret.not_after.map(SystemTime::from),
    })
}

/// Every value, or every error of every failure.
fn all_or_errors<T>(
    results: impl IntoIterator<Item = Result<T, Vec<FieldError>>>,
) -> Result<Vec<T>, Vec<FieldError>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(v) => values.push(v),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// The subscription API's bearer token, read and checked (at least 16 characters).
pub fn read_api_token(token: &CredentialConfig) -> Result<String, String> {
    let text = read_credential(token)?;
    if text.len() < 16 {
        return Err("must be at least 16 characters (e.g. `openssl rand -hex 32`)".into());
    }
    Ok(text)
}

/// Reads a credential from its environment variable or file; a trailing newline is dropped.
pub fn read_credential(credential: &CredentialConfig) -> Result<String, String> {
    let text = match (&credential.env, &credential.file) {
        (Some(_), Some(_)) => return Err("set either env or file, not both".into()),
        (None, None) => return Err("set env (an environment variable) or file".into()),
        (Some(var), None) => {
            std::env::var(var).map_err(|_| format!("env: environment variable {var} is not set"))?
        }
        (None, Some(path)) => {
            crate::read_small_file(path).map_err(|message| format!("file: {message}"))?
        }
    };
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// The scheme's own event id where it has one, else a hash of the body.
fn default_dedupe(scheme: &Scheme) -> KeySource {
    let header = |name: &str| KeySource::Header { name: name.into() };
    match scheme {
        Scheme::StandardWebhooks => KeySource::SignedId,
        Scheme::Github => header("x-github-delivery"),
        Scheme::Stripe => KeySource::JsonPointer {
            pointer: "/id".into(),
        },
        Scheme::Shopify => header("x-shopify-webhook-id"),
        Scheme::Generic(g) if g.id_header.is_some() => KeySource::SignedId,
        Scheme::Slack | Scheme::Generic(_) | Scheme::None => KeySource::BodyHash,
    }
}

/// Whether `base` (a URL as configured) has the same scheme, host and port as `url`.
fn same_origin(base: &str, url: &http::Uri) -> bool {
    let Ok(base) = base.parse::<http::Uri>() else {
        return false;
    };
    let port = |u: &http::Uri| {
        u.port_u16().or(match u.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        })
    };
    let host = |u: &http::Uri| u.host().map(str::to_ascii_lowercase);
    base.scheme_str() == url.scheme_str() && host(&base) == host(url) && port(&base) == port(url)
}

/// Where each provider says what kind of event it sent.
fn default_event_type(scheme: &Scheme) -> Option<KeySource> {
    let header = |name: &str| Some(KeySource::Header { name: name.into() });
    let pointer = |p: &str| Some(KeySource::JsonPointer { pointer: p.into() });
    match scheme {
        Scheme::Github => header("x-github-event"),
        Scheme::Shopify => header("x-shopify-topic"),
        Scheme::Stripe | Scheme::StandardWebhooks | Scheme::Slack => pointer("/type"),
        Scheme::Generic(_) | Scheme::None => None,
    }
}

/// The signature headers (so consumers can verify again) and the provider's event metadata.
fn default_forward_headers(scheme: &Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::StandardWebhooks => &[
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "svix-id",
            "svix-timestamp",
            "svix-signature",
        ],
        Scheme::Github => &[
            "x-hub-signature-256",
            "x-github-event",
            "x-github-delivery",
            "x-github-hook-id",
        ],
        Scheme::Stripe => &["stripe-signature"],
        Scheme::Shopify => &[
            "x-shopify-hmac-sha256",
            "x-shopify-topic",
            "x-shopify-shop-domain",
            "x-shopify-webhook-id",
            "x-shopify-api-version",
        ],
        Scheme::Slack => &[
            "x-slack-signature",
            "x-slack-request-timestamp",
            "x-slack-retry-num",
        ],
        Scheme::Generic(_) | Scheme::None => &[],
    }
}

fn check_key_source(key: &KeySource, scheme: Option<&Scheme>) -> Option<String> {
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
            Some(Scheme::StandardWebhooks) => None,
            Some(Scheme::Generic(g)) if g.id_header.is_some() => None,
            Some(s) => Some(format!(
                "from: signed_id needs a scheme that signs an event id; {} does not",
                s.name()
            )),
            None => None,
        },
        _ => None,
    }
}
