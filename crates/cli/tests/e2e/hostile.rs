//! The defences the internet requires, across processes: robots.txt, header-count caps,
//! compressed bodies and decompression bombs, per-source address allowlists behind trusted
//! proxies, a rate limit and a client block shared by two processes, and an HTTP/2
//! rapid-reset flood. After each the process keeps serving.

use std::io::Write;

use bytes::Bytes;
use serde_json::json;
use spillway_testkit::spillway::{
    event_body, post_event, preset_scheme, setup, source, TestSource,
};
use spillway_testkit::{patience, read_topic, redis_nodes, Client, IngressProcess};

fn fenced() -> TestSource {
    TestSource {
        name: "fenced",
        scheme: preset_scheme("github"),
        secret: "fenced-source-secret",
    }
}

fn limited() -> TestSource {
    TestSource {
        name: "limited",
        scheme: preset_scheme("github"),
        secret: "limited-source-secret",
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

async fn still_serving(ingress: &IngressProcess, github: &TestSource, case: &str) {
    let id = format!("ok-{case}-{}", spillway_testkit::unique(""));
    let reply = post_event(&Client::http1(), ingress, github, &id, 0).await;
    assert_eq!(reply.status, 202, "still serving after {case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_compressed_ones_decoded() {
    let github = source("github");
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &redis_nodes(),
        &[github.clone(), fenced(), limited()],
        json!({
            "ingress": {
                // Loopback is the load balancer in front of this ingress.
                "trusted_proxies": ["127.0.0.0/8"],
                "max_headers": 50,
                "block_failing_clients": { "failures": 3, "window": "10000h", "duration": "10000h" },
            },
            "sources": {
                "fenced": { "allow_cidrs": ["198.51.100.0/24"], "max_body_bytes": 65536 },
                // A window so long that no test run crosses one of its edges.
                "limited": { "rate_limit": { "requests": 5, "window": "10000h" } },
            },
        }),
    );
    spillway_testkit::create_topics(
        &brokers,
        &[
            setup.topic("github"),
            setup.topic("fenced"),
            setup.topic("limited"),
        ],
    )
    .await;
    let mut ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let client = Client::http1();

    // robots.txt keeps crawlers out.
    let robots = client
        .get(&format!("http://{}/robots.txt", ingress.addr))
        .await
        .expect("robots");
    assert_eq!(robots.status, 200);
    assert_eq!(
        robots.body,
        Bytes::from_static(b"User-agent: *\nDisallow: /\n")
    );

    // Too many header fields: 431 before anything else.
    let mut headers = github.sign("many", &event_body("many", 0), 0);
    headers.extend((0..60).map(|i| (format!("x-filler-{i}"), "x".to_owned())));
    let reply = client
        .post(&ingress.hook_url("github"), &headers, event_body("many", 0))
        .await
        .expect("post");
    assert_eq!(reply.status, 431);
    still_serving(&ingress, &github, "too many headers").await;

    // A gzip body signed over its decoded form is accepted and stored decoded; the same with
    // zstd; an unknown coding is 415, a corrupt one 400.
    let mut kept = Vec::new();
    for (coding, encode) in [
        ("gzip", gzip as fn(&[u8]) -> Vec<u8>),
        ("zstd", |d: &[u8]| zstd::encode_all(d, 3).expect("zstd")),
    ] {
        let id = format!("compressed-{coding}");
        let body = event_body(&id, 0);
        let mut headers = github.sign(&id, &body, 0);
        headers.push(("content-encoding".into(), coding.into()));
        let reply = client
            .post(
                &ingress.hook_url("github"),
                &headers,
                Bytes::from(encode(&body)),
            )
            .await
            .expect("post");
        assert_eq!(reply.status, 202, "{coding}: {:?}", reply.body);
        kept.push(body);
    }
    let records = read_topic(&setup.brokers, &setup.topic("github")).await;
    for body in &kept {
        assert!(
            records.iter().any(|r| r.value == body.as_ref()),
            "the decoded body is in Kafka"
        );
    }
    for (coding, body, status, code) in [
        ("br", Bytes::from_static(b"x"), 415, "unsupported_encoding"),
        (
            "gzip",
            Bytes::from_static(b"not gzip"),
            400,
            "body_undecodable",
        ),
    ] {
        let id = format!("bad-{coding}");
        let mut headers = github.sign(&id, &body, 0);
        headers.push(("content-encoding".into(), coding.into()));
        let reply = client
            .post(&ingress.hook_url("github"), &headers, body)
            .await
            .expect("post");
        assert_eq!(
            (reply.status.as_u16(), reply.field("error")),
            (status, Some(code.into()))
        );
    }

    // A decompression bomb: 32 MiB of zeros in a few KiB, to a source with a 64 KiB cap.
    let zeros = vec![0u8; 32 << 20];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 65536);
    let mut headers = fenced().sign("bomb", &zeros, 0);
    headers.push(("content-encoding".into(), "gzip".into()));
    headers.push(("x-forwarded-for".into(), "198.51.100.7".into()));
    let reply = client
        .post(&ingress.hook_url("fenced"), &headers, Bytes::from(bomb))
        .await
        .expect("post");
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (413, Some("body_too_large".into()))
    );
    still_serving(&ingress, &github, "a decompression bomb").await;

    // The allowlist, with the client address taken from X-Forwarded-For behind the trusted
    // proxy (loopback): allowed, outside, forged on the left, and no header at all.
    for (forwarded, status) in [
        (Some("198.51.100.7"), 202),
        (Some("203.0.113.1"), 403),
        (Some("198.51.100.7, 203.0.113.1"), 403),
        (None, 403),
    ] {
        let id = format!("fenced-{}", spillway_testkit::unique(""));
        let body = event_body(&id, 0);
        let mut headers = fenced().sign(&id, &body, 0);
        if let Some(f) = forwarded {
            headers.push(("x-forwarded-for".into(), f.into()));
        }
        let reply = client
            .post(&ingress.hook_url("fenced"), &headers, body)
            .await
            .expect("post");
        assert_eq!(
            reply.status.as_u16(),
            status,
            "X-Forwarded-For {forwarded:?}"
        );
        if status == 403 {
            assert_eq!(reply.field("error"), Some("address_not_allowed".into()));
        }
    }

    // A rate limit shared by two ingress processes: five requests pass, whichever process
    // they reach, then both answer 429 with a Retry-After.
    let mut second = setup.spawn_ingress("ingress-2");
    second.wait_ready().await;
    for n in 0..8 {
        let target = if n % 2 == 0 { &ingress } else { &second };
        let reply = post_event(&client, target, &limited(), &format!("limited-{n}"), n).await;
        if n < 5 {
            assert_eq!(reply.status, 202, "request {n} is within the limit");
        } else {
            assert_eq!(reply.status, 429, "request {n} is over the limit");
            assert_eq!(reply.field("error"), Some("rate_limited".into()));
            let after: u64 = reply.headers["retry-after"]
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("Retry-After seconds");
            assert!(after >= 1);
        }
    }
    // A client that keeps failing verification is blocked by every process: three bad
    // signatures are allowed, the fourth blocks the address, then even a valid request from
    // it is refused, by the other process too; another address is not affected.
    let as_client = |ip: &str, id: &str, tampered: bool| {
        let body = event_body(id, 0);
        let signed_body = if tampered {
            b"{}".as_slice()
        } else {
            &body[..]
        };
        let mut headers = github.sign(id, signed_body, 0);
        headers.push(("x-forwarded-for".into(), ip.to_owned()));
        (headers, body)
    };
    for n in 0..4 {
        let (headers, body) = as_client("192.0.2.66", &format!("forged-{n}"), true);
        let reply = client
            .post(&ingress.hook_url("github"), &headers, body)
            .await
            .expect("post");
        assert_eq!(reply.status, 401);
    }
    for target in [&ingress, &second] {
        let (headers, body) = as_client("192.0.2.66", "honest-now", false);
        let reply = client
            .post(&target.hook_url("github"), &headers, body)
            .await
            .expect("post");
        assert_eq!(
            (reply.status.as_u16(), reply.field("error")),
            (403, Some("client_blocked".into()))
        );
        assert!(reply.headers.contains_key("retry-after"));
        let (headers, body) =
            as_client("192.0.2.67", &spillway_testkit::unique("bystander"), false);
        let reply = client
            .post(&target.hook_url("github"), &headers, body)
            .await
            .expect("post");
        assert_eq!(reply.status, 202, "another address is not blocked");
    }
    second.terminate();
    assert!(second.wait_exit().success());

    // HTTP/2 rapid reset (CVE-2023-44487): streams opened and cancelled at once, thousands of
    // them. The server closes the connection instead of doing the work for ever.
    let tcp = tokio::net::TcpStream::connect(ingress.addr)
        .await
        .expect("connect");
    let (mut h2, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let driven = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..10_000 {
        let request = http::Request::post(ingress.hook_url("github"))
            .body(())
            .expect("request");
        let Ok(ready) = h2.ready().await else { break };
        h2 = ready;
        let Ok((_, mut stream)) = h2.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let closed = tokio::time::timeout(patience(), driven)
        .await
        .expect("the server closes a flooding connection");
    assert!(sent < 10_000, "all {sent} resets were taken: {closed:?}");
    still_serving(&ingress, &github, "an HTTP/2 reset flood").await;

    assert!(ingress.is_running());
    let metrics = ingress.metrics().await;
    for line in [
        "spillway_http_requests_total{outcome=\"robots_txt\",source=\"_unknown\"} 1",
        "spillway_blocked_clients_total{source=\"github\"} 1",
        "spillway_http_requests_total{outcome=\"blocked\",source=\"github\"} 1",
        "spillway_http_requests_total{outcome=\"forbidden\",source=\"fenced\"} 3",
        "spillway_http_requests_total{outcome=\"unsupported_encoding\",source=\"github\"} 1",
        "spillway_http_requests_total{outcome=\"too_large\",source=\"fenced\"} 1",
        // Of the three refused, this process answered one (request 6).
        "spillway_http_shed_requests_total{reason=\"rate_limited\",source=\"limited\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}
