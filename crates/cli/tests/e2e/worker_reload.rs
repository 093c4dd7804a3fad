//! A source added to the config file while an ingress and a worker run, with a subscription
//! to it alone in the same edit: both processes reload (the worker subscribes to its topic and
//! resolves the new subscription), and its events reach both the subscriber of everything and
//! the new one without a restart. A bad edit is refused by the worker and changes nothing.

use std::time::Duration;

use serde_json::json;
use spillway_signature::Scheme;
use spillway_testkit::spillway::{
    event_body, inbox_subscription, post_event, worker_setup, TestSource,
};
use spillway_testkit::{Client, TestSubscriber, Wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_added_while_running_is_delivered_without_a_restart() {
    let subscriber = TestSubscriber::ok().await;
    let first = TestSource {
        name: "first",
        scheme: Scheme::standard_webhooks(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    };
    let url = subscriber.url("/inbox");
    let mut setup = worker_setup(&first, |dir| {
        json!({
            "subscriptions": [inbox_subscription(dir, &url)],
            "ingress": { "reload_interval": "1s" },
            "worker": { "reload_interval": "1s" },
        })
    })
    .await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let mut worker = setup.spawn_worker("worker");
    let client = Client::http1();
    assert_eq!(
        post_event(&client, &ingress, &first, "first-1", 1)
            .await
            .status,
        202
    );
    let delivered = |body: bytes::Bytes| {
        let subscriber = &subscriber;
        async move {
            Wait::new()
                .every(Duration::from_millis(100))
                .poll(async || subscriber.delivered_bodies().contains(&body).then_some(()))
                .await
                .is_ok()
        }
    };
    assert!(
        delivered(event_body("first-1", 1)).await,
        "{}",
        worker.log_text()
    );

    // The new source: its topic first, then the config.
    let added = TestSource {
        name: "added",
        scheme: Scheme::standard_webhooks(),
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    };
    let secret = setup.dir.path().join("added.secret");
    std::fs::write(&secret, added.secret).expect("secret");
    spillway_testkit::create_topics(&setup.brokers, &[setup.topic("added")]).await;
    let only_added = TestSubscriber::ok().await;
    let mut wants_added = inbox_subscription(setup.dir.path(), &only_added.url("/added"));
    wants_added["id"] = json!("only-added");
    wants_added["sources"] = json!(["added"]);
    let everything = inbox_subscription(setup.dir.path(), &url);
    setup.merge(json!({
        "sources": { "added": {
            "verify": { "scheme": "standard-webhooks" },
            "secrets": [{ "id": "added-1", "file": secret.display().to_string() }],
        } },
        "subscriptions": [everything, wants_added],
    }));
    let reloaded = |log: &dyn Fn() -> String, times: usize| {
        let log = log();
        log.matches("sources reloaded").count() >= times
    };
    Wait::new()
        .poll(async || {
            let ingress_log = || ingress.log_text();
            let worker_log = || worker.log_text();
            (reloaded(&ingress_log, 1) && reloaded(&worker_log, 1)).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("no reload;\nworker:\n{}", worker.log_text()));
    let reply = post_event(&client, &ingress, &added, "added-1", 2).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    assert!(
        delivered(event_body("added-1", 2)).await,
        "{}",
        worker.log_text()
    );
    // The subscription to the new source alone, added in the same edit, gets it too.
    let body = event_body("added-1", 2);
    Wait::new()
        .every(Duration::from_millis(100))
        .poll(async || only_added.delivered_bodies().contains(&body).then_some(()))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the new subscription got nothing;\nworker:\n{}",
                worker.log_text()
            )
        });
    assert!(worker.is_running());

    // A bad edit: refused, logged with its field, and the worker goes on.
    setup.set("worker.reload_interval", "10ms");
    Wait::new()
        .poll(async || {
            worker
                .log_text()
                .contains("worker.reload_interval")
                .then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("the refusal is logged;\nworker:\n{}", worker.log_text()));
    assert_eq!(
        post_event(&client, &ingress, &added, "added-2", 3)
            .await
            .status,
        202
    );
    assert!(
        delivered(event_body("added-2", 3)).await,
        "{}",
        worker.log_text()
    );
}
