//! Batches of small readings split into records: for each batch size, signed NDJSON batches
//! of `record_bytes` readings (each with its own id, the dedupe key, and its device, the
//! partition key) for `batch_step`, then every acknowledged reading looked up in Kafka.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use spillway_core::headers;
use spillway_kafka::reader;
use spillway_signature::unix_seconds;

use super::{closed_loop, post, unexpected, FleetSettings, Until};
use crate::signing::SignedSource;

/// One batch size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BatchStep {
    pub records_per_batch: usize,
    pub record_bytes: usize,
    pub senders: usize,
    pub seconds: f64,
    /// Batches answered 202 with every record accepted.
    pub batches: u64,
    pub records: u64,
    pub records_per_s: f64,
    pub batches_per_s: f64,
    /// Per batch, from sending to the answer.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time of the ingress process per accepted record, and per batch.
    pub cpu_us_per_record: f64,
    pub cpu_us_per_batch: f64,
    pub rss_mib: f64,
    /// Batches answered otherwise (their records are not counted).
    pub failed: u64,
    pub failures: Vec<String>,
    /// Acknowledged readings found in Kafka, missing from it, and in it more than once.
    pub in_kafka: u64,
    pub lost: u64,
    pub written_twice: u64,
}

/// The batch steps, one per size, against one ingress.
pub async fn run(settings: &FleetSettings) -> anyhow::Result<Vec<BatchStep>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let super::OneSource {
        ingress,
        source,
        connection,
    } = super::one_source_ingress(
        settings,
        &run,
        "meters",
        "batch: { format: ndjson }, dedupe: { from: json_pointer, pointer: /id }, \
         partition_key: { from: json_pointer, pointer: /device }",
        "",
    )
    .await?;

    let mut steps = Vec::new();
    let mut acknowledged: HashMap<usize, HashSet<String>> = HashMap::new();
    for &size in &settings.batch_sizes {
        let (step, keys) = step(settings, &ingress, &source, size).await?;
        eprintln!(
            "batches  {size:>5} x {} B  {:>2} senders  {:>8.0} records/s  {:>7.1} batches/s  p50 {:>7.2} ms  p99 {:>7.2} ms  cpu {:>6.1} us/record  rss {:>5.1} MiB  failed {}",
            settings.record_bytes,
            step.senders,
            step.records_per_s,
            step.batches_per_s,
            step.p50_ms,
            step.p99_ms,
            step.cpu_us_per_record,
            step.rss_mib,
            step.failed,
        );
        acknowledged.insert(size, keys);
        steps.push(step);
    }
    ingress.stop().await;

    let topic = source.topic.clone();
    let records = tokio::task::spawn_blocking(move || {
        reader::read_topic(&connection, &topic, Duration::from_secs(30))
    })
    .await??;
    let mut copies: HashMap<String, u64> = HashMap::new();
    for record in &records {
        if let Some(key) = record.header(headers::DEDUPE_KEY) {
            *copies.entry(key.to_owned()).or_default() += 1;
        }
    }
    for step in &mut steps {
        let keys = &acknowledged[&step.records_per_batch];
        step.in_kafka = keys.iter().filter(|k| copies.contains_key(*k)).count() as u64;
        step.lost = keys.len() as u64 - step.in_kafka;
        step.written_twice = keys
            .iter()
            .filter(|k| copies.get(*k).is_some_and(|n| *n > 1))
            .count() as u64;
        eprintln!(
            "batches  {:>5} per batch: {} acknowledged readings, {} in Kafka, lost {}, written twice {}",
            step.records_per_batch,
            keys.len(),
            step.in_kafka,
            step.lost,
            step.written_twice
        );
    }
    Ok(steps)
}

/// One batch size: the figures, and the keys of the readings acknowledged.
async fn step(
    settings: &FleetSettings,
    ingress: &crate::server::Server,
    source: &SignedSource,
    size: usize,
) -> anyhow::Result<(BatchStep, HashSet<String>)> {
    let client = super::http_client();
    let url = format!("{}/v1/hooks/{}", ingress.base, source.name);
    let (signer, record_bytes) = (Arc::new(source.signer.clone()), settings.record_bytes);
    let senders = (settings.batch_records_in_flight / size.max(1)).clamp(2, 64);
    let cpu_before = crate::cpu::cpu_time(ingress.pid)?;
    let result = closed_loop(
        senders,
        Until::Elapsed(settings.batch_step),
        move |number| {
            let (client, url, signer) = (client.clone(), url.clone(), signer.clone());
            async move {
                let body = batch(size, number, record_bytes);
                let id = format!("b{size}-{number}");
                let signed = signer.headers(&id, unix_seconds(SystemTime::now()), &body);
                let (status, answer) = post(&client, &url, &signed, body).await?;
                let accepted = serde_json::from_slice::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|v| v["accepted"].as_u64());
                match (status, accepted) {
                    (202, Some(n)) if n == size as u64 => Ok(()),
                    _ => Err(unexpected(status, &answer)),
                }
            }
        },
    )
    .await;
    let cpu = crate::cpu::cpu_time(ingress.pid)? - cpu_before;
    let rss = crate::cpu::resident_bytes(ingress.pid)? as f64;
    let keys: HashSet<String> = result
        .succeeded()
        .flat_map(|number| (0..size).map(move |i| reading_id(size, number, i)))
        .collect();
    let batches = result.succeeded().count() as u64;
    let records = keys.len() as u64;
    let seconds = result.elapsed.as_secs_f64();
    let (p50_ms, p99_ms, max_ms) = result.latency_ms();
    let cpu_us = cpu.as_secs_f64() * 1e6;
    Ok((
        BatchStep {
            records_per_batch: size,
            record_bytes,
            senders,
            seconds,
            batches,
            records,
            records_per_s: records as f64 / seconds,
            batches_per_s: batches as f64 / seconds,
            p50_ms,
            p99_ms,
            max_ms,
            cpu_us_per_record: cpu_us / records.max(1) as f64,
            cpu_us_per_batch: cpu_us / batches.max(1) as f64,
            rss_mib: super::mib(rss),
            failed: result.failed(),
            failures: result.failures(),
            in_kafka: 0,
            lost: 0,
            written_twice: 0,
        },
        keys,
    ))
}

fn reading_id(size: usize, number: u64, index: usize) -> String {
    format!("b{size}-{number}-{index}")
}

/// Batch `number` of `size` NDJSON readings, each padded to `record_bytes`, spread over 500
/// devices.
fn batch(size: usize, number: u64, record_bytes: usize) -> Bytes {
    let mut body = Vec::with_capacity(size * (record_bytes + 1));
    for index in 0..size {
        let device = (number as usize * size + index) % 500;
        let head = format!(
            r#"{{"id":"{}","device":"meter-{device:03}","ts":1764633600,"kwh":{}.125,"pad":""#,
            reading_id(size, number, index),
            index % 1000,
        );
        let pad = record_bytes.saturating_sub(head.len() + 2);
        body.extend_from_slice(head.as_bytes());
        body.resize(body.len() + pad, b'x');
        body.extend_from_slice(b"\"}");
        if index + 1 < size {
            body.push(b'\n');
        }
    }
    body.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_its_readings_at_the_record_size() {
        let body = batch(3, 7, 200);
        let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        for (index, line) in lines.iter().enumerate() {
            assert_eq!(line.len(), 200);
            let reading: serde_json::Value = serde_json::from_slice(line).expect("JSON");
            assert_eq!(reading["id"], reading_id(3, 7, index).as_str());
            assert_eq!(reading["device"], format!("meter-{:03}", 21 + index));
        }
    }
}
