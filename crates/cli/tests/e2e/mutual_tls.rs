//! Mutual TLS for device fleets: a source that requires a client certificate from the fleet's
//! CA takes the certificate's subject as the device id; other sources share the listener
//! without one; a certificate from another CA does not get through the handshake.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use spillway_core::headers;
use spillway_testkit::spillway::{event_body, source, spillway_bin};
use spillway_testkit::{read_topic, redis_nodes, ConfigDoc, IngressProcess};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn certificate_authority(name: &str) -> Issuer {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    Issuer { cert, key }
}

/// A client certificate for `device`, issued by `ca`: (certificate, private key).
fn device_certificate(
    ca: &Issuer,
    device: &str,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, device);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("signed");
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// POSTs `body` with `headers` over TLS, presenting `identity` if given: the status and body,
/// or the error that stopped it.
async fn post(
    ingress: &IngressProcess,
    server_cert: CertificateDer<'static>,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_cert).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(ingress.addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = http::Request::post(format!("https://localhost{path}"));
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let response = sender
        .send_request(request.body(Full::new(body)).expect("request"))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_source_takes_the_device_id_from_its_client_certificate() {
    let fleet_ca = certificate_authority("Meter Fleet CA");
    let rogue_ca = certificate_authority("Someone Else's CA");
    let server = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("tls.crt"), server.cert.pem()).expect("cert");
    std::fs::write(path("tls.key"), server.key_pair.serialize_pem()).expect("key");
    std::fs::write(path("fleet-ca.crt"), fleet_ca.cert.pem()).expect("ca");
    let github = source("github");
    std::fs::write(path("github.secret"), github.secret).expect("secret");
    let brokers = spillway_testkit::kafka_brokers();
    let prefix = format!("{}.", spillway_testkit::unique("e2e."));
    let file = |name: &str| path(name).display().to_string();
    ConfigDoc::new(json!({
        "ingress": {
            "listen": "127.0.0.1:0",
            "tls": {
                "cert_file": file("tls.crt"),
                "key_file": file("tls.key"),
                "client_ca_file": file("fleet-ca.crt"),
            },
        },
        "admin": { "listen": "127.0.0.1:0" },
        "kafka": { "brokers": brokers, "topic_prefix": prefix, "recreate_producer_on_timeout": true },
        "redis": { "nodes": redis_nodes(), "key_prefix": prefix },
        "sources": {
            "meters": {
                "verify": { "scheme": "none" },
                "require_client_cert": true,
                "dedupe": { "from": "json_pointer", "pointer": "/id" },
                "partition_key": { "from": "client_certificate" },
            },
            "github": {
                "verify": { "scheme": "github" },
                "secrets": [{ "id": "k", "file": file("github.secret") }],
            },
        },
    }))
    .write(&path("spillway.yaml"));
    let meters_topic = format!("{prefix}meters");
    spillway_testkit::create_topics(&brokers, &[meters_topic.clone(), format!("{prefix}github")])
        .await;
    let ingress = IngressProcess::spawn(
        &spillway_bin(),
        &path("spillway.yaml"),
        &[],
        path("ingress.log"),
    );
    ingress.wait_ready().await;
    let server_cert = server.cert.der().clone();
    let json = [("content-type".to_owned(), "application/json".to_owned())];

    let id = spillway_testkit::unique("reading-");
    let (status, body) = post(
        &ingress,
        server_cert.clone(),
        Some(device_certificate(&fleet_ca, "meter-0042")),
        "/v1/hooks/meters",
        &json,
        event_body(&id, 1),
    )
    .await
    .expect("answered");
    assert_eq!(status, 202, "a fleet device is accepted: {body}");

    let (status, body) = post(
        &ingress,
        server_cert.clone(),
        None,
        "/v1/hooks/meters",
        &json,
        event_body("no-cert", 2),
    )
    .await
    .expect("answered");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client_certificate_required"), "{body}");

    let rogue = post(
        &ingress,
        server_cert.clone(),
        Some(device_certificate(&rogue_ca, "meter-evil")),
        "/v1/hooks/meters",
        &json,
        event_body("rogue", 3),
    )
    .await;
    assert!(
        rogue.is_err(),
        "a certificate from another CA fails the handshake: {rogue:?}"
    );

    // The listener is shared: a provider without a certificate still reaches its source.
    let body = event_body("gh-1", 4);
    let (status, answer) = post(
        &ingress,
        server_cert,
        None,
        "/v1/hooks/github",
        &github.sign("gh-1", &body, 0),
        body,
    )
    .await
    .expect("answered");
    assert_eq!(status, 202, "{answer}");

    let records = read_topic(&brokers, &meters_topic).await;
    assert_eq!(records.len(), 1, "only the certified device's reading");
    let record = &records[0];
    assert_eq!(record.header(headers::DEVICE_ID), Some("meter-0042"));
    assert_eq!(
        record.key.as_deref(),
        Some(b"meter-0042".as_slice()),
        "the device id is the partition key"
    );
}
