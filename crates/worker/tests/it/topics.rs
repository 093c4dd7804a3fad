//! The topics a worker writes and reads: it refuses to start while a retry tier or the
//! dead-letter topic is missing (M-2), and it drains the tiers of an earlier retry policy
//! (M-6).

use std::time::Duration;

use serde_json::json;
use spillway_core::headers;
use spillway_testkit::wait::at_least;
use spillway_testkit::{eventually, TestSubscriber};
use spillway_worker::control;

use crate::rig::rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refuses_to_start_while_a_tier_it_parks_in_is_missing() {
    let rig = rig(&[], json!({ "retry_max_delay": "16s" })).await;
    // The policy changed to a longer cap and `topics create` was not run again.
    let mut config = rig.config.clone();
    config.worker.retry_max_delay = Duration::from_secs(40);
    let worker = spillway_worker::Worker::from_config(&config).expect("worker");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        worker.run(admin, std::future::pending()),
    )
    .await
    .expect("the worker returns")
    .expect_err("refused");
    let text = refused.to_string();
    let missing = format!("{}worker.retry.32s", config.kafka.topic_prefix);
    assert!(text.contains(&missing), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(
        !text.contains("retry.16s"),
        "the existing tiers pass: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_parked_in_the_tiers_of_an_earlier_retry_policy_are_still_delivered() {
    let subscriber = TestSubscriber::ok().await;
    let rig = rig(&[("s", subscriber.url("/"), json!({}))], json!({})).await;
    // A tier of a policy that started at 3 s: not among this config's tiers.
    let old_tier = format!("{}worker.retry.3s", rig.config.kafka.topic_prefix);
    spillway_testkit::create_topics(&rig.config.kafka.brokers, std::slice::from_ref(&old_tier))
        .await;
    let parked: Vec<(String, Vec<u8>)> = [
        (headers::EVENT_ID, "parked-1"),
        (headers::SOURCE, "github"),
        ("x-github-event", "push"),
        (control::SUBSCRIPTION, "s"),
        (control::ATTEMPT, "2"),
        (control::NOT_BEFORE, "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
    .collect();
    rig.producer
        .send_record(
            &old_tier,
            Some(b"k".as_slice()),
            br#"{"parked":1}"#,
            &parked,
        )
        .await
        .expect("park");
    let (stop, running) = rig.start_worker();
    eventually("the parked retry delivered", async || {
        at_least(subscriber.received().len(), 1)
    })
    .await;
    let got = subscriber.received();
    assert_eq!(got[0].webhook_id(), Some("parked-1"));
    assert_eq!(got[0].header("spillway-attempt"), Some("2"));
    drop(stop);
    running.await.expect("worker");
}
