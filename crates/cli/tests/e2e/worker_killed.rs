//! Across processes: events accepted by the ingress reach a subscriber through `spillway
//! worker`, and a worker killed with SIGKILL mid-stream and replaced loses none of them.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use spillway_testkit::{Client, TestSubscriber, WorkerProcess};

use crate::support::{inbox_subscription, post_event, source, worker_setup, BIN, PATIENCE};

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_is_replaced_and_nothing_accepted_is_lost() {
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = worker_setup(&github, |dir| {
        format!(
            // A killed member holds its partitions until its session times out (45 s by default).
            "  drain_timeout: 3s\n  \
             consumer_properties: {{ session.timeout.ms: \"6000\", heartbeat.interval.ms: \"1000\" }}\n{}",
            inbox_subscription(dir, &subscriber.url("/inbox")),
        )
    })
    .await;

    let ingress = setup.spawn("ingress");
    ingress.wait_ready(PATIENCE).await;
    let client = Client::http1();
    let mut accepted = HashSet::new();
    for n in 0..300 {
        let reply = post_event(&client, &ingress, &github, &format!("k-{n}"), n).await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        accepted.insert(reply.field("id").expect("id"));
    }

    let mut first = WorkerProcess::spawn(
        Path::new(BIN),
        &setup.config,
        setup.dir.path().join("worker-1.log"),
    );
    wait_until("the first worker under way", || {
        assert!(
            first.is_running(),
            "the worker exited:\n{}",
            first.log_text()
        );
        subscriber.received().len() >= 40
    })
    .await;
    first.kill();
    let log = first.log_text();

    let second = WorkerProcess::spawn(
        Path::new(BIN),
        &setup.config,
        setup.dir.path().join("worker-2.log"),
    );
    let deadline = Instant::now() + PATIENCE;
    while !subscriber.webhook_ids().is_superset(&accepted) {
        assert!(
            Instant::now() < deadline,
            "{} accepted events never reached the subscriber;\nfirst worker:\n{log}\nsecond worker:\n{}",
            accepted.difference(&subscriber.webhook_ids()).count(),
            second.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everything the subscriber got was accepted: nothing invented. Duplicates are allowed
    // (the killed worker's unsettled deliveries are made again) and counted.
    assert!(subscriber.webhook_ids().is_subset(&accepted));
    let duplicates = subscriber.received().len() - accepted.len();
    eprintln!("{duplicates} deliveries repeated after the SIGKILL");
}
