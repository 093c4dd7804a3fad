//! The subscription registry: managed over the admin API, seen live by every worker replica,
//! and rate limits applied per subscription.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use spillway_signature::{Scheme, Secret, SecretRing, Verifier};
use spillway_testkit::wait::{all_of, at_least};
use spillway_testkit::{eventually, Client, Reply, TestSubscriber};

use crate::rig::rig;

const TOKEN: &str = "test-token-0123456789abcdef";

/// The admin API of one worker.
struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            client: Client::http1(),
            base: format!("http://{addr}/v1/subscriptions"),
        }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: &str) -> Reply {
        self.client
            .send(
                method,
                &format!("{}{path}", self.base),
                &[
                    ("authorization".into(), format!("Bearer {token}")),
                    ("content-type".into(), "application/json".into()),
                ],
                Bytes::from(body.to_owned()),
            )
            .await
            .expect("admin API answers")
    }

    /// Waits until `GET path` answers `status` (this worker has followed the registry).
    async fn wait_for_status(&self, path: &str, status: StatusCode) {
        eventually(format!("GET {path} to answer {status}"), async || {
            let answered = self.call(Method::GET, path, TOKEN, "").await.status;
            if answered == status {
                Ok(())
            } else {
                Err(format!("it answered {answered}"))
            }
        })
        .await;
    }
}

/// The circuit series of the subscription the registry test removes.
const STALE: &str = "spillway_worker_circuit_state{subscription=\"live\"}";

/// A worker's metrics page.
async fn metrics_of(admin: std::net::SocketAddr) -> Result<String, String> {
    let page = Client::http1()
        .send(
            Method::GET,
            &format!("http://{admin}/metrics"),
            &[],
            Bytes::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&page.body).into_owned())
}

fn verifies_with(secret: &str, received: &spillway_testkit::Received) -> bool {
    let key = Scheme::standard_webhooks()
        .decode_secret(secret)
        .expect("whsec secret");
    let ring = SecretRing::new(vec![Secret {
        id: "s".into(),
        key,
        not_after: None,
    }]);
    Verifier::new(Scheme::standard_webhooks(), ring, Duration::from_secs(300))
        .verify(&received.headers, &received.body, SystemTime::now())
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_managed_over_the_api_reach_every_replica_live() {
    let from_file = TestSubscriber::ok().await;
    let registered = TestSubscriber::ok().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let rig = rig(
        &[("from-file", from_file.url("/"), json!({}))],
        json!({
            "api_token": { "file": token_file.display().to_string() },
            "ingress_urls": ["http://hooks.example.com"],
        }),
    )
    .await;
    let (stop_a, running_a, admin_a) = rig.start_worker_with_admin();
    let (stop_b, running_b, admin_b) = rig.start_worker_with_admin();
    let (a, b) = (Api::new(admin_a), Api::new(admin_b));
    eventually("worker A's admin API", async || {
        std::net::TcpStream::connect(admin_a).map_err(|e| e.to_string())
    })
    .await;

    // Refusals: no token, a bad subscription, the config file's id, a loop into the ingress.
    let wrong = a.call(Method::GET, "", "not-the-token", "").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.field("error").as_deref(), Some("unauthorized"));
    let bad = a
        .call(
            Method::PUT,
            "/bad",
            TOKEN,
            r#"{"url": "ftp://x", "sources": ["nope"]}"#,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let paths: Vec<String> = bad.json()["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!(paths, ["url", "sources[0]"], "{:?}", bad.json());
    let typo = a
        .call(
            Method::PUT,
            "/typo",
            TOKEN,
            r#"{"url": "http://x", "surces": []}"#,
        )
        .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    assert!(typo.field("message").expect("message").contains("surces"));
    let reserved = a
        .call(Method::PUT, "/from-file", TOKEN, r#"{"url": "http://x"}"#)
        .await;
    assert_eq!(reserved.status, StatusCode::CONFLICT);
    let looping = a
        .call(
            Method::PUT,
            "/loop",
            TOKEN,
            r#"{"url": "http://hooks.example.com/v1/hooks/github"}"#,
        )
        .await;
    assert_eq!(looping.status, StatusCode::BAD_REQUEST);
    assert!(looping
        .field("message")
        .expect("message")
        .contains("own ingress"));

    // Registered through A; B sees it too, and both deliver to it.
    let created = a
        .call(
            Method::PUT,
            "/live",
            TOKEN,
            &format!(
                r#"{{"url": "{}", "sources": ["github"], "headers": {{"X-Team": "billing"}}}}"#,
                registered.url("/in")
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json());
    let secret = created
        .field("secret")
        .expect("a generated secret, shown once");
    b.wait_for_status("/live", StatusCode::OK).await;
    let listed = b.call(Method::GET, "", TOKEN, "").await;
    let listing = listed.json();
    let origins: Vec<(&str, &str)> = listing["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id"),
                s["origin"].as_str().expect("origin"),
            )
        })
        .collect();
    assert_eq!(origins, [("from-file", "config"), ("live", "registry")]);
    assert!(
        !String::from_utf8_lossy(&listed.body).contains(&secret),
        "listings never show secrets"
    );

    let mut ids = HashSet::new();
    for seq in 0..20 {
        ids.insert(rig.publish(&format!("k{}", seq % 6), seq, "push").await);
    }
    eventually("every event at the registered subscriber", async || {
        all_of(&registered.webhook_ids(), &ids)
    })
    .await;
    assert!(registered
        .received()
        .iter()
        .all(|r| verifies_with(&secret, r) && r.headers["x-team"] == "billing"));

    // Replaced without secrets: it keeps its secret.
    let replaced = b
        .call(
            Method::PUT,
            "/live",
            TOKEN,
            &format!(
                r#"{{"url": "{}", "event_types": ["push"]}}"#,
                registered.url("/v2")
            ),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.json());
    assert!(replaced.field("secret").is_none());

    // A worker that delivered to it exports its circuit's state.
    let mut exported = false;
    for admin in [admin_a, admin_b] {
        exported |= metrics_of(admin).await.is_ok_and(|t| t.contains(STALE));
    }
    assert!(exported, "no worker exports {STALE}");

    // Removed through B; once A has seen it, A delivers nothing more to it.
    let removed = b.call(Method::DELETE, "/live", TOKEN, "").await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    a.wait_for_status("/live", StatusCode::NOT_FOUND).await;
    assert_eq!(
        a.call(Method::DELETE, "/live", TOKEN, "").await.status,
        StatusCode::NOT_FOUND
    );
    let before = registered.received().len();
    let mut later = HashSet::new();
    for seq in 20..30 {
        later.insert(rig.publish(&format!("k{}", seq % 6), seq, "push").await);
    }
    eventually(
        "the later events at the config file's subscriber",
        async || all_of(&from_file.webhook_ids(), &later),
    )
    .await;
    assert_eq!(
        registered.received().len(),
        before,
        "nothing reaches a removed subscription"
    );
    // Nor does its circuit gauge stay behind on either worker, to go on firing alerts.
    for admin in [admin_a, admin_b] {
        eventually("the removed subscription's series gone", async || {
            let text = metrics_of(admin).await?;
            if text.contains(STALE) {
                Err(format!("{STALE} is still exported"))
            } else {
                Ok(())
            }
        })
        .await;
    }
    for (stop, running) in [(stop_a, running_a), (stop_b, running_b)] {
        stop.send(()).expect("stop");
        running.await.expect("worker stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_spaces_deliveries_out() {
    let subscriber = TestSubscriber::ok().await;
    let rig = rig(
        &[("limited", subscriber.url("/"), json!({ "rate_limit": 5 }))],
        json!({}),
    )
    .await;
    for seq in 0..15 {
        rig.publish(&format!("k{}", seq % 3), seq, "push").await;
    }
    let started = Instant::now();
    let (stop, running) = rig.start_worker();
    eventually("every delivery", async || {
        at_least(subscriber.received().len(), 15)
    })
    .await;
    let received = subscriber.received();
    let spread = received[14].at.duration_since(received[0].at);
    // 5 a second with a burst of 5: the last 10 need at least 2 s. (A lower bound: a slow
    // machine only makes it longer.)
    assert!(
        spread >= Duration::from_millis(1900),
        "15 deliveries at 5/s took only {spread:?} (worker up for {:?})",
        started.elapsed()
    );
    stop.send(()).expect("stop");
    running.await.expect("worker stops");
}
