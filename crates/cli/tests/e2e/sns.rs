//! AWS SNS through a running ingress, against a local stand-in for AWS's HTTPS endpoints (its
//! own CA, given to the ingress as `ingress.sns.extra_roots`): notifications signed with RSA
//! (SignatureVersion 1 and 2) are verified with the certificate fetched once from the
//! message's SigningCertURL and land in Kafka under their MessageId; a subscription is
//! confirmed by visiting its SubscribeURL and written nowhere, unless the source stores its
//! handshakes; a topic, a certificate URL or a certificate that is not allowed is refused with
//! its code; a certificate that cannot be fetched is a 503 to retry. (That the verification
//! matches AWS's is proven with real AWS messages in spillway-signature's tests/sns.rs.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ring::signature::RsaKeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Map, Value};
use spillway_core::headers;
use spillway_testkit::spillway::ready_ingress;
use spillway_testkit::{read_topic, Client, IngressProcess, Reply};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// An RSA key made with `openssl genpkey -algorithm RSA` for this test only.
const SIGNING_KEY: &str = include_str!("fixtures/sns-signing-key.pem");
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:meter-readings";

/// The stand-in for AWS: serves the signing certificate and answers confirmations, recording
/// every path it is asked for.
struct FakeAws {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAws {
    async fn start(tls: rustls::ServerConfig, signing_pem: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, log, pem) = (acceptor.clone(), log.clone(), signing_pem.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (log, pem) = (log.clone(), pem.clone());
                        async move {
                            let path = req.uri().path_and_query().map(|p| p.to_string());
                            let path = path.unwrap_or_default();
                            log.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(path.clone());
                            let (status, body) = match path.as_str() {
                                "/SimpleNotificationService-e2e.pem" => (200, pem),
                                "/garbage.pem" => (200, "not a certificate".to_owned()),
                                "/broken.pem" => (500, String::new()),
                                "/hang.pem" => std::future::pending().await,
                                p if p.starts_with("/?Action=ConfirmSubscription") => {
                                    (200, "<ConfirmSubscriptionResponse/>".to_owned())
                                }
                                _ => (404, String::new()),
                            };
                            let mut response = Response::new(Full::new(Bytes::from(body)));
                            *response.status_mut() = StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, asked, task }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn asked(&self, path: &str) -> usize {
        let asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.iter().filter(|p| p.as_str() == path).count()
    }
}

/// Signs SNS messages as AWS does with SignatureVersion 2 (SHA256withRSA). ring signs RSA
/// with SHA-256 only; version 1 (SHA1withRSA) is proven with real AWS messages in
/// spillway-signature's tests/sns.rs, and the ingress treats both alike.
struct Signer {
    key: RsaKeyPair,
    cert_url: String,
}

impl Signer {
    /// `fields` as an SNS message, signed.
    fn message(&self, fields: &[(&str, &str)]) -> String {
        let mut message = Map::new();
        for (k, v) in fields {
            message.insert((*k).to_owned(), json!(v));
        }
        message.insert("SignatureVersion".into(), json!("2"));
        message.insert("SigningCertURL".into(), json!(self.cert_url));
        // AWS's rule, written out independently of the ingress's: each signed field present,
        // in byte order, as `Name\nvalue\n`.
        let signed: &[&str] = match fields.iter().find(|(k, _)| *k == "Type") {
            Some((_, "Notification")) => &[
                "Message",
                "MessageId",
                "Subject",
                "Timestamp",
                "TopicArn",
                "Type",
            ],
            _ => &[
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ],
        };
        let mut canonical = String::new();
        for name in signed {
            if let Some((_, v)) = fields.iter().find(|(k, _)| k == name) {
                canonical.push_str(&format!("{name}\n{v}\n"));
            }
        }
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                canonical.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        message.insert(
            "Signature".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(signature)),
        );
        Value::Object(message).to_string()
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn pem_der(pem: &str) -> Vec<u8> {
    let text: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

/// A CA, a server certificate for `localhost` from it, and the server's TLS config.
fn tls_for_localhost() -> (String, rustls::ServerConfig) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "e2e fake AWS CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = params.self_signed(&ca_key).expect("ca");
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server cert");
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(server.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    )
    .expect("tls");
    (ca.pem(), tls)
}

/// The RSA signing certificate SNS would serve, self-signed with the test key.
fn signing_certificate() -> String {
    let key = KeyPair::from_pem_and_sign_algo(SIGNING_KEY, &rcgen::PKCS_RSA_SHA256).expect("rsa");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "sns.amazonaws.com");
    params.self_signed(&key).expect("signing cert").pem()
}

async fn post(ingress: &IngressProcess, source: &str, body: &str) -> Reply {
    let h = vec![(
        "content-type".to_owned(),
        "text/plain; charset=UTF-8".to_owned(),
    )];
    Client::http1()
        .send(
            Method::POST,
            &ingress.hook_url(source),
            &h,
            Bytes::from(body.to_owned()),
        )
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_messages_are_verified_with_the_fetched_certificate_and_subscriptions_confirmed() {
    let (ca_pem, tls) = tls_for_localhost();
    let aws = FakeAws::start(tls, signing_certificate()).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("fake-aws-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("ca");
    let sns_source = |store: bool| json!({ "verify": { "scheme": "aws-sns" }, "topic_arns": [TOPIC], "store_handshakes": store });
    let (setup, ingress) = ready_ingress(
        &[],
        json!({
            "ingress": { "sns": {
                "hosts": [format!("localhost:{}", aws.addr.port())],
                "extra_roots": ca_file.display().to_string(),
                // The stand-in is on loopback, which the SSRF guard refuses otherwise.
                "allow_cidrs": ["127.0.0.0/8"],
                "timeout": "300ms",
            } },
            "sources": { "sns": sns_source(false), "sns-stored": sns_source(true) },
        }),
    )
    .await;
    let cert = "/SimpleNotificationService-e2e.pem";
    let signer = Signer {
        key: RsaKeyPair::from_pkcs8(&pem_der(SIGNING_KEY)).expect("key"),
        cert_url: aws.url(cert),
    };
    let ts = now_rfc3339();
    let note = |id: &'static str| {
        signer.message(&[
            ("Type", "Notification"),
            ("MessageId", id),
            ("TopicArn", TOPIC),
            ("Subject", "reading"),
            ("Message", "{\"meter\":\"m-1\",\"kwh\":3.2}\nsecond line"),
            ("Timestamp", &ts),
        ])
    };

    // Notifications: 202, in Kafka once under their MessageId; a retry is a duplicate; the
    // certificate was fetched once for all of them.
    let first = note("0b2c2c4e-0001");
    assert_eq!(post(&ingress, "sns", &first).await.status, 202);
    assert_eq!(post(&ingress, "sns", &first).await.status, 200, "a retry");
    let reply = post(&ingress, "sns", &note("0b2c2c4e-0002")).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let records = read_topic(&setup.brokers, &setup.topic("sns")).await;
    let mut keys: Vec<_> = records
        .iter()
        .map(|r| r.header(headers::DEDUPE_KEY))
        .collect();
    keys.sort();
    assert_eq!(keys, [Some("0b2c2c4e-0001"), Some("0b2c2c4e-0002")]);
    let record = records
        .iter()
        .find(|r| r.header(headers::DEDUPE_KEY) == Some("0b2c2c4e-0001"))
        .expect("first");
    assert_eq!(record.value, first.as_bytes());
    assert_eq!(aws.asked(cert), 1, "fetched once, then cached");

    // One changed byte of the message: 401.
    let forged = first.replace("kwh", "kWh");
    let reply = post(&ingress, "sns", &forged).await;
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (401, Some("signature_mismatch".into()))
    );

    // Another topic, even correctly signed: 403, and no certificate is fetched for it.
    let other = signer.message(&[
        ("Type", "Notification"),
        ("MessageId", "other-1"),
        ("TopicArn", "arn:aws:sns:us-east-1:999999999999:not-ours"),
        ("Message", "hi"),
        ("Timestamp", &ts),
    ]);
    let reply = post(&ingress, "sns", &other).await;
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (403, Some("topic_not_allowed".into()))
    );

    // A certificate URL off the allowed hosts: 400, nothing fetched.
    let elsewhere = Signer {
        key: RsaKeyPair::from_pkcs8(&pem_der(SIGNING_KEY)).expect("key"),
        cert_url: "https://evil.example/cert.pem".into(),
    };
    let reply = post(
        &ingress,
        "sns",
        &elsewhere.message(&[
            ("Type", "Notification"),
            ("MessageId", "x"),
            ("TopicArn", TOPIC),
            ("Message", "m"),
            ("Timestamp", &ts),
        ]),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (400, Some("certificate_url_refused".into()))
    );

    // A certificate that cannot be had: 503 with Retry-After (the host failing, or not
    // answering in time), and no internal error text; one the URL does not serve (404) or that
    // is not a certificate: 401.
    for (path, status, code) in [
        ("/missing.pem", 401, "certificate_invalid"),
        ("/broken.pem", 503, "provider_unreachable"),
        ("/hang.pem", 503, "provider_unreachable"),
        ("/garbage.pem", 401, "certificate_invalid"),
    ] {
        let s = Signer {
            key: RsaKeyPair::from_pkcs8(&pem_der(SIGNING_KEY)).expect("key"),
            cert_url: aws.url(path),
        };
        let body = s.message(&[
            ("Type", "Notification"),
            ("MessageId", "y"),
            ("TopicArn", TOPIC),
            ("Message", "m"),
            ("Timestamp", &ts),
        ]);
        let reply = post(&ingress, "sns", &body).await;
        assert_eq!(
            (reply.status.as_u16(), reply.field("error")),
            (status, Some(code.into())),
            "{path}"
        );
        if status == 503 {
            assert!(reply.headers.contains_key("retry-after"), "{path}");
            let message = reply.field("message").unwrap_or_default();
            assert!(
                !message.contains("127.0.0.1") && !message.contains("localhost"),
                "{message}"
            );
        }
    }

    // A subscription confirmation: the SubscribeURL is visited, 200, nothing written.
    let confirm_path = "/?Action=ConfirmSubscription&TopicArn=meters&Token=tok-1";
    let confirmation = |id: &'static str| {
        signer.message(
            &[
                ("Type", "SubscriptionConfirmation"),
                ("MessageId", id),
                ("Token", "tok-1"),
                ("TopicArn", TOPIC),
                ("Message", "You have chosen to subscribe to the topic.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
                ("SubscribeURL", &aws.url(confirm_path)),
                ("Timestamp", &ts),
            ],
        )
    };
    let reply = post(&ingress, "sns", &confirmation("sub-1")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["confirmed"], TOPIC);
    assert_eq!(aws.asked(confirm_path), 1);
    assert_eq!(
        read_topic(&setup.brokers, &setup.topic("sns")).await.len(),
        2,
        "still the two notifications"
    );

    // An unsubscribe confirmation is recorded and answered.
    let unsubscribed = signer.message(&[
        ("Type", "UnsubscribeConfirmation"),
        ("MessageId", "unsub-1"),
        ("Token", "tok-2"),
        ("TopicArn", TOPIC),
        ("Message", "You have been unsubscribed."),
        (
            "SubscribeURL",
            &aws.url("/?Action=ConfirmSubscription&Token=tok-2"),
        ),
        ("Timestamp", &ts),
    ]);
    let reply = post(&ingress, "sns", &unsubscribed).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["recorded"], "UnsubscribeConfirmation");

    // A source that stores its handshakes: the same answer, and the confirmation in Kafka.
    let reply = post(&ingress, "sns-stored", &confirmation("sub-2")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["confirmed"], TOPIC);
    let stored = read_topic(&setup.brokers, &setup.topic("sns-stored")).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].header(headers::DEDUPE_KEY), Some("sub-2"));

    let metrics = ingress.metrics().await;
    for line in [
        r#"spillway_handshake_requests_total{kind="sns_subscription_confirmation",result="answered",source="sns"} 2"#,
        r#"spillway_signature_verified_requests_total{key_id="SimpleNotificationService-e2e",source="sns"} 5"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
