//! The fronts' test client: HTTPS on one keep-alive HTTP/1.1 connection from a chosen local
//! address, as a sender on the internet is seen by the front.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use spillway_testkit::spillway::{event_body, TestSource};
use spillway_testkit::Reply;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

/// An HTTPS client on one keep-alive HTTP/1.1 connection from a chosen local address,
/// reconnecting after the connection ends.
pub(super) struct HttpsClient {
    from: IpAddr,
    front: SocketAddr,
    tls: TlsConnector,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl HttpsClient {
    pub(super) fn new(from: IpAddr, front: SocketAddr, root: &CertificateDer<'static>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            from,
            front,
            tls: TlsConnector::from(Arc::new(config)),
            connection: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(self.from, 0))
            .map_err(|e| format!("bind {}: {e}", self.from))?;
        let tcp = socket
            .connect(self.front)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").expect("name");
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    pub(super) async fn post(
        &mut self,
        source: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let mut sender = match self.connection.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = Request::post(format!("/v1/hooks/{source}")).header("host", "localhost");
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request.body(Full::new(body)).expect("request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        self.connection = Some(sender);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A correctly signed event of `source`.
    pub(super) async fn event(&mut self, source: &TestSource, id: &str, n: usize) -> Reply {
        let body = event_body(id, n);
        let signed = source.sign(id, &body, 0);
        self.post(source.name, &signed, body)
            .await
            .unwrap_or_else(|e| panic!("post {id}: {e}"))
    }
}
