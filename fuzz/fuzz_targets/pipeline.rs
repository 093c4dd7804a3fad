//! The whole request path of a real ingress (hyper's parser, routing, limits, decoding,
//! verification, keys, Redis, Kafka) on loopback, fed arbitrary requests: raw bytes as they
//! come, or well-formed requests with arbitrary headers and bodies, some signed so that they
//! get past verification. Every request must get an answer that is not a 500, and the server
//! must keep serving. Needs the local stack (`make up`).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spillway_signature::{sign, unix_seconds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const SECRET: &str = "fuzzing-github-secret";

#[derive(Debug, Arbitrary)]
enum Input {
    /// Sent verbatim.
    Raw(Vec<u8>),
    Request {
        method: u8,
        source: u8,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        /// Signed as GitHub signs, under this delivery id, for the `github` source.
        signed: Option<String>,
    },
}

struct Harness {
    runtime: Runtime,
    addr: SocketAddr,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let brokers =
            std::env::var("SPILLWAY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let redis = std::env::var("SPILLWAY_TEST_REDIS_NODES").unwrap_or_else(|_| {
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".into()
        });
        let dir = std::env::temp_dir().join(format!("spillway-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = dir.join("github.secret");
        std::fs::write(&secret, SECRET).expect("secret file");
        let yaml = format!(
            "ingress:\n  listen: 127.0.0.1:0\n  body_read_timeout: 2s\n  \
             header_read_timeout: 2s\n  body_rate_grace: 1s\n  block_failing_clients: null\n\
             admin:\n  listen: 127.0.0.1:0\n\
             telemetry:\n  access_log: false\n\
             kafka:\n  brokers: \"{brokers}\"\n  topic_prefix: \"fuzz.\"\n  delivery_timeout: 5s\n\
             redis:\n  nodes: [{redis}]\n  key_prefix: \"fuzz:{pid}:\"\n\
             sources:\n  \
             github:\n    verify: {{ scheme: github }}\n    max_body_bytes: 65536\n    secrets: [{{ id: k, file: \"{secret}\" }}]\n  \
             open:\n    verify: {{ scheme: none }}\n    max_body_bytes: 65536\n    dedupe: {{ from: json_pointer, pointer: /id }}\n    \
             partition_key: {{ from: header, name: x-device }}\n",
            pid = std::process::id(),
            secret = secret.display(),
        );
        let config_path = dir.join("spillway.yaml");
        std::fs::write(&config_path, yaml).expect("config");
        let config = spillway_config::load(&config_path).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let addr = runtime.block_on(async {
            spillway_kafka::admin::ensure_topics(
                &spillway_kafka::Connection::plain(&brokers),
                &config.topics(),
                1,
                1,
            )
            .await
            .expect("topics on the local broker: is the stack up? (`make up`)");
            let ingress = spillway_ingress::Ingress::from_config(&config).expect("ingress");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(ingress.run(listener, admin, std::future::pending()));
            addr
        });
        Harness { runtime, addr }
    })
}

/// The request's bytes as a client would send them.
fn encode(input: Input) -> Vec<u8> {
    let Input::Request {
        method,
        source,
        headers,
        body,
        signed,
    } = input
    else {
        let Input::Raw(bytes) = input else {
            unreachable!()
        };
        return bytes;
    };
    let method = ["POST", "GET", "PUT", "OPTIONS"][usize::from(method) % 4];
    let path = [
        "/v1/hooks/github",
        "/v1/hooks/open",
        "/v1/hooks/nope",
        "/robots.txt",
    ][usize::from(source) % 4];
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: fuzz\r\n");
    let mut extra: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .filter(|(name, _)| {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !name.eq_ignore_ascii_case("content-length")
                && !name.eq_ignore_ascii_case("transfer-encoding")
                && !name.eq_ignore_ascii_case("host")
        })
        .map(|(name, value)| {
            let value = value
                .into_iter()
                .filter(|b| *b != b'\r' && *b != b'\n')
                .collect();
            (name, value)
        })
        .collect();
    if let Some(id) = signed {
        let id: String = id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        let now = unix_seconds(SystemTime::now());
        let github = &spillway_providers::find("github").expect("preset").scheme;
        let signed = sign(github, SECRET.as_bytes(), &id, now, &body).expect("GitHub signs");
        for (name, value) in signed {
            extra.push((name, value.into_bytes()));
        }
        extra.push(("x-github-delivery".into(), id.into_bytes()));
    }
    let mut bytes = Vec::new();
    head.push_str(&format!("content-length: {}\r\n", body.len()));
    bytes.extend_from_slice(head.as_bytes());
    for (name, value) in extra {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(&value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&body);
    bytes
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let bytes = encode(input);
    let answer = harness.runtime.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(harness.addr)
            .await
            .expect("the ingress stopped accepting connections");
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer));
        match read.await {
            Ok(_) => answer,
            Err(_) => panic!("no answer within 20 s to {} bytes", bytes.len()),
        }
    });
    // Each answer on the connection; the server may also close it without one (bytes that
    // are not HTTP, or a request cut short).
    let text = String::from_utf8_lossy(&answer);
    for line in text.lines().filter(|l| l.starts_with("HTTP/1.1 ")) {
        let status: u16 = line[9..12].parse().unwrap_or(0);
        assert!(
            (100..600).contains(&status) && status != 500,
            "answered {line:?} to {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
});
