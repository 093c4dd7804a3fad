//! HTTPS connectors behind the SSRF guard, and the helpers every caller of one needs: the
//! check of IP-literal hosts (which hyper does not resolve) and finding the guard's refusal in
//! a client error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;

use crate::guard::{AddressPolicy, GuardedResolver, RefusedAddress};

/// A connector whose names resolve through the guard.
pub type GuardedConnector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// Which certificate authorities a client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// Mozilla's bundle, built in: the same on every host (subscriber deliveries, unless
    /// `worker.extra_roots` adds to it).
    BuiltIn,
    /// The built-in bundle plus the PEM certificates of `extra`: subscribers behind a private
    /// CA, trusted the same on every host that has the file.
    BuiltInAnd { extra: PathBuf },
    /// The operating system's trust store, plus the PEM certificates of `extra` (a private CA,
    /// or a test's). A host whose store is empty or unreadable falls back to the built-in
    /// bundle, with a warning, rather than trusting nothing.
    System { extra: Option<PathBuf> },
}

/// The trust roots could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the extra roots {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    Empty { path: PathBuf },
    #[error("a certificate of {path} is not a usable root: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

// === impl Roots ===

impl Roots {
    /// The root store these roots describe.
    pub fn store(&self) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        match self {
            Self::BuiltIn => store.extend(webpki_roots()),
            Self::BuiltInAnd { extra } => {
                store.extend(webpki_roots());
                add_pem_roots(&mut store, extra)?;
            }
            Self::System { extra } => {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    tracing::warn!(error = %e, "a system trust store could not be read in full");
                }
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!(
                        "the system has no usable trust roots; trusting the built-in bundle"
                    );
                    store.extend(webpki_roots());
                }
                if let Some(path) = extra {
                    add_pem_roots(&mut store, path)?;
                }
            }
        }
        Ok(store)
    }
}

fn webpki_roots() -> impl Iterator<Item = rustls::pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}

fn add_pem_roots(store: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut count = 0;
    for cert in rustls_pemfile::certs(&mut text.as_slice()) {
        let cert = cert.map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        store.add(cert).map_err(|source| TlsError::Root {
            path: path.to_owned(),
            source,
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// An HTTPS connector trusting `roots`, whose names resolve through `policy`'s guard. With
/// `https_only` a plain `http://` URL is refused by the connector itself.
pub fn guarded_connector(
    policy: AddressPolicy,
    roots: &Roots,
    https_only: bool,
) -> Result<GuardedConnector, TlsError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots.store()?)
    .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy));
    // https:// URLs are handed to the TLS layer below.
    http.enforce_http(false);
    // HTTP/2 writes a request as several frames (and TLS as several records): with Nagle's
    // algorithm each waits for the ACK of the one before, which the peer delays by up to
    // 40 ms. `make bench` measured about 164 deliveries a second over h2 without this.
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = if https_only {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    Ok(builder.enable_http1().enable_http2().wrap_connector(http))
}

/// The address of an IP-literal host (`[::1]` or `127.0.0.1`), which hyper's connector
/// connects to without resolving, so the caller checks it against the policy itself.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// An error and its sources on one line, for a log line or a reason recorded with a failed
/// request (hyper's own message is "client error (Connect)", the cause is below it).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        text.push_str(": ");
        text.push_str(&err.to_string());
        current = err.source();
    }
    text
}

/// The guard's refusal, if it is what made a request fail.
pub fn refused_by_guard(e: &(dyn std::error::Error + 'static)) -> Option<RefusedAddress> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<RefusedAddress>())
            {
                return Some(r.clone());
            }
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_are_found_bracketed_or_not_and_names_are_not() {
        assert_eq!(
            literal_ip("127.0.0.1"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(literal_ip("[::1]"), Some("::1".parse().expect("ip")));
        assert_eq!(literal_ip("sns.us-east-1.amazonaws.com"), None);
    }

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("spillway-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = Roots::System {
            extra: Some(empty.clone()),
        }
        .store()
        .expect_err("no certificate");
        assert!(matches!(err, TlsError::Empty { .. }), "{err}");
        let missing = Roots::System {
            extra: Some(dir.join("missing.pem")),
        }
        .store()
        .expect_err("missing file");
        assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
        assert!(Roots::BuiltIn.store().expect("built in").len() > 100);
        let err = Roots::BuiltInAnd {
            extra: empty.clone(),
        }
        .store()
        .expect_err("no certificate");
        assert!(matches!(err, TlsError::Empty { .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
