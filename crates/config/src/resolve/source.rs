//! One source resolved: its route (topic, forwarded headers, event type), which the workers
//! need, and its verification (scheme, secrets, keys, limits), which only the ingress needs.

use std::time::Duration;

use spillway_core::key::KeySource;
use spillway_signature::{Scheme, Secret, SecretRing, Verifier};

use super::scheme;

mod batch;
mod checks;
mod schema;

use crate::field::{all_or_errors, err, FieldError};
use crate::model::{Config, FailMode, SourceConfig};
use crate::secrets::SecretAccess;
use checks::{
    check_client_side, check_limits, check_name, check_public_url, check_topic, forward_headers,
    keys, secrets, topic_arns, verify_token,
};

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
    /// Bodies larger than this go to object storage and the record carries a reference;
    /// None: every body travels in its record (no `objects`, or a batch source).
    pub inline_max_bytes: Option<u64>,
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
    /// The SNS topics an `aws-sns` source accepts.
    pub topic_arns: Vec<String>,
    /// Authenticated handshakes are also written to Kafka as events.
    pub store_handshakes: bool,
    /// Each request is a batch, split into records written one by one.
    pub batch: Option<crate::model::BatchConfig>,
    /// The shape its records must have, and where those that do not go.
    pub schema: Option<SourceSchema>,
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
    /// The shape its records must have, and where those that do not go.
    pub schema: Option<SourceSchema>,
}

/// A source's schema, loaded, and its quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSchema {
    pub schema: std::sync::Arc<spillway_schema::Schema>,
    pub on_invalid: crate::model::OnInvalid,
    /// Where records that do not match are written.
    pub quarantine_topic: String,
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
            schema: self.schema.clone(),
        }
    }
}

// === impl Config ===

impl Config {
    /// Resolves every source, secrets read, or returns every problem found.
    pub fn resolve_sources(&self) -> Result<Vec<ResolvedSource>, Vec<FieldError>> {
        all_or_errors(self.sources.iter().map(|(name, source)| {
            check_source(self, name, source, SecretAccess::Read)
                .map(|c| c.resolved(source, self.objects.is_some()))
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

    /// Every file the sources read (secrets, verify tokens, schemas): what a reload watches beside the
    /// config file itself.
    pub fn source_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = self
            .sources
            .values()
            .flat_map(|s| {
                let secrets = s.secrets.iter().filter_map(|secret| secret.file.clone());
                secrets.chain(s.verify_token.as_ref().and_then(|t| t.file.clone()))
            })
            .chain(self.schema_files())
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// The schema files the sources name (JSON Schemas, descriptor sets): what the workers
    /// watch, since they read Protobuf records with them.
    pub fn schema_files(&self) -> Vec<std::path::PathBuf> {
        self.sources
            .values()
            .filter_map(|s| {
                let schema = s.schema.as_ref()?;
                schema
                    .json_schema
                    .clone()
                    .or_else(|| schema.protobuf.as_ref().map(|p| p.descriptor_set.clone()))
            })
            .collect()
    }

    /// The topic of every source, and the quarantine of every source with a schema: every
    /// topic the sources write to, for topic creation.
    pub fn topics(&self) -> Vec<String> {
        let mut topics = self.source_topics();
        topics.extend(self.quarantine_topics());
        topics.sort();
        topics.dedup();
        topics
    }

    /// The topic of every source: what the workers consume and deliver from. Never a
    /// quarantine topic, whose records are not for subscribers.
    pub fn source_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .sources
            .iter()
            .map(|(name, s)| topic_of(self, name, s))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The quarantine topic of every source with a schema.
    pub fn quarantine_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .sources
            .iter()
            .filter_map(|(name, s)| {
                let schema = s.schema.as_ref()?;
                Some(schema::quarantine_topic_of(
                    schema,
                    &topic_of(self, name, s),
                ))
            })
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
    fn resolved(self, source: &SourceConfig, objects: bool) -> ResolvedSource {
        let SourceRoute {
            name,
            topic,
            forward_headers,
            event_type,
            schema,
        } = self.route;
        ResolvedSource {
            name,
            verifier: Verifier::new(self.scheme, SecretRing::new(self.secrets), self.tolerance),
            topic,
            dedupe: self.dedupe,
            partition_key: source.partition_key.clone(),
            on_redis_unavailable: source.on_redis_unavailable,
            max_body_bytes: source.max_body(objects),
            inline_max_bytes: source.inline_max(objects),
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
            topic_arns: source.topic_arns.clone(),
            store_handshakes: source.store_handshakes,
            batch: source.batch,
            schema,
        }
    }
}

/// The problems of one source, each under `sources.<name>`.
pub(super) struct Problems<'a> {
    name: &'a str,
    found: Vec<FieldError>,
}

impl Problems<'_> {
    /// A problem with `sources.<name>.<field>`.
    pub(super) fn push(&mut self, field: &str, message: impl Into<String>) {
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
    check_topic("topic", &topic, &mut problems);
    check_limits(config, source, &mut problems);
    check_public_url(source, &mut problems);
    topic_arns(source, scheme.as_ref(), &mut problems);
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
    batch::check_batch(config, source, &dedupe, event_type.as_ref(), &mut problems);
    let schema = schema::check_schema(source, &topic, &dedupe, event_type.as_ref(), &mut problems);
    if let Some(schema) = &schema {
        if config.source_topics().contains(&schema.quarantine_topic) {
            problems.push(
                "schema.quarantine_topic",
                format!(
                    "{} is a source's topic: its records would be delivered",
                    schema.quarantine_topic
                ),
            );
        }
    }

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
            schema,
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
