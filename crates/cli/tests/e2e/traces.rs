//! Across processes: one webhook traced from the ingress through Kafka to the worker's
//! delivery, exported over OTLP/HTTP to an in-process collector; and the JSON logs that carry
//! the event id and source, with the access log line.

use serde_json::json;
use spillway_testkit::otlp::{self, ExportedSpan};
use spillway_testkit::spillway::{
    event_body, inbox_subscription, source, spillway_bin, worker_setup,
};
use spillway_testkit::{read_topic, Client, IngressProcess, TestSubscriber, Wait};

/// The trace an outside sender was in; the ingress must link it, not adopt it.
const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

fn one<'a>(
    spans: &'a [ExportedSpan],
    what: &str,
    pick: impl Fn(&ExportedSpan) -> bool,
) -> &'a ExportedSpan {
    let found: Vec<&ExportedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "expected one {what} span in {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_is_traced_from_the_ingress_through_kafka_to_the_delivery() {
    let collector = otlp::collector().await;
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = worker_setup(&github, |dir| {
        json!({
            "telemetry": { "otlp_endpoint": collector.url(""), "export_interval": "100ms" },
            "subscriptions": [inbox_subscription(dir, &subscriber.url("/inbox"))],
        })
    })
    .await;
    let log = setup.log("ingress");
    let ingress = IngressProcess::spawn(
        &spillway_bin(),
        &setup.config,
        &[("SPILLWAY_LOG_FORMAT", "json")],
        log.clone(),
    );
    ingress.wait_ready().await;
    let _worker = setup.spawn_worker("worker");

    let body = event_body("trace-1", 0);
    let mut headers = github.sign("trace-1", &body, 0);
    headers.push((
        "traceparent".into(),
        format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01"),
    ));
    let reply = Client::http1()
        .post(&ingress.hook_url("github"), &headers, body)
        .await
        .expect("POST");
    assert_eq!(reply.status, 202);
    let event_id = reply.json()["id"].as_str().expect("id").to_owned();

    // Wait for the delivery and for both processes' spans to reach the collector.
    let spans = Wait::new()
        .poll(async || {
            let spans = otlp::spans(&collector);
            let has = |kind: &str| spans.iter().any(|s| s.kind == kind);
            let named = |name: &str| spans.iter().filter(|s| s.name == name).count();
            let commits = named("dedupe.commit") == 2 && named("dedupe.commit.queued") == 2;
            let arrived = has("server") && has("client") && has("consumer") && commits;
            if arrived && !subscriber.received().is_empty() {
                Ok(spans)
            } else {
                Err(spans)
            }
        })
        .await
        .unwrap_or_else(|spans| panic!("spans never arrived: {spans:#?}"));

    // The ingress: a root server span following the HTTP conventions, linked to the sender's.
    let server = one(&spans, "server", |s| s.kind == "server");
    assert_eq!(server.service, "spillway-ingress");
    assert_eq!(server.name, "POST /v1/hooks/{source}");
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.route"), Some("/v1/hooks/{source}"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));
    assert_eq!(server.attr("source"), Some("github"));
    assert_eq!(server.attr("event_id"), Some(event_id.as_str()));
    assert_eq!(
        server.parent_span_id, "",
        "an outside traceparent is not the parent"
    );
    assert_ne!(server.trace_id, SENDER_TRACE);
    assert_eq!(
        server.links,
        vec![(SENDER_TRACE.to_owned(), SENDER_SPAN.to_owned())]
    );
    let trace = server.trace_id.clone();
    let child_of_server = |name: &str| {
        let span = one(&spans, name, |s| s.name == name);
        assert_eq!(span.trace_id, trace, "{name}");
        assert_eq!(span.parent_span_id, server.span_id, "{name}");
        span
    };
    child_of_server("verify");
    // GitHub's delivery id is not signed: its event is claimed twice, on the dedupe key and on
    // the signature's fingerprint, and both claims are committed, after the answer: each
    // commit under a root span of its own linked to the server span.
    let claims: Vec<_> = spans.iter().filter(|s| s.name == "dedupe.claim").collect();
    assert_eq!(claims.len(), 2, "{claims:#?}");
    for span in claims {
        assert_eq!(span.trace_id, trace);
        assert_eq!(span.parent_span_id, server.span_id);
    }
    let commits: Vec<_> = spans.iter().filter(|s| s.name == "dedupe.commit").collect();
    assert_eq!(commits.len(), 2, "{commits:#?}");
    for span in commits {
        let queued = one(&spans, "the commit's queued span", |s| {
            s.span_id == span.parent_span_id
        });
        assert_eq!(queued.name, "dedupe.commit.queued");
        assert_eq!(queued.parent_span_id, "");
        assert_eq!(queued.links, vec![(trace.clone(), server.span_id.clone())]);
    }
    let topic = setup.topic("github");
    let send = child_of_server(&format!("send {topic}"));
    assert_eq!(send.kind, "producer");
    assert_eq!(
        send.attr("messaging.destination.name"),
        Some(topic.as_str())
    );
    assert_eq!(send.attr("messaging.message.id"), Some(event_id.as_str()));

    // Kafka: the record carries the producer span's context.
    let records = read_topic(&setup.brokers, &topic).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].header("traceparent"),
        Some(format!("00-{trace}-{}-01", send.span_id).as_str())
    );

    // The worker continues the trace: its processing span is the producer span's child and
    // links to it; the delivery is an HTTP client span under it.
    let process = one(&spans, "consumer", |s| s.kind == "consumer");
    assert_eq!(process.service, "spillway-worker");
    assert_eq!(process.name, format!("process {topic}"));
    assert_eq!(process.trace_id, trace);
    assert_eq!(process.parent_span_id, send.span_id);
    assert_eq!(process.links, vec![(trace.clone(), send.span_id.clone())]);
    assert_eq!(process.attr("event_id"), Some(event_id.as_str()));
    assert_eq!(process.attr("subscription"), Some("inbox"));
    let deliver = one(&spans, "client", |s| {
        s.kind == "client" && s.service == "spillway-worker"
    });
    assert_eq!(deliver.trace_id, trace);
    assert_eq!(deliver.parent_span_id, process.span_id);
    assert_eq!(deliver.attr("http.response.status_code"), Some("200"));
    // The subscriber is told the delivery span is its parent.
    let delivered = &subscriber.received()[0];
    assert_eq!(
        delivered.header("traceparent"),
        Some(format!("00-{trace}-{}-01", deliver.span_id).as_str())
    );

    // The JSON logs: the access line for the request names the event and its source.
    let text = std::fs::read_to_string(&log).expect("ingress log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "spillway::access")
        .unwrap_or_else(|| panic!("no access log line in\n{text}"));
    assert_eq!(access["status"], 202);
    assert_eq!(access["outcome"], "accepted");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["path"], "/v1/hooks/github");
    assert_eq!(access["span"]["event_id"], event_id.as_str());
    assert_eq!(access["span"]["source"], "github");
}
