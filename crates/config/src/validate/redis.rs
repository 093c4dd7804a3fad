//! Validation of the `redis` section: node URLs, the dedupe timings (a claim outlives the
//! produce it guards and the commit after it), and a Redis Cluster wherever a source
//! deduplicates or is rate limited.

use std::time::Duration;

use spillway_core::key::KeySource;

use crate::field::{err, FieldError};
use crate::model::{Config, RedisConfig};

/// The longest `redis.commit_delay` accepted.
const MAX_COMMIT_DELAY: Duration = Duration::from_secs(1);

/// `read_files`: check that the TLS files are there (only the ingress reads them).
pub(super) fn validate(config: &Config, read_files: bool, errors: &mut Vec<FieldError>) {
    let redis = &config.redis;
    for (i, node) in redis.nodes.iter().enumerate() {
        if !node.starts_with("redis://") && !node.starts_with("rediss://") {
            errors.push(err(
                format!("redis.nodes[{i}]"),
                "must start with redis:// or rediss:// (TLS)",
            ));
        } else if let Some((_, fragment)) = node.split_once('#') {
            // redis-rs takes one fragment, `#insecure` (no certificate check, which it is built
            // without here), and refuses any other at start: said now, with the field.
            let problem = if fragment == "insecure" {
                "#insecure (no certificate check) is not supported: give the cluster's CA in redis.tls.ca_file"
            } else {
                "a Redis URL takes no #fragment"
            };
            errors.push(err(format!("redis.nodes[{i}]"), problem));
        }
    }
    check_tls(redis, read_files, errors);
    if redis.command_timeout.is_zero() {
        errors.push(err("redis.command_timeout", "must be greater than zero"));
    }
    if redis.claim_ttl < Duration::from_secs(1) {
        errors.push(err("redis.claim_ttl", "must be at least 1s"));
    }
    if redis.window < redis.claim_ttl {
        errors.push(err("redis.window", "must be at least redis.claim_ttl"));
    }
    // Meanwhile other pods answer the event's retries 503 `in_flight`, and a pod killed
    // outright loses the commits it holds: a delay is worth a few milliseconds, not seconds.
    if redis.commit_delay > MAX_COMMIT_DELAY {
        errors.push(err(
            "redis.commit_delay",
            format!("must be at most {MAX_COMMIT_DELAY:?}"),
        ));
    }
    // Every source deduplicates unless it says `from: none`.
    let dedupes = config
        .sources
        .values()
        .any(|s| s.dedupe != Some(KeySource::None));
    // L-1: a claim that ends before its commit lands lets a retry claim the key again and
    // produce the event a second time. The commit comes after the produce (at most
    // delivery_timeout), the commit delay, and its own round trip.
    let commit_lands_within =
        config.kafka.delivery_timeout + redis.commit_delay + redis.command_timeout;
    if dedupes
        && redis.claim_ttl >= Duration::from_secs(1)
        && redis.claim_ttl <= commit_lands_within
    {
        errors.push(err(
            "redis.claim_ttl",
            format!(
                "must be longer than kafka.delivery_timeout + redis.commit_delay + \
                 redis.command_timeout ({commit_lands_within:?}): a claim that ends before its \
                 event's commit lands lets a retry claim the key again and produce a duplicate"
            ),
        ));
    }
    if dedupes && redis.nodes.is_empty() {
        errors.push(err(
            "redis.nodes",
            "a source deduplicates, so at least one Redis Cluster node is required",
        ));
    }
    let limits = config.sources.values().any(|s| s.rate_limit.is_some());
    if limits && !dedupes && redis.nodes.is_empty() {
        errors.push(err(
            "redis.nodes",
            "a source has a rate_limit, counted in the Redis Cluster: at least one node is required",
        ));
    }
}

/// One cluster is reached over TLS or not, so the seeds agree; the TLS files go with
/// `rediss://` seeds only, the client's certificate with its key.
fn check_tls(redis: &RedisConfig, read_files: bool, errors: &mut Vec<FieldError>) {
    let seeds = |scheme: &str| redis.nodes.iter().filter(|n| n.starts_with(scheme)).count();
    let tls_seeds = seeds("rediss://");
    if tls_seeds > 0 && seeds("redis://") > 0 {
        errors.push(err(
            "redis.nodes",
            "mixes redis:// and rediss:// seeds: the cluster is reached over TLS or not, so use one",
        ));
    }
    let tls = &redis.tls;
    if tls.is_set() && tls_seeds == 0 {
        errors.push(err(
            "redis.tls",
            "is only for rediss:// nodes, and no seed is rediss://",
        ));
    }
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        errors.push(err(
            "redis.tls",
            "client_cert_file and client_key_file go together",
        ));
    }
    if !read_files {
        return;
    }
    for (field, path) in [
        ("ca_file", &tls.ca_file),
        ("client_cert_file", &tls.client_cert_file),
        ("client_key_file", &tls.client_key_file),
    ] {
        if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
            errors.push(err(
                format!("redis.tls.{field}"),
                format!("{} is not a readable file", path.display()),
            ));
        }
    }
}
