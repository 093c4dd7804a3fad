//! Fleet batches through a running ingress on the real stack: NDJSON (signed), JSON-array and
//! length-delimited Protobuf batches of 1, 100 and 1,000 records with duplicates inside and
//! across batches land in Kafka once each under their own keys; a batch met by a stopped
//! broker is answered 503 and its retry writes exactly the records that were missing.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};
use spillway_core::headers;
use spillway_kafka::reader::ReadRecord;
use spillway_testkit::spillway::{ready_ingress, setup, source, Setup, TestSource};
use spillway_testkit::{read_topic, redis_nodes, Client, IngressProcess, Reply, Tansu};

/// The signed `meters` source (its fleet's HMAC, partitioned by `/device`) as an NDJSON batch
/// source keyed by each reading's `/id`, beside two unsigned batch sources: JSON arrays keyed
/// and partitioned alike, and Protobuf frames keyed by each record's hash.
fn batch_sources() -> Value {
    let keyed = |format: &str| {
        json!({
            "batch": { "format": format },
            "dedupe": { "from": "json_pointer", "pointer": "/id" },
            "partition_key": { "from": "json_pointer", "pointer": "/device" },
        })
    };
    let mut arrays = keyed("json_array");
    arrays["verify"] = json!({ "scheme": "none" });
    json!({
        "sources": {
            "meters": keyed("ndjson"),
            "arrays": arrays,
            "protos": { "verify": { "scheme": "none" }, "batch": { "format": "protobuf_delimited" } },
        }
    })
}

fn reading(id: &str) -> String {
    let device = id.len() % 7;
    format!(
        r#"{{"id":"{id}","device":"meter-{device}","kwh":{}.25}}"#,
        id.len()
    )
}

/// Posts `body` to `source`; `meters` is signed as its fleet signs, under the batch's id.
async fn post(
    client: &Client,
    ingress: &IngressProcess,
    meters: &TestSource,
    source: &str,
    body: Vec<u8>,
) -> Reply {
    let body = Bytes::from(body);
    let headers = if source == "meters" {
        meters.sign("batch", &body, 0)
    } else {
        vec![(
            "content-type".to_owned(),
            "application/octet-stream".to_owned(),
        )]
    };
    client
        .post(&ingress.hook_url(source), &headers, body)
        .await
        .expect("answer")
}

fn counts(reply: &Reply) -> [u64; 4] {
    let body = reply.json();
    ["accepted", "duplicate", "rejected", "failed"].map(|k| body[k].as_u64().expect(k))
}

/// How many times each dedupe key is in `records`.
fn copies(records: &[ReadRecord]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in records {
        let key = r
            .header(headers::DEDUPE_KEY)
            .expect("dedupe key")
            .to_owned();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Length-delimited frames: a varint length, then the bytes (each record here is one
/// JSON text; the ingress reads only the framing).
fn frames(records: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        let mut length = record.len();
        while length >= 0x80 {
            out.push(u8::try_from(length & 0x7f).expect("7 bits") | 0x80);
            length >>= 7;
        }
        out.push(u8::try_from(length).expect("7 bits"));
        out.extend_from_slice(record.as_bytes());
    }
    out
}

fn body_of(format: &str, records: &[String]) -> Vec<u8> {
    match format {
        "ndjson" => records.join("\n").into_bytes(),
        "json_array" => format!("[{}]", records.join(",")).into_bytes(),
        _ => frames(records),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_1_100_and_1000_records_land_once_each_under_their_own_keys() {
    let meters = source("meters");
    let (setup, ingress) = ready_ingress(std::slice::from_ref(&meters), batch_sources()).await;
    let client = Client::http1();
    for (source, format) in [
        ("meters", "ndjson"),
        ("arrays", "json_array"),
        ("protos", "protobuf_delimited"),
    ] {
        let mut expected = 0usize;
        let mut previous: Option<String> = None;
        let mut previous_id = Value::Null;
        for size in [1usize, 100, 1000] {
            // Beyond the first batch of one: a repeat inside the batch (of its first record)
            // and the previous batch's first record again, within the batch's size.
            let duplicates = if size == 1 { 0 } else { 2 };
            let fresh = size - duplicates;
            let mut records: Vec<String> = (0..fresh)
                .map(|i| reading(&format!("{source}-{size}-{i}")))
                .collect();
            if size > 1 {
                records.push(records[0].clone());
                records.extend(previous.clone());
            }
            assert_eq!(records.len(), size);
            let reply = post(
                &client,
                &ingress,
                &meters,
                source,
                body_of(format, &records),
            )
            .await;
            assert_eq!(
                reply.status,
                202,
                "{source} {size}: {:?}",
                reply.json()["errors"]
            );
            assert_eq!(
                counts(&reply),
                [fresh as u64, duplicates as u64, 0, 0],
                "{source} {size}"
            );
            if size > 1 {
                let ids = reply.json()["event_ids"].clone();
                assert_eq!(
                    ids[fresh], ids[0],
                    "the repeat names the first record's event"
                );
                assert_eq!(ids[fresh + 1], previous_id, "the earlier batch's event");
            }
            previous_id = reply.json()["event_ids"][0].clone();
            expected += fresh;
            previous = Some(records[0].clone());
        }
        let records = read_topic(&setup.brokers, &setup.topic(source)).await;
        assert_eq!(
            records.len(),
            expected,
            "{source}: every record once, nothing else"
        );
        let copies = copies(&records);
        assert!(
            copies.values().all(|&n| n == 1),
            "{source}: a record twice in Kafka"
        );
        if format != "protobuf_delimited" {
            for r in &records {
                let value: Value = serde_json::from_slice(&r.value).expect("a record is JSON");
                assert_eq!(r.header(headers::DEDUPE_KEY), value["id"].as_str());
                assert_eq!(
                    r.key.as_deref(),
                    value["device"].as_str().map(str::as_bytes)
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_stopped_broker_could_not_take_is_written_by_its_retry_exactly() {
    let mut tansu = Tansu::start_sqlite();
    let meters = source("meters");
    let mut setup: Setup = setup(
        &tansu.brokers(),
        &redis_nodes(),
        std::slice::from_ref(&meters),
        json!({ "kafka": { "delivery_timeout": "2s" } }),
    );
    setup.set("sources.meters.batch", json!({ "format": "ndjson" }));
    setup.set(
        "sources.meters.dedupe",
        json!({ "from": "json_pointer", "pointer": "/id" }),
    );
    let topic = setup.topic("meters");
    spillway_testkit::create_topics(&tansu.brokers(), std::slice::from_ref(&topic)).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let client = Client::http1();
    let send = |readings: &[String]| {
        post(
            &client,
            &ingress,
            &meters,
            "meters",
            body_of("ndjson", readings),
        )
    };

    let first: Vec<String> = (0..100).map(|i| reading(&format!("first-{i}"))).collect();
    let reply = send(&first).await;
    assert_eq!(counts(&reply), [100, 0, 0, 0]);

    // The same readings and 50 new ones, with the broker gone: the old ones are known
    // duplicates (Redis answers; the Kafka cluster id in their keys was learnt by the first
    // batch), the new ones cannot be made durable.
    tansu.kill();
    let mut second = first.clone();
    second.extend((0..50).map(|i| reading(&format!("second-{i}"))));
    let reply = send(&second).await;
    assert_eq!(reply.status, 503, "{:?}", reply.json());
    assert_eq!(reply.json()["error"], "batch_incomplete");
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(counts(&reply), [0, 100, 0, 50]);
    let errors = reply.json()["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 50);
    assert!(
        errors.iter().all(|e| e["error"] == "kafka_unavailable"),
        "{errors:?}"
    );

    tansu.start();
    ingress.wait_ready().await;
    let reply = send(&second).await;
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    assert_eq!(
        counts(&reply),
        [50, 100, 0, 0],
        "the retry writes only what was missing"
    );

    let records = read_topic(&tansu.brokers(), &topic).await;
    let copies = copies(&records);
    assert_eq!(copies.len(), 150);
    assert!(
        copies.values().all(|&n| n == 1),
        "no reading is in Kafka twice"
    );
}
