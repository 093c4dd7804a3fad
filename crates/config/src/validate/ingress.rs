//! Validation of the `ingress` and `admin` sections: the webhook listener's limits (requests,
//! bodies, connections), the blocking of failing clients, its TLS files, and an admin port of
//! its own.

use std::time::Duration;

use crate::field::{err, FieldError};
use crate::model::{BlockConfig, Config, IngressConfig, SnsConfig, TlsConfig};

/// `read_files`: check that the TLS files exist (only the process that serves them has them).
pub(super) fn validate(config: &Config, read_files: bool, errors: &mut Vec<FieldError>) {
    let ingress = &config.ingress;
    check_limits(ingress, errors);
    super::sizes::check_memory(config, errors);
    check_slow_bodies(ingress, errors);
    check_connections(ingress, errors);
    if let Some(block) = &ingress.block_failing_clients {
        check_blocking(block, errors);
    }
    check_http2(ingress, errors);
    if let Some(tls) = ingress.tls.as_ref().filter(|_| read_files) {
        check_tls_files(tls, errors);
    }
    check_sns(&ingress.sns, read_files, errors);
    if ingress.listen == config.admin.listen && config.admin.listen.port() != 0 {
        errors.push(err("admin.listen", "must differ from ingress.listen"));
    }
}

fn check_limits(ingress: &IngressConfig, errors: &mut Vec<FieldError>) {
    if ingress.max_in_flight == 0 {
        errors.push(err("ingress.max_in_flight", "must be at least 1"));
    }
    if ingress.max_header_bytes < 8192 {
        // hyper's HTTP/1 read buffer has an 8 KiB floor.
        errors.push(err("ingress.max_header_bytes", "must be at least 8192"));
    }
    if ingress.max_requests_per_client == 0 {
        errors.push(err("ingress.max_requests_per_client", "must be at least 1"));
    }
    if ingress.latency_target < Duration::from_millis(10) {
        errors.push(err("ingress.latency_target", "must be at least 10ms"));
    }
}

/// The minimum body rate (0: off) needs a grace period to measure from, ending before the
/// body read timeout, or it never applies.
fn check_slow_bodies(ingress: &IngressConfig, errors: &mut Vec<FieldError>) {
    if ingress.min_body_rate == 0 {
        return;
    }
    if ingress.body_rate_grace.is_zero() {
        errors.push(err(
            "ingress.body_rate_grace",
            "must be greater than zero while min_body_rate is on (0 turns the rate off)",
        ));
    } else if ingress.body_rate_grace >= ingress.body_read_timeout {
        errors.push(err(
            "ingress.body_rate_grace",
            format!(
                "must be shorter than ingress.body_read_timeout ({:?}), or min_body_rate never \
                 applies",
                ingress.body_read_timeout
            ),
        ));
    }
}

/// The connection caps: 0 would refuse every connection; an age or keep-alive under a second
/// would churn connections or flood them with pings.
fn check_connections(ingress: &IngressConfig, errors: &mut Vec<FieldError>) {
    for (field, value) in [
        ("ingress.max_connections", ingress.max_connections),
        (
            "ingress.max_connections_per_peer",
            ingress.max_connections_per_peer,
        ),
    ] {
        if value == 0 {
            errors.push(err(field, "must be at least 1"));
        }
    }
    for (field, value) in [
        ("ingress.max_connection_age", ingress.max_connection_age),
        ("ingress.http2_keep_alive", ingress.http2_keep_alive),
    ] {
        if value < Duration::from_secs(1) {
            errors.push(err(field, "must be at least 1s"));
        }
    }
    let reload = ingress.reload_interval;
    if !reload.is_zero() && reload < Duration::from_secs(1) {
        errors.push(err(
            "ingress.reload_interval",
            "must be 0s (SIGHUP only) or at least 1s: every check reads the config and secret files",
        ));
    }
}

fn check_blocking(block: &BlockConfig, errors: &mut Vec<FieldError>) {
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

/// HTTP/2's initial window, the least a connection's can be, and the largest window it allows.
const HTTP2_MIN_WINDOW: u32 = 65_535;
const HTTP2_MAX_WINDOW: u32 = (1 << 31) - 1;

/// The header count and the HTTP/2 stream limits: 0 would refuse every request. The window
/// within HTTP/2's bounds (RFC 9113 6.5.2, 6.9.1).
fn check_http2(ingress: &IngressConfig, errors: &mut Vec<FieldError>) {
    if !(HTTP2_MIN_WINDOW..=HTTP2_MAX_WINDOW).contains(&ingress.http2_window_bytes) {
        errors.push(err(
            "ingress.http2_window_bytes",
            format!("must be from {HTTP2_MIN_WINDOW} to {HTTP2_MAX_WINDOW} (HTTP/2's bounds)"),
        ));
    }
    for (field, value) in [
        ("ingress.max_headers", ingress.max_headers),
        (
            "ingress.http2_max_concurrent_streams",
            ingress.http2_max_concurrent_streams as usize,
        ),
        (
            "ingress.http2_max_pending_accept_reset_streams",
            ingress.http2_max_pending_accept_reset_streams,
        ),
        (
            "ingress.http2_max_local_error_reset_streams",
            ingress.http2_max_local_error_reset_streams,
        ),
    ] {
        if value == 0 {
            errors.push(err(field, "must be at least 1"));
        }
    }
}

fn check_tls_files(tls: &TlsConfig, errors: &mut Vec<FieldError>) {
    for (field, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
        if let Err(e) = std::fs::metadata(path) {
            errors.push(err(
                format!("ingress.tls.{field}"),
                format!("{}: {e}", path.display()),
            ));
        }
    }
}

/// The SNS fetches: host patterns that name hosts, a bounded time, a cache that holds one, and
/// extra roots that exist where they are read.
fn check_sns(sns: &SnsConfig, read_files: bool, errors: &mut Vec<FieldError>) {
    if sns.hosts.is_empty() {
        errors.push(err("ingress.sns.hosts", "must name at least one host"));
    }
    for (i, pattern) in sns.hosts.iter().enumerate() {
        if let Some(problem) = crate::model::host_pattern_error(pattern) {
            errors.push(err(format!("ingress.sns.hosts[{i}]"), problem));
        }
    }
    if sns.timeout < Duration::from_millis(100) || sns.timeout > Duration::from_secs(30) {
        errors.push(err("ingress.sns.timeout", "must be between 100ms and 30s"));
    }
    if sns.certificate_ttl < Duration::from_secs(1) {
        errors.push(err("ingress.sns.certificate_ttl", "must be at least 1s"));
    }
    if sns.max_certificates == 0 {
        errors.push(err("ingress.sns.max_certificates", "must be at least 1"));
    }
    if sns.max_certificate_bytes < 1024 {
        errors.push(err(
            "ingress.sns.max_certificate_bytes",
            "must be at least 1024",
        ));
    }
    if let Some(path) = sns.extra_roots.as_ref().filter(|_| read_files) {
        if !path.is_file() {
            errors.push(err(
                "ingress.sns.extra_roots",
                format!("{} is not a readable file", path.display()),
            ));
        }
    }
}
