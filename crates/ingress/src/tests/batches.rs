//! Batch sources: each record written once under its own keys, duplicates inside and across
//! batches, a retry after a partial failure writing exactly the missing records, and every
//! way a batch or a record is refused.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use spillway_core::headers;
use spillway_kafka::{MemoryBehaviour, MemoryFault, ProducedRecord};

use super::*;

fn ndjson(lines: &[&str]) -> String {
    lines.join("\n")
}

/// The records of `topic` by dedupe key: how many times each is in Kafka.
fn copies(records: &[ProducedRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for record in records {
        let key = record.header(headers::DEDUPE_KEY).unwrap_or("-").to_owned();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn counts(seen: &Seen) -> [u64; 4] {
    ["accepted", "duplicate", "rejected", "failed"].map(|k| seen.body[k].as_u64().unwrap_or(99))
}

fn error_codes(seen: &Seen) -> Vec<(u64, String)> {
    seen.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().expect("index"),
                e["error"].as_str().expect("code").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_record_becomes_its_own_event_and_repeats_inside_a_batch_are_duplicates() {
    let h = harness();
    let body = ndjson(&[
        r#"{"id":"r1","device":"m-7","kwh":1.5}"#,
        r#"{"id":"r2","device":"m-9","kwh":0.2}"#,
        "not json",
        r#"{"id":"r1","device":"m-7","kwh":1.5}"#,
    ]);
    let seen = h.send(post("fleet", &[], &body)).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    assert_eq!(seen.body["status"], "accepted");
    assert_eq!(seen.body["records"], 4);
    assert_eq!(counts(&seen), [2, 1, 1, 0]);
    assert_eq!(error_codes(&seen), [(2, "record_not_json".to_owned())]);
    let ids = seen.body["event_ids"].as_array().expect("ids").clone();
    assert!(ids[2].is_null());
    assert_eq!(ids[3], ids[0], "the repeat is a duplicate of the first");
    assert_ne!(ids[0], ids[1]);

    let records = h.kafka.records_in("spillway.fleet");
    assert_eq!(records.len(), 2);
    let batch_id = seen.body["batch_id"].as_str().expect("batch id");
    for (record, (index, key, device)) in records.iter().zip([(0, "r1", "m-7"), (1, "r2", "m-9")]) {
        assert_eq!(record.header(headers::DEDUPE_KEY), Some(key));
        assert_eq!(
            record.key.as_deref(),
            Some(device.as_bytes()),
            "partitioned by device"
        );
        assert_eq!(record.header(headers::BATCH_ID), Some(batch_id));
        assert_eq!(
            record.header(headers::BATCH_INDEX),
            Some(index.to_string().as_str())
        );
        assert_eq!(
            record.header(headers::EVENT_ID),
            ids[index].as_str(),
            "the answer names each record's event"
        );
        let sent = body.lines().nth(index).expect("line");
        assert_eq!(
            record.value.as_deref(),
            Some(sent.as_bytes()),
            "the line, byte for byte"
        );
    }
    assert!(h
        .metrics()
        .contains("spillway_batch_records_total{result=\"duplicate\",source=\"fleet\"} 1"));
}

#[tokio::test]
async fn a_batch_retried_after_a_partial_failure_writes_exactly_the_missing_records() {
    let h = harness();
    let body = ndjson(&[
        r#"{"id":"a","device":"d1"}"#,
        r#"{"id":"b","device":"d1"}"#,
        r#"{"id":"c","device":"d2"}"#,
    ]);
    // Kafka takes the first and the third record, not the second.
    h.kafka
        .then(MemoryBehaviour::Accept)
        .then(MemoryBehaviour::Fail(MemoryFault::Unreachable))
        .then(MemoryBehaviour::Accept);
    let first = h.send(post("fleet", &[], &body)).await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        first.body
    );
    assert_eq!(first.code(), "batch_incomplete");
    assert_eq!(first.retry_after(), Some("3"));
    assert_eq!(counts(&first), [2, 0, 0, 1]);
    assert_eq!(error_codes(&first), [(1, "kafka_unavailable".to_owned())]);
    // The failed record's claim was given back: its retry is not "in flight".
    assert_eq!(h.store.peek(&h.dedupe_key("fleet", "b")), None);

    let retry = h.send(post("fleet", &[], &body)).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{:?}", retry.body);
    assert_eq!(counts(&retry), [1, 2, 0, 0]);
    assert_eq!(retry.body["event_ids"][0], first.body["event_ids"][0]);
    let written = copies(&h.kafka.records_in("spillway.fleet"));
    assert_eq!(
        written,
        BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 1)])
    );

    // The same readings again, with a new one: only the new one is written.
    let again = ndjson(&[r#"{"id":"c","device":"d2"}"#, r#"{"id":"d","device":"d2"}"#]);
    let seen = h.send(post("fleet", &[], &again)).await;
    assert_eq!(counts(&seen), [1, 1, 0, 0]);
    assert_eq!(h.kafka.records_in("spillway.fleet").len(), 4);
}

#[tokio::test]
async fn a_batch_of_duplicates_only_is_answered_200_duplicate() {
    let h = harness();
    let body = ndjson(&[r#"{"id":"x","device":"d"}"#]);
    assert_eq!(
        h.send(post("fleet", &[], &body)).await.status,
        StatusCode::ACCEPTED
    );
    let seen = h.send(post("fleet", &[], &body)).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body["status"], "duplicate");
    assert_eq!(counts(&seen), [0, 1, 0, 0]);
}

#[tokio::test]
async fn a_dedupe_store_that_is_down_fails_the_records_not_the_sender() {
    let h = harness();
    h.store.set_offline(true);
    let body = ndjson(&[r#"{"id":"x","device":"d"}"#, r#"{"id":"y","device":"d"}"#]);
    let seen = h.send(post("fleet", &[], &body)).await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.code(), "batch_incomplete");
    assert_eq!(counts(&seen), [0, 0, 0, 2]);
    assert_eq!(
        error_codes(&seen),
        [
            (0, "dedupe_unavailable".to_owned()),
            (1, "dedupe_unavailable".to_owned())
        ]
    );
    assert!(h.kafka.records().is_empty(), "fail closed: nothing written");
}

#[tokio::test]
async fn records_refused_for_what_they_are_are_listed_and_a_batch_of_only_those_is_422() {
    let h = harness();
    let long = format!(r#"{{"id":"long","device":"d","pad":"{}"}}"#, "x".repeat(40));
    let body = ndjson(&[r#"{"device":"d"}"#, &long, "[1,"]);
    let seen = h.send(post("fleet", &[], &body)).await;
    assert_eq!(
        seen.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        seen.body
    );
    assert_eq!(seen.code(), "batch_rejected");
    assert_eq!(
        error_codes(&seen),
        [
            (0, "key_not_in_body".to_owned()),
            (1, "record_too_large".to_owned()),
            (2, "record_not_json".to_owned()),
        ]
    );
    assert!(h.kafka.records().is_empty());
}

#[tokio::test]
async fn batches_that_cannot_be_split_or_are_too_many_are_refused_whole() {
    let h = harness();
    let five = ndjson(&[r#"{"id":"1"}"#; 5]);
    for (source, body, status, code) in [
        ("fleet", "", StatusCode::BAD_REQUEST, "batch_empty"),
        ("fleet", "\n\n", StatusCode::BAD_REQUEST, "batch_empty"),
        (
            "fleet",
            five.as_str(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_many_records",
        ),
        (
            "fleet-array",
            r#"{"id":"1"}"#,
            StatusCode::BAD_REQUEST,
            "batch_malformed",
        ),
        (
            "fleet-array",
            r#"[{"id":"1"}, oops]"#,
            StatusCode::BAD_REQUEST,
            "batch_malformed",
        ),
        // A frame announcing 9 bytes, of which 3 came.
        (
            "fleet-proto",
            "\u{9}abc",
            StatusCode::BAD_REQUEST,
            "batch_malformed",
        ),
    ] {
        let seen = h.send(post(source, &[], body)).await;
        assert_eq!(
            (seen.status, seen.code()),
            (status, code),
            "{source} {body:?}: {:?}",
            seen.body
        );
        assert!(
            crate::answer::CATALOG.contains(&(status.as_u16(), code)),
            "{code} is in the catalog"
        );
    }
    assert!(
        h.kafka.records().is_empty(),
        "nothing of a refused batch is written"
    );
}

#[tokio::test]
async fn json_array_and_protobuf_records_are_written_as_the_sender_framed_them() {
    let h = harness();
    let seen = h
        .send(post(
            "fleet-array",
            &[],
            r#"[ {"id":"p1", "v": 1.50}, {"id":"p2"} ]"#,
        ))
        .await;
    assert_eq!(counts(&seen), [2, 0, 0, 0]);
    let values: Vec<Vec<u8>> = h
        .kafka
        .records_in("spillway.fleet-array")
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(
        values,
        [
            br#"{"id":"p1", "v": 1.50}"#.to_vec(),
            br#"{"id":"p2"}"#.to_vec()
        ]
    );

    // Two frames (lengths 3 and 2) and a repeat of the first: keyed by each record's hash.
    let mut frames = Vec::new();
    for record in [&b"\x08\x96\x01"[..], b"\x10\x01", b"\x08\x96\x01"] {
        frames.push(u8::try_from(record.len()).expect("short"));
        frames.extend_from_slice(record);
    }
    let req = Request::post("/v1/hooks/fleet-proto")
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(frames)))
        .expect("request");
    let seen = h.send(req).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    assert_eq!(counts(&seen), [2, 1, 0, 0]);
    let protos = h.kafka.records_in("spillway.fleet-proto");
    assert_eq!(protos.len(), 2);
    assert_eq!(protos[0].value.as_deref(), Some(&b"\x08\x96\x01"[..]));
    assert_eq!(
        protos[0].header(headers::CONTENT_TYPE),
        Some("application/x-protobuf")
    );
}

#[tokio::test]
async fn each_record_meets_its_own_claim_and_its_own_produce() {
    let h = harness();
    // Another request is accepting `b` right now.
    let elsewhere = SharedStore::Memory(h.store.clone());
    let taken = elsewhere
        .claim(&h.dedupe_key("fleet", "b"), "other-request")
        .await;
    assert!(matches!(taken, Ok(spillway_store::Claim::Claimed(_))));
    // Kafka refuses `c` as too large for it, fails `d`, takes the rest.
    h.kafka
        .then(MemoryBehaviour::Accept)
        .then(MemoryBehaviour::Fail(MemoryFault::TooLarge))
        .then(MemoryBehaviour::Fail(MemoryFault::Unreachable));
    let body = ndjson(&[
        r#"{"id":"a","device":"x"}"#,
        r#"{"id":"b","device":"x"}"#,
        r#"{"id":"c","device":"x"}"#,
        r#"{"id":"d","device":"x"}"#,
    ]);
    let seen = h.send(post("fleet", &[], &body)).await;
    assert_eq!(
        seen.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        seen.body
    );
    assert_eq!(counts(&seen), [1, 0, 1, 2]);
    assert_eq!(
        error_codes(&seen),
        [
            (1, "in_flight".to_owned()),
            (2, "record_too_large".to_owned()),
            (3, "kafka_unavailable".to_owned()),
        ]
    );
    // Only the written record's claim is kept (committed after the answer); the others' are
    // given back.
    h.committed().await;
    assert_eq!(h.store.peek(&h.dedupe_key("fleet", "c")), None);
    assert_eq!(h.store.peek(&h.dedupe_key("fleet", "d")), None);
    assert!(h
        .store
        .peek(&h.dedupe_key("fleet", "a"))
        .is_some_and(|v| v.starts_with("done:")));
    assert_eq!(
        copies(&h.kafka.records_in("spillway.fleet")),
        BTreeMap::from([("a".into(), 1)])
    );
}

#[tokio::test]
async fn a_repeat_inside_a_batch_ends_as_the_record_it_repeats() {
    let h = harness();
    let repeat = |a: &str, b: &str| {
        let record = |id: &str| format!(r#"{{"id":"{id}","device":"x"}}"#);
        ndjson(&[&record(a), &record(b), &record(a)])
    };
    // Kafka refuses the first record as too large: its repeat is refused alike.
    h.kafka.then(MemoryBehaviour::Fail(MemoryFault::TooLarge));
    let seen = h.send(post("fleet", &[], &repeat("a", "b"))).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    assert_eq!(counts(&seen), [1, 0, 2, 0]);
    let too_large = "record_too_large".to_owned();
    assert_eq!(error_codes(&seen), [(0, too_large.clone()), (2, too_large)]);
    // Kafka fails the first record: its repeat fails with it, and the batch is retried.
    h.kafka
        .then(MemoryBehaviour::Fail(MemoryFault::Unreachable));
    let seen = h.send(post("fleet", &[], &repeat("c", "d"))).await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(counts(&seen), [1, 0, 0, 2]);
    let unavailable = "kafka_unavailable".to_owned();
    assert_eq!(
        error_codes(&seen),
        [(0, unavailable.clone()), (2, unavailable)]
    );
    let retry = h.send(post("fleet", &[], &repeat("c", "d"))).await;
    assert_eq!(counts(&retry), [1, 2, 0, 0]);
    assert_eq!(retry.body["event_ids"][2], retry.body["event_ids"][0]);
}

#[tokio::test]
async fn a_key_of_the_request_is_every_records_key() {
    let h = harness();
    let body = ndjson(&[r#"{"id":"s1"}"#, r#"{"id":"s2"}"#]);
    // The generic scheme's recipe: hex HMAC-SHA256 of "{id}.{body}" under the source's secret.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, GITHUB_SECRET.as_bytes());
    let mac = ring::hmac::sign(&key, format!("b-1.{body}").as_bytes());
    let signature = hex::encode(mac.as_ref());
    let headers = [("x-batch", "b-1"), ("x-sig", signature.as_str())];
    let seen = h.send(post("fleet-signed", &headers, &body)).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    assert_eq!(counts(&seen), [2, 0, 0, 0]);
    let records = h.kafka.records_in("spillway.fleet-signed");
    let keys: Vec<Option<&[u8]>> = records.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(
        keys,
        [Some(&b"b-1"[..]), Some(&b"b-1"[..])],
        "the signed id partitions the batch"
    );
    assert!(records
        .iter()
        .all(|r| r.header(headers::KEY_ID) == Some("fs-1")));
}
