//! Schemathesis against the console's own OpenAPI document.

use super::*;

/// Schemathesis (`dev/py-tools.sh python schemathesis`), from the console's own OpenAPI
/// document, as an operator: no input it generates gets a 5xx. Deterministic, so a run is the
/// same each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_error_in_the_api() {
    let subscriber = TestSubscriber::ok().await;
    let Stack {
        setup,
        console,
        _postgres,
        _processes: (ingress, _worker),
        ..
    } = stack(&subscriber).await;
    let stripe = source("stripe");
    let client = Client::http1();
    let mut ids = Vec::new();
    for n in 0..3 {
        let reply = post_event(&client, &ingress, &stripe, &format!("evt_fuzz_{n}"), n).await;
        ids.push(reply.field("id").expect("event id"));
    }
    for id in &ids {
        event_with_status(&console, id, "delivered").await;
    }
    let tools = std::process::Command::new(spillway_testkit::repo_root().join("dev/py-tools.sh"))
        .args(["python", "schemathesis"])
        .output()
        .expect("dev/py-tools.sh");
    assert!(
        tools.status.success(),
        "{}",
        String::from_utf8_lossy(&tools.stderr)
    );
    let python = std::path::PathBuf::from(String::from_utf8_lossy(&tools.stdout).trim());
    let schemathesis = python.with_file_name("schemathesis");
    let run = tokio::process::Command::new(schemathesis)
        // Its crash cache goes to the working directory: the test's, not the repository.
        .current_dir(setup.dir.path())
        .arg("run")
        .arg(console.url("/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {OPERATOR}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "40", "--generation-deterministic"])
        .args(["--workers", "1", "--no-color"])
        .args(["--request-timeout", "30", "--suppress-health-check", "all"])
        .output()
        .await
        .expect("schemathesis runs");
    assert!(
        run.status.success(),
        "schemathesis found server errors:\n{}\n{}\nconsole log:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        console.log_text()
    );
}
