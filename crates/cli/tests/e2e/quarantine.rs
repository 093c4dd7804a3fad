//! A source's quarantine on the real stack: records failing the source's JSON Schema are
//! answered as accepted and land in the quarantine topic with their errors, never in the
//! source's topic; `spillway quarantine list` shows them, and after the schema is fixed
//! `spillway quarantine redrive` writes those that now pass to the source's topic under their
//! original event ids, and leaves the others.

use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use serde_json::json;
use spillway_core::headers;
use spillway_testkit::spillway::{ready_ingress, spillway_bin};
use spillway_testkit::{kafka_brokers, read_topic, Client};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dev/fleet-schemas/reading.schema.json"
);

fn quarantine(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(spillway_bin())
        .args(["--log-format", "text", "quarantine"])
        .args(args)
        .args(["--source", "readings", "--config"])
        .arg(config)
        .output()
        .expect("spillway runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_records_are_listed_and_redriven_once_the_schema_is_fixed() {
    let dir = tempfile::tempdir().expect("dir");
    let schema = dir.path().join("reading.schema.json");
    std::fs::copy(SCHEMA, &schema).expect("schema");
    let sources = json!({ "sources": { "readings": {
        "verify": { "scheme": "none" },
        "dedupe": { "from": "json_pointer", "pointer": "/id" },
        "schema": { "json_schema": schema },
    } } });
    let (setup, ingress) = ready_ingress(&[], sources).await;
    let client = Client::http1();
    let bodies = [
        r#"{"id":"ok-1","device":"meter-1","kwh":1}"#,
        r#"{"id":"neg-1","device":"meter-2","kwh":-2}"#,
        r#"{"id":"neg-2","device":"meter-3","kwh":-3}"#,
        r#"{"id":"pump-1","device":"pump-4","kwh":4}"#,
    ];
    let mut ids = Vec::new();
    for body in bodies {
        let json_type = [("content-type".to_owned(), "application/json".to_owned())];
        let reply = client
            .post(&ingress.hook_url("readings"), &json_type, Bytes::from(body))
            .await
            .expect("answer");
        assert_eq!(reply.status, 202, "{body}: {:?}", reply.json());
        ids.push(reply.json()["id"].as_str().expect("id").to_owned());
    }

    let topic = setup.topic("readings");
    let quarantine_topic = format!("{topic}.quarantine");
    let kept = read_topic(&kafka_brokers(), &topic).await;
    assert_eq!(kept.len(), 1, "only the valid reading is for subscribers");
    let held = read_topic(&kafka_brokers(), &quarantine_topic).await;
    assert_eq!(held.len(), 3);
    let mut reasons: Vec<_> = held
        .iter()
        .map(|r| r.header(headers::INVALID_REASON).unwrap_or_default())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["minimum", "minimum", "pattern"]);

    let listed = stdout(&quarantine(&setup.config, &["list"]));
    assert!(listed.contains("3 quarantined records"), "{listed}");
    for id in &ids[1..] {
        assert!(listed.contains(id.as_str()), "{id} in {listed}");
    }
    let by_reason = stdout(&quarantine(&setup.config, &["list", "--reason", "pattern"]));
    assert!(by_reason.contains("1 quarantined records"), "{by_reason}");
    assert!(
        by_reason.contains("/device"),
        "the first error's path: {by_reason}"
    );

    // The fix: negative readings (export to the grid) are valid after all.
    let text = std::fs::read_to_string(&schema).expect("schema");
    let fixed = text.replace(r#""minimum": 0"#, r#""minimum": -1000"#);
    assert_ne!(text, fixed);
    std::fs::write(&schema, fixed).expect("fixed schema");
    let dry = stdout(&quarantine(&setup.config, &["redrive", "--dry-run"]));
    assert!(dry.contains("2 records would be redriven"), "{dry}");
    assert_eq!(
        read_topic(&kafka_brokers(), &topic).await.len(),
        1,
        "a dry run writes nothing"
    );
    let redriven = stdout(&quarantine(&setup.config, &["redrive"]));
    assert!(redriven.contains("2 records redriven"), "{redriven}");
    assert!(redriven.contains("1 still invalid"), "{redriven}");
    assert!(redriven.contains(ids[3].as_str()), "{redriven}");

    let kept = read_topic(&kafka_brokers(), &topic).await;
    assert_eq!(kept.len(), 3);
    let mut kept_ids: Vec<_> = kept
        .iter()
        .map(|r| r.header(headers::EVENT_ID).expect("id").to_owned())
        .collect();
    kept_ids.sort();
    let mut expected = ids[..3].to_vec();
    expected.sort();
    assert_eq!(kept_ids, expected, "redriven under their original ids");
    assert!(
        kept.iter()
            .all(|r| r.header(headers::SCHEMA_ERRORS).is_none()
                && r.header(headers::INVALID_REASON).is_none()),
        "the quarantine's headers are dropped"
    );
    assert_eq!(
        read_topic(&kafka_brokers(), &quarantine_topic).await.len(),
        3,
        "the quarantine keeps its records"
    );
}
