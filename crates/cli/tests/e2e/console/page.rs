//! The console's page in headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! through `dev/browser.sh`), against the real stack: page.cjs signs in, finds a failed
//! event, retries it, bulk-retries the other dead letters after the preview, and sends a test
//! webhook; this side checks that the subscriber got each of them. With
//! `SPILLWAY_CONSOLE_SCREENSHOTS=DIR` the screenshots are also written to DIR (make
//! console-pictures writes docs/console/).

use super::*;

/// A dedupe key that runs script if a page ever parses it as HTML.
const XSS: &str = "evt_<img src=x onerror=window.__xss=1>";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_finds_retries_and_tests_from_the_page_in_chromium() {
    let failing = Arc::new(AtomicBool::new(true));
    let subscriber = switchable_subscriber(failing.clone()).await;
    let Stack {
        setup,
        console,
        _postgres,
        _processes: (ingress, _worker),
        _prometheus,
    } = stack_with_prometheus(&subscriber, json!({})).await;
    let stripe = source("stripe");
    let client = Client::http1();
    // The last one carries markup in its dedupe key: the page must show it as text.
    let keys = ["evt_page_0", "evt_page_1", "evt_page_2", XSS];
    let mut ids = Vec::new();
    for (n, key) in keys.into_iter().enumerate() {
        let reply = post_event(&client, &ingress, &stripe, key, n).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        ids.push(reply.field("id").expect("event id"));
    }
    for id in &ids {
        event_with_status(&console, id, "dead_lettered").await;
    }
    failing.store(false, Ordering::SeqCst);

    let mut shots = vec![setup.dir.path().display().to_string()];
    if let Some(dir) = std::env::var_os("SPILLWAY_CONSOLE_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        shots.push(std::path::PathBuf::from(dir).display().to_string());
    }
    let args = json!({
        "base": console.url(""),
        "token": OPERATOR,
        "dedupeKey": "evt_page_0",
        "eventId": ids[0],
        "bulkCount": 3,
        "markup": XSS,
        "newSubscriptionUrl": subscriber.url("/crm"),
        "subscription": "billing",
        "shots": shots,
    });
    let root = spillway_testkit::repo_root();
    let run = tokio::process::Command::new(root.join("dev/browser.sh"))
        .arg("node")
        .arg(root.join("crates/cli/tests/e2e/console/page.cjs"))
        .arg(args.to_string())
        .output()
        .await
        .expect("dev/browser.sh runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the page test failed:\n{stdout}\n{}\nconsole log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        console.log_text()
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("the page test saw {seen}");
    assert_eq!(
        seen["zone"], "Europe/Amsterdam",
        "times in the viewer's zone"
    );
    assert!(
        seen["failedAttemptText"]
            .as_str()
            .is_some_and(|t| t.contains("500")),
        "{seen:#}"
    );

    // What the page did reached the subscriber: the retry, the bulk retry, the test event.
    let test_event = seen["testEvent"]
        .as_str()
        .expect("test event id")
        .to_owned();
    eventually(
        "every retried event and the test event delivered",
        async || {
            let got = subscriber.webhook_ids();
            let delivered: Vec<&String> = subscriber
                .received()
                .iter()
                .filter(|r| r.answered == Some(200))
                .filter_map(|r| {
                    ids.iter()
                        .chain([&test_event])
                        .find(|id| r.webhook_id() == Some(id.as_str()))
                })
                .collect();
            let missing: Vec<&String> = ids
                .iter()
                .chain([&test_event])
                .filter(|id| !delivered.contains(id))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?} of {got:?}"))
            }
        },
    )
    .await;
    let test_request = subscriber
        .received()
        .into_iter()
        .find(|r| r.webhook_id() == Some(test_event.as_str()))
        .expect("the test event");
    assert!(test_request.header("spillway-test-event").is_some());
    let audit = console
        .call(Method::GET, "/v1/audit", Some(OPERATOR), &Value::Null)
        .await
        .json();
    let actions: BTreeSet<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["actor"] == "oncall" && e["outcome"] == "ok")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "retry",
            "bulk_retry",
            "test_webhook",
            "subscription_put",
            "subscription_delete"
        ])
    );
    // The registry change from the page: a generated secret shown once, then gone again.
    assert!(
        seen["newSecret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{seen:#}"
    );
    assert_eq!(seen["crmRowsAfterDelete"], 0);
}
