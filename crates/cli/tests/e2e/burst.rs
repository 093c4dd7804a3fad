//! Thousands of signed requests, mixing valid, duplicate (sequential and concurrent), tampered
//! and stale ones, over two ingress processes, HTTP/1.1 and HTTP/2. Then every topic is read
//! back: each 202 is there exactly once, byte-identical with the right headers, and nothing
//! else is.

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use sha2_hex::sha256_hex;
use spillway_core::headers;
use spillway_testkit::spillway::{all_sources, event_body, setup, TestSource, ACME_OLD_SECRET};
use spillway_testkit::{read_topic, redis_nodes, Client, Reply};

const EVENTS_PER_SOURCE: usize = 400;
const CONCURRENCY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid {
        sequential_duplicate: bool,
        concurrent_duplicate: bool,
        old_secret: bool,
    },
    Tampered,
    Stale,
}

#[derive(Debug, Clone)]
struct Planned {
    source: usize,
    id: String,
    body: Bytes,
    kind: Kind,
}

fn plan(sources: &[TestSource]) -> Vec<Planned> {
    let mut out = Vec::new();
    for (s, source) in sources.iter().enumerate() {
        for n in 0..EVENTS_PER_SOURCE {
            let id = format!("evt_{}_{n}_{}", source.name, spillway_testkit::unique(""));
            let kind = match n % 20 {
                0 | 1 => Kind::Tampered,
                2 | 3 if source.has_timestamp() => Kind::Stale,
                _ => Kind::Valid {
                    sequential_duplicate: n % 5 == 0,
                    concurrent_duplicate: n % 7 == 0,
                    old_secret: source.name == "acme" && n % 2 == 0,
                },
            };
            out.push(Planned {
                source: s,
                body: event_body(&id, n),
                id,
                kind,
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_is_in_kafka_exactly_once_with_exact_bodies_and_headers() {
    let sources = all_sources();
    let brokers = spillway_testkit::kafka_brokers();
    // Thousands of senders behind one address, hundreds of them with bad signatures: the
    // address must not be blocked for it.
    let setup = setup(
        &brokers,
        &redis_nodes(),
        &sources,
        json!({ "ingress": { "block_failing_clients": null } }),
    );
    setup.create_topics().await;
    let ingresses = [
        setup.spawn_ingress("ingress-a"),
        setup.spawn_ingress("ingress-b"),
    ];
    for i in &ingresses {
        i.wait_ready().await;
    }
    let urls: Vec<Vec<String>> = ingresses
        .iter()
        .map(|i| sources.iter().map(|s| i.hook_url(s.name)).collect())
        .collect();
    let clients = [Client::http1(), Client::http2()];

    let planned = plan(&sources);
    let results: Vec<(usize, Vec<Reply>)> = futures::stream::iter(planned.iter().enumerate())
        .map(|(i, p)| {
            let source = &sources[p.source];
            let client = &clients[i % 2];
            let here = &urls[i % 2][p.source];
            let there = &urls[(i + 1) % 2][p.source];
            async move {
                let post = |url: &str, headers: Vec<(String, String)>, body: Bytes| {
                    let url = url.to_owned();
                    async move { client.post(&url, &headers, body).await.expect("request") }
                };
                let mut replies = Vec::new();
                match p.kind {
                    Kind::Tampered => {
                        let headers = source.sign(&p.id, &p.body, 0);
                        let mut evil = p.body.to_vec();
                        evil[2] ^= 0x01;
                        replies.push(post(here, headers, Bytes::from(evil)).await);
                    }
                    Kind::Stale => {
                        let headers = source.sign(&p.id, &p.body, 3600);
                        replies.push(post(here, headers, p.body.clone()).await);
                    }
                    Kind::Valid {
                        sequential_duplicate,
                        concurrent_duplicate,
                        old_secret,
                    } => {
                        let key = if old_secret {
                            source.scheme.decode_secret(ACME_OLD_SECRET).expect("old")
                        } else {
                            source.key()
                        };
                        let headers = source.sign_with(&key, &p.id, &p.body, 0);
                        if concurrent_duplicate {
                            let (a, b) = tokio::join!(
                                post(here, headers.clone(), p.body.clone()),
                                post(there, headers, p.body.clone())
                            );
                            replies.push(a);
                            replies.push(b);
                        } else {
                            replies.push(post(here, headers, p.body.clone()).await);
                        }
                        if sequential_duplicate {
                            // A provider retry: signed again, later, sent to the other pod.
                            let retry = source.sign_with(&key, &p.id, &p.body, 0);
                            replies.push(post(there, retry, p.body.clone()).await);
                        }
                    }
                }
                (i, replies)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    // What the senders saw.
    let mut accepted: HashMap<String, (usize, String)> = HashMap::new(); // event id -> (plan, source)
    let mut requests = 0;
    for (i, replies) in &results {
        requests += replies.len();
        let p = &planned[*i];
        let source = &sources[p.source];
        match p.kind {
            Kind::Tampered => {
                assert_eq!(
                    replies[0].status, 401,
                    "{}: {:?}",
                    source.name, replies[0].body
                );
                assert_eq!(
                    replies[0].field("error").as_deref(),
                    Some("signature_mismatch")
                );
            }
            Kind::Stale => {
                assert_eq!(
                    replies[0].status, 400,
                    "{}: {:?}",
                    source.name, replies[0].body
                );
                assert_eq!(
                    replies[0].field("error").as_deref(),
                    Some("timestamp_too_old")
                );
            }
            Kind::Valid { .. } => {
                let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 202).collect();
                assert_eq!(
                    winners.len(),
                    1,
                    "{} {}: exactly one 202 per event, got {replies:?}",
                    source.name,
                    p.id
                );
                let id = winners[0].field("id").expect("id");
                assert_eq!(winners[0].field("status").as_deref(), Some("accepted"));
                for r in replies.iter().filter(|r| r.status != 202) {
                    match r.status.as_u16() {
                        200 => {
                            assert_eq!(r.field("status").as_deref(), Some("duplicate"));
                            assert_eq!(
                                r.field("id").as_deref(),
                                Some(id.as_str()),
                                "a duplicate names the original"
                            );
                        }
                        503 => {
                            assert_eq!(r.field("error").as_deref(), Some("in_flight"));
                            assert!(
                                r.headers.contains_key("retry-after"),
                                "503 in_flight carries Retry-After"
                            );
                        }
                        other => {
                            panic!("{} {}: unexpected {other} {:?}", source.name, p.id, r.body)
                        }
                    }
                }
                accepted.insert(id, (*i, source.name.to_owned()));
            }
        }
    }
    assert!(
        requests > 2500,
        "the burst is thousands of requests, was {requests}"
    );

    // What Kafka has.
    let mut records_seen = 0;
    for source in &sources {
        let records = read_topic(&brokers, &setup.topic(source.name)).await;
        records_seen += records.len();
        let expected = accepted.values().filter(|(_, s)| s == source.name).count();
        assert_eq!(
            records.len(),
            expected,
            "{}: records in Kafka vs 202 answers",
            source.name
        );
        for r in &records {
            let id = r.header(headers::EVENT_ID).expect("event id header");
            let (i, _) = accepted
                .get(id)
                .unwrap_or_else(|| panic!("{id} is in Kafka but was never answered 202"));
            let p = &planned[*i];
            assert_eq!(r.value, p.body.to_vec(), "the value is the exact body");
            assert_eq!(r.header(headers::SOURCE), Some(source.name));
            assert_eq!(r.header(headers::SCHEME), Some(source.scheme.name()));
            let Kind::Valid { old_secret, .. } = p.kind else {
                unreachable!()
            };
            let key_id = if old_secret {
                "acme-old".to_owned()
            } else {
                format!("{}-current", source.name)
            };
            assert_eq!(r.header(headers::KEY_ID), Some(key_id.as_str()));
            let dedupe = if source.name == "slack" {
                sha256_hex(&p.body)
            } else {
                p.id.clone()
            };
            assert_eq!(r.header(headers::DEDUPE_KEY), Some(dedupe.as_str()));
            let record_key = if source.name == "meters" {
                serde_json::from_slice::<serde_json::Value>(&p.body).expect("json")["device"]
                    .as_str()
                    .expect("device")
                    .to_owned()
            } else {
                dedupe
            };
            assert_eq!(r.key.as_deref(), Some(record_key.as_bytes()));
            assert_eq!(r.header(headers::CONTENT_TYPE), Some("application/json"));
            assert!(r
                .header(headers::TRACEPARENT)
                .is_some_and(|t| t.starts_with("00-")));
            assert!(r
                .header(headers::RECEIVED_AT)
                .is_some_and(|t| t.parse::<u64>().is_ok()));
        }
    }
    assert_eq!(
        records_seen,
        accepted.len(),
        "nothing but the accepted events is in Kafka"
    );

    // Both processes took traffic and counted it, and sent their claims and commits on the
    // direct routes to the primaries (built at the first command, a few milliseconds in).
    for i in &ingresses {
        let metrics = i.metrics().await;
        assert!(
            metrics
                .contains("spillway_http_requests_total{outcome=\"accepted\",source=\"github\"}"),
            "{metrics}"
        );
        let direct =
            spillway_testkit::series_value(&metrics, "spillway_redis_direct_commands_total");
        assert!(direct.is_some_and(|n| n > 0), "{metrics}");
    }
}

mod sha2_hex {
    use spillway_core::key::{KeyInput, KeySource};

    pub fn sha256_hex(body: &[u8]) -> String {
        let headers = http::HeaderMap::new();
        let h = KeySource::BodyHash
            .extract(&KeyInput::new(&headers, body, None))
            .expect("hash");
        h.expect("some")
    }
}
