//! Commits after the 202: the answer does not wait for them; they go out together after
//! `redis.commit_delay`; a retry meanwhile is a duplicate on the same pod and 503 `in_flight`
//! on another; shutdown sends what is queued without waiting out the delay.

use tokio::time::Instant;

use super::*;

/// [`SOURCES`] with `redis.commit_delay: <delay>`.
fn harness_delaying(delay: &str, store: Option<MemoryStore>) -> Harness {
    let yaml = SOURCES.replace(
        "  key_prefix: \"t:\"\n",
        &format!("  key_prefix: \"t:\"\n  commit_delay: {delay}\n"),
    );
    harness_of(&yaml, store, CLUSTER)
}

#[tokio::test(start_paused = true)]
async fn commits_wait_out_the_delay_after_the_202() {
    let h = harness_delaying("1s", None);
    let started = Instant::now();
    let mut ids = Vec::new();
    for key in ["a", "b", "c"] {
        let seen = h.send(post("open", &[("x-id", key)], "{}")).await;
        assert_eq!(seen.status, StatusCode::ACCEPTED, "{seen:?}");
        ids.push(seen.id().to_owned());
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the 202s did not wait for their commits"
    );
    for (key, id) in ["a", "b", "c"].iter().zip(&ids) {
        assert_eq!(
            h.store.peek(&h.dedupe_key("open", key)),
            Some(format!("pending:{id}")),
            "{key}: still claimed while its commit waits"
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    settle().await;
    for (key, id) in ["a", "b", "c"].iter().zip(&ids) {
        assert_eq!(
            h.store.peek(&h.dedupe_key("open", key)),
            Some(format!("done:{id}")),
            "{key}"
        );
    }
    assert!(h.metrics().contains("spillway_dedupe_in_flight_claims 0"));
    // Once committed, the pod's memory of them is gone; Redis answers for them.
    for key in ["a", "b", "c"] {
        let key = h.dedupe_key("open", key);
        assert_eq!(h.pipeline.commits.accepted(&key), None, "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_before_the_commit_is_a_duplicate_here_and_in_flight_elsewhere() {
    let h = harness_delaying("1s", None);
    let other_pod = harness_delaying("1s", Some(h.store.clone()));
    let first = h.send(post("open", &[("x-id", "r")], "{}")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");

    let here = h.send(post("open", &[("x-id", "r")], "{}")).await;
    assert_eq!(here.status, StatusCode::OK, "{here:?}");
    assert_eq!(here.id(), first.id(), "answered with the original's id");

    let elsewhere = other_pod.send(post("open", &[("x-id", "r")], "{}")).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{elsewhere:?}"
    );
    assert_eq!(elsewhere.code(), "in_flight");

    h.committed().await;
    let later = other_pod.send(post("open", &[("x-id", "r")], "{}")).await;
    assert_eq!(later.status, StatusCode::OK, "{later:?}");
    assert_eq!(later.id(), first.id());
    assert_eq!(h.kafka.records().len(), 1, "one record for the event");
    assert!(other_pod.kafka.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_queued_commits_without_waiting_out_the_delay() {
    let h = harness_delaying("1s", None);
    let seen = h.send(post("open", &[("x-id", "s")], "{}")).await;
    assert_eq!(seen.status, StatusCode::ACCEPTED, "{seen:?}");
    let started = Instant::now();
    h.settle().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        h.store.peek(&h.dedupe_key("open", "s")),
        Some(format!("done:{}", seen.id()))
    );

    // A request finishing after that (its client gone during the drain) commits at once.
    let late = h.send(post("open", &[("x-id", "late")], "{}")).await;
    assert_eq!(late.status, StatusCode::ACCEPTED, "{late:?}");
    assert_eq!(
        h.store.peek(&h.dedupe_key("open", "late")),
        Some(format!("done:{}", late.id()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_commits_without_a_pause() {
    let h = harness_delaying("0s", None);
    let seen = h.send(post("open", &[("x-id", "z")], "{}")).await;
    settle().await;
    assert_eq!(
        h.store.peek(&h.dedupe_key("open", "z")),
        Some(format!("done:{}", seen.id()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_commit_after_a_shutdown_before_any_is_made_before_it_returns() {
    let h = harness_delaying("1s", None);
    // No event was accepted before the shutdown: the queue never started.
    h.settle().await;
    let store = SharedStore::Memory(h.store.clone());
    let key = h.dedupe_key("open", "late");
    let claimed = store.claim(&key, "late-id").await.expect("claim");
    let spillway_store::Claim::Claimed(token) = claimed else {
        panic!("{claimed:?}");
    };
    let claim = crate::commits::HeldClaim::new(&store, token, &h.pipeline.metrics);
    h.pipeline.commits.commit(claim, "open", "late-id").await;
    // No other task ran in between: nobody is left to send it later.
    assert_eq!(h.store.peek(&key), Some("done:late-id".to_owned()));
}
