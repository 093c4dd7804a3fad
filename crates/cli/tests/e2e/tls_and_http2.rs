//! Transport: HTTPS with TLS 1.2 and 1.3 (h2 and http/1.1 by ALPN), and HTTP/2 with prior
//! knowledge on a plain port.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use spillway_testkit::spillway::{event_body, post_event, setup, source, TestSource};
use spillway_testkit::{redis_nodes, Client};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn github() -> TestSource {
    source("github")
}

fn signed_request(url: &str, id: &str) -> Request<Full<Bytes>> {
    let body = event_body(id, 3);
    let mut request = Request::post(url);
    for (k, v) in github().sign(id, &body, 0) {
        request = request.header(k, v);
    }
    request.body(Full::new(body)).expect("request")
}

async fn https_post(
    addr: std::net::SocketAddr,
    cert: CertificateDer<'static>,
    alpn: &[u8],
    version: &'static rustls::SupportedProtocolVersion,
    id: &str,
) -> (u16, String, rustls::ProtocolVersion) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (_, session) = tls.get_ref();
    let negotiated = session.protocol_version().expect("version");
    assert_eq!(session.alpn_protocol(), Some(alpn), "ALPN");
    let url = format!("https://localhost:{}/v1/hooks/github", addr.port());
    let response = if alpn == b"h2" {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        sender
            .send_request(signed_request(&url, id))
            .await
            .expect("h2 request")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        sender
            .send_request(signed_request(&url, id))
            .await
            .expect("h1 request")
    };
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        negotiated,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_tls12_and_tls13_over_h2_and_http1() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let brokers = spillway_testkit::kafka_brokers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, certified.cert.pem()).expect("cert");
    std::fs::write(&key_file, certified.key_pair.serialize_pem()).expect("key");
    let tls = json!({
        "ingress": {
            "tls": {
                "cert_file": cert_file.display().to_string(),
                "key_file": key_file.display().to_string(),
            }
        }
    });
    let setup = setup(&brokers, &redis_nodes(), &[github()], tls);
    spillway_testkit::create_topics(&brokers, &[setup.topic("github")]).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;

    let der = certified.cert.der().clone();
    let cases: [(
        &[u8],
        &'static rustls::SupportedProtocolVersion,
        rustls::ProtocolVersion,
    ); 4] = [
        (
            b"h2",
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            b"http/1.1",
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            b"h2",
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            b"http/1.1",
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ];
    for (i, (alpn, version, expected)) in cases.into_iter().enumerate() {
        let id = format!("tls-{i}-{}", spillway_testkit::unique(""));
        let (status, body, negotiated) =
            https_post(ingress.addr, der.clone(), alpn, version, &id).await;
        assert_eq!(status, 202, "{}: {body}", String::from_utf8_lossy(alpn));
        assert_eq!(negotiated, expected);
    }

    // Plain HTTP on a TLS port is refused, not served.
    let plain = Client::http1()
        .post(&ingress.hook_url("github"), &[], Bytes::new())
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be answered on the TLS port: {plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_on_the_plain_port() {
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(&brokers, &redis_nodes(), &[github()], json!({}));
    spillway_testkit::create_topics(&brokers, &[setup.topic("github")]).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let id = spillway_testkit::unique("h2c-");
    let reply = post_event(&Client::http2(), &ingress, &github(), &id, 1).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_peers_may_send_only_the_protocols_default_window_ahead() {
    // What an HTTP/2 peer sends before the ingress reads it waits in the connection's buffers,
    // outside the body budget: the windows stay at HTTP/2's 65,535 bytes (hyper's are 1 MiB).
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(&brokers, &redis_nodes(), &[github()], json!({}));
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let tcp = TcpStream::connect(ingress.addr).await.expect("connect");
    let (h2, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    // One whole exchange first, so the server's settings and window updates have arrived.
    let mut h2 = h2.ready().await.expect("ready");
    let robots = Request::get(format!("http://{}/robots.txt", ingress.addr))
        .body(())
        .expect("request");
    let (answer, _) = h2.send_request(robots, true).expect("send");
    assert_eq!(answer.await.expect("answer").status(), 200);

    let mut h2 = h2.ready().await.expect("ready");
    // A length the source takes (its max_body_bytes is 960 KiB), so that no 413 ends the stream.
    let upload = Request::post(ingress.hook_url("github"))
        .header("content-length", "524288")
        .body(())
        .expect("request");
    let (_answer, mut stream) = h2.send_request(upload, false).expect("send");
    stream.reserve_capacity(512 * 1024);
    let granted = futures::future::poll_fn(|cx| stream.poll_capacity(cx))
        .await
        .expect("capacity")
        .expect("capacity");
    // The smaller of the stream's window and the connection's.
    assert_eq!(
        granted, 65_535,
        "bytes the peer may send ahead of the reads"
    );
}
