//! The fronts' test client: HTTPS on one keep-alive HTTP/1.1 connection from a chosen local
//! address, as a sender on the internet is seen by the front, and a bare request head for
//! what hyper's client does not send (`Expect: 100-continue` without its body).

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
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

    async fn tls_stream(&self) -> Result<TlsStream<TcpStream>, String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(self.from, 0))
            .map_err(|e| format!("bind {}: {e}", self.from))?;
        let tcp = socket
            .connect(self.front)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").expect("name");
        self.tls.connect(name, tcp).await.map_err(|e| e.to_string())
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tls = self.tls_stream().await?;
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

    /// Sends only the head of a request declaring `length` bytes of body and asking for
    /// "100 Continue" first, as a sender of a large body may, and returns the answer that
    /// comes instead: its status and body. The body is never sent.
    pub(super) async fn declare(
        &self,
        source: &str,
        headers: &[(String, String)],
        length: usize,
    ) -> Result<(u16, String), String> {
        let mut stream = self.tls_stream().await?;
        let mut head = format!(
            "POST /v1/hooks/{source} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {length}\r\nexpect: 100-continue\r\n"
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("no status in {head:?}"))?;
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return Ok((status, body[..length].to_owned()));
                }
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("closed after {text:?}"));
            }
            answer.extend_from_slice(&chunk[..n]);
        }
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
