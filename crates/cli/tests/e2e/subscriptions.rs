//! Across processes: `spillway subscriptions add|list|remove` manage the registry, and a
//! running `spillway worker` delivers to what was added, signed with its secret.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::json;
use spillway_signature::{Scheme, Secret, SecretRing, Verifier};
use spillway_testkit::spillway::{post_event, source, spillway_bin, worker_setup};
use spillway_testkit::wait::all_of;
use spillway_testkit::{eventually, Client, TestSubscriber, Wait};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn spillway(config: &Path, args: &[&str]) -> Output {
    Command::new(spillway_bin())
        .args(["--log-format", "text", "subscriptions"])
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("spillway runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn listed(config: &Path) -> serde_json::Value {
    let out = spillway(config, &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON listing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_manages_the_registry_and_a_running_worker_follows_it() {
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = worker_setup(
        &github,
        |_| json!({ "worker": { "ingress_urls": ["http://hooks.example.com"] } }),
    )
    .await;
    let secret_file = setup.dir.path().join("crm.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("secret");

    let ingress = setup.spawn_ingress("ingress");
    let mut worker = setup.spawn_worker("worker");
    ingress.wait_ready().await;

    let added = spillway(
        &setup.config,
        &[
            "add",
            "--id",
            "crm",
            "--url",
            &subscriber.url("/crm"),
            "--source",
            "github",
            "--header",
            "X-Team: crm",
            "--secret-file",
            secret_file.to_str().expect("path"),
        ],
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(text(&added.stdout).contains("subscription crm registered"));
    // Events the worker reads before it has applied the change are not for `crm` (the
    // documented behaviour: a subscription gets the events read after it reached the worker).
    eventually("the worker to apply the new subscription", async || {
        let log = worker.log_text();
        if log.contains("registry: subscription set subscription=crm") {
            Ok(())
        } else {
            Err(format!("not in its log yet:\n{log}"))
        }
    })
    .await;

    let client = Client::http1();
    let mut accepted = HashSet::new();
    for n in 0..20 {
        let reply = post_event(&client, &ingress, &github, &format!("k-{n}"), n).await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        accepted.insert(reply.field("id").expect("id"));
    }
    let delivered = Wait::new()
        .poll(async || {
            assert!(worker.is_running(), "worker exited:\n{}", worker.log_text());
            all_of(&subscriber.webhook_ids(), &accepted)
        })
        .await;
    if let Err(missing) = delivered {
        panic!(
            "the registered subscription never got every event ({missing});\nworker:\n{}",
            worker.log_text()
        );
    }
    let ring = SecretRing::new(vec![Secret {
        id: "crm".into(),
        key: Scheme::standard_webhooks()
            .decode_secret(SECRET)
            .expect("secret"),
        not_after: None,
    }]);
    let verifier = Verifier::new(Scheme::standard_webhooks(), ring, Duration::from_secs(300));
    for received in subscriber.received() {
        assert!(verifier
            .verify(&received.headers, &received.body, SystemTime::now())
            .is_ok());
        assert_eq!(received.headers["x-team"], "crm");
    }

    let listing = listed(&setup.config);
    assert_eq!(listing[0]["id"], "crm");
    assert_eq!(listing[0]["origin"], "registry");
    assert_eq!(listing[0]["header_names"], serde_json::json!(["X-Team"]));
    assert!(
        !listing.to_string().contains(SECRET),
        "listings never show secrets"
    );

    let looping = spillway(
        &setup.config,
        &[
            "add",
            "--id",
            "loop",
            "--url",
            "http://hooks.example.com/v1/hooks/github",
        ],
    );
    assert!(!looping.status.success());
    assert!(
        text(&looping.stderr).contains("own ingress"),
        "{}",
        text(&looping.stderr)
    );

    let removed = spillway(&setup.config, &["remove", "crm"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let again = spillway(&setup.config, &["remove", "crm"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("no subscription \"crm\""));
    assert_eq!(listed(&setup.config), serde_json::json!([]));
    worker.kill();
}
