//! Validation of the `ingress` and `admin` sections: the webhook listener's limits, the
//! blocking of failing clients, its TLS files, and an admin port of its own.

use std::time::Duration;

use crate::field::{err, FieldError};
use crate::model::{BlockConfig, Config, IngressConfig, TlsConfig};

/// `read_files`: check that the TLS files exist (only the process that serves them has them).
pub(super) fn validate(config: &Config, read_files: bool, errors: &mut Vec<FieldError>) {
    let ingress = &config.ingress;
    check_limits(ingress, errors);
    if let Some(block) = &ingress.block_failing_clients {
        check_blocking(block, errors);
    }
    check_http2(ingress, errors);
    if let Some(tls) = ingress.tls.as_ref().filter(|_| read_files) {
        check_tls_files(tls, errors);
    }
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

/// The header count and the HTTP/2 stream limits: 0 would refuse every request.
fn check_http2(ingress: &IngressConfig, errors: &mut Vec<FieldError>) {
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
