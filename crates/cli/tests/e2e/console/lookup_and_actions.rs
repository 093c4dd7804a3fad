//! Events appear in the console's index, each filter finds them, their attempts are what the
//! subscriber saw; a retry, a bulk retry after its preview and a test webhook go through the
//! real delivery path; viewers cannot act, strangers cannot read; the audit log names who did
//! what.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_finds_events_shows_their_attempts_and_retries_them() {
    let failing = Arc::new(AtomicBool::new(false));
    let subscriber = switchable_subscriber(failing.clone()).await;
    let Stack {
        setup,
        console,
        _postgres,
        _processes: (ingress, _worker),
        ..
    } = stack(&subscriber).await;
    let stripe = source("stripe");
    let client = Client::http1();

    // Five delivered, then three dead letters (one attempt each).
    let mut accepted = Vec::new();
    for n in 0..8 {
        if n == 5 {
            eventually("the first five to be delivered", async || {
                let got = subscriber.webhook_ids().len();
                if got >= 5 {
                    Ok(())
                } else {
                    Err(format!("{got} delivered"))
                }
            })
            .await;
            failing.store(true, Ordering::SeqCst);
        }
        let reply = post_event(&client, &ingress, &stripe, &format!("evt_console_{n}"), n).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        accepted.push(reply.field("id").expect("event id"));
    }
    let (good, bad) = accepted.split_at(5);
    for id in bad {
        event_with_status(&console, id, "dead_lettered").await;
    }
    for id in good {
        event_with_status(&console, id, "delivered").await;
    }

    // Each filter finds what it should.
    let all: BTreeSet<String> = accepted.iter().cloned().collect();
    let bad_set: BTreeSet<String> = bad.iter().cloned().collect();
    assert_eq!(found(&console, "source=stripe").await, all);
    assert_eq!(found(&console, "event_type=test.event").await, all);
    assert_eq!(found(&console, "status=dead_lettered").await, bad_set);
    assert_eq!(found(&console, "http_status=500").await, bad_set);
    assert_eq!(found(&console, "subscription=billing").await, all);
    assert_eq!(
        found(&console, &format!("event_id={}", good[0])).await,
        BTreeSet::from([good[0].clone()])
    );
    assert_eq!(
        found(&console, "dedupe_key=evt_console_6").await,
        BTreeSet::from([bad[1].clone()])
    );
    assert!(found(&console, "source=github").await.is_empty());
    assert!(
        found(&console, "from_ms=4102444800000").await.is_empty(),
        "nothing after 2100"
    );
    assert_eq!(found(&console, "from_ms=0&to_ms=4102444800000").await, all);
    let page = get(&console, "/v1/events?limit=3").await;
    let next = page["next"].as_str().expect("a next page");
    let rest = get(&console, &format!("/v1/events?limit=500&before={next}")).await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        rest["events"].as_array().map(Vec::len),
        Some(5),
        "pages do not overlap"
    );
    let misspelt = console
        .call(
            Method::GET,
            "/v1/events?stauts=delivered",
            Some(VIEWER),
            &Value::Null,
        )
        .await;
    assert_eq!(
        (misspelt.status, misspelt.field("error").as_deref()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Attempts are what the subscriber saw: the delivered ones with 200, the body as sent.
    let delivered_ids = subscriber.webhook_ids();
    for id in good {
        assert!(delivered_ids.contains(id), "{id} reached the subscriber");
        let event = get(&console, &format!("/v1/events/{id}")).await;
        let attempts = event["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "{event:#}");
        assert_eq!(
            (
                attempts[0]["http_status"].as_i64(),
                attempts[0]["outcome"].as_str()
            ),
            (Some(200), Some("delivered"))
        );
        assert_eq!(
            event["body"]["text"]
                .as_str()
                .map(|b| b.contains("evt_console")),
            Some(true)
        );
    }
    let dead = get(&console, &format!("/v1/events/{}", bad[0])).await;
    let attempt = &dead["attempts"][0];
    assert_eq!(
        (attempt["http_status"].as_i64(), attempt["next"].as_str()),
        (Some(500), Some("dead_letter"))
    );
    assert_eq!(dead["deliveries"][0]["dead_reason"], "attempts_exhausted");
    assert!(
        dead["headers"].to_string().contains("stripe-signature"),
        "{:#}",
        dead["headers"]
    );
    let body = console
        .call(
            Method::GET,
            &format!("/v1/events/{}/body", bad[0]),
            Some(VIEWER),
            &Value::Null,
        )
        .await;
    assert_eq!(
        body.body,
        spillway_testkit::spillway::event_body("evt_console_5", 5),
        "the exact bytes"
    );

    // Strangers read nothing; viewers cannot act.
    let stranger = console
        .call(Method::GET, "/v1/events", None, &Value::Null)
        .await;
    assert_eq!(
        (stranger.status, stranger.field("error").as_deref()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let wrong = console
        .call(
            Method::GET,
            "/v1/events",
            Some("not-a-token-at-all"),
            &Value::Null,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let viewer_retry = console
        .call(
            Method::POST,
            &format!("/v1/events/{}/retry", bad[0]),
            Some(VIEWER),
            &json!({}),
        )
        .await;
    assert_eq!(
        (viewer_retry.status, viewer_retry.field("error").as_deref()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // One retry, once the subscriber is fixed: a second, successful attempt.
    failing.store(false, Ordering::SeqCst);
    let retried = console
        .call(
            Method::POST,
            &format!("/v1/events/{}/retry", bad[0]),
            Some(OPERATOR),
            &json!({}),
        )
        .await;
    assert_eq!(
        retried.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&retried.body)
    );
    let event = event_with_status(&console, &bad[0], "delivered").await;
    let outcomes: Vec<(Option<i64>, Option<&str>)> = event["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| (a["http_status"].as_i64(), a["outcome"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [(Some(500), Some("failed")), (Some(200), Some("delivered"))]
    );

    // A bulk retry retries exactly what its preview counted.
    let request = json!({ "filter": { "status": "dead_lettered" } });
    let preview = console
        .call(
            Method::POST,
            "/v1/retries/preview",
            Some(OPERATOR),
            &request,
        )
        .await;
    assert_eq!(
        preview.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&preview.body)
    );
    let preview = preview.json();
    assert_eq!(
        (preview["events"].as_i64(), preview["deliveries"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        preview["subscriptions"],
        json!([{ "subscription": "billing", "deliveries": 2 }])
    );
    let stale = console
        .call(
            Method::POST,
            "/v1/retries",
            Some(OPERATOR),
            &json!({ "filter": { "status": "dead_lettered" }, "expect_deliveries": 3 }),
        )
        .await;
    assert_eq!(
        (stale.status, stale.field("error").as_deref()),
        (StatusCode::CONFLICT, Some("preview_stale"))
    );
    let bulk = console
        .call(
            Method::POST,
            "/v1/retries",
            Some(OPERATOR),
            &json!({ "filter": { "status": "dead_lettered" }, "expect_deliveries": 2 }),
        )
        .await;
    assert_eq!(
        bulk.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&bulk.body)
    );
    assert_eq!(
        bulk.json()["deliveries"].as_i64(),
        preview["deliveries"].as_i64()
    );
    for id in &bad[1..] {
        event_with_status(&console, id, "delivered").await;
    }
    let webhook_ids = subscriber.webhook_ids();
    assert!(
        bad.iter().all(|id| webhook_ids.contains(id)),
        "every retried event reached the subscriber"
    );

    // A test webhook: signed, marked, delivered to that subscription, its attempt shown.
    let test = console
        .call(
            Method::POST,
            "/v1/subscriptions/billing/test",
            Some(OPERATOR),
            &Value::Null,
        )
        .await;
    assert_eq!(
        test.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&test.body)
    );
    let test_id = test.field("event_id").expect("event id");
    let event = event_with_status(&console, &test_id, "delivered").await;
    assert_eq!(event["test_for"], "billing");
    assert_eq!(event["attempts"][0]["test"], true);
    let received = subscriber.received();
    let delivery = received
        .iter()
        .find(|r| r.webhook_id() == Some(test_id.as_str()))
        .expect("test delivered");
    assert_eq!(delivery.header("spillway-test-event"), Some("true"));

    // The audit log names who did what.
    let audit = console
        .call(Method::GET, "/v1/audit", Some(OPERATOR), &Value::Null)
        .await
        .json();
    let entries: Vec<(String, String, String, i64)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (
                text("actor"),
                text("action"),
                text("outcome"),
                e["events"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let expected = [
        ("oncall", "test_webhook", "ok", 1),
        ("oncall", "bulk_retry", "ok", 2),
        ("oncall", "bulk_retry", "preview_stale", 0),
        ("oncall", "retry", "ok", 1),
    ]
    .map(|(a, b, c, d)| (a.to_owned(), b.to_owned(), c.to_owned(), d));
    assert_eq!(entries, expected);
    let viewer_audit = console
        .call(Method::GET, "/v1/audit", Some(VIEWER), &Value::Null)
        .await;
    assert_eq!(viewer_audit.status, StatusCode::FORBIDDEN);

    // The OpenAPI document is served.
    let doc = console
        .call(Method::GET, "/v1/openapi.json", None, &Value::Null)
        .await
        .json();
    assert!(
        doc["paths"]["/v1/retries/preview"]["post"].is_object(),
        "{doc:#}"
    );
    drop(setup);
}
