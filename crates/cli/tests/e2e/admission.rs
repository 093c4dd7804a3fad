//! Admission over real sockets: a stalled upload holds none of the in-flight places verified
//! work needs and gets 408 in the end; a body slower than `min_body_rate` is cut off; a
//! connection that sends nothing, or only an HTTP/2 preface, is closed; past the connection
//! cap a new connection is closed at once.

use std::time::Duration;

use serde_json::json;
use spillway_testkit::spillway::{post_event, ready_ingress, source};
use spillway_testkit::{patience, Client, IngressProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends on `stream` until it closes it (bounded by the patience).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(patience(), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// An upload that promises `announced` bytes and sends `sent`, once the ingress has admitted
/// it and begun to read its body: it asks `Expect: 100-continue`, which hyper answers when
/// the body is first read, so the upload is known to be past admission (where a request may
/// be shed while every in-flight place is taken) before anything else is sent.
async fn stalled_upload(ingress: &IngressProcess, announced: usize, sent: &str) -> TcpStream {
    let mut stream = TcpStream::connect(ingress.addr).await.expect("connect");
    let head = format!(
        "POST /v1/hooks/github HTTP/1.1\r\nHost: {}\r\nContent-Length: {announced}\r\n\
         Expect: 100-continue\r\n\r\n",
        ingress.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(patience(), stream.read_exact(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(_))), "no answer to the upload's head");
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream.write_all(sent.as_bytes()).await.expect("write");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_slow_uploads_do_not_lock_out_a_genuine_sender() {
    let github = source("github");
    let patch = json!({ "ingress": {
        "max_in_flight": 1,
        "body_read_timeout": "3s",
        "min_body_rate": 1000,
        "body_rate_grace": "1s",
    } });
    let (_setup, ingress) = ready_ingress(std::slice::from_ref(&github), patch).await;

    // More stalled uploads than there are in-flight places: each promised 100 bytes and sent
    // 10. They used to hold the only place until their read timeout.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_upload(&ingress, 100, "0123456789").await);
    }
    let client = Client::http1();
    let id = spillway_testkit::unique("adm-");
    let reply = post_event(&client, &ingress, &github, &id, 1).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);

    // 10 bytes buy 10 ms past the 1 s grace at 1,000 bytes/s: cut off well before the 3 s
    // read timeout, with a code that says why.
    for mut stream in stalled {
        let answer = read_until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""error":"body_too_slow""#), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_connections_are_capped() {
    let github = source("github");
    // The per-peer cap does not apply to loopback (a shared address: a proxy or sidecar in
    // production); the process-wide cap does.
    let patch = json!({ "ingress": { "header_read_timeout": "1s", "max_connections": 3 } });
    let (_setup, ingress) = ready_ingress(std::slice::from_ref(&github), patch).await;

    // Before the protocol is known no header timeout runs: these were kept for ever.
    let mut silent = TcpStream::connect(ingress.addr).await.expect("connect");
    let mut preface = TcpStream::connect(ingress.addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    // A third connection is the last place; a fourth is closed at once, unanswered.
    let _third = TcpStream::connect(ingress.addr).await.expect("connect");
    let mut fourth = TcpStream::connect(ingress.addr).await.expect("connect");
    fourth
        .write_all(b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_until_closed(&mut fourth).await, "");

    assert_eq!(read_until_closed(&mut silent).await, "");
    // The HTTP/2 side may say goodbye (SETTINGS, GOAWAY) before it closes; it does close.
    let _ = read_until_closed(&mut preface).await;
    drop(_third);

    // With the silent ones gone there is room again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = post_event(&Client::http1(), &ingress, &github, "conn-ok", 1).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}
