//! Across processes: events accepted by the ingress reach a subscriber through `spillway
//! worker`, and a worker killed with SIGKILL mid-stream and replaced loses none of them.

use std::collections::HashSet;

use serde_json::json;
use spillway_testkit::spillway::{
    inbox_subscription, post_event, quick_failover, source, worker_setup,
};
use spillway_testkit::wait::{all_of, at_least};
use spillway_testkit::{eventually, Client, TestSubscriber, Wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_is_replaced_and_nothing_accepted_is_lost() {
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = worker_setup(&github, |dir| {
        // A killed member holds its partitions until its session times out (45 s by default).
        let mut patch = quick_failover();
        patch["subscriptions"] = json!([inbox_subscription(dir, &subscriber.url("/inbox"))]);
        patch
    })
    .await;

    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let client = Client::http1();
    let mut accepted = HashSet::new();
    for n in 0..300 {
        let reply = post_event(&client, &ingress, &github, &format!("k-{n}"), n).await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        accepted.insert(reply.field("id").expect("id"));
    }

    let mut first = setup.spawn_worker("worker-1");
    eventually("the first worker under way", async || {
        assert!(
            first.is_running(),
            "the worker exited:\n{}",
            first.log_text()
        );
        at_least(subscriber.received().len(), 40)
    })
    .await;
    first.kill();
    let log = first.log_text();

    let second = setup.spawn_worker("worker-2");
    let delivered = Wait::new()
        .poll(async || all_of(&subscriber.webhook_ids(), &accepted))
        .await;
    if let Err(missing) = delivered {
        panic!(
            "accepted events never reached the subscriber ({missing});\nfirst worker:\n{log}\n\
             second worker:\n{}",
            second.log_text()
        );
    }
    // Everything the subscriber got was accepted: nothing invented. Duplicates are allowed
    // (the killed worker's unsettled deliveries are made again) and counted.
    assert!(subscriber.webhook_ids().is_subset(&accepted));
    let duplicates = subscriber.received().len() - accepted.len();
    eprintln!("{duplicates} deliveries repeated after the SIGKILL");
}
