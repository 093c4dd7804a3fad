//! The `ingress.sns` section: where AWS SNS signing certificates may come from, how they are
//! fetched and kept, and the same rules for the SubscribeURL a confirmation visits.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Fetching SNS signing certificates and confirming SNS subscriptions. Both are HTTPS GETs to a
/// URL the message names, so both go through the SSRF guard and only to `hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnsConfig {
    /// The hosts a `SigningCertURL` or `SubscribeURL` may name, as `host` or `host:port`,
    /// where `*` stands for one DNS label. By default AWS's regional endpoints:
    /// `sns.*.amazonaws.com` and `sns.*.amazonaws.com.cn`, port 443.
    pub hosts: Vec<String>,
    /// PEM certificates trusted besides the system's roots when fetching (a private CA in
    /// front of a mirror, or a test's).
    pub extra_roots: Option<PathBuf>,
    /// Addresses the fetches may reach although the SSRF guard refuses their class (loopback,
    /// private ranges...): a proxy or mirror inside the network. Empty by default.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// How long a certificate fetch or a subscription confirmation may take; past it the
    /// message gets 503 with Retry-After and SNS retries. Between 100 ms and 30 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a fetched certificate is kept; SNS names a new URL when it rotates its
    /// certificate, so a long life costs nothing. A certificate past its own expiry is not
    /// used whatever this says.
    #[serde(with = "humantime_serde")]
    pub certificate_ttl: Duration,
    /// Certificates kept at most (each a few KiB).
    pub max_certificates: u64,
    /// Largest certificate file accepted, in bytes.
    pub max_certificate_bytes: usize,
}

impl Default for SnsConfig {
    fn default() -> Self {
        Self {
            hosts: vec![
                "sns.*.amazonaws.com".into(),
                "sns.*.amazonaws.com.cn".into(),
            ],
            extra_roots: None,
            allow_cidrs: Vec::new(),
            timeout: Duration::from_secs(5),
            certificate_ttl: Duration::from_secs(24 * 3600),
            max_certificates: 64,
            max_certificate_bytes: 16 * 1024,
        }
    }
}

// === impl SnsConfig ===

impl SnsConfig {
    /// Whether `authority` (a URL's `host` or `host:port`, port 443 left out) is one of
    /// `hosts`.
    pub fn allows(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let authority = authority.strip_suffix(":443").unwrap_or(&authority);
        self.hosts.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            matches_pattern(p.strip_suffix(":443").unwrap_or(&p), authority)
        })
    }
}

/// `pattern` against `authority`, label by label; `*` is any one label of a-z, 0-9 and '-'.
fn matches_pattern(pattern: &str, authority: &str) -> bool {
    let (p_host, p_port) = split_port(pattern);
    let (a_host, a_port) = split_port(authority);
    if p_port != a_port {
        return false;
    }
    let p_labels: Vec<&str> = p_host.split('.').collect();
    let a_labels: Vec<&str> = a_host.split('.').collect();
    p_labels.len() == a_labels.len()
        && p_labels.iter().zip(&a_labels).all(|(p, a)| {
            if *p == "*" {
                !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            } else {
                p.eq_ignore_ascii_case(a)
            }
        })
}

fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (authority, None),
    }
}

/// Why `pattern` is not a host pattern, if it is not one.
pub(crate) fn host_pattern_error(pattern: &str) -> Option<String> {
    let (host, port) = split_port(pattern);
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Some(format!("{pattern:?}: the port is not 1 to 65535"));
        }
    }
    let labels_ok = !host.is_empty()
        && host.split('.').all(|label| {
            label == "*"
                || (!label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    if !labels_ok {
        return Some(format!(
            "{pattern:?} is not a host pattern (labels of a-z, 0-9 and '-', or '*' for one label, and an optional :port)"
        ));
    }
    if host.split('.').all(|l| l == "*") {
        return Some(format!("{pattern:?} would allow any host"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_hosts_are_aws_regional_endpoints_only() {
        let sns = SnsConfig::default();
        for ok in [
            "sns.us-east-1.amazonaws.com",
            "SNS.eu-west-3.amazonaws.com",
            "sns.cn-north-1.amazonaws.com.cn",
            "sns.us-east-1.amazonaws.com:443",
        ] {
            assert!(sns.allows(ok), "{ok}");
        }
        for refused in [
            "sns.amazonaws.com.evil.example",
            "evil.example",
            "sns.us-east-1.amazonaws.com:8443",
            "sns..amazonaws.com",
            "sns.a.b.amazonaws.com",
            "sns.us_east.amazonaws.com",
            "xsns.us-east-1.amazonaws.com",
        ] {
            assert!(!sns.allows(refused), "{refused}");
        }
    }

    #[test]
    fn a_pattern_with_a_port_matches_that_port_only() {
        let sns = SnsConfig {
            hosts: vec!["localhost:8443".into()],
            ..SnsConfig::default()
        };
        assert!(sns.allows("localhost:8443"));
        assert!(!sns.allows("localhost"));
        assert!(!sns.allows("localhost:9443"));
        let explicit = SnsConfig {
            hosts: vec!["sns.*.amazonaws.com:443".into()],
            ..SnsConfig::default()
        };
        assert!(
            explicit.allows("sns.us-east-1.amazonaws.com"),
            "443 is the default port"
        );
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert_eq!(host_pattern_error("sns.*.amazonaws.com"), None);
        assert_eq!(host_pattern_error("localhost:8443"), None);
        assert!(host_pattern_error("*.*").is_some());
        assert!(host_pattern_error("sns.*.amazonaws.com:0").is_some());
        assert!(host_pattern_error("https://sns.amazonaws.com").is_some());
        assert!(host_pattern_error("").is_some());
    }
}
