//! Large bodies by reference: a body over its source's `inline_max_bytes` is in object storage
//! (here a directory) and its record carries the reference; memory stays at an upload's
//! parts; an object whose request is refused, a duplicate or not written is deleted.

use std::io::Write;

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use http_body_util::StreamBody;
use hyper::body::Frame;
use sha2::{Digest, Sha256};
use spillway_core::headers;
use spillway_objects::{ObjectRef, Objects};

use super::claims::github_headers;
use super::*;
use crate::BodyError;

/// An upload holds 3 parts of 1 MiB; the budget holds two uploads, and no large body whole.
const LARGE: &str = r#"
ingress:
  max_body_memory: 8388608
  min_body_rate: 0
objects:
  url: "file://{dir}/objects"
  part_bytes: 1048576
kafka:
  brokers: 127.0.0.1:1
redis:
  nodes: [redis://127.0.0.1:1]
sources:
  github:
    verify: { scheme: github }
    secrets:
      - { id: gh-1, file: "{secret}" }
    inline_max_bytes: 65536
    max_body_bytes: 33554432
  readings:
    verify: { scheme: none }
    dedupe: { from: json_pointer, pointer: /id }
    partition_key: { from: json_pointer, pointer: /device }
    event_type: { from: json_pointer, pointer: /type }
    inline_max_bytes: 65536
  capped:
    verify: { scheme: none }
    dedupe: { from: none }
    inline_max_bytes: 1024
    max_body_bytes: 2097152
"#;

fn large() -> Harness {
    harness_of(LARGE, None, CLUSTER)
}

/// `len` bytes of JSON-ish text, different for each `seed`.
fn body_of(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| b'a' + ((i as u8).wrapping_add(seed)) % 26)
        .collect::<Vec<u8>>()
        .into()
}

/// A body that comes in frames.
type Framed = StreamBody<futures::stream::BoxStream<'static, Result<Frame<Bytes>, BodyError>>>;

/// A POST of `body` in frames of 64 KiB, as a network would bring it.
fn streamed(source: &str, headers: &[(&str, String)], body: Bytes) -> Request<Framed> {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> = (0..body.len())
        .step_by(64 * 1024)
        .map(|at| {
            Ok(Frame::data(
                body.slice(at..(at + 64 * 1024).min(body.len())),
            ))
        })
        .collect();
    let mut builder = Request::post(format!("/v1/hooks/{source}"))
        .header("content-length", body.len().to_string());
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(StreamBody::new(futures::stream::iter(frames).boxed()))
        .expect("request")
}

fn objects(h: &Harness) -> &Objects {
    h.pipeline.objects.as_ref().expect("objects")
}

async fn stored_count(h: &Harness) -> usize {
    objects(h).list().await.expect("list").len()
}

async fn read_back(h: &Harness, reference: &ObjectRef) -> Vec<u8> {
    let mut stream = objects(h).stream(reference).await.expect("object");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("checked chunk"));
    }
    out
}

/// The reference the only record of `topic` carries, checking it carries no body.
fn only_reference(h: &Harness, topic: &str) -> ObjectRef {
    let records = h.kafka.records_in(topic);
    assert_eq!(records.len(), 1, "one record");
    let record = &records[0];
    assert!(
        record.value.as_deref().unwrap_or_default().is_empty(),
        "the body is not in the record"
    );
    ObjectRef::from_headers(|name| record.header(name)).expect("a reference")
}

#[tokio::test]
async fn a_signed_body_over_the_inline_limit_streams_to_the_store_within_a_few_parts() {
    let h = large();
    // 24 MiB through a budget of 8: held whole, it could never have been admitted.
    let body = body_of(24 * 1024 * 1024, 1);
    let seen = h
        .send(streamed(
            "github",
            &github_headers(&body, "d-1"),
            body.clone(),
        ))
        .await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);

    let reference = only_reference(&h, "spillway.github");
    assert_eq!(reference.size, body.len() as u64);
    assert_eq!(reference.sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(
        reference.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert!(
        reference.uri.contains("/objects/github/"),
        "{}",
        reference.uri
    );
    let record = &h.kafka.records_in("spillway.github")[0];
    assert_eq!(record.header(headers::EVENT_ID), Some(seen.id()));
    assert_eq!(record.header(headers::DEDUPE_KEY), Some("d-1"));
    assert_eq!(record.header(headers::KEY_ID), Some("gh-1"));
    assert!(
        read_back(&h, &reference).await == body,
        "the object is the body"
    );
    settle().await;
    assert_eq!(
        h.pipeline.budget.available(),
        8 * 1024 * 1024,
        "every byte given back"
    );
}

#[tokio::test]
async fn a_tampered_large_body_is_refused_and_its_object_deleted() {
    let h = large();
    let body = body_of(3 * 1024 * 1024, 2);
    let mut tampered = body.to_vec();
    tampered[2 * 1024 * 1024] ^= 1;
    let seen = h
        .send(streamed(
            "github",
            &github_headers(&body, "d-2"),
            tampered.into(),
        ))
        .await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{:?}", seen.body);
    assert_eq!(seen.code(), "signature_mismatch");
    settle().await;
    assert!(h.kafka.records_in("spillway.github").is_empty());
    assert_eq!(stored_count(&h).await, 0, "the object is deleted");
}

#[tokio::test]
async fn a_missing_signature_is_refused_before_anything_is_stored() {
    let h = large();
    let body = body_of(512 * 1024, 3);
    let seen = h.send(streamed("github", &[], body)).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{:?}", seen.body);
    assert_eq!(seen.code(), "signature_missing");
    settle().await;
    assert_eq!(stored_count(&h).await, 0);
}

#[tokio::test]
async fn a_retried_large_body_is_a_duplicate_and_leaves_one_object() {
    let h = large();
    let body = body_of(1024 * 1024, 4);
    let first = h
        .send(streamed(
            "github",
            &github_headers(&body, "d-3"),
            body.clone(),
        ))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let again = h
        .send(streamed("github", &github_headers(&body, "d-3"), body))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.id(), first.id());
    settle().await;
    assert_eq!(h.kafka.records_in("spillway.github").len(), 1);
    assert_eq!(stored_count(&h).await, 1, "the retry's object is deleted");
}

#[tokio::test]
async fn a_body_whose_keys_are_inside_it_is_read_whole_then_stored_with_them() {
    let h = large();
    let body = Bytes::from(format!(
        r#"{{"id":"r-1","device":"meter-7","type":"waveform","wave":"{}"}}"#,
        "x".repeat(200 * 1024)
    ));
    let seen = h.send(streamed("readings", &[], body.clone())).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    let reference = only_reference(&h, "spillway.readings");
    assert!(read_back(&h, &reference).await == body);
    let record = &h.kafka.records_in("spillway.readings")[0];
    assert_eq!(record.header(headers::DEDUPE_KEY), Some("r-1"));
    assert_eq!(record.key.as_deref(), Some(&b"meter-7"[..]));
    assert_eq!(
        record.header(headers::EVENT_TYPE),
        Some("waveform"),
        "the type the workers would read from the body"
    );
    let again = h.send(streamed("readings", &[], body)).await;
    assert_eq!(again.body["status"], "duplicate", "{:?}", again.body);
}

#[tokio::test]
async fn a_compressed_large_body_is_decoded_whole_then_stored() {
    let h = large();
    let body = Bytes::from(format!(
        r#"{{"id":"r-2","device":"meter-8","wave":"{}"}}"#,
        String::from_utf8(body_of(300 * 1024, 5).to_vec()).expect("text")
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).expect("gzip");
    let compressed = gz.finish().expect("gzip");
    let mut req = post("readings", &[("content-encoding", "gzip")], "");
    *req.body_mut() = Full::new(Bytes::from(compressed));
    let seen = h.send(req).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    let reference = only_reference(&h, "spillway.readings");
    assert_eq!(reference.size, body.len() as u64, "the decoded body");
    assert!(read_back(&h, &reference).await == body);
    let record = &h.kafka.records_in("spillway.readings")[0];
    assert_eq!(
        record.header(headers::DEDUPE_KEY),
        Some("r-2"),
        "read whole, its keys come from inside it"
    );
    assert_eq!(record.key.as_deref(), Some(&b"meter-8"[..]));
}

#[tokio::test]
async fn a_body_at_the_inline_limit_stays_in_its_record() {
    let h = large();
    let body = body_of(1024, 6);
    let seen = h.send(streamed("capped", &[], body.clone())).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    let records = h.kafka.records_in("spillway.capped");
    assert_eq!(records[0].value.as_deref(), Some(&body[..]));
    assert_eq!(records[0].header(headers::OBJECT_URI), None);
    assert_eq!(stored_count(&h).await, 0);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_midway_and_its_upload_aborted() {
    let h = large();
    let body = body_of(3 * 1024 * 1024, 7);
    // No Content-Length: the cap is found while the body streams.
    let mut req = streamed("capped", &[], body);
    req.headers_mut().remove("content-length");
    let seen = h.send(req).await;
    assert_eq!(
        seen.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        seen.body
    );
    assert_eq!(seen.code(), "body_too_large");
    settle().await;
    assert!(h.kafka.records_in("spillway.capped").is_empty());
    assert_eq!(stored_count(&h).await, 0, "nothing is left behind");
}

#[tokio::test]
async fn a_store_that_is_down_is_503_and_leaves_no_record() {
    let yaml = LARGE.replace(
        r#"url: "file://{dir}/objects""#,
        "url: s3://spillway/x\n  options: { aws_endpoint: \"http://127.0.0.1:1\", aws_allow_http: \"true\", \
         aws_access_key_id: k, aws_secret_access_key: s, aws_region: us-east-1 }\n  max_retries: 0",
    );
    let h = harness_of(&yaml, None, CLUSTER);
    let body = body_of(256 * 1024, 8);
    let seen = h.send(streamed("capped", &[], body)).await;
    assert_eq!(
        seen.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        seen.body
    );
    assert_eq!(seen.code(), "objects_unavailable");
    assert!(seen.retry_after().is_some());
    assert!(h.kafka.records_in("spillway.capped").is_empty());
    settle().await;
    assert_eq!(
        h.pipeline.budget.available(),
        8 * 1024 * 1024,
        "every byte given back"
    );
    assert!(
        crate::ANSWERS.contains(&(503, "objects_unavailable")),
        "listed in the README's answers"
    );
}
