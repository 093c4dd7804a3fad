//! Probes: single requests a case sends while a fault is on or just healed, until the ingress
//! answers what the case waits for (a refusal, an acceptance, a duplicate), to tell when the
//! ingress noticed the fault and when it recovered.

use std::time::{Duration, Instant};

use spillway_testkit::spillway::{event_body, TestSource};
use spillway_testkit::{Client, IngressProcess, Reply, Wait};

/// How often a probe is sent. Probes do not wait for each other: during a fault an answer may
/// wait for the fault to end (a record handed to the producer just before the cut), or take a
/// while (a fail-open request waits out the claim's timeout), and the next probe must not wait
/// behind it.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// How long `dedupe_works` waits for one answer before it asks again.
const PROBE_ANSWER: Duration = Duration::from_secs(10);

/// Posts fresh events to `source` every 100 ms until one is answered `status` (any error
/// code), within the patience; fails the test, naming the last answer, if none is. How long
/// after the first probe that answer came.
pub async fn probe_until(ingress: &IngressProcess, source: &TestSource, status: u16) -> Duration {
    probe(ingress, source, status, None).await
}

/// [`probe_until`] a 503 with this error code.
pub async fn probe_refused(ingress: &IngressProcess, source: &TestSource, error: &str) -> Duration {
    probe(ingress, source, 503, Some(error)).await
}

/// The `error` of an answer's JSON body, if it has one.
fn error_code(reply: &Reply) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_owned)
}

async fn probe(
    ingress: &IngressProcess,
    source: &TestSource,
    status: u16,
    error: Option<&str>,
) -> Duration {
    let client = Client::http1();
    let began = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut probes = tokio::task::JoinSet::new();
    let mut last = String::from("no answer yet");
    let mut next = tokio::time::Instant::now();
    while began.elapsed() < spillway_testkit::patience() {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                next += PROBE_EVERY;
                let (client, tx, url) = (client.clone(), tx.clone(), ingress.hook_url(source.name));
                let (id, source) = (spillway_testkit::unique("probe-"), source.clone());
                probes.spawn(async move {
                    let body = event_body(&id, 1);
                    let reply = client.post(&url, &source.sign(&id, &body, 0), body).await;
                    let _ = tx.send(reply);
                });
            }
            Some(reply) = rx.recv() => match reply {
                Ok(reply) => {
                    let code = error_code(&reply);
                    if reply.status == status && error.is_none_or(|e| code.as_deref() == Some(e)) {
                        // The probes still waiting are dropped with the set.
                        return began.elapsed();
                    }
                    last = format!("{} {:?}", reply.status, reply.body);
                }
                Err(e) => last = e,
            },
        }
    }
    panic!(
        "no probe of {} answered {status} {error:?} within the patience; the last answer: \
         {last}\n{}",
        source.name,
        log_digest(&ingress.log_text())
    )
}

/// The end of a process's log for a failure message: its last lines, and before them the last
/// lines of its clients' and libraries' own state (not a request's), which the requests' lines
/// would crowd out.
fn log_digest(log: &str) -> String {
    let last = |lines: Vec<&str>, n: usize| {
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    };
    let state: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("request{") && !l.contains("spillway::access"))
        .collect();
    format!(
        "the log's last lines other than requests':\n{}\nthe log's last lines:\n{}",
        last(state, 30),
        last(log.lines().collect(), 20)
    )
}

/// Posts one fresh event until it is accepted, then again until the repeat is answered 200
/// `duplicate` with the first answer's id (a 503 meanwhile: `in_flight` while its commit is
/// pending, `overloaded`, `dedupe_unavailable`): the dedupe store works. How long it took,
/// from the first post.
pub async fn dedupe_works(ingress: &IngressProcess, source: &TestSource) -> Duration {
    let client = Client::http1();
    let began = Instant::now();
    let id = spillway_testkit::unique("dedupe-");
    let body = event_body(&id, 2);
    let url = ingress.hook_url(source.name);
    let post = async || {
        let headers = source.sign(&id, &body, 0);
        let sent = client.post(&url, &headers, body.clone());
        match tokio::time::timeout(PROBE_ANSWER, sent).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {PROBE_ANSWER:?}")),
        }
    };
    let every = Wait::new().every(Duration::from_millis(100));
    let accepted = every
        .until(format!("{id} accepted"), async || match post().await {
            Ok(reply) if reply.status == 202 => Ok(reply.field("id")),
            Ok(reply) => Err(format!("{} {:?}", reply.status, reply.body)),
            Err(e) => Err(e),
        })
        .await;
    every
        .until(
            format!("the repeat of {id} answered duplicate"),
            async || match post().await {
                Ok(reply) if reply.status == 200 => {
                    assert_eq!(
                        (reply.field("status"), reply.field("id")),
                        (Some("duplicate".to_owned()), accepted.clone()),
                        "a duplicate names the original event"
                    );
                    Ok(())
                }
                // Not yet: its commit is pending, or the ingress sheds or still recovers. Any
                // other answer (a second 202 above all) means the dedupe failed.
                Ok(reply) => {
                    let code = error_code(&reply);
                    assert!(
                        reply.status == 503
                            && matches!(
                                code.as_deref(),
                                Some("in_flight" | "overloaded" | "dedupe_unavailable")
                            ),
                        "the repeat of an accepted event answered {}: {:?}",
                        reply.status,
                        reply.body
                    );
                    Err(format!("503 {code:?}"))
                }
                Err(e) => Err(e),
            },
        )
        .await;
    began.elapsed()
}
