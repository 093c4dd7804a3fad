//! The Redis Cluster's TLS files (`redis.tls`), read and checked once at start, so that a
//! wrong file stops the ingress with its name instead of failing every connection later.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spillway_config::RedisTlsConfig;
use spillway_store::RedisTls;

use crate::tls::TlsError;

/// Reads the files `config` names: each certificate file must hold a certificate, the key file
/// a private key.
pub(crate) fn read_redis_tls(config: &RedisTlsConfig) -> Result<RedisTls, TlsError> {
    let root_certs = config
        .ca_file
        .as_deref()
        .map(read_certificates)
        .transpose()?;
    let client_identity = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => Some((read_certificates(cert)?, read_key(key)?)),
        // The config's check refuses one without the other.
        _ => None,
    };
    Ok(RedisTls {
        root_certs,
        client_identity,
    })
}

/// The file's PEM, once it is known to hold at least one certificate.
fn read_certificates(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::new(path, e.into()))?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|e| TlsError::new(path, e.into()))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(TlsError::new(path, "no certificate in the file".into()));
    }
    Ok(pem)
}

/// The file's PEM, once it is known to hold a private key.
fn read_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::new(path, e.into()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::new(path, e.into()))?;
    Ok(pem)
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
