//! The settings of a [`crate::RedisStore`]: the seed nodes, the certificates of a TLS cluster
//! and the timings, with `Debug` output that hides credentials and certificates.

use std::time::Duration;

use redis::{ClientTlsConfig, TlsCertificates};

/// Connection settings of a [`crate::RedisStore`]. Debug output shows the nodes without the
/// credentials a `redis://user:password@host` URL may carry.
#[derive(Clone)]
pub struct RedisSettings {
    /// Seed nodes, `redis://host:port`, or `rediss://host:port` for TLS to every node.
    pub nodes: Vec<String>,
    /// The certificates of a `rediss://` cluster, when not the system's roots alone.
    pub tls: RedisTls,
    /// Bound on each operation, (re)connection included.
    pub command_timeout: Duration,
    pub claim_ttl: Duration,
    pub window: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| without_credentials(n)).collect();
        f.debug_struct("RedisSettings")
            .field("nodes", &nodes)
            .field("tls", &self.tls)
            .field("command_timeout", &self.command_timeout)
            .field("claim_ttl", &self.claim_ttl)
            .field("window", &self.window)
            .finish()
    }
}

/// The certificates of a TLS cluster (`rediss://` seeds), as PEM. Debug output says which are
/// set, never what they hold.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// The CAs that sign the nodes' certificates, trusted instead of the system's roots.
    pub root_certs: Option<Vec<u8>>,
    /// The certificate chain the client shows, and its private key, for nodes that ask.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("root_certs", &self.root_certs.as_ref().map(|_| "<set>"))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

// === impl RedisTls ===

impl RedisTls {
    /// What redis-rs takes, when anything is set (else the URL's scheme decides, with the
    /// system's roots).
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        if self.root_certs.is_none() && self.client_identity.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .client_identity
                .clone()
                .map(|(client_cert, client_key)| ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: self.root_certs.clone(),
        })
    }
}

/// `url` with the user and password between `://` and `@` replaced.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://<redacted>@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisStore;

    #[test]
    fn certificates_need_rediss_seeds() {
        let settings = |node: &str| RedisSettings {
            nodes: vec![node.into()],
            tls: RedisTls {
                root_certs: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
                client_identity: None,
            },
            command_timeout: Duration::from_millis(500),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(60),
        };
        let error = RedisStore::new(settings("redis://r:6379"))
            .expect_err("certificates for plain TCP")
            .to_string();
        assert!(error.contains("need rediss://"), "{error}");
        let error = RedisStore::new(settings("rediss://r:6379"))
            .expect_err("a CA that is no certificate")
            .to_string();
        assert!(!error.contains("need rediss://"), "{error}");
    }

    #[test]
    fn debug_output_hides_node_credentials() {
        let settings = RedisSettings {
            nodes: vec![
                "redis://:s3cret-pw@redis-0:6379".into(),
                "redis://r1:6379".into(),
            ],
            tls: RedisTls {
                root_certs: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
                client_identity: Some((b"cert".to_vec(), b"the-private-key".to_vec())),
            },
            command_timeout: Duration::from_millis(500),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(60),
        };
        let text = format!("{settings:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            !text.contains("BEGIN") && !text.contains("private"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"RedisTls { root_certs: Some("<set>"), client_identity: Some("<set>") }"#
            ),
            "{text}"
        );
        assert!(text.contains("redis://<redacted>@redis-0:6379"), "{text}");
        assert!(text.contains("redis://r1:6379"), "{text}");
    }
}
