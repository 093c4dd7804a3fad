//! The indexer killed under load: the index catches up from the offsets stored with its rows,
//! and reads nothing twice.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_indexer_killed_under_load_catches_up_and_indexes_nothing_twice() {
    const EVENTS: usize = 240;
    let subscriber = TestSubscriber::ok().await;
    // One record per batch: tansu's memory storage answers a fetch from inside a batch with
    // the next batch only (docs/development.md), which would lose the rest of the batch the
    // restarted indexer resumes in; Kafka does not.
    let extra = json!({
        "kafka": { "properties": { "batch.num.messages": "1" } },
        "console": { "index": { "batch_records": 16 } },
    });
    let Stack {
        setup,
        mut console,
        _postgres: postgres,
        _processes: (ingress, _worker),
        ..
    } = stack_with(&subscriber, extra).await;
    let stripe = source("stripe");

    let load = {
        let ingress_url = ingress.hook_url("stripe");
        let stripe = stripe.clone();
        tokio::spawn(async move {
            let client = Client::http1();
            let mut ids = Vec::new();
            for n in 0..EVENTS {
                let id = format!("evt_restart_{n}");
                let body = spillway_testkit::spillway::event_body(&id, n);
                let reply = client
                    .post(&ingress_url, &stripe.sign(&id, &body, 0), body)
                    .await
                    .expect("posted");
                assert_eq!(reply.status, StatusCode::ACCEPTED);
                ids.push(reply.field("id").expect("event id"));
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            ids
        })
    };
    // Killed while it indexes, started again while the load goes on.
    eventually("the index to have some events", async || {
        let status = get(&console, "/v1/status").await;
        let events = status["events"].as_u64().unwrap_or(0);
        if events >= 20 {
            Ok(())
        } else {
            Err(format!("{events} indexed"))
        }
    })
    .await;
    console.kill();
    // What the killed indexer wrote: the restarted one must write exactly the rest.
    let count = |table: &str| -> u64 {
        postgres
            .query("console", &format!("SELECT count(*) FROM spillway.{table}"))
            .parse()
            .expect("a count")
    };
    let (events_before, attempts_before) = (count("events"), count("attempts"));
    let mut console = setup.spawn_console("console-2");
    console.wait_ready().await;
    let accepted = load.await.expect("the load");

    let all: BTreeSet<String> = accepted.iter().cloned().collect();
    eventually("every event indexed and delivered", async || {
        let delivered = found(&console, "status=delivered").await;
        if delivered == all {
            Ok(())
        } else {
            Err(format!(
                "{} of {} delivered in the index",
                delivered.len(),
                all.len()
            ))
        }
    })
    .await;
    assert_eq!(
        found(&console, "").await,
        all,
        "no event the ingress did not accept"
    );
    // The restarted indexer read each record once: every event and attempt it wrote is one
    // the killed one had not (rows it read again would count here though the keys kept them
    // out of the tables).
    eventually("every attempt indexed", async || {
        let attempts = count("attempts");
        if attempts == EVENTS as u64 {
            Ok(())
        } else {
            Err(format!("{attempts} attempts"))
        }
    })
    .await;
    let status = get(&console, "/v1/status").await;
    assert_eq!(
        status["events"].as_u64(),
        Some(EVENTS as u64 - events_before),
        "{status:#}"
    );
    assert_eq!(
        status["attempts"].as_u64(),
        Some(EVENTS as u64 - attempts_before),
        "{status:#}"
    );
    assert_eq!(status["skipped"].as_u64(), Some(0));
    // One attempt and one delivery per event, as the subscriber saw one delivery each.
    assert_eq!(subscriber.received().len(), EVENTS);
    let per_event = |table: &str| {
        postgres.query(
            "console",
            &format!(
                "SELECT count(*) FROM (SELECT event_id FROM spillway.{table} GROUP BY event_id \
                 HAVING count(*) <> 1) AS odd"
            ),
        )
    };
    assert_eq!(per_event("attempts"), "0");
    assert_eq!(per_event("deliveries"), "0");
    let event = get(&console, &format!("/v1/events/{}", accepted[EVENTS / 2])).await;
    assert_eq!(event["attempts"][0]["outcome"], "delivered", "{event:#}");
}
