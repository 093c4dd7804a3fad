//! The store on a filesystem directory: writes in parts, reads checked against their
//! reference, references that point elsewhere refused.

use std::collections::BTreeMap;

use super::*;

/// SHA-256("abc"), FIPS 180-2 appendix B.1.
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn store(dir: &tempfile::TempDir, part_bytes: usize) -> Objects {
    let url = url::Url::from_directory_path(dir.path().join("bodies")).expect("url");
    Objects::open(&ObjectsConfig {
        url: url.to_string(),
        options: BTreeMap::new(),
        part_bytes,
        ..ObjectsConfig::new("")
    })
    .expect("opens")
}

async fn read_all(objects: &Objects, reference: &ObjectRef) -> Result<Vec<u8>, ObjectsError> {
    let mut out = Vec::new();
    let mut stream = objects.stream(reference).await?;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn a_body_written_in_pieces_has_the_published_sha256_and_reads_back_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let objects = store(&dir, 1024);
    let mut writer = objects
        .writer("meters/2026-12-02/e1", Some("text/plain".into()))
        .await
        .expect("writer");
    for piece in ["a", "b", "c"] {
        writer.write(Bytes::from(piece)).await.expect("write");
    }
    assert_eq!(writer.size(), 3);
    let reference = writer.finish().await.expect("finish");
    assert_eq!(reference.sha256, ABC_SHA256);
    assert_eq!(reference.size, 3);
    assert_eq!(reference.content_type.as_deref(), Some("text/plain"));
    assert!(
        reference.uri.ends_with("/bodies/meters/2026-12-02/e1"),
        "{}",
        reference.uri
    );
    assert_eq!(read_all(&objects, &reference).await.expect("read"), b"abc");
    objects.check(&reference).await.expect("checks");
}

#[tokio::test]
async fn many_parts_come_back_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let objects = store(&dir, 1024);
    let body: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut writer = objects.writer("big", None).await.expect("writer");
    for chunk in body.chunks(333) {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    let reference = writer.finish().await.expect("finish");
    assert_eq!(reference.size, 40_000);
    assert_eq!(read_all(&objects, &reference).await.expect("read"), body);
}

#[tokio::test]
async fn an_object_changed_in_the_store_fails_in_place_of_its_last_chunk() {
    let dir = tempfile::tempdir().expect("dir");
    let objects = store(&dir, 1024);
    let mut writer = objects.writer("e2", None).await.expect("writer");
    writer
        .write(Bytes::from_static(b"abc"))
        .await
        .expect("write");
    let reference = writer.finish().await.expect("finish");
    std::fs::write(dir.path().join("bodies/e2"), b"abd").expect("tamper");
    // A reader that stops once it has the reference's size (an HTTP body with that
    // Content-Length) still gets the error: it comes instead of the bytes that end the body.
    let mut stream = objects.stream(&reference).await.expect("stream");
    let mut read = 0;
    let err = loop {
        match stream
            .next()
            .await
            .expect("an item before the size is reached")
        {
            Ok(chunk) => read += chunk.len(),
            Err(e) => break e,
        }
    };
    assert!(read < 3, "the last bytes were not handed out");
    assert!(matches!(err, ObjectsError::Mismatch { .. }), "{err}");
    assert!(objects.check(&reference).await.is_err());
    let longer = ObjectRef {
        size: 4,
        ..reference
    };
    assert!(objects.check(&longer).await.is_err(), "the size counts too");
}

#[tokio::test]
async fn references_outside_the_store_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let objects = store(&dir, 1024);
    let mut writer = objects.writer("e3", None).await.expect("writer");
    writer
        .write(Bytes::from_static(b"abc"))
        .await
        .expect("write");
    let reference = writer.finish().await.expect("finish");
    for uri in [
        "s3://elsewhere/e3".to_owned(),
        reference.uri.replace("/bodies/e3", "/other/e3"),
        reference.uri.replace("/e3", "/../other/e3"),
    ] {
        let foreign = ObjectRef {
            uri: uri.clone(),
            ..reference.clone()
        };
        let err = objects.check(&foreign).await.expect_err(&uri);
        assert!(matches!(err, ObjectsError::Foreign { .. }), "{uri}: {err}");
    }
}

#[tokio::test]
async fn aborted_writes_leave_nothing_and_deletes_are_idempotent() {
    let dir = tempfile::tempdir().expect("dir");
    let objects = store(&dir, 1024);
    let mut aborted = objects.writer("gone", None).await.expect("writer");
    aborted
        .write(Bytes::from(vec![7u8; 5000]))
        .await
        .expect("write");
    aborted.abort().await.expect("abort");
    let mut kept = objects.writer("kept", None).await.expect("writer");
    kept.write(Bytes::from_static(b"abc")).await.expect("write");
    let reference = kept.finish().await.expect("finish");
    let listed = objects.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].uri, reference.uri);
    assert_eq!(listed[0].size, 3);
    objects.delete(&reference).await.expect("delete");
    objects.delete(&reference).await.expect("already gone");
    assert!(objects.list().await.expect("list").is_empty());
    let err = objects
        .signed_url(&reference, Duration::from_secs(60))
        .await
        .expect_err("a directory signs nothing");
    assert!(matches!(err, ObjectsError::CannotSign { .. }));
}

#[test]
fn bad_urls_and_options_are_named() {
    let open = |url: &str, options: &[(&str, &str)]| {
        Objects::open(&ObjectsConfig {
            url: url.into(),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            part_bytes: 5 * 1024 * 1024,
            ..ObjectsConfig::new("")
        })
    };
    assert!(matches!(
        open("ftp://bucket/x", &[]),
        Err(ObjectsError::BadUrl { .. })
    ));
    assert!(matches!(
        open("not a url", &[]),
        Err(ObjectsError::BadUrl { .. })
    ));
    let err = open("s3://bucket/x", &[("aws_no_such_option", "1")]).expect_err("bad option");
    assert!(err.to_string().contains("aws_no_such_option"), "{err}");
    assert!(open(
        "s3://bucket/x",
        &[
            ("aws_region", "us-east-1"),
            ("aws_endpoint", "http://127.0.0.1:9"),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "k"),
            ("aws_secret_access_key", "s"),
        ]
    )
    .is_ok());
}
