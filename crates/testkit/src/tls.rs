//! A private CA and a loopback server certificate it signed, written as PEM files, and an
//! HTTPS subscriber behind them offering h2 and http/1.1 by ALPN, which answers 200 and
//! notes each request's HTTP version: subscribers behind a private CA (`worker.extra_roots`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The PEM files of a private CA and of a certificate for `localhost` and 127.0.0.1 it signed.
/// Its `Debug` shows the CA's file, not the server's key.
#[derive(Clone)]
pub struct LocalCa {
    /// The CA's certificate: what a client adds to its roots.
    pub ca_file: PathBuf,
    /// The server certificate and its key, as PEM.
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

// === impl LocalCa ===

impl LocalCa {
    /// Makes the CA and the server certificate, writing the CA's PEM file into `dir`.
    pub fn write(dir: &Path) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "spillway test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        let ca_file = dir.join("local-ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA file");
        Self {
            ca_file,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the server certificate and its key into `dir` as `cert_name` and `key_name`, for
    /// a server that reads PEM files. The certificate names no usage, so it serves as a
    /// client's certificate too (signed by the same CA).
    pub fn write_server_files(&self, dir: &Path, cert_name: &str, key_name: &str) {
        std::fs::write(dir.join(cert_name), &self.cert_pem).expect("write the certificate");
        std::fs::write(dir.join(key_name), &self.key_pem).expect("write the key");
    }

    /// A TLS 1.2/1.3 acceptor for the server certificate, offering h2 and http/1.1.
    pub fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("server key");
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("server cert");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

/// An HTTPS subscriber answering 200 to everything; each request's version and body are kept.
#[derive(Debug)]
pub struct TlsSubscriber {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<(http::Version, Bytes)>>>,
}

// === impl TlsSubscriber ===

impl TlsSubscriber {
    pub async fn start(ca: &LocalCa) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = ca.acceptor();
        let received: Arc<Mutex<Vec<(http::Version, Bytes)>>> = Arc::default();
        let kept = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, kept) = (acceptor.clone(), Arc::clone(&kept));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let kept = Arc::clone(&kept);
                            async move {
                                let version = request.version();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(http_body_util::Collected::to_bytes)
                                    .unwrap_or_default();
                                kept.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push((version, body));
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    /// `https://localhost:<port><path>`: the name the certificate holds.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Each request so far: its HTTP version and body.
    pub fn received(&self) -> Vec<(http::Version, Bytes)> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
