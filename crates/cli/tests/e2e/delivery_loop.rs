//! Across processes: a subscription that feeds its events back into the ingress (under an
//! address `worker.ingress_urls` does not list, so registration cannot see it) goes round
//! `ingress.max_hops` times, then the ingress answers 508 and the worker dead-letters the
//! event instead of retrying: the loop is cut.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use spillway_signature::Scheme;
use spillway_testkit::spillway::{post_event, spillway_bin, worker_setup, TestSource};
use spillway_testkit::{read_topic, Client, Wait};
use spillway_worker::control;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_loop_through_the_ingress_is_cut_at_the_hop_limit() {
    let relay = TestSource {
        name: "relay",
        scheme: Scheme::standard_webhooks(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    };
    let setup = worker_setup(&relay, |_| json!({})).await;
    let config = setup.load();
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    // The subscription signs with the relay source's own secret, so the ingress accepts what
    // the worker sends back to it.
    let added = Command::new(spillway_bin())
        .args(["--log-format", "text", "subscriptions", "add", "--config"])
        .arg(&setup.config)
        .args(["--id", "echo", "--source", "relay", "--url"])
        .arg(ingress.hook_url("relay"))
        .arg("--secret-file")
        .arg(setup.dir.path().join("relay.secret"))
        .output()
        .expect("spillway runs");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let mut worker = setup.spawn_worker("worker");

    let reply = post_event(&Client::http1(), &ingress, &relay, "loop-0", 0).await;
    assert_eq!(reply.status, 202);
    let dead_letters = spillway_worker::topics::dead_letter_topic(&config);
    let dead = Wait::new()
        .every(Duration::from_millis(200))
        .poll(async || {
            let dead = read_topic(&setup.brokers, &dead_letters).await;
            if dead.is_empty() {
                assert!(worker.is_running(), "worker exited:\n{}", worker.log_text());
                None
            } else {
                Some(dead)
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the loop never ended in a dead letter;\nworker:\n{}",
                worker.log_text()
            )
        });

    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header(control::DEAD_REASON), Some("target_refused"));
    assert!(dead[0]
        .header(control::LAST_ERROR)
        .is_some_and(|e| e.contains("508")));
    assert_eq!(dead[0].header(control::ATTEMPT), Some("1"), "no retries");
    let accepted = read_topic(&setup.brokers, &setup.topic("relay")).await;
    let mut hops: Vec<u32> = accepted
        .iter()
        .map(|r| {
            r.header(spillway_core::headers::HOP)
                .and_then(|h| h.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    hops.sort_unstable();
    let limit = config.ingress.max_hops;
    assert_eq!(
        hops,
        (0..=limit).collect::<Vec<_>>(),
        "the event went round max_hops times, once each"
    );
    assert!(ingress
        .metrics()
        .await
        .contains("spillway_http_requests_total{outcome=\"loop_detected\",source=\"relay\"} 1"));
    worker.kill();
}
