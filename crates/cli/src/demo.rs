//! `spillway demo`: sends a signed burst to running ingress processes (valid, duplicate,
//! tampered and stale requests for every configured source) and shows what happened to each
//! kind and where the accepted records are in Kafka.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spillway_config::Config;
use spillway_core::headers;
use spillway_loadgen::signing::SignedSource;
use spillway_signature::unix_seconds;

use crate::inbox::Inbox;
use crate::READ_BACK_TIMEOUT;

type Headers = Vec<(String, String)>;

/// Events per source in the burst.
const EVENTS_PER_SOURCE: usize = 5;

pub async fn run(config: &Config, targets: &[String], inbox: Option<&str>) -> anyhow::Result<()> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // Listening before the burst, so no delivery finds the inbox closed.
    let inbox = match inbox {
        None => None,
        Some(id) => {
            let subscriptions = config
                .resolve_subscriptions()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let subscription = subscriptions
                .iter()
                .find(|s| s.id == id)
                .with_context(|| format!("no subscription {id:?} in the config"))?;
            let started = Inbox::start(subscription)
                .await
                .with_context(|| format!("listening on {} for {id}", subscription.url))?;
            Some((id, started))
        }
    };
    let sources = SignedSource::from_config(config)
        .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?;
    // kind -> status -> count
    let mut tally: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut accepted: Vec<(String, String)> = Vec::new(); // (event id, topic)
    let mut sent = 0usize;
    let now = unix_seconds(SystemTime::now());

    for source in &sources {
        for i in 0..EVENTS_PER_SOURCE {
            let id = format!("evt_demo_{}", uuid::Uuid::new_v4().simple());
            let body = format!(
                r#"{{"id":"{id}","type":"demo.event","source":"{}","device":"meter-{}","n":{i}}}"#,
                source.name,
                i % 2
            );
            let signed = source.headers(&id, now, body.as_bytes());
            let mut kinds: Vec<(&str, Headers, String)> = vec![
                ("valid", signed.clone(), body.clone()),
                ("duplicate", signed.clone(), body.clone()),
                ("tampered", signed, body.replace("demo.event", "demo.evil")),
            ];
            if source.has_timestamp() {
                let stale = source.headers(&id, now - 3600, body.as_bytes());
                kinds.push(("stale", stale, body.clone()));
            }
            for (kind, headers, body) in kinds {
                let target = &targets[sent % targets.len()];
                sent += 1;
                let url = format!("{}/v1/hooks/{}", target.trim_end_matches('/'), source.name);
                let (status, answer) = post(&client, &url, &headers, body).await?;
                *tally.entry(kind).or_default().entry(status).or_default() += 1;
                if status == 202 {
                    if let Some(id) = answer.get("id").and_then(|v| v.as_str()) {
                        accepted.push((id.to_owned(), source.topic.clone()));
                    }
                }
            }
        }
    }

    println!("sent {sent} requests to {}", targets.join(", "));
    println!("{:<10} answers (status x count)", "kind");
    for (kind, statuses) in &tally {
        let answers: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} x{n}")).collect();
        println!("{kind:<10} {}  ({})", answers.join(", "), explain(kind));
    }

    // Where the accepted events are.
    let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, topic) in &accepted {
        by_topic.entry(topic.clone()).or_default().push(id.clone());
    }
    println!("\naccepted events in Kafka ({}):", config.kafka.brokers);
    for (topic, ids) in by_topic {
        let connection = spillway_kafka::Connection::from(&config.kafka);
        let t = topic.clone();
        let records = tokio::task::spawn_blocking(move || {
            spillway_kafka::reader::read_topic(&connection, &t, READ_BACK_TIMEOUT)
        })
        .await?
        .with_context(|| format!("reading {topic} back"))?;
        for id in ids {
            match records
                .iter()
                .find(|r| r.header(headers::EVENT_ID) == Some(id.as_str()))
            {
                Some(r) => println!(
                    "  {topic}/{}@{}  id={id}  key={}",
                    r.partition,
                    r.offset,
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default())
                ),
                None => anyhow::bail!("event {id} was answered 202 but is not in {topic}"),
            }
        }
    }

    if let Some((id, inbox)) = inbox {
        let expected: HashSet<String> = accepted.iter().map(|(event, _)| event.clone()).collect();
        let (arrived, bad) = inbox.wait_for(&expected, INBOX_WAIT).await;
        println!(
            "\ndelivered by the worker to subscription {id}: {arrived} of {} accepted events, signatures verified ({bad} bad)",
            expected.len()
        );
        if arrived < expected.len() {
            anyhow::bail!("{} accepted events did not reach {id} within {INBOX_WAIT:?}; is `spillway worker` running?", expected.len() - arrived);
        }
    }
    Ok(())
}

/// How long the demo waits for the worker's deliveries.
const INBOX_WAIT: Duration = Duration::from_secs(60);

fn explain(kind: &str) -> &'static str {
    match kind {
        "valid" => "202: in Kafka",
        "duplicate" => "200: same event seen, original id returned",
        "tampered" => "401: signature does not match the body",
        "stale" => "400: timestamp outside the replay window",
        _ => "",
    }
}

async fn post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    headers: &[(String, String)],
    body: String,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut request = Request::post(url);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body)))?)
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}
