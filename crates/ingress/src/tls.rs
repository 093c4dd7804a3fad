//! TLS for the webhook listener: the rustls acceptor (optionally asking for client
//! certificates) and the device id read from a verified client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A TLS file that cannot be used, and why: rustls's, the PEM reader's or our own reason.
#[derive(Debug, thiserror::Error)]
#[error("TLS file {path}: {source}")]
pub struct TlsError {
    path: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

// === impl TlsError ===

impl TlsError {
    pub(crate) fn new(path: &Path, source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Loads a PEM certificate chain and key into a TLS 1.2/1.3 acceptor offering h2 and http/1.1.
pub fn load_tls(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let tls_error = TlsError::new;
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| tls_error(cert_file, e.into()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert_file, e.into()))?;
    if certs.is_empty() {
        return Err(tls_error(cert_file, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| tls_error(key_file, e.into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_error(cert_file, e.into()))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca_file).map_err(|e| tls_error(ca_file, e.into()))?
            {
                let cert = cert.map_err(|e| tls_error(ca_file, e.into()))?;
                roots.add(cert).map_err(|e| tls_error(ca_file, e.into()))?;
            }
            if roots.is_empty() {
                return Err(tls_error(ca_file, "no certificate in the file".into()));
            }
            // Optional at the handshake: sources that do not require a certificate share the
            // listener. A certificate that is offered must chain to these CAs, or the
            // handshake fails.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_error(ca_file, e.into()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(cert_file, e.into()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject of a verified client certificate, as a request extension: the device id of a
/// mutual-TLS source.
#[derive(Debug, Clone)]
pub struct ClientSubject(pub Arc<str>);

/// The device id of a client certificate: its subject's common name, or the whole subject
/// (RFC 4514) when it has none.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = match subject.iter_common_name().next() {
        Some(cn) => cn.as_str().ok()?.to_owned(),
        None => subject.to_string(),
    };
    (!name.is_empty()).then_some(name)
}
