//! Hostile and broken input: each gets its status (and a JSON error where the request got as
//! far as Spillway), and the process keeps serving valid requests after every one.

use bytes::Bytes;
use serde_json::json;
use spillway_testkit::spillway::{all_sources, event_body, post_event, setup, TestSource};
use spillway_testkit::{patience, redis_nodes, Client, IngressProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes and returns the status code and the whole answer text.
async fn raw(ingress: &IngressProcess, request: Vec<u8>) -> (u16, String) {
    let mut stream = TcpStream::connect(ingress.addr).await.expect("connect");
    // The server may answer and close before the whole request is written (413 on a body
    // it will not read): a failed write is part of the scenario, the answer is what counts.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(patience(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // Enough once the head and a complete (small) body are in.
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if length.is_some_and(|len| body.len() >= len) {
                        break;
                    }
                }
            }
            Err(_) => panic!("no answer within {:?}", patience()),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, text)
}

async fn still_serving(ingress: &IngressProcess, github: &TestSource, n: usize) {
    let id = format!("ok-{n}-{}", spillway_testkit::unique(""));
    let reply = post_event(&Client::http1(), ingress, github, &id, n).await;
    assert_eq!(
        reply.status, 202,
        "still serving after case {n}: {:?}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_the_process_keeps_serving() {
    let sources: Vec<TestSource> = all_sources()
        .into_iter()
        .filter(|s| s.name == "github" || s.name == "stripe")
        .collect();
    let github = sources[0].clone();
    let mut tiny = github.clone();
    tiny.name = "tiny";
    let mut all = sources.clone();
    all.push(tiny.clone());
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &redis_nodes(),
        &all,
        json!({
            "ingress": { "max_header_bytes": 16384 },
            // Stripe's key set here, not left to the preset: a body without it is refused
            // rather than keyed by its hash.
            "sources": {
                "tiny": { "max_body_bytes": 1024 },
                "stripe": { "dedupe": { "from": "json_pointer", "pointer": "/id" } },
            },
            // Also: the access log turned off leaves no request lines.
            "telemetry": { "access_log": false },
        }),
    );
    let topics: Vec<String> = all.iter().map(|s| setup.topic(s.name)).collect();
    spillway_testkit::create_topics(&brokers, &topics).await;
    let mut ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let host = format!("Host: {}\r\n", ingress.addr);
    let mut case = 0;

    // 1. Not HTTP at all.
    let (status, _) = raw(&ingress, b"GARBAGE\r\n\r\n".to_vec()).await;
    assert_eq!(status, 400);
    case += 1;
    still_serving(&ingress, &github, case).await;

    // 2. A header larger than the header cap.
    let big = format!(
        "POST /v1/hooks/github HTTP/1.1\r\n{host}X-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let (status, _) = raw(&ingress, big.into_bytes()).await;
    assert_eq!(status, 431);
    case += 1;
    still_serving(&ingress, &github, case).await;

    // 3. Too many headers.
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _) = raw(
        &ingress,
        format!("POST /v1/hooks/github HTTP/1.1\r\n{host}{many}Content-Length: 0\r\n\r\n")
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 431);
    case += 1;
    still_serving(&ingress, &github, case).await;

    // 4. A huge Content-Length: refused before reading anything.
    let (status, text) = raw(
        &ingress,
        format!("POST /v1/hooks/tiny HTTP/1.1\r\n{host}Content-Length: 99999999999999\r\n\r\n")
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert!(text.contains(r#""error":"body_too_large""#), "{text}");
    case += 1;
    still_serving(&ingress, &github, case).await;

    // 5. A chunked body that grows over the cap while it is read.
    let mut chunked =
        format!("POST /v1/hooks/tiny HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("400\r\n{}\r\n", "z".repeat(1024)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(&ingress, chunked).await;
    assert_eq!(status, 413);
    assert!(text.contains(r#""error":"body_too_large""#), "{text}");
    case += 1;
    still_serving(&ingress, &github, case).await;

    // 6. A Content-Length that is not a number.
    let (status, _) = raw(
        &ingress,
        format!("POST /v1/hooks/github HTTP/1.1\r\n{host}Content-Length: abc\r\n\r\n").into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    case += 1;
    still_serving(&ingress, &github, case).await;

    let client = Client::http1();
    let stripe = &sources[1];
    // 7. Correctly signed, but not JSON where the dedupe key is a JSON pointer.
    let body = Bytes::from_static(b"this is not json");
    let reply = client
        .post(
            &ingress.hook_url("stripe"),
            &stripe.sign("x", &body, 0),
            body,
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.field("error").as_deref(), Some("body_not_json"));

    // 8. Unknown source, unknown path, wrong method.
    let reply = client
        .post(
            &format!("http://{}/v1/hooks/nope", ingress.addr),
            &[],
            Bytes::new(),
        )
        .await
        .expect("post");
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (404, Some("unknown_source".into()))
    );
    let reply = client
        .post(&format!("http://{}/hooks", ingress.addr), &[], Bytes::new())
        .await
        .expect("post");
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (404, Some("not_found".into()))
    );
    let reply = client.get(&ingress.hook_url("github")).await.expect("get");
    assert_eq!(reply.status, 405);
    assert_eq!(
        reply
            .headers
            .get("allow")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("POST")
    );

    // 9. No signature; a signature that is not hex; the preset's dedupe header missing (an
    // authentic request all the same: keyed by its body's hash, not refused).
    let body = event_body("s", 1);
    let reply = client
        .post(&ingress.hook_url("github"), &[], body.clone())
        .await
        .expect("post");
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (401, Some("signature_missing".into()))
    );
    let bad = vec![(
        "x-hub-signature-256".to_owned(),
        "sha256=not-hex".to_owned(),
    )];
    let reply = client
        .post(&ingress.hook_url("github"), &bad, body.clone())
        .await
        .expect("post");
    assert_eq!(
        (reply.status.as_u16(), reply.field("error")),
        (400, Some("malformed_header".into()))
    );
    let no_delivery: Vec<(String, String)> = github
        .sign("s", &body, 0)
        .into_iter()
        .filter(|(k, _)| k != "x-github-delivery")
        .collect();
    let reply = client
        .post(&ingress.hook_url("github"), &no_delivery, body)
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    assert!(ingress
        .metrics()
        .await
        .contains("spillway_dedupe_fallback_events_total{source=\"github\"} 1"));
    case += 1;
    still_serving(&ingress, &github, case).await;

    assert!(
        ingress.is_running(),
        "bad input never takes the process down"
    );
    let metrics = ingress.metrics().await;
    assert!(
        metrics.contains("spillway_http_requests_total{outcome=\"too_large\",source=\"tiny\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "spillway_http_requests_total{outcome=\"unknown_source\",source=\"_unknown\"} 2"
        ),
        "{metrics}"
    );
    ingress.terminate();
    assert!(ingress.wait_exit().success());
    let log = std::fs::read_to_string(setup.dir.path().join("ingress.log")).expect("log");
    assert!(log.contains("spillway ingress started"), "{log}");
    assert!(
        !log.contains("spillway::access"),
        "access log is off:\n{log}"
    );
}
