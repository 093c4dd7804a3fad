//! What every fault case shares: the stack's config, a steady open-model load from the load
//! generator's library, and the one oracle: every acknowledged event is in Kafka exactly once
//! (`spillway-loadgen --verify`'s reconciliation) and reached every matching subscriber at
//! least once. Each case's figures are written to `target/faults/<case>.json`, from which
//! `make faults` builds docs/faults.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spillway_loadgen::plan::{run_and_seq, BodySizes, Mix, Planner};
use spillway_loadgen::report::Report;
use spillway_loadgen::run::Settings;
use spillway_loadgen::signing::SignedSource;
use spillway_loadgen::verify::{read_back, reconcile, Reconciliation};
use spillway_testkit::config_doc::merge;
use spillway_testkit::spillway::{
    quick_failover, subscription, worker_setup_on, Setup, TestSource,
};
use spillway_testkit::{IngressProcess, TestSubscriber, Wait, WorkerProcess};

/// The load every case runs under: `SPILLWAY_FAULT_RATE` requests per second for
/// `SPILLWAY_FAULT_SECONDS`. The defaults are the short form `make test` runs; `make faults`
/// holds a higher rate for longer.
pub fn load_shape() -> (f64, Duration) {
    let number = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(default)
    };
    (
        number("SPILLWAY_FAULT_RATE", 100.0),
        Duration::from_secs_f64(number("SPILLWAY_FAULT_SECONDS", 8.0)),
    )
}

pub use spillway_testkit::proc_status_bytes;

/// Kafka properties for one record per batch. The worker cases pause partitions (an open
/// circuit, a retry lane waiting for its head, a lane over its memory) or resume from committed
/// offsets (a new worker): fetches that can start inside a record batch, which tansu 0.6's
/// memory storage answers without the rest of that batch (docs/development.md). One record
/// per batch keeps that bug out of these cases in the short form too; the CI run of 2026-12-01
/// lost a delivery to it in `a_hanging_subscriber_does_not_hold_up_the_others`, and that of
/// 2026-12-03 two in the memory case, whose near-max bodies fill the worker's lanes.
pub fn one_record_batches() -> Value {
    json!({ "properties": { "batch.num.messages": "1" } })
}

/// A case's config: sources on the given Kafka and Redis, a worker whose subscriptions deliver
/// every source to the named subscribers, then the case's `patch`; every topic created.
pub async fn stack(
    brokers: &str,
    redis: &[String],
    sources: &[TestSource],
    patch: Value,
    subscribers: &[(&str, &TestSubscriber)],
) -> Setup {
    worker_setup_on(brokers, redis, sources, |dir| {
        let mut config = quick_failover();
        config["subscriptions"] = subscribers
            .iter()
            .map(|(id, subscriber)| {
                let mut subscription = subscription(dir, id, &subscriber.url("/in"));
                subscription["timeout"] = json!("1s");
                subscription
            })
            .collect();
        // `make faults` asks for one record per batch (SPILLWAY_FAULT_ONE_RECORD_BATCHES=1).
        // tansu 0.6's memory storage answers a fetch from an offset inside a batch with the
        // batches that start after it, skipping the rest of that batch; a consumer fetches from
        // mid-batch after a pause or a rebalance, which the heavier load brings about, so the
        // worker would miss records (Apache Kafka returns the batch that holds the offset). The
        // short form keeps normal batching: single-record batches slow the shared broker down
        // for every other test.
        if std::env::var("SPILLWAY_FAULT_ONE_RECORD_BATCHES").is_ok_and(|v| v == "1") {
            config["kafka"] = json!({ "properties": { "batch.num.messages": "1" } });
        }
        merge(&mut config, patch);
        config
    })
    .await
}

/// Starts an ingress (ready) and a worker on the setup.
pub async fn start(setup: &Setup) -> (IngressProcess, WorkerProcess) {
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    (ingress, setup.spawn_worker("worker"))
}

/// A load in progress.
pub struct Load {
    task: tokio::task::JoinHandle<Report>,
    run_id: String,
    topics: Vec<String>,
    kafka: spillway_kafka::Connection,
    started: Instant,
    duration: Duration,
    rate: f64,
}

/// A finished load: its answers and what Kafka holds for it.
pub struct Finished {
    pub report: Report,
    topics: Vec<String>,
    kafka: spillway_kafka::Connection,
    pub run_id: String,
    pub reconciliation: Reconciliation,
    pub rate: f64,
    pub duration: Duration,
}

impl Load {
    /// Starts sending signed requests for every source of `config` to `target` at the rate of
    /// [`load_shape`]; `duplicates` of them repeat an earlier request, as a sender's retry.
    pub fn start(config: &Path, target: &str, duplicates: f64) -> Self {
        Self::start_bounded(config, target, duplicates, 512)
    }

    /// As [`Load::start`], with at most `connections` requests in flight (and so connections
    /// open): a request due while all are busy waits for one, however slow the answers.
    pub fn start_bounded(config: &Path, target: &str, duplicates: f64, connections: usize) -> Self {
        let (rate, duration) = load_shape();
        let config = spillway_config::load(config).expect("config");
        let sources = SignedSource::from_config(&config).expect("signing sources");
        let topics = sources.iter().map(|s| s.topic.clone()).collect();
        let run_id = spillway_testkit::unique("fault");
        let planner = Planner::new(
            sources,
            Mix {
                duplicates,
                tampered: 0.0,
                stale: 0.0,
                body_sizes: "512:50,2048:40,16384:10"
                    .parse::<BodySizes>()
                    .expect("sizes"),
            },
            &run_id,
            1,
        );
        let settings = Settings {
            target: target.to_owned(),
            rate,
            duration,
            connections,
            http2: false,
            timeout: Duration::from_secs(30),
            progress: false,
        };
        let task = tokio::spawn(async move {
            spillway_loadgen::run::run(&settings, planner)
                .await
                .expect("load")
        });
        Self {
            task,
            run_id,
            topics,
            kafka: spillway_kafka::Connection::from(&config.kafka),
            started: Instant::now(),
            duration,
            rate,
        }
    }

    /// Waits until this share of the load's duration has passed: when a fault is injected.
    pub async fn at(&self, share: f64) {
        let when = self.started + self.duration.mul_f64(share);
        tokio::time::sleep_until(when.into()).await;
    }

    /// The share of the load's duration that has passed.
    pub fn elapsed_share(&self) -> f64 {
        self.started.elapsed().as_secs_f64() / self.duration.as_secs_f64()
    }

    /// Waits for the last answer, then reads the source topics back and reconciles.
    pub async fn finish(self) -> Finished {
        let report = self.task.await.expect("load task");
        let (kafka, topics, run) = (self.kafka.clone(), self.topics.clone(), self.run_id.clone());
        let records = tokio::task::spawn_blocking(move || {
            let mut tries = 0;
            loop {
                match read_back(&kafka, &topics, &run, Duration::from_secs(120)) {
                    Ok(r) => break r,
                    Err(e) if tries < 20 => {
                        eprintln!("read back: {e:?}");
                        tries += 1;
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Err(e) => panic!(
                        "reading the source topics back: {e:?} (a private tansu broker may have \
                         died of a storage panic: see docs/development.md)"
                    ),
                }
            }
        })
        .await
        .expect("reader");
        let reconciliation = reconcile(report.answers(), &records);
        Finished {
            report,
            topics: self.topics,
            kafka: self.kafka,
            run_id: self.run_id,
            reconciliation,
            rate: self.rate,
            duration: self.duration,
        }
    }
}

impl Finished {
    /// Answers with this status and error code.
    pub fn count_error(&self, status: u16, error: &str) -> usize {
        self.report
            .answers()
            .iter()
            .filter(|a| matches!(&a.result, Ok((s, Some(e))) if *s == status && e == error))
            .count()
    }

    /// How many answers had each error code, for a status: `dedupe_unavailable x12, ...`.
    pub fn error_codes(&self, status: u16) -> String {
        let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
        for answer in self.report.answers() {
            if let Ok((s, error)) = &answer.result {
                if *s == status {
                    *codes.entry(error.as_deref().unwrap_or("none")).or_default() += 1;
                }
            }
        }
        let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} x{n}")).collect();
        codes.join(", ")
    }

    /// The longest any answer with this status (and error code, if given) took, from when it
    /// was due.
    pub fn slowest(&self, status: u16, error: Option<&str>) -> Option<Duration> {
        self.report
            .answers()
            .iter()
            .filter(|a| match &a.result {
                Ok((s, e)) => *s == status && error.is_none_or(|want| e.as_deref() == Some(want)),
                Err(_) => false,
            })
            .map(|a| a.latency)
            .max()
    }

    /// Sequence numbers of the events acknowledged with a 2xx.
    pub fn acknowledged(&self) -> BTreeSet<u64> {
        self.report
            .answers()
            .iter()
            .filter(|a| matches!(&a.result, Ok((s, _)) if (200..300).contains(s)))
            .map(|a| a.seq)
            .collect()
    }

    /// Fails the test when anything acknowledged is missing from Kafka, there twice, or there
    /// under another id.
    pub fn assert_nothing_lost(&self) {
        assert!(
            self.reconciliation.ok(),
            "{}{}",
            self.report.summary().text(),
            self.reconciliation.text()
        );
        assert!(
            !self.acknowledged().is_empty(),
            "nothing was accepted:\n{}",
            self.report.summary().text()
        );
    }

    /// Waits until `subscriber` has answered 2xx to a delivery of every acknowledged event;
    /// returns (deliveries of this run's events, duplicate deliveries among them).
    pub async fn wait_delivered(
        &self,
        subscriber: &TestSubscriber,
        workers: &mut [&mut WorkerProcess],
    ) -> Delivery {
        match self.try_wait_delivered(subscriber, workers, Wait::new().times(2)).await {
            Ok(delivery) => delivery,
            Err(missing) => panic!(
                "{} acknowledged events never reached the subscriber (event ids: {:?}; where: {});\nworker log:\n{}",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                self.whereabouts(&missing).await,
                workers.first().map(|w| w.log_text()).unwrap_or_default()
            ),
        }
    }

    /// Like [`Finished::wait_delivered`], within `wait`; the event ids still missing then.
    pub async fn try_wait_delivered(
        &self,
        subscriber: &TestSubscriber,
        workers: &mut [&mut WorkerProcess],
        wait: Wait,
    ) -> Result<Delivery, Vec<String>> {
        let wanted = self.acknowledged();
        wait.poll(async || {
            let seqs: Vec<u64> = subscriber
                .delivered_bodies()
                .iter()
                .filter_map(|b| run_and_seq(b))
                .filter(|(run, _)| *run == self.run_id)
                .map(|(_, seq)| seq)
                .collect();
            let unique: BTreeSet<u64> = seqs.iter().copied().collect();
            let missing: BTreeSet<u64> = wanted.difference(&unique).copied().collect();
            if missing.is_empty() {
                return Ok(Delivery {
                    deliveries: seqs.len(),
                    duplicates: seqs.len() - unique.len(),
                });
            }
            for worker in workers.iter_mut() {
                assert!(
                    worker.is_running(),
                    "a worker exited:\n{}",
                    worker.log_text()
                );
            }
            Err(missing)
        })
        .await
        .map_err(|missing| self.event_ids(&missing))
    }

    /// Where the records of these events are: topic/partition@offset, and each partition's
    /// last offset, to tell a partition's unread tail from a gap.
    async fn whereabouts(&self, event_ids: &[String]) -> String {
        let mut out = Vec::new();
        for topic in &self.topics {
            let (kafka, t) = (self.kafka.clone(), topic.clone());
            let Ok(Ok(records)) = tokio::task::spawn_blocking(move || {
                spillway_kafka::reader::read_topic(&kafka, &t, Duration::from_secs(60))
            })
            .await
            else {
                continue;
            };
            let mut last: BTreeMap<i32, i64> = BTreeMap::new();
            for r in &records {
                let end = last.entry(r.partition).or_default();
                *end = (*end).max(r.offset);
                if r.header(spillway_core::headers::EVENT_ID)
                    .is_some_and(|id| event_ids.iter().any(|m| m == id))
                {
                    out.push(format!("{}/{}@{}", r.topic, r.partition, r.offset));
                }
            }
            out.push(format!("{topic} last offsets {last:?}"));
        }
        out.join(", ")
    }

    /// The event ids the answers gave these sequence numbers.
    fn event_ids(&self, seqs: &BTreeSet<u64>) -> Vec<String> {
        self.report
            .answers()
            .iter()
            .filter(|a| seqs.contains(&a.seq))
            .filter_map(|a| match &a.result {
                Ok((s, Some(id))) if (200..300).contains(s) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What a subscriber received of a run.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub deliveries: usize,
    pub duplicates: usize,
}

/// Prints a case's figures and writes them to `target/faults/<case>.json`.
pub fn record(
    case: &str,
    fault: &str,
    finished: &Finished,
    delivery: &[(&str, Delivery)],
    notes: &str,
) {
    let summary = finished.report.summary();
    let r = &finished.reconciliation;
    let lost = r.missing.len() + r.id_mismatch.len();
    let figures = json!({
        "case": case,
        "fault": fault,
        "rate": finished.rate,
        "seconds": finished.duration.as_secs_f64(),
        "requests": summary.requests,
        "statuses": summary.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "no_answer": summary.errors.values().sum::<u64>(),
        "acknowledged": r.acknowledged,
        "in_kafka_once": r.in_kafka_once,
        "lost": lost,
        "written_twice": r.produced_twice.len(),
        "written_again": r.written_again.len(),
        "unconfirmed_in_kafka": r.unconfirmed_in_kafka,
        "p99_ms": summary.latency_ms.p99,
        "deliveries": delivery.iter().map(|(s, d)| json!({
            "subscription": s, "deliveries": d.deliveries, "duplicates": d.duplicates
        })).collect::<Vec<_>>(),
        "notes": notes,
    });
    eprintln!("{case}: {figures}");
    let dir = results_dir();
    std::fs::create_dir_all(&dir).expect("results dir");
    std::fs::write(
        dir.join(format!("{case}.json")),
        serde_json::to_string_pretty(&figures).expect("json"),
    )
    .expect("results file");
}

fn results_dir() -> PathBuf {
    std::env::var("SPILLWAY_FAULT_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| spillway_testkit::repo_root().join("target/faults"))
}
