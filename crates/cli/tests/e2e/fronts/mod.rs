//! nginx and HAProxy, from their files in deploy/, each terminating TLS in front of two ingress
//! processes, checked for what a user relies on: the client's address (not the front's)
//! reaches the source allowlist, the blocking of failing clients and the ingress's access log;
//! a body over the front's limit gets a clear 413 there while one at the limit passes; a
//! client over the front's rate gets 429 while others go on; and stopping one ingress under
//! load loses no event.
//!
//! Clients send from documentation addresses put on the loopback interface (198.51.100.0/24,
//! neither private nor loopback, so the ingress may block them), as senders on the internet
//! would be seen.

mod client;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use client::HttpsClient;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use spillway_core::headers;
use spillway_testkit::balancer::Backend;
use spillway_testkit::front::{client_address, Certificate, Front, Kind, RateLimit};
use spillway_testkit::spillway::{event_body, setup, source, Setup, TestSource};
use spillway_testkit::{read_topic, redis_nodes, IngressProcess, Wait};

/// The source's limit, and the fronts' as shipped.
const MAX_BODY: usize = 983_040;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nginx_passes_clients_on_limits_and_loses_nothing() {
    check_front(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_passes_clients_on_limits_and_loses_nothing() {
    check_front(Kind::Haproxy).await;
}

/// Two ingress processes on the shared stack: `allowed` takes only the sender's address,
/// `open` anyone's; clients failing verification are blocked.
struct Stack {
    setup: Setup,
    ingresses: Vec<IngressProcess>,
    open: TestSource,
    allowed: TestSource,
}

async fn stack() -> Stack {
    let github = source("github");
    let open = TestSource {
        name: "open",
        ..github.clone()
    };
    let allowed = TestSource {
        name: "allowed",
        ..github
    };
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &redis_nodes(),
        &[open.clone(), allowed.clone()],
        json!({
            "ingress": {
                "trusted_proxies": ["127.0.0.1/32"],
                "block_failing_clients": { "failures": 3, "window": "10m", "duration": "10m" },
                // Each ingress asks Redis for a client's block state at once, so the one that
                // did not count the failures refuses the client too.
                "block_check_interval": "0s",
                "drain_timeout": "20s",
            },
            "sources": {
                "open": { "max_body_bytes": MAX_BODY },
                "allowed": {
                    "max_body_bytes": MAX_BODY,
                    "allow_cidrs": ["198.51.100.7/32"],
                    // The header as the ingress received it, kept in the record.
                    "forward_headers": ["X-GitHub-Delivery", "X-GitHub-Event", "X-Forwarded-For"],
                },
            },
        }),
    );
    setup.create_topics().await;
    let ingresses = vec![
        setup.spawn_ingress("ingress-a"),
        setup.spawn_ingress("ingress-b"),
    ];
    for ingress in &ingresses {
        ingress.wait_ready().await;
    }
    Stack {
        setup,
        ingresses,
        open,
        allowed,
    }
}

async fn check_front(kind: Kind) {
    let sender_ip = client_address(Ipv4Addr::new(198, 51, 100, 7));
    let stranger_ip = client_address(Ipv4Addr::new(198, 51, 100, 8));
    let noisy_ip = client_address(Ipv4Addr::new(198, 51, 100, 9));
    let mut stack = stack().await;
    let backends: Vec<Backend> = stack
        .ingresses
        .iter()
        .map(|i| Backend {
            hooks: i.addr,
            admin: i.admin,
        })
        .collect();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let certificate = Certificate {
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
    };
    let root = certified.cert.der().clone();
    // The shipped rate (100 a second per client) would refuse the load of the last check,
    // sent from one address as fast as this machine can.
    let front = Front::start(
        kind,
        &backends,
        &certificate,
        Some(RateLimit { requests: 100_000 }),
    );
    let strict = Front::start(
        kind,
        &backends,
        &certificate,
        Some(RateLimit { requests: 5 }),
    );
    let logs = |stack: &Stack| {
        stack
            .ingresses
            .iter()
            .map(IngressProcess::log_text)
            .collect::<Vec<_>>()
            .join("\n")
    };

    // The allowlist sees the client, not the front: the sender is let in, a stranger is not,
    // even when it claims the sender's address in its own X-Forwarded-For.
    let mut sender = HttpsClient::new(sender_ip, front.addr, &root);
    let mut stranger = HttpsClient::new(stranger_ip, front.addr, &root);
    let reply = sender.event(&stack.allowed, "allowed-1", 1).await;
    assert_eq!(reply.status, 202, "{:?}\n{}", reply.body, front.log_text());
    let reply = stranger.event(&stack.allowed, "allowed-2", 1).await;
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    assert_eq!(reply.field("error").as_deref(), Some("address_not_allowed"));
    let body = event_body("allowed-3", 1);
    let mut spoofed = stack.allowed.sign("allowed-3", &body, 0);
    spoofed.push(("x-forwarded-for".into(), sender_ip.to_string()));
    let reply = stranger
        .post("allowed", &spoofed, body)
        .await
        .expect("post");
    assert_eq!(
        reply.status, 403,
        "a client's own X-Forwarded-For does not let it in: {:?}",
        reply.body
    );
    // The front replaces what a client wrote rather than appending to it: the ingress got the
    // sender's address alone.
    let body = event_body("allowed-4", 1);
    let mut claimed = stack.allowed.sign("allowed-4", &body, 0);
    claimed.push(("x-forwarded-for".into(), "203.0.113.9".into()));
    let reply = sender.post("allowed", &claimed, body).await.expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let records = read_topic(&stack.setup.brokers, &stack.setup.topic("allowed")).await;
    let forwarded = records
        .iter()
        .find(|r| r.header(headers::DEDUPE_KEY) == Some("allowed-4"))
        .and_then(|r| r.header("x-forwarded-for"));
    assert_eq!(forwarded, Some(sender_ip.to_string().as_str()));

    // The access log names the client and the front as the peer.
    Wait::new()
        .until("the access log names both clients", async || {
            let text = logs(&stack);
            let seen = |ip: IpAddr| {
                text.lines().any(|l| {
                    l.contains("spillway::access")
                        && l.contains(&format!("client={ip}"))
                        && l.contains("peer=127.0.0.1")
                })
            };
            (seen(sender_ip) && seen(stranger_ip)).then_some(())
        })
        .await;

    // Blocking: a stranger failing verification is refused once over the limit, by either
    // ingress; the sender behind the same front is not.
    for n in 0..4 {
        let body = event_body(&format!("forged-{n}"), 1);
        let forged = stack
            .open
            .sign_with(b"not-the-secret", &format!("forged-{n}"), &body, 0);
        let reply = stranger.post("open", &forged, body).await.expect("post");
        assert_eq!(reply.status, 401, "{:?}", reply.body);
    }
    for n in 0..2 {
        let reply = stranger
            .event(&stack.open, &format!("after-block-{n}"), 1)
            .await;
        assert_eq!(reply.status, 403, "{:?}", reply.body);
        assert_eq!(reply.field("error").as_deref(), Some("client_blocked"));
    }
    let reply = sender.event(&stack.open, "not-blocked", 1).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);

    // Bodies: one at the limit passes the front and the ingress; one byte more gets a clear
    // 413 with the ingress's JSON. nginx refuses it itself (and reads the rest, so the answer
    // arrives); HAProxy would close the connection after its own 413, so it leaves that to
    // the ingress, which reads the rest before answering (deploy/haproxy/spillway.cfg).
    let at_limit = padded_body("at-limit", MAX_BODY);
    let reply = sender
        .post("open", &stack.open.sign("at-limit", &at_limit, 0), at_limit)
        .await
        .expect("post");
    assert_eq!(
        reply.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    let refused_by_ingress = |stack: &Stack| logs(stack).matches("status=413").count();
    let over = padded_body("over-limit", MAX_BODY + 1);
    let reply = sender
        .post("open", &stack.open.sign("over-limit", &over, 0), over)
        .await
        .unwrap_or_else(|e| panic!("the 413 did not arrive: {e}\n{}", front.log_text()));
    assert_eq!(reply.status, 413, "{:?}", reply.body);
    assert_eq!(reply.field("error").as_deref(), Some("body_too_large"));
    let expected = match kind {
        Kind::Nginx => 0,
        Kind::Haproxy => 1,
    };
    Wait::new()
        .until("the ingresses' 413s", async || {
            (refused_by_ingress(&stack) == expected).then_some(())
        })
        .await;
    // A body far over every limit never reaches an ingress: nginx answers 413; HAProxy answers
    // 413 or closes the connection while the body is still being written.
    let huge = padded_body("huge", 5 << 20);
    let mut uploader = HttpsClient::new(sender_ip, front.addr, &root);
    match uploader
        .post("open", &stack.open.sign("huge", &huge, 0), huge)
        .await
    {
        Ok(reply) => assert_eq!(reply.status, 413, "{:?}", reply.body),
        Err(e) => assert_eq!(kind, Kind::Haproxy, "nginx answers 413: {e}"),
    }
    // A sender that waits for "100 Continue" gets the front's 413 before it sends the body.
    let (status, answer) = uploader
        .declare("open", &stack.open.sign("huge", b"", 0), 5 << 20)
        .await
        .expect("an answer to the head");
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    // The ingresses log every request they answer: once the next event's line is there, a
    // huge body that had reached one would be too.
    let accepted = |stack: &Stack| logs(stack).matches("status=202").count();
    let before = accepted(&stack);
    let reply = sender.event(&stack.open, "after-huge", 1).await;
    assert_eq!(reply.status, 202);
    Wait::new()
        .until("the event after the huge body is logged", async || {
            (accepted(&stack) > before).then_some(())
        })
        .await;
    assert_eq!(
        refused_by_ingress(&stack),
        expected,
        "the huge body reached an ingress:\n{}",
        front.log_text()
    );

    // Rate: past the strict front's 5 requests a client gets 429 with Retry-After; another
    // client goes on.
    let mut noisy = HttpsClient::new(noisy_ip, strict.addr, &root);
    for n in 0..5 {
        let reply = noisy.event(&stack.open, &format!("noisy-{n}"), 1).await;
        assert_eq!(reply.status, 202, "{:?}\n{}", reply.body, strict.log_text());
    }
    let reply = noisy.event(&stack.open, "noisy-5", 1).await;
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    assert_eq!(reply.field("error").as_deref(), Some("rate_limited"));
    assert!(reply.headers.contains_key("retry-after"));
    let mut calm = HttpsClient::new(sender_ip, strict.addr, &root);
    let reply = calm.event(&stack.open, "calm", 1).await;
    assert_eq!(reply.status, 202, "another client is not limited");

    loses_nothing_when_an_ingress_stops(&mut stack, &front, sender_ip, &root).await;
}

/// Senders through the front, each retrying an event until it is accepted as a sender would;
/// ingress A gets SIGTERM under that load. Every event is in Kafka once.
async fn loses_nothing_when_an_ingress_stops(
    stack: &mut Stack,
    front: &Front,
    from: IpAddr,
    root: &CertificateDer<'static>,
) {
    const SENDERS: usize = 8;
    const EACH: usize = 150;
    let answered = Arc::new(AtomicUsize::new(0));
    let run = spillway_testkit::unique("");
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (open, answered, root) = (stack.open.clone(), answered.clone(), root.clone());
            let (addr, run) = (front.addr, run.clone());
            tokio::spawn(async move {
                let mut client = HttpsClient::new(from, addr, &root);
                let mut sent = Vec::new();
                let mut answers: HashMap<u16, usize> = HashMap::new();
                for n in 0..EACH {
                    let id = format!("stop-{run}-{s}-{n}");
                    let body = event_body(&id, n);
                    let signed = open.sign(&id, &body, 0);
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        assert!(tries <= 100, "{id} never accepted: {answers:?}");
                        match client.post("open", &signed, body.clone()).await {
                            Ok(reply) => {
                                *answers.entry(reply.status.as_u16()).or_default() += 1;
                                answered.fetch_add(1, Ordering::Relaxed);
                                if reply.status == 202 || reply.status == 200 {
                                    break;
                                }
                                assert!(
                                    reply.status.is_server_error(),
                                    "only a 5xx (a sender retries) besides an acceptance: {:?}",
                                    reply.body
                                );
                            }
                            Err(_) => *answers.entry(0).or_default() += 1,
                        }
                        // A sender's backoff before it tries again.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    sent.push(id);
                }
                (sent, answers)
            })
        })
        .collect();
    Wait::new()
        .every(Duration::from_millis(10))
        .until("300 answers", async || {
            spillway_testkit::wait::at_least(answered.load(Ordering::Relaxed), 300)
        })
        .await;
    let mut stopped = stack.ingresses.remove(0);
    stopped.terminate();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = stopped.wait_exit();
        (status, stopped.log_text())
    })
    .await
    .expect("join");
    assert!(status.success(), "clean exit after the drain:\n{log}");
    assert!(
        log.contains("status=202"),
        "the stopped ingress had taken requests"
    );
    let at_exit = answered.load(Ordering::Relaxed);
    assert!(
        at_exit < SENDERS * EACH,
        "the load went on after the ingress stopped ({at_exit} answers by then)"
    );

    let mut sent = HashSet::new();
    let mut answers: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        let (ids, counts) = task.await.expect("sender");
        sent.extend(ids);
        for (status, n) in counts {
            *answers.entry(status).or_default() += n;
        }
    }
    let records = read_topic(&stack.setup.brokers, &stack.setup.topic("open")).await;
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.header(headers::DEDUPE_KEY).map(str::to_owned))
        .filter(|id| id.starts_with(&format!("stop-{run}-")))
        .collect();
    let in_kafka: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        in_kafka.len(),
        ids.len(),
        "no event twice in Kafka; answers {answers:?}"
    );
    let missing = sent.difference(&in_kafka).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} events are missing from Kafka; answers {answers:?}\n{}",
        sent.len(),
        front.log_text()
    );
    assert_eq!(sent.len(), SENDERS * EACH);
    eprintln!(
        "{:?} through one ingress stopping: answers {answers:?}",
        front.kind
    );
}

/// A JSON event of exactly `len` bytes.
fn padded_body(id: &str, len: usize) -> Bytes {
    let head = format!("{{\"id\":\"{id}\",\"pad\":\"");
    let tail = "\"}";
    let pad = len - head.len() - tail.len();
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}
