//! Retry faults: a retry tier missing when a worker starts, a retry policy changed while
//! records wait in the old tiers, and a subscriber down for long behind an open circuit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use spillway_testkit::spillway::source;
use spillway_testkit::wait::at_least;
use spillway_testkit::{eventually, read_topic, redis_nodes, Behaviour, TestSubscriber};

use spillway_testkit::spillway::Setup;

use crate::harness::{one_record_batches, proc_status_bytes, record, stack, Load};

/// A subscriber that answers 503 while `down` is set, 200 otherwise.
async fn switchable(down: &Arc<AtomicBool>) -> TestSubscriber {
    let down = down.clone();
    TestSubscriber::start(move |_| {
        if down.load(Ordering::SeqCst) {
            Behaviour::Status(503)
        } else {
            Behaviour::Status(200)
        }
    })
    .await
}

/// A figure of `/proc/<pid>/status` in MiB.
fn proc_status_mib(pid: u32, field: &str) -> f64 {
    proc_status_bytes(pid, field) as f64 / f64::from(1 << 20)
}

/// A case's stack: two sources, one subscriber `inbox`, one record per batch (the worker
/// cases pause partitions, see [`one_record_batches`]) and `worker` settings.
async fn retry_stack(worker: serde_json::Value, subscriber: &TestSubscriber) -> Setup {
    stack(
        &spillway_testkit::kafka_brokers(),
        &redis_nodes(),
        &[source("github"), source("acme")],
        json!({ "kafka": one_record_batches(), "worker": worker }),
        &[("inbox", subscriber)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_retry_tier_keeps_the_worker_from_starting_until_it_is_created() {
    let down = Arc::new(AtomicBool::new(false));
    let subscriber = switchable(&down).await;
    let mut setup = retry_stack(
        json!({ "retry_initial": "200ms", "retry_max_delay": "1600ms" }),
        &subscriber,
    )
    .await;
    // The policy gains a longer tier (3.2 s) that `topics create` has not made yet.
    setup.merge(json!({ "worker": { "retry_max_delay": "3200ms" } }));
    let missing = format!("{}worker.retry.3200ms", setup.topic_prefix);
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.1).await;
    let mut refused = setup.spawn_worker("worker-refused");
    eventually("the worker to refuse to start", async || {
        if refused.is_running() {
            Err("still running".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    let log = refused.log_text();
    assert!(
        log.contains(&missing) && log.contains("does not exist"),
        "the worker does not name the missing tier:\n{log}"
    );
    // Some deliveries fail while the load goes on, so the tiers are used once it runs.
    load.at(0.3).await;
    down.store(true, Ordering::SeqCst);
    setup.create_topics().await;
    let mut worker = setup.spawn_worker("worker");
    load.at(0.5).await;
    down.store(false, Ordering::SeqCst);
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "retry_tier_missing",
        "the worker started at 10% of the load with a retry tier missing; the tier created at \
         30%, a new worker started, the subscriber answering 503 from 30% to 50%",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "the worker refused to start, naming {missing} as missing; once it existed every \
             acknowledged event was delivered (the events of the first 30% waited in Kafka)"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_policy_change_drains_the_records_parked_in_the_old_tiers() {
    let down = Arc::new(AtomicBool::new(false));
    let subscriber = switchable(&down).await;
    let mut setup = retry_stack(
        json!({
            "retry_initial": "1s",
            "retry_max_delay": "4s",
            "max_attempts": 1000,
            "breaker_cooldown": "1s",
        }),
        &subscriber,
    )
    .await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let mut old = setup.spawn_worker("worker-old-policy");

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.1).await;
    down.store(true, Ordering::SeqCst);
    // The old worker has parked deliveries in its tiers (it may still be joining its group
    // when the short form's load gets here), and the load has gone on to half.
    let old_tiers = spillway_worker::topics::retry_tiers(&setup.load());
    let count_parked = async || {
        let mut parked = 0;
        for tier in &old_tiers {
            parked += read_topic(&setup.brokers, &tier.topic).await.len();
        }
        parked
    };
    eventually("deliveries parked in the old tiers", async || {
        at_least(count_parked().await, 1)
    })
    .await;
    load.at(0.5).await;
    // A rolling change: the old worker stops, the new policy's tiers are made, the new
    // worker starts; none of the new tiers has an old tier's name.
    old.terminate_and_wait();
    let parked = count_parked().await;
    setup.merge(json!({ "worker": { "retry_initial": "300ms", "retry_max_delay": "2400ms" } }));
    setup.create_topics().await;
    let mut worker = setup.spawn_worker("worker-new-policy");
    load.at(0.6).await;
    down.store(false, Ordering::SeqCst);
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "retry_policy_changed",
        "the subscriber answering 503 from 10% to 60% of the load; at 50% the worker stopped \
         and one with other retry tiers (300 ms to 2.4 s instead of 1 s to 4 s) started",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "{parked} records were parked in the old tiers (1 s, 2 s, 4 s) when the policy \
             changed; the new worker's retry consumer follows every tier topic of the prefix \
             and delivered them"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_down_for_long_behind_an_open_circuit_gets_everything_once_back() {
    let down = Arc::new(AtomicBool::new(false));
    let subscriber = switchable(&down).await;
    let setup = retry_stack(
        json!({
            "retry_initial": "200ms",
            "retry_max_delay": "3200ms",
            "max_attempts": 1000,
            "breaker_failures": 3,
            "breaker_cooldown": "1s",
            "max_record_memory": 8 << 20,
        }),
        &subscriber,
    )
    .await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let mut worker = setup.spawn_worker("worker");
    let admin = worker.admin_addr().await;
    let pid = worker.pid();

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.1).await;
    down.store(true, Ordering::SeqCst);
    let ready_mib = proc_status_mib(pid, "VmRSS");
    load.at(0.8).await;
    let circuit = spillway_testkit::Client::http1()
        .send(
            http::Method::GET,
            &format!("http://{admin}/metrics"),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .map(|m| {
            String::from_utf8_lossy(&m.body).contains("circuit_state{subscription=\"inbox\"} 0")
        })
        .unwrap_or(true);
    down.store(false, Ordering::SeqCst);
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    let peak_mib = proc_status_mib(pid, "VmHWM");
    let config = setup.load();
    let rule_mib = (2 * config.worker.max_record_memory
        + 2 * config.worker.prefetch_bytes()
        + spillway_config::WORKER_BASE_BYTES) as f64
        / f64::from(1 << 20);
    assert!(
        peak_mib <= rule_mib,
        "the worker's peak resident set {peak_mib:.1} MiB is over its memory rule {rule_mib:.0} MiB"
    );
    record(
        "subscriber_down_circuit_open",
        "the only subscriber answering 503 from 10% to 80% of the load (its circuit opens after \
         3 failures, 1 s cooldown), then 200",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "the circuit was {} at 80%; every acknowledged event delivered once the subscriber \
             was back, nothing dead-lettered; worker resident set {ready_mib:.1} MiB when the \
             outage began, peak {peak_mib:.1} MiB (memory rule {rule_mib:.0} MiB with \
             max_record_memory 8 MiB)",
            if circuit { "closed" } else { "open" }
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_answering_slowly_for_long_does_not_pin_the_committed_offsets() {
    let slow = Arc::new(AtomicBool::new(false));
    let subscriber = TestSubscriber::start({
        let slow = slow.clone();
        move |_| {
            if slow.load(Ordering::SeqCst) {
                Behaviour::Slow(std::time::Duration::from_secs(4), 200)
            } else {
                Behaviour::Status(200)
            }
        }
    })
    .await;
    let mut setup = retry_stack(
        json!({
            "first_attempt_budget": "1s",
            "max_attempts": 1000,
            "retry_concurrency": 256,
        }),
        &subscriber,
    )
    .await;
    // Slower than the first-attempt budget, within its timeout: every delivery succeeds, late.
    let mut subscriptions = setup
        .doc()
        .get("subscriptions")
        .cloned()
        .expect("subscriptions");
    subscriptions[0]["timeout"] = json!("10s");
    setup.set("subscriptions", subscriptions);
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let mut worker = setup.spawn_worker("worker");

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.1).await;
    slow.store(true, Ordering::SeqCst);
    let finished = load.finish().await;
    finished.assert_nothing_lost();

    // While the subscriber is still slow, the source partitions' committed offsets reach the
    // end: the first attempts in hand were parked, not held.
    let config = setup.load();
    let connection = spillway_kafka::Connection::from(&config.kafka);
    let mut ends = 0;
    for source in ["github", "acme"] {
        ends += read_topic(&setup.brokers, &setup.topic(source)).await.len() as i64;
    }
    eventually("the source offsets committed to their ends", async || {
        let mut committed = 0;
        for source in ["github", "acme"] {
            let (c, topic, group) = (
                connection.clone(),
                setup.topic(source),
                config.worker.group_id.clone(),
            );
            let partitions = config.kafka.partitions;
            committed += tokio::task::spawn_blocking(move || {
                spillway_kafka::reader::committed_total(
                    &c,
                    &group,
                    &topic,
                    partitions,
                    std::time::Duration::from_secs(5),
                )
            })
            .await
            .expect("task")
            .map_err(|e| e.to_string())?;
        }
        if committed >= ends {
            Ok(())
        } else {
            Err(format!("{committed} of {ends} committed"))
        }
    })
    .await;
    assert!(slow.load(Ordering::SeqCst), "still slow");
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    slow.store(false, Ordering::SeqCst);
    record(
        "subscriber_slow",
        "the only subscriber answering each delivery after 4 s (its timeout 10 s, \
         worker.first_attempt_budget 1 s) from 10% of the load on",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "the source partitions' committed offsets reached their ends ({ends} records) while \
             the subscriber was still slow: each first attempt still in hand after 1 s was \
             parked and made again from a retry tier, with its whole timeout"
        ),
    );
}
