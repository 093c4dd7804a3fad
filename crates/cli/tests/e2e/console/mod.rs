//! Across processes: `spillway ingress`, `spillway worker` and `spillway console` on the local
//! stack and a PostgreSQL of their own: what the console's tests share (its config, a stack
//! with one subscription, calls and waits on its API).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use spillway_testkit::prometheus::Prometheus;
use spillway_testkit::spillway::{post_event, source, subscription, worker_setup, Setup};
use spillway_testkit::{eventually, Behaviour, Client, ConsoleProcess, Postgres, TestSubscriber};

mod fuzz;
mod lookup_and_actions;
mod page;
mod redrive_and_health;
mod restart;

pub(crate) const VIEWER: &str = "viewer-token-0123456789";
pub(crate) const OPERATOR: &str = "operator-token-0123456789";

/// A config section for a console on `database`, with a viewer and an operator token.
pub(crate) fn console_section(setup_dir: &std::path::Path, database: &str) -> Value {
    let file = |name: &str, text: &str| {
        let path = setup_dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    json!({
        "console": {
            "listen": "127.0.0.1:0",
            "database_url": { "file": file("database-url", database) },
            "tokens": [
                { "name": "grafana", "role": "viewer", "token": { "file": file("viewer.token", VIEWER) } },
                { "name": "oncall", "role": "operator", "token": { "file": file("operator.token", OPERATOR) } },
            ],
            "index": { "batch_wait": "50ms" },
        }
    })
}

/// A subscriber answering 500 while `failing` is set, 200 otherwise.
pub(crate) async fn switchable_subscriber(failing: Arc<AtomicBool>) -> TestSubscriber {
    TestSubscriber::start(move |_| {
        if failing.load(Ordering::SeqCst) {
            Behaviour::Status(500)
        } else {
            Behaviour::Status(200)
        }
    })
    .await
}

pub(crate) async fn get(console: &ConsoleProcess, path: &str) -> Value {
    let reply = console
        .call(Method::GET, path, Some(VIEWER), &Value::Null)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "GET {path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// The event ids a search finds.
pub(crate) async fn found(console: &ConsoleProcess, query: &str) -> BTreeSet<String> {
    let page = get(console, &format!("/v1/events?limit=500&{query}")).await;
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_id"].as_str().expect("id").to_owned())
        .collect()
}

/// Waits until the event `id` has `status` and its latest attempt is indexed (a dead letter
/// may be indexed before the attempt record that led to it); returns it as opened.
pub(crate) async fn event_with_status(console: &ConsoleProcess, id: &str, status: &str) -> Value {
    eventually(
        &format!("event {id} to be {status} in the index"),
        async || {
            let reply = console
                .call(
                    Method::GET,
                    &format!("/v1/events/{id}"),
                    Some(VIEWER),
                    &Value::Null,
                )
                .await;
            if reply.status != StatusCode::OK {
                return Err(format!(
                    "{}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ));
            }
            let event = reply.json();
            let attempted = |next: &str| {
                event["attempts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["next"] == next))
            };
            let settled = match status {
                "delivered" => attempted("done"),
                "dead_lettered" => attempted("dead_letter"),
                _ => true,
            };
            if event["status"] == status && settled {
                Ok(event)
            } else {
                Err(format!("{event:#}"))
            }
        },
    )
    .await
}

pub(crate) struct Stack {
    setup: Setup,
    console: ConsoleProcess,
    _postgres: Postgres,
    _processes: (
        spillway_testkit::IngressProcess,
        spillway_testkit::WorkerProcess,
    ),
    /// Scraping the ingress and the worker, for the console's health figures.
    _prometheus: Option<Prometheus>,
}

/// Ingress, worker (one attempt: a failure is a dead letter at once) and console, with the
/// subscription `billing` to `subscriber`.
pub(crate) async fn stack(subscriber: &TestSubscriber) -> Stack {
    stack_with(subscriber, json!({})).await
}

/// [`stack`] with `extra` merged into its config.
pub(crate) async fn stack_with(subscriber: &TestSubscriber, extra: Value) -> Stack {
    build(subscriber, extra, false).await
}

/// [`stack_with`], and a Prometheus scraping the ingress and the worker that the console
/// reads its health figures from.
pub(crate) async fn stack_with_prometheus(subscriber: &TestSubscriber, extra: Value) -> Stack {
    build(subscriber, extra, true).await
}

async fn build(subscriber: &TestSubscriber, extra: Value, with_prometheus: bool) -> Stack {
    let postgres = Postgres::start();
    let database = postgres.database("console");
    let stripe = source("stripe");
    let url = subscriber.url("/billing");
    let mut setup = worker_setup(&stripe, |dir| {
        let mut patch = console_section(dir, &database);
        patch["worker"] = json!({ "max_attempts": 1 });
        patch["subscriptions"] = json!([subscription(dir, "billing", &url)]);
        spillway_testkit::config_doc::merge(&mut patch, extra);
        patch
    })
    .await;
    let ingress = setup.spawn_ingress("ingress");
    let mut worker = setup.spawn_worker("worker");
    ingress.wait_ready().await;
    let prometheus = if with_prometheus {
        let targets = [ingress.admin, worker.admin_addr().await];
        let prometheus = Prometheus::start(setup.dir.path(), &targets, &[]).await;
        setup.set(
            "console.prometheus_url",
            format!("http://{}", prometheus.addr),
        );
        Some(prometheus)
    } else {
        None
    };
    let mut console = setup.spawn_console("console");
    console.wait_ready().await;
    Stack {
        setup,
        console,
        _postgres: postgres,
        _processes: (ingress, worker),
        _prometheus: prometheus,
    }
}
