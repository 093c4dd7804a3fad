//! Redrives and replays from the console, each after its preview, read from Kafka: dead
//! letters go back to a fixed subscriber, a time range of a source is delivered again,
//! quarantined records that pass a fixed schema reach their source's topic. Health shows each
//! subscription's attempts and dead letters from the index, and each source's verification
//! failures from Prometheus.

use bytes::Bytes;
use spillway_core::headers;
use spillway_testkit::{kafka_brokers, read_topic};

use super::*;

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dev/fleet-schemas/reading.schema.json"
);

async fn act(console: &ConsoleProcess, path: &str, body: Value) -> (StatusCode, Value) {
    let reply = console
        .call(Method::POST, path, Some(OPERATOR), &body)
        .await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

/// How many times `id` was answered 2xx by the subscriber.
fn deliveries_of(subscriber: &TestSubscriber, id: &str) -> usize {
    subscriber
        .received()
        .iter()
        .filter(|r| r.webhook_id() == Some(id) && r.answered.is_some_and(|s| s < 300))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_redrives_replays_and_reports_health_after_previews() {
    let failing = Arc::new(AtomicBool::new(true));
    let subscriber = switchable_subscriber(failing.clone()).await;
    let dir = tempfile::tempdir().expect("dir");
    let schema = dir.path().join("reading.schema.json");
    std::fs::copy(SCHEMA, &schema).expect("schema");
    let readings = json!({ "sources": { "readings": {
        "verify": { "scheme": "none" },
        "dedupe": { "from": "json_pointer", "pointer": "/id" },
        "schema": { "json_schema": schema },
    } } });
    let Stack {
        setup,
        console,
        _processes: (ingress, _worker),
        _postgres,
        _prometheus,
    } = stack_with_prometheus(&subscriber, readings).await;
    let stripe = source("stripe");
    let client = Client::http1();

    // Three dead letters (one attempt each while the subscriber fails).
    let mut ids = Vec::new();
    for n in 0..3 {
        let reply = post_event(&client, &ingress, &stripe, &format!("evt_redrive_{n}"), n).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        ids.push(reply.field("id").expect("event id"));
    }
    for id in &ids {
        event_with_status(&console, id, "dead_lettered").await;
    }

    // Health from the index: three attempts, none delivered, three dead letters.
    let health = get(&console, "/v1/health/subscriptions").await;
    let billing = &health["subscriptions"][0];
    assert_eq!(billing["subscription"], "billing", "{health:#}");
    assert_eq!(
        (
            billing["attempts"].as_i64(),
            billing["delivered"].as_i64(),
            billing["success_rate"].as_f64(),
            billing["dead_letters"].as_i64(),
        ),
        (Some(3), Some(0), Some(0.0), Some(3)),
        "{health:#}"
    );
    assert!(
        billing["latency_ms"]["p99"].as_f64().is_some(),
        "{health:#}"
    );
    assert_eq!(health["metrics"], "ok", "{health:#}");

    // Health from Prometheus: a badly signed request is a verification failure of stripe.
    // Sent until Prometheus has seen the counter grow between two scrapes.
    eventually("a signature mismatch in stripe's health", async || {
        let body = Bytes::from_static(b"{\"id\":\"evt_forged\"}");
        let forged = stripe.sign_with(b"not-the-secret-at-all", "evt_forged", &body, 0);
        let reply = client
            .post(&ingress.hook_url("stripe"), &forged, body)
            .await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Err(format!("forged request answered {}", reply.status));
        }
        let health = get(&console, "/v1/health/sources?window_s=600").await;
        let stripe = health["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["source"] == "stripe"))
            .cloned()
            .unwrap_or_default();
        let mismatches = stripe["verification_failures"]["signature_mismatch"]
            .as_f64()
            .unwrap_or(0.0);
        if stripe["accepted"] == 3
            && mismatches > 0.0
            && stripe["requests"]["unauthorized"].as_f64() > Some(0.0)
        {
            Ok(())
        } else {
            Err(format!("{health:#}"))
        }
    })
    .await;

    // Dead letters: the preview names them; a stale count is refused; the redrive delivers.
    let (status, preview) = act(
        &console,
        "/v1/dead-letters/preview",
        json!({ "subscription": "billing" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview:#}");
    assert_eq!(
        (preview["events"].as_i64(), preview["deliveries"].as_i64()),
        (Some(3), Some(3)),
        "{preview:#}"
    );
    assert_eq!(preview["subscriptions"][0]["subscription"], "billing");
    failing.store(false, Ordering::SeqCst);
    let (status, stale) = act(
        &console,
        "/v1/dead-letters/redrive",
        json!({ "subscription": "billing", "expect_deliveries": 2 }),
    )
    .await;
    assert_eq!(
        (status, stale["error"].as_str()),
        (StatusCode::CONFLICT, Some("preview_stale"))
    );
    let (status, done) = act(
        &console,
        "/v1/dead-letters/redrive",
        json!({ "subscription": "billing", "expect_deliveries": 3 }),
    )
    .await;
    assert_eq!(
        (status, done["queued"].as_i64()),
        (StatusCode::ACCEPTED, Some(3)),
        "{done:#}"
    );
    for id in &ids {
        event_with_status(&console, id, "delivered").await;
        assert_eq!(deliveries_of(&subscriber, id), 1);
    }

    // Replay of stripe's range: the same three events, delivered once more each.
    let range = json!({ "source": "stripe", "from_ms": 0, "to_ms": 4102444800000_u64 });
    let (status, preview) = act(&console, "/v1/replays/preview", range.clone()).await;
    assert_eq!(
        (
            status,
            preview["events"].as_i64(),
            preview["deliveries"].as_i64()
        ),
        (StatusCode::OK, Some(3), Some(3)),
        "{preview:#}"
    );
    let mut confirmed = range.clone();
    confirmed["expect_deliveries"] = json!(3);
    let (status, done) = act(&console, "/v1/replays", confirmed).await;
    assert_eq!(
        (status, done["queued"].as_i64()),
        (StatusCode::ACCEPTED, Some(3)),
        "{done:#}"
    );
    eventually("each event delivered again", async || {
        let counts: Vec<usize> = ids
            .iter()
            .map(|id| deliveries_of(&subscriber, id))
            .collect();
        if counts.iter().all(|c| *c == 2) {
            Ok(())
        } else {
            Err(format!("{counts:?}"))
        }
    })
    .await;
    let (status, unknown) = act(&console, "/v1/replays/preview", json!({ "source": "nope" })).await;
    assert_eq!(
        (status, unknown["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // The quarantine: two readings fail the schema; once it is fixed, the preview shows the
    // one that passes and the one that still fails, and the redrive writes the first.
    let json_type = [("content-type".to_owned(), "application/json".to_owned())];
    let mut quarantined = Vec::new();
    for body in [
        r#"{"id":"neg-1","device":"meter-2","kwh":-2}"#,
        r#"{"id":"pump-1","device":"pump-4","kwh":4}"#,
    ] {
        let reply = client
            .post(&ingress.hook_url("readings"), &json_type, Bytes::from(body))
            .await
            .expect("answer");
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{body}");
        quarantined.push(reply.field("id").expect("id"));
    }
    for id in &quarantined {
        event_with_status(&console, id, "quarantined").await;
    }
    let text = std::fs::read_to_string(&schema).expect("schema");
    std::fs::write(
        &schema,
        text.replace(r#""minimum": 0"#, r#""minimum": -1000"#),
    )
    .expect("fix");
    let (status, stripe_q) = act(
        &console,
        "/v1/quarantine/preview",
        json!({ "source": "stripe" }),
    )
    .await;
    assert_eq!(
        (status, stripe_q["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, preview) = act(
        &console,
        "/v1/quarantine/preview",
        json!({ "source": "readings" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{preview:#}");
    assert_eq!(preview["records"], 1, "{preview:#}");
    assert_eq!(
        preview["still_invalid"][0]["event_id"],
        quarantined[1].as_str(),
        "{preview:#}"
    );
    let (status, done) = act(
        &console,
        "/v1/quarantine/redrive",
        json!({ "source": "readings", "expect_records": 1 }),
    )
    .await;
    assert_eq!(
        (status, done["written"].as_i64()),
        (StatusCode::ACCEPTED, Some(1)),
        "{done:#}"
    );
    let kept = read_topic(&kafka_brokers(), &setup.topic("readings")).await;
    let kept: Vec<&str> = kept
        .iter()
        .filter_map(|r| r.header(headers::EVENT_ID))
        .collect();
    assert_eq!(
        kept,
        [quarantined[0].as_str()],
        "the redriven reading, under its id"
    );

    // Each action is in the audit log with what it touched.
    let audit = console
        .call(Method::GET, "/v1/audit", Some(OPERATOR), &Value::Null)
        .await
        .json();
    let actions: Vec<(String, String, i64)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
                e["events"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    for expected in [
        ("quarantine_redrive", "ok", 1),
        ("replay", "ok", 3),
        ("dead_letter_redrive", "ok", 3),
        ("dead_letter_redrive", "preview_stale", 0),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2);
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    // A viewer may look at health, not act.
    let viewer = console
        .call(Method::POST, "/v1/replays/preview", Some(VIEWER), &range)
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
}
