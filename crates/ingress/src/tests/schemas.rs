//! Sources with a schema: records that fail it go to the quarantine topic with their errors,
//! answered as accepted or refused as the source says, and Protobuf records keyed by their
//! fields.

use bytes::Bytes;
use http::StatusCode;
use spillway_core::headers;

use super::*;

const VALID: &str = r#"{"id":"r-1","device":"meter-7","kwh":1.5}"#;
const INVALID: &str = r#"{"id":"r-2","device":"pump-7","kwh":-1}"#;

fn quarantined(h: &Harness, topic: &str) -> Vec<spillway_kafka::ProducedRecord> {
    h.kafka.records_in(topic)
}

#[tokio::test]
async fn an_invalid_event_is_quarantined_answered_accepted_and_deduplicated() {
    let h = harness();
    let valid = h.send(post("readings", &[], VALID)).await;
    assert_eq!(valid.status, StatusCode::ACCEPTED, "{:?}", valid.body);
    let invalid = h.send(post("readings", &[], INVALID)).await;
    assert_eq!(invalid.status, StatusCode::ACCEPTED, "{:?}", invalid.body);
    assert_eq!(invalid.body["status"], "accepted");

    assert_eq!(
        h.kafka.records_in("spillway.readings").len(),
        1,
        "only the valid one"
    );
    let q = quarantined(&h, "spillway.readings.quarantine");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].value.as_deref(), Some(INVALID.as_bytes()));
    assert_eq!(q[0].header(headers::EVENT_ID), Some(invalid.id()));
    assert_eq!(
        q[0].header(headers::DEDUPE_KEY).map(str::len),
        Some(64),
        "an invalid record is deduplicated by its hash, not its id"
    );
    assert_eq!(q[0].header(headers::INVALID_ACTION), Some("quarantined"));
    let errors: serde_json::Value =
        serde_json::from_str(q[0].header(headers::SCHEMA_ERRORS).expect("errors")).expect("json");
    let mut seen: Vec<(String, String)> = errors
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("minimum".to_owned(), "/kwh".to_owned()),
            ("pattern".to_owned(), "/device".to_owned())
        ]
    );
    let reason = q[0]
        .header(headers::INVALID_REASON)
        .expect("reason")
        .to_owned();
    assert!(
        ["minimum", "pattern"].contains(&reason.as_str()),
        "{reason}"
    );

    // The provider's retry of the invalid event is a duplicate, as for any other...
    let again = h.send(post("readings", &[], INVALID)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.id(), invalid.id());
    assert_eq!(quarantined(&h, "spillway.readings.quarantine").len(), 1);
    // ...but its corrected record under the same id is not.
    let fixed = r#"{"id":"r-2","device":"meter-7","kwh":1}"#;
    let corrected = h.send(post("readings", &[], fixed)).await;
    assert_eq!(
        corrected.status,
        StatusCode::ACCEPTED,
        "{:?}",
        corrected.body
    );
    assert_eq!(h.kafka.records_in("spillway.readings").len(), 2);
    let metrics = h.metrics();
    let line = format!(
        "spillway_invalid_records_total{{action=\"quarantined\",reason=\"{reason}\",source=\"readings\"}} 1"
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}

#[tokio::test]
async fn a_source_that_rejects_answers_422_with_the_errors_and_keeps_a_copy() {
    let h = harness();
    let seen = h
        .send(post("readings-strict", &[], r#"{"id":"r-3"}"#))
        .await;
    assert_eq!(seen.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(seen.code(), "record_invalid");
    assert!(
        crate::answer::CATALOG.contains(&(422, "record_invalid")),
        "in the catalog"
    );
    let errors = seen.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "device and kwh are required: {errors:?}");
    assert!(errors.iter().all(|e| e["reason"] == "required"));
    let message = seen.body["message"].as_str().expect("message");
    assert!(message.contains("and 1 more"), "{message}");
    assert!(h.kafka.records_in("spillway.readings-strict").is_empty());

    // Refused, so not claimed: the sender's fixed or repeated request is checked again.
    let again = h
        .send(post("readings-strict", &[], r#"{"id":"r-3"}"#))
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    h.settle().await;
    let copies = quarantined(&h, "spillway.readings-strict.quarantine");
    assert_eq!(copies.len(), 2, "each refusal leaves the operators a copy");
    assert!(copies
        .iter()
        .all(|c| c.header(headers::INVALID_ACTION) == Some("rejected")));
    let fixed = r#"{"id":"r-3","device":"meter-3","kwh":0}"#;
    let accepted = h.send(post("readings-strict", &[], fixed)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    assert_eq!(h.kafka.records_in("spillway.readings-strict").len(), 1);
    assert!(h.metrics().contains(
        "spillway_invalid_records_total{action=\"rejected\",reason=\"required\",source=\"readings-strict\"} 2"
    ));
}

#[tokio::test]
async fn a_batch_that_rejects_lists_its_invalid_records_and_writes_the_rest() {
    let h = harness();
    let body = [VALID, INVALID, r#"{"id":"r-9","device":"meter-9","kwh":2}"#].join("\n");
    let seen = h.send(post("readings-batch", &[], &body)).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    assert_eq!(seen.body["accepted"], 2);
    assert_eq!(seen.body["rejected"], 1);
    let errors = seen.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["error"], "record_invalid");
    assert!(errors[0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("does not match the source's schema")));
    assert_eq!(h.kafka.records_in("spillway.readings-batch").len(), 2);
    h.settle().await;
    let q = quarantined(&h, "spillway.readings-batch.quarantine");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].value.as_deref(), Some(INVALID.as_bytes()));
    assert_eq!(q[0].header(headers::BATCH_INDEX), Some("1"));
}

/// `records` framed as length-delimited Protobuf (each shorter than 128 bytes).
fn frames(records: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for record in records {
        out.push(u8::try_from(record.len()).expect("short"));
        out.extend_from_slice(record);
    }
    Bytes::from(out)
}

#[tokio::test]
async fn protobuf_records_are_keyed_by_their_fields_and_strangers_quarantined() {
    let h = harness();
    let valid = std::fs::read(format!("{SCHEMAS}/valid.bin")).expect("protoc's record");
    // Field 9 is not a Reading's: random bytes would decode with it.
    let stranger: &[u8] = &[0x48, 0x01];
    let req = Request::post("/v1/hooks/readings-proto")
        .header("content-type", "application/x-protobuf")
        .body(Full::new(frames(&[&valid, stranger, &valid])))
        .expect("request");
    let seen = h.send(req).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{:?}", seen.body);
    assert_eq!(
        [&seen.body["accepted"], &seen.body["duplicate"]],
        [2, 1],
        "the stranger is accepted into the quarantine; the repeat is a duplicate"
    );
    let records = h.kafka.records_in("spillway.readings-proto");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(valid.as_slice()));
    assert_eq!(records[0].header(headers::DEDUPE_KEY), Some("r-1"));
    assert_eq!(records[0].key.as_deref(), Some(&b"meter-7"[..]));
    let q = quarantined(&h, "fleet-quarantine");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].header(headers::INVALID_REASON), Some("unknown_field"));
    assert_eq!(
        q[0].header(headers::DEDUPE_KEY).map(str::len),
        Some(64),
        "a record whose fields cannot be read is keyed by its hash"
    );
}
