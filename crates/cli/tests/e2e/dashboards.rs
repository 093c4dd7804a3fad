//! The chart's dashboards and alerts against a real Prometheus: it scrapes a running ingress
//! and worker every second while a short mixed load goes through (accepted, duplicate,
//! tampered, stale and misaddressed requests; a subscriber that sometimes fails; a subscription
//! the SSRF guard refuses), with the chart's alert rules loaded. Then every panel's query must
//! return data and every alert rule must evaluate without error.
//!
//! With `SPILLWAY_DASHBOARD_DATA=<file>` the panels' series over the load are written there
//! for `make dashboard-pictures` (dev/dashboard_png.py) to draw into docs/dashboards/.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use spillway_testkit::prometheus::Prometheus;
use spillway_testkit::spillway::{
    event_body, inbox_subscription, source, subscription, worker_setup,
};
use spillway_testkit::{repo_root, Behaviour, Client, TestSubscriber, Wait};

/// How long the load runs: long enough for rates over a few scrapes, short for CI.
/// `SPILLWAY_DASHBOARD_LOAD_SECONDS` makes it longer for the pictures.
fn load_duration() -> Duration {
    let seconds = std::env::var("SPILLWAY_DASHBOARD_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(seconds)
}
/// What `$__rate_interval` becomes: covers the load and a few scrapes after it.
const RATE_INTERVAL: &str = "30s";

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A panel query as Grafana would send it with every variable at "All".
fn resolved(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$source", ".*")
        .replace("$subscription", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_panel_and_alert_rule_works_against_a_real_prometheus() {
    // Every fourth delivery fails, so retries and failures have data.
    let subscriber =
        TestSubscriber::start(|n| Behaviour::Status(if n % 4 == 3 { 503 } else { 200 })).await;
    let github = source("github");
    let setup = worker_setup(&github, |dir| {
        json!({
            "worker": { "retry_initial": "200ms", "retry_max_delay": "1s" },
            "subscriptions": [
                inbox_subscription(dir, &subscriber.url("/inbox")),
                // An address the SSRF guard refuses.
                subscription(dir, "internal", "http://10.255.0.1:9/"),
            ],
        })
    })
    .await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let mut worker = setup.spawn_worker("worker");
    let worker_admin = worker.admin_addr().await;
    let rules = repo_root().join("helm/spillway/files/alerts.yaml");
    let prometheus = Prometheus::start(
        setup.dir.path(),
        &[ingress.admin, worker_admin],
        std::slice::from_ref(&rules),
    )
    .await;

    // The load: an open loop of mixed requests, one every 20 ms.
    let client = Client::http1();
    let started = now_seconds();
    let until = Instant::now() + load_duration();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0usize;
    let mut accepted = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        let id = format!("load-{n}");
        let body = event_body(&id, n);
        let (url, headers, body) = match n % 10 {
            // A retry of the previous event: a duplicate.
            1 => {
                let prev = format!("load-{}", n - 1);
                let body = event_body(&prev, n - 1);
                (
                    ingress.hook_url("github"),
                    github.sign(&prev, &body, 0),
                    body,
                )
            }
            // Tampered: signed for another body.
            2 => (ingress.hook_url("github"), github.sign(&id, b"{}", 0), body),
            // Stale: outside the replay window.
            3 => (
                ingress.hook_url("github"),
                github.sign(&id, &body, 3600),
                body,
            ),
            4 => (
                ingress.hook_url("nowhere"),
                github.sign(&id, &body, 0),
                body,
            ),
            _ => (ingress.hook_url("github"), github.sign(&id, &body, 0), body),
        };
        let reply = client.post(&url, &headers, body).await.expect("POST");
        accepted += usize::from(reply.status == 202);
        n += 1;
    }
    let ended = now_seconds();
    assert!(accepted > 0, "nothing was accepted");

    // Wait for the worker to catch up and Prometheus to scrape it.
    let delivered = format!(
        "sum(spillway_worker_deliveries_total{{outcome=\"delivered\",subscription=\"inbox\"}}) >= {accepted}"
    );
    let seen = Wait::new()
        .every(Duration::from_millis(500))
        .poll(async || {
            let seen = !prometheus
                .query(&delivered)
                .await
                .expect("query")
                .is_empty();
            if !seen {
                assert!(worker.is_running(), "worker exited:\n{}", worker.log_text());
            }
            seen
        })
        .await;
    if seen.is_err() {
        panic!(
            "Prometheus never saw {accepted} deliveries;\n{}",
            prometheus.log_text()
        );
    }

    // Every panel of every dashboard returns data.
    let mut problems = Vec::new();
    let mut queries = 0;
    let mut pictures = Vec::new();
    let dashboards = std::fs::read_dir(repo_root().join("helm/spillway/dashboards")).expect("dir");
    let mut files: Vec<_> = dashboards.map(|e| e.expect("entry").path()).collect();
    files.sort();
    for file in &files {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("JSON");
        let mut panels = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default();
            let mut series = Vec::new();
            for target in panel["targets"].as_array().expect("targets") {
                let expr = resolved(target["expr"].as_str().expect("expr"));
                queries += 1;
                match prometheus.query(&expr).await {
                    Ok(result) if !result.is_empty() => {}
                    Ok(_) => {
                        problems.push(format!("{}: {title}: no data for {expr}", file.display()))
                    }
                    Err(e) => problems.push(format!("{}: {title}: {e} in {expr}", file.display())),
                }
                let range = prometheus.query_range(&expr, started, ended + 5.0).await;
                series.push(serde_json::json!({
                    "legend": target["legendFormat"],
                    "result": range.unwrap_or_default(),
                }));
            }
            panels.push(serde_json::json!({
                "title": title,
                "type": panel["type"],
                "unit": panel["fieldConfig"]["defaults"]["unit"],
                "gridPos": panel["gridPos"],
                "targets": series,
            }));
        }
        pictures.push(serde_json::json!({
            "file": file.file_name().map(|f| f.to_string_lossy().into_owned()),
            "title": dashboard["title"],
            "panels": panels,
        }));
    }
    assert!(
        files.len() >= 4 && queries >= 30,
        "{} dashboards, {queries} queries",
        files.len()
    );

    // Every alert rule is loaded and evaluates without error.
    let alert_count = std::fs::read_to_string(&rules)
        .expect("rules")
        .matches("- alert:")
        .count();
    Wait::new()
        .every(Duration::from_millis(500))
        .until(
            format!("all {alert_count} alert rules evaluated"),
            async || {
                let groups = prometheus.api("rules", &[]).await.expect("rules API");
                let rules: Vec<serde_json::Value> = groups["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .collect();
                let healthy = rules.iter().filter(|r| r["health"] == "ok").count();
                let broken: Vec<String> = rules
                    .iter()
                    .filter(|r| r["health"] == "err")
                    .map(|r| format!("{}: {}", r["name"], r["lastError"]))
                    .collect();
                assert!(
                    broken.is_empty(),
                    "alert rules fail to evaluate: {broken:#?}"
                );
                if rules.len() != alert_count || healthy != alert_count {
                    return Err(format!(
                        "{healthy} of {alert_count} alert rules evaluated: {rules:#?}"
                    ));
                }
                for rule in &rules {
                    let expr = rule["query"].as_str().expect("query");
                    if let Err(e) = prometheus.query(expr).await {
                        problems.push(format!("alert {}: {e}", rule["name"]));
                    }
                }
                Ok(())
            },
        )
        .await;
    assert!(problems.is_empty(), "{problems:#?}");

    if let Some(out) = std::env::var_os("SPILLWAY_DASHBOARD_DATA") {
        let data = serde_json::json!({ "start": started, "end": ended, "dashboards": pictures });
        std::fs::write(&out, serde_json::to_vec_pretty(&data).expect("JSON")).expect("write");
    }
}
