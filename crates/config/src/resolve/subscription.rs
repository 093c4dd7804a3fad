//! One subscription resolved: its URL parsed and kept off this cluster's own ingress, its
//! sources known, its signing secrets decoded, its headers valid.

use std::time::Duration;

use spillway_signature::Secret;

use crate::field::{all_or_errors, err, FieldError};
use crate::model::{Config, LargeBody, SecretConfig, SubscriptionConfig};
use crate::secrets::{SecretAccess, SubscriptionSecret};

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
    /// Records of sources with a Protobuf schema are delivered as JSON.
    pub protobuf_json: bool,
    /// An event whose body is in object storage is delivered as a reference with a
    /// pre-signed URL valid this long; None: its body is delivered.
    pub reference_expiry: Option<Duration>,
}

// === impl Config ===

impl Config {
    /// Resolves every subscription of the config file, or returns every problem found.
    pub fn resolve_subscriptions(&self) -> Result<Vec<ResolvedSubscription>, Vec<FieldError>> {
        let checked = check_all(self, SecretAccess::Read)?;
        Ok(checked.into_iter().map(Checked::resolved).collect())
    }

    /// Every secret file the file's subscriptions read: what a worker's reload watches beside
    /// the config file itself (as [`Config::source_files`] is for the ingress).
    pub fn subscription_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = self
            .subscriptions
            .iter()
            .flat_map(|s| s.secrets.iter().filter_map(|secret| secret.file.clone()))
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Resolves one subscription from the config file or the registry against this config
    /// (its sources, `worker.ingress_urls`); field paths in the errors start with `at`.
    pub fn resolve_subscription<S: SubscriptionSecret>(
        &self,
        at: &str,
        sub: &SubscriptionConfig<S>,
    ) -> Result<ResolvedSubscription, Vec<FieldError>> {
        check(self, at, sub, SecretAccess::Read).map(Checked::resolved)
    }
}

impl Config {
    /// A subscription read back from the registry, fitted to this config's bounds instead of
    /// refused by them: one stored before a bound existed (a `timeout` over
    /// `worker.max_subscription_timeout`, a header now reserved) must go on being delivered
    /// to, not be skipped by every worker. Returns the fitted subscription and what was changed.
    pub fn fit_stored_subscription<S: Clone>(
        &self,
        sub: &SubscriptionConfig<S>,
    ) -> (SubscriptionConfig<S>, Vec<String>) {
        let mut fitted = sub.clone();
        let mut changed = Vec::new();
        let longest = self.worker.max_subscription_timeout;
        if fitted.timeout > longest {
            changed.push(format!(
                "timeout {} lowered to worker.max_subscription_timeout",
                humantime_serde::re::humantime::format_duration(fitted.timeout)
            ));
            fitted.timeout = longest;
        }
        fitted.headers.retain(|name, _| {
            let reserved =
                http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| is_reserved_header(&n));
            if reserved {
                changed.push(format!("header {name} left out (set by the worker itself)"));
            }
            !reserved
        });
        (fitted, changed)
    }
}

/// Every problem of the config file's subscriptions, their secrets read or not as `access`
/// says.
pub(crate) fn subscription_errors(config: &Config, access: SecretAccess) -> Vec<FieldError> {
    check_all(config, access).err().unwrap_or_default()
}

/// A subscription that passed every check.
struct Checked<'a, S> {
    sub: &'a SubscriptionConfig<S>,
    url: http::Uri,
    /// Empty unless the secrets were read ([`SecretAccess::Read`]).
    secrets: Vec<Secret>,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl<S> Checked<'_, S> {
    fn resolved(self) -> ResolvedSubscription {
        let sub = self.sub;
        ResolvedSubscription {
            id: sub.id.clone(),
            url: self.url,
            sources: sub.sources.clone(),
            event_types: sub.event_types.clone(),
            secrets: self.secrets,
            headers: self.headers,
            timeout: sub.timeout,
            rate_limit: sub.rate_limit.and_then(std::num::NonZeroU32::new),
            protobuf_json: sub.protobuf_body == crate::model::ProtobufBody::Json,
            reference_expiry: (sub.large_body == LargeBody::Reference).then(|| {
                sub.reference_expiry
                    .unwrap_or(crate::model::DEFAULT_REFERENCE_EXPIRY)
            }),
        }
    }
}

/// Every subscription of the config file checked, and their ids unique.
fn check_all(
    config: &Config,
    access: SecretAccess,
) -> Result<Vec<Checked<'_, SecretConfig>>, Vec<FieldError>> {
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = Vec::new();
    for (i, sub) in config.subscriptions.iter().enumerate() {
        if !seen.insert(sub.id.as_str()) {
            duplicates.push(err(
                format!("subscriptions[{i}].id"),
                format!("{:?} is used by another subscription", sub.id),
            ));
        }
    }
    let checked = all_or_errors(
        config
            .subscriptions
            .iter()
            .enumerate()
            .map(|(i, sub)| check(config, &format!("subscriptions[{i}]."), sub, access)),
    );
    match checked {
        Ok(all) if duplicates.is_empty() => Ok(all),
        Ok(_) => Err(duplicates),
        Err(mut errors) => {
            errors.append(&mut duplicates);
            Err(errors)
        }
    }
}

/// Checks one subscription; the checks run in a fixed order, and so their errors come out in
/// it, whichever process asks.
fn check<'a, S: SubscriptionSecret>(
    config: &Config,
    at: &str,
    sub: &'a SubscriptionConfig<S>,
    access: SecretAccess,
) -> Result<Checked<'a, S>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let field = |name: &str| format!("{at}{name}");
    let valid_id = !sub.id.is_empty()
        && sub.id.len() <= 128
        && sub
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_id {
        errors.push(err(field("id"), "1 to 128 characters of a-z A-Z 0-9 - _"));
    }
    let url = url(config, &sub.url, &field("url"), &mut errors);
    for (j, source) in sub.sources.iter().enumerate() {
        if !config.sources.contains_key(source) {
            errors.push(err(
                field(&format!("sources[{j}]")),
                format!("no source named {source:?}"),
            ));
        }
    }
    let secrets = secrets(&sub.secrets, at, access, &mut errors);
    let headers = headers(sub, at, &mut errors);
    let longest = config.worker.max_subscription_timeout;
    if sub.timeout.is_zero() || sub.timeout > longest {
        errors.push(err(
            field("timeout"),
            format!(
                "must be greater than zero and at most worker.max_subscription_timeout ({}): \
                 a delivery in hand holds retry capacity and its partition's offsets",
                humantime_serde::re::humantime::format_duration(longest)
            ),
        ));
    }
    if sub.rate_limit == Some(0) {
        errors.push(err(
            field("rate_limit"),
            "must be at least 1 delivery per second (leave it out for no limit)",
        ));
    }
    check_large_body(config, sub, &field, &mut errors);
    match url {
        Some(url) if errors.is_empty() => Ok(Checked {
            sub,
            url,
            secrets,
            headers,
        }),
        _ => Err(errors),
    }
}

/// A reference needs a store that signs URLs, and an expiry it takes.
fn check_large_body<S>(
    config: &Config,
    sub: &SubscriptionConfig<S>,
    field: &dyn Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) {
    if sub.large_body != LargeBody::Reference {
        if sub.reference_expiry.is_some() {
            errors.push(err(
                field("reference_expiry"),
                "applies to `large_body: reference` only",
            ));
        }
        return;
    }
    let signs = config
        .objects
        .as_ref()
        .is_some_and(|o| !o.url.starts_with("file:"));
    if !signs {
        errors.push(err(
            field("large_body"),
            "`reference` needs `objects:` on a store that signs URLs (s3://, gs://, az://)",
        ));
    }
    let expiry = sub
        .reference_expiry
        .unwrap_or(crate::model::DEFAULT_REFERENCE_EXPIRY);
    if expiry < Duration::from_secs(60) || expiry > Duration::from_secs(7 * 24 * 3600) {
        errors.push(err(
            field("reference_expiry"),
            "must be from 1m to 7d (the longest a pre-signed S3 URL lives)",
        ));
    }
}

/// The URL, if it is an http(s) URL with a host that is not this cluster's own ingress.
fn url(config: &Config, text: &str, path: &str, errors: &mut Vec<FieldError>) -> Option<http::Uri> {
    let url = match text.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
        _ => {
            errors.push(err(
                path,
                format!("{text:?} is not an http(s) URL with a host"),
            ));
            return None;
        }
    };
    // Reported, but the URL is still returned: it is valid, only this config refuses it.
    if let Some(own) = config
        .worker
        .ingress_urls
        .iter()
        .find(|own| same_origin(own, &url))
    {
        errors.push(err(
            path,
            format!("points at this cluster's own ingress ({own}): its events would loop back in"),
        ));
    }
    Some(url)
}

/// The decoded secrets with `access` [`SecretAccess::Read`]; otherwise only their names are
/// checked and none is returned.
fn secrets<S: SubscriptionSecret>(
    configured: &[S],
    at: &str,
    access: SecretAccess,
    errors: &mut Vec<FieldError>,
) -> Vec<Secret> {
    if configured.is_empty() {
        errors.push(err(
            format!("{at}secrets"),
            "at least one signing secret is required",
        ));
    }
    let mut secrets = Vec::new();
    for (j, secret) in configured.iter().enumerate() {
        let read = match access {
            SecretAccess::Read => secret.resolve().map(Some),
            SecretAccess::NameOnly => secret.check_name().map(|()| None),
        };
        match read {
            Ok(read) => secrets.extend(read),
            Err(e) => errors.push(err(format!("{at}secrets[{j}]"), e.to_string())),
        }
    }
    secrets
}

fn headers<S>(
    sub: &SubscriptionConfig<S>,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut headers = Vec::new();
    for (name, value) in &sub.headers {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            (Ok(n), _) if is_reserved_header(&n) => errors.push(err(
                format!("{at}headers.{name}"),
                "set by the worker itself (Host, framing, Standard Webhooks and spillway- \
                 headers cannot be overridden)",
            )),
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => errors.push(err(format!("{at}headers.{name}"), "not a valid header")),
        }
    }
    headers
}

/// L-4: headers a subscription may not set. `Host` would aim a shared front-end at another
/// virtual host; the framing headers would desynchronise the request; the signature headers
/// and `spillway-*` are what subscribers verify and deduplicate on.
fn is_reserved_header(name: &http::HeaderName) -> bool {
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "traceparent",
    ];
    let name = name.as_str();
    RESERVED.contains(&name) || name.starts_with(spillway_core::headers::RESERVED_PREFIX)
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
