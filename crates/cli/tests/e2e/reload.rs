//! Sources reloaded under load without a restart: a secret rotated (the new one added, the
//! senders switched, the old one removed), a source added, and a bad edit refused, while
//! signed requests keep coming. No request is refused for its signature, every 202 is in
//! Kafka exactly once, and the new source takes events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use spillway_core::headers;
use spillway_testkit::spillway::{event_body, setup, source};
use spillway_testkit::{eventually, read_topic, redis_nodes, Client};

const SENDERS: usize = 8;

/// The count of `spillway_config_reloads_total{result}` in `metrics`.
fn reloads(metrics: &str, result: &str) -> u64 {
    let series = format!("spillway_config_reloads_total{{result=\"{result}\"}}");
    spillway_testkit::series_value(metrics, &series).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_rotate_and_sources_arrive_under_load_without_a_restart() {
    let github = source("github");
    let brokers = spillway_testkit::kafka_brokers();
    let mut setup = setup(
        &brokers,
        &redis_nodes(),
        std::slice::from_ref(&github),
        json!({ "ingress": { "reload_interval": "1s" } }),
    );
    setup.create_topics().await;
    let ingress = Arc::new(setup.spawn_ingress("ingress"));
    ingress.wait_ready().await;

    let old_key = github.key();
    let new_secret = "gh-rotated-secret-2026-12";
    let new_file = setup.dir.path().join("github-new.secret");
    std::fs::write(&new_file, new_secret).expect("secret");
    let old_file = setup.dir.path().join("github.secret");

    // Senders: signed requests without pause, with the old key until told to switch.
    let switched = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<HashMap<u16, usize>>> = Arc::default();
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let (github, ingress) = (github.clone(), ingress.clone());
        let (switched, stop, sent) = (switched.clone(), stop.clone(), sent.clone());
        let (statuses, accepted) = (statuses.clone(), accepted.clone());
        let old_key = old_key.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::http1();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("reload-{s}-{n}");
                let body = event_body(&id, n);
                let key = if switched.load(Ordering::SeqCst) {
                    new_secret.as_bytes().to_vec()
                } else {
                    old_key.clone()
                };
                let headers = github.sign_with(&key, &id, &body, 0);
                let reply = client
                    .post(&ingress.hook_url("github"), &headers, body)
                    .await
                    .expect("request");
                *statuses
                    .lock()
                    .expect("lock")
                    .entry(reply.status.as_u16())
                    .or_default() += 1;
                if reply.status == 202 {
                    accepted
                        .lock()
                        .expect("lock")
                        .push(reply.field("id").expect("id"));
                }
                sent.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    let more_sent = async |count: usize| {
        let from = sent.load(Ordering::SeqCst);
        eventually(format!("{count} more requests"), async || {
            sent.load(Ordering::SeqCst) >= from + count
        })
        .await;
    };
    let reloaded = async |result: &str, count: u64| {
        eventually(format!("{count} {result} reloads"), async || {
            reloads(&ingress.metrics().await, result) >= count
        })
        .await;
    };
    let secret =
        |id: &str, file: &std::path::Path| json!({ "id": id, "file": file.display().to_string() });

    more_sent(200).await;
    // 1. Add the new secret beside the old one.
    setup.set(
        "sources.github.secrets",
        json!([
            secret("github-current", &old_file),
            secret("github-next", &new_file)
        ]),
    );
    reloaded("ok", 1).await;
    more_sent(200).await;
    // 2. The senders switch; 3. the old secret goes.
    switched.store(true, Ordering::SeqCst);
    more_sent(200).await;
    setup.set(
        "sources.github.secrets",
        json!([secret("github-next", &new_file)]),
    );
    reloaded("ok", 2).await;
    more_sent(200).await;
    // 4. A new source, its topic first.
    let added_file = setup.dir.path().join("added.secret");
    std::fs::write(&added_file, "added-source-secret").expect("secret");
    spillway_testkit::create_topics(&brokers, &[setup.topic("added")]).await;
    setup.set(
        "sources.added",
        json!({ "verify": { "scheme": "github" }, "secrets": [secret("added-1", &added_file)] }),
    );
    reloaded("ok", 3).await;
    let body = event_body("added-1", 1);
    let headers = github.sign_with(b"added-source-secret", "added-1", &body, 0);
    let reply = Client::http1()
        .post(&ingress.hook_url("added"), &headers, body)
        .await
        .expect("request");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    // 5. A bad edit is refused and changes nothing.
    setup.set("sources.github.tolerance", "0s");
    reloaded("failed", 1).await;
    more_sent(200).await;
    assert!(
        ingress.log_text().contains("sources.github.tolerance"),
        "the refused field is logged"
    );

    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("sender");
    }
    let statuses = statuses.lock().expect("lock").clone();
    assert_eq!(
        statuses.keys().copied().collect::<HashSet<u16>>(),
        HashSet::from([202]),
        "every request accepted: {statuses:?}"
    );
    let accepted: HashSet<String> = accepted.lock().expect("lock").iter().cloned().collect();
    let records = read_topic(&brokers, &setup.topic("github")).await;
    let in_kafka: Vec<String> = records
        .iter()
        .filter_map(|r| r.header(headers::EVENT_ID).map(str::to_owned))
        .collect();
    assert_eq!(in_kafka.len(), accepted.len(), "each accepted event once");
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !in_kafka.contains(id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let metrics = ingress.metrics().await;
    for key in ["github-current", "github-next"] {
        assert!(
            metrics.contains(&format!(
                "spillway_signature_verified_requests_total{{key_id=\"{key}\",source=\"github\"}}"
            )),
            "{key} counted"
        );
    }
}
