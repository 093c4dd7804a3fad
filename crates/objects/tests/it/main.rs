//! The object store against a real S3-compatible server on loopback (s3s-fs, started by
//! `make up` through dev/s3.sh; it checks SigV4 and takes multipart uploads): bodies of
//! several parts written and read back checked, presigned URLs that work and fail once changed, and
//! wrong credentials refused.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use spillway_objects::{ObjectRef, Objects, ObjectsConfig, ObjectsError};

fn endpoint() -> String {
    std::env::var("SPILLWAY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

fn s3(prefix: &str, secret: &str) -> Objects {
    let options: BTreeMap<String, String> = [
        ("aws_endpoint", endpoint()),
        ("aws_allow_http", "true".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_access_key_id", "spillway-local".into()),
        ("aws_secret_access_key", secret.into()),
        // s3s-fs serves path-style URLs only.
        ("aws_virtual_hosted_style_request", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Objects::open(&ObjectsConfig {
        url: format!("s3://spillway/{prefix}"),
        options,
        part_bytes: 5 * 1024 * 1024,
        ..ObjectsConfig::new("")
    })
    .expect("opens")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    format!("{prefix}-{nanos}")
}

async fn write(objects: &Objects, name: &str, body: &[u8]) -> ObjectRef {
    let mut writer = objects
        .writer(name, Some("application/octet-stream".into()))
        .await
        .expect("writer");
    for chunk in body.chunks(64 * 1024) {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    writer.finish().await.expect("finish")
}

#[tokio::test]
async fn a_body_of_several_parts_is_stored_and_read_back_checked() {
    let objects = s3(&unique("it"), "spillway-local-secret");
    let body: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let reference = write(&objects, "meters/big", &body).await;
    assert_eq!(reference.size, body.len() as u64);
    assert_eq!(reference.sha256, hex::encode(Sha256::digest(&body)));
    assert!(
        reference.uri.starts_with("s3://spillway/it-"),
        "{}",
        reference.uri
    );
    let mut read = Vec::new();
    let mut stream = objects.stream(&reference).await.expect("stream");
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(read == body, "the same bytes");
    let listed = objects.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    objects.delete(&reference).await.expect("delete");
    assert!(objects.check(&reference).await.is_err(), "gone");
}

#[tokio::test]
async fn a_presigned_url_serves_the_object_and_a_changed_one_is_refused() {
    let objects = s3(&unique("it"), "spillway-local-secret");
    let reference = write(&objects, "small", b"a reading").await;
    let url = objects
        .signed_url(&reference, Duration::from_secs(300))
        .await
        .expect("signed");
    let get = |url: String| {
        tokio::task::spawn_blocking(move || {
            let response = reqwest::blocking::get(url).expect("GET");
            (response.status().as_u16(), response.bytes().expect("body"))
        })
    };
    let (status, body) = get(url.clone()).await.expect("task");
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"a reading");
    let forged = url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
    assert_ne!(forged, url);
    let (status, _) = get(forged).await.expect("task");
    assert_eq!(status, 403, "a changed URL no longer matches its signature");
}

#[tokio::test]
async fn wrong_credentials_are_refused_by_the_server() {
    let objects = s3(&unique("it"), "not-the-secret");
    let mut writer = match objects.writer("x", None).await {
        Ok(writer) => writer,
        Err(e) => {
            assert!(matches!(e, ObjectsError::Store { .. }), "{e}");
            return;
        }
    };
    writer
        .write(Bytes::from_static(b"abc"))
        .await
        .expect("buffered");
    let err = writer.finish().await.expect_err("refused");
    assert!(matches!(err, ObjectsError::Store { .. }), "{err}");
}
