//! The Redis Cluster's TLS files (`redis.tls`), read and checked once at start, so that a
//! wrong file stops the ingress with its name: redis-rs parses them when the store is built
//! without naming the file, and checks the key against its certificate only at each connect.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use spillway_config::RedisTlsConfig;
use spillway_store::RedisTls;

use crate::tls::TlsError;

/// Reads the files `config` names and checks them as a TLS client would use them: the CAs
/// must be certificates rustls takes as trust anchors, and the client's key must be the one of
/// its certificate.
pub(crate) fn read_redis_tls(config: &RedisTlsConfig) -> Result<RedisTls, TlsError> {
    let mut roots = RootCertStore::empty();
    let root_certs = match config.ca_file.as_deref() {
        Some(ca_file) => {
            let (pem, certificates) = read_certificates(ca_file)?;
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|e| TlsError::new(ca_file, e.into()))?;
            }
            Some(pem)
        }
        None => None,
    };
    let client_identity = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let (cert_pem, chain) = read_certificates(cert_file)?;
            let key_pem = std::fs::read(key_file).map_err(|e| TlsError::new(key_file, e.into()))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| TlsError::new(key_file, e.into()))?;
            // The pair as the handshake will use it: a key of another certificate, or of a
            // kind ring cannot sign with, is refused here.
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::new(key_file, e.into()))?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::new(key_file, e.into()))?;
            Some((cert_pem, key_pem))
        }
        // The config's check refuses one without the other.
        _ => None,
    };
    Ok(RedisTls {
        root_certs,
        client_identity,
    })
}

/// The file's PEM and its certificates, at least one.
fn read_certificates(path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::new(path, e.into()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(path, e.into()))?;
    if certificates.is_empty() {
        return Err(TlsError::new(path, "no certificate in the file".into()));
    }
    Ok((pem, certificates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn the_files_are_read_as_they_are_once_they_hold_what_they_should() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = rcgen::generate_simple_self_signed(vec!["redis".into()]).expect("certificate");
        let ca_file = write(dir.path(), "ca.crt", &ca.cert.pem());
        let key_file = write(dir.path(), "client.key", &ca.key_pair.serialize_pem());
        let config = RedisTlsConfig {
            ca_file: Some(ca_file.clone()),
            client_cert_file: Some(ca_file),
            client_key_file: Some(key_file),
        };
        let tls = read_redis_tls(&config).expect("readable");
        assert_eq!(tls.root_certs.as_deref(), Some(ca.cert.pem().as_bytes()));
        let (cert, key) = tls.client_identity.expect("a client identity");
        assert_eq!(cert, ca.cert.pem().into_bytes());
        assert_eq!(key, ca.key_pair.serialize_pem().into_bytes());
        assert!(read_redis_tls(&RedisTlsConfig::default())
            .expect("nothing to read")
            .root_certs
            .is_none());
    }

    #[test]
    fn a_client_key_of_another_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = rcgen::generate_simple_self_signed(vec!["one".into()]).expect("certificate");
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).expect("certificate");
        let config = RedisTlsConfig {
            ca_file: None,
            client_cert_file: Some(write(dir.path(), "client.crt", &one.cert.pem())),
            client_key_file: Some(write(
                dir.path(),
                "other.key",
                &other.key_pair.serialize_pem(),
            )),
        };
        let error = read_redis_tls(&config)
            .expect_err("a mismatched key")
            .to_string();
        assert!(error.contains("other.key"), "{error}");
    }

    #[test]
    fn a_file_without_what_it_should_hold_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = write(dir.path(), "empty.crt", "not a certificate\n");
        let config = RedisTlsConfig {
            ca_file: Some(empty.clone()),
            ..RedisTlsConfig::default()
        };
        let error = read_redis_tls(&config)
            .expect_err("no certificate")
            .to_string();
        assert!(
            error.contains("empty.crt") && error.contains("no certificate in the file"),
            "{error}"
        );
        let config = RedisTlsConfig {
            client_cert_file: Some(empty.clone()),
            client_key_file: Some(empty),
            ..RedisTlsConfig::default()
        };
        assert!(read_redis_tls(&config).is_err());
        let missing = RedisTlsConfig {
            ca_file: Some(dir.path().join("missing.crt")),
            ..RedisTlsConfig::default()
        };
        let error = read_redis_tls(&missing).expect_err("missing").to_string();
        assert!(error.contains("missing.crt"), "{error}");
    }
}
