//! Large bodies by reference: `uploads` signed bodies of `upload_bytes` each, from 1, then
//! more, senders at once, through an ingress that streams them to the local S3 server; its
//! peak resident memory (VmHWM) against its idle one, and every acknowledged body's record and
//! object checked. The objects are removed afterwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use spillway_core::{headers, ObjectRef};
use spillway_kafka::{reader, Connection};
use spillway_objects::{Objects, ObjectsConfig};
use spillway_signature::unix_seconds;
use spillway_testkit::local_s3_options;

use super::{closed_loop, mib, post, unexpected, FleetSettings, Until};
use crate::server::Server;
use crate::signing::SignedSource;

/// One step of uploads, all from `senders` senders.
#[derive(Debug, Clone, Serialize)]
pub struct UploadStep {
    pub senders: usize,
    pub body_bytes: usize,
    /// Bodies answered 202.
    pub uploads: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// Per upload, from sending to the answer.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time of the ingress process per upload, in milliseconds.
    pub cpu_ms_per_upload: f64,
    /// The ingress's peak resident memory before the first upload and after this step.
    pub idle_peak_mib: f64,
    pub peak_mib: f64,
    pub failed: u64,
    pub failures: Vec<String>,
    /// docs/fleet.md's bound on what one streamed body adds to the peak: the body budget one
    /// upload may hold (three parts) and 16 MiB.
    pub bound_mib_per_upload: f64,
    /// Acknowledged bodies whose record in Kafka refers to an object of the right size.
    pub in_kafka: u64,
    /// Of those, the bodies whose object is in the store.
    pub stored: u64,
}

/// The upload steps, one per sender count, against one ingress.
pub async fn run(settings: &FleetSettings) -> anyhow::Result<Vec<UploadStep>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let store = ObjectsConfig {
        options: local_s3_options(),
        ..ObjectsConfig::new(format!("s3://spillway/fleet-bench-{run}"))
    };
    let options: Vec<String> = store
        .options
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    // Keyed and typed from headers, so that the bodies stream.
    let super::OneSource {
        ingress,
        source,
        connection,
    } = super::one_source_ingress(
        settings,
        &run,
        "captures",
        &format!(
            "event_type: {{ from: none }}, max_body_bytes: {}",
            settings.upload_bytes
        ),
        &format!(
            "objects: {{ url: \"{}\", options: {{ {} }} }}\n",
            store.url,
            options.join(", ")
        ),
    )
    .await?;
    let objects = Objects::open(&store)?;
    let idle = crate::cpu::peak_resident_bytes(ingress.pid)? as f64;

    let mut body = vec![0u8; settings.upload_bytes];
    rand::rngs::StdRng::seed_from_u64(3).fill(&mut body[..]);
    let body = Bytes::from(body);
    let mut steps = Vec::new();
    for &senders in &settings.upload_senders {
        let (mut step, ids) = step(settings, &ingress, &source, &body, senders).await?;
        step.idle_peak_mib = mib(idle);
        step.bound_mib_per_upload = mib((store.upload_bytes() + 16 * 1024 * 1024) as f64);
        let (in_kafka, stored) =
            check(&connection, &source.topic, &objects, &ids, body.len()).await?;
        (step.in_kafka, step.stored) = (in_kafka, stored);
        eprintln!(
            "uploads  {senders:>2} at once x {:.0} MiB  {:>6.1} MiB/s  p50 {:>7.0} ms  p99 {:>7.0} ms  cpu {:>5.1} ms/upload  peak RSS {:.1} MiB (idle {:.1})  failed {}  in Kafka {}/{}  stored {}",
            mib(body.len() as f64),
            step.mib_per_s,
            step.p50_ms,
            step.p99_ms,
            step.cpu_ms_per_upload,
            step.peak_mib,
            step.idle_peak_mib,
            step.failed,
            step.in_kafka,
            step.uploads,
            step.stored,
        );
        steps.push(step);
    }
    ingress.stop().await;
    for object in objects.list().await? {
        objects.delete_uri(&object.uri).await?;
    }
    Ok(steps)
}

async fn step(
    settings: &FleetSettings,
    ingress: &Server,
    source: &SignedSource,
    body: &Bytes,
    senders: usize,
) -> anyhow::Result<(UploadStep, HashSet<String>)> {
    let client = super::http_client();
    let url = format!("{}/v1/hooks/{}", ingress.base, source.name);
    let (signer, body) = (Arc::new(source.signer.clone()), body.clone());
    let cpu_before = crate::cpu::cpu_time(ingress.pid)?;
    let result = closed_loop(senders, Until::Requests(settings.uploads), move |number| {
        let (client, url, signer, body) =
            (client.clone(), url.clone(), signer.clone(), body.clone());
        async move {
            let id = upload_id(senders, number);
            let signed = signer.headers(&id, unix_seconds(SystemTime::now()), &body);
            match post(&client, &url, &signed, body).await? {
                (202, _) => Ok(()),
                (status, answer) => Err(unexpected(status, &answer)),
            }
        }
    })
    .await;
    let cpu = crate::cpu::cpu_time(ingress.pid)? - cpu_before;
    let ids: HashSet<String> = result.succeeded().map(|n| upload_id(senders, n)).collect();
    let uploads = ids.len() as u64;
    let seconds = result.elapsed.as_secs_f64();
    let (p50_ms, p99_ms, max_ms) = result.latency_ms();
    let step = UploadStep {
        senders,
        body_bytes: settings.upload_bytes,
        uploads,
        seconds,
        mib_per_s: mib((uploads as usize * settings.upload_bytes) as f64) / seconds,
        p50_ms,
        p99_ms,
        max_ms,
        cpu_ms_per_upload: cpu.as_secs_f64() * 1e3 / uploads.max(1) as f64,
        idle_peak_mib: 0.0,
        bound_mib_per_upload: 0.0,
        peak_mib: mib(crate::cpu::peak_resident_bytes(ingress.pid)? as f64),
        failed: result.failed(),
        failures: result.failures(),
        in_kafka: 0,
        stored: 0,
    };
    Ok((step, ids))
}

fn upload_id(senders: usize, number: u64) -> String {
    format!("u{senders}-{number}")
}

/// How many of `ids` have a record referring to an object of `size` bytes, and how many of
/// those have their object in the store (each id counted once, however many records it has).
async fn check(
    connection: &Connection,
    topic: &str,
    objects: &Objects,
    ids: &HashSet<String>,
    size: usize,
) -> anyhow::Result<(u64, u64)> {
    let (connection, topic) = (connection.clone(), topic.to_owned());
    let records = tokio::task::spawn_blocking(move || {
        reader::read_topic(&connection, &topic, Duration::from_secs(30))
    })
    .await??;
    let listed: HashSet<String> = objects.list().await?.into_iter().map(|o| o.uri).collect();
    let (mut in_kafka, mut stored) = (HashSet::new(), HashSet::new());
    for record in &records {
        let Some(id) = record
            .header(headers::DEDUPE_KEY)
            .filter(|k| ids.contains(*k))
        else {
            continue;
        };
        let Some(object) = ObjectRef::from_headers(|name| record.header(name)) else {
            continue;
        };
        if object.size == size as u64 {
            in_kafka.insert(id);
            if listed.contains(&object.uri) {
                stored.insert(id);
            }
        }
    }
    Ok((in_kafka.len() as u64, stored.len() as u64))
}
