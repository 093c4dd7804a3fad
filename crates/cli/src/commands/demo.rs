//! `spillway demo`: sends a signed burst to running ingress processes (valid, duplicate,
//! tampered and stale requests for every configured source) and shows what happened to each
//! kind and where the accepted records are in Kafka.

mod inbox;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spillway_config::{Config, Process, ResolvedSource};
use spillway_core::headers;
use spillway_core::key::KeySource;
use spillway_signature::{unix_seconds, Signer};

use self::inbox::Inbox;
use super::{load, READ_BACK_TIMEOUT};

type Headers = Vec<(String, String)>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Events per source in the burst.
const EVENTS_PER_SOURCE: usize = 5;
/// How long the demo waits for the worker's deliveries.
const INBOX_WAIT: Duration = Duration::from_secs(60);

// The arguments of `spillway demo` (a plain comment: a doc comment here would become the
// command's help text in place of the one on `Command::Demo`).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    /// Base URLs of the ingress processes, e.g. http://127.0.0.1:8080; requests alternate.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Also receive the worker's deliveries for this subscription (on its URL's address),
    /// verify their signatures, and report what arrived.
    #[arg(long)]
    inbox: Option<String>,
}

/// What the burst got back.
#[derive(Debug, Default)]
struct Outcome {
    /// kind -> status -> count
    tally: BTreeMap<&'static str, BTreeMap<u16, usize>>,
    /// (event id, topic) of every request answered 202.
    accepted: Vec<(String, String)>,
    sent: usize,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, Process::All)?;
    demo(&config, &args.targets, args.inbox.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(config: &Config, targets: &[String], inbox: Option<&str>) -> anyhow::Result<()> {
    // Listening before the burst, so no delivery finds the inbox closed.
    let inbox = match inbox {
        None => None,
        Some(id) => Some((id, start_inbox(config, id).await?)),
    };
    let sources = signed_sources(config)?;
    let outcome = send_burst(&sources, targets).await?;
    print_answers(&outcome, targets);
    print_in_kafka(config, &outcome.accepted).await?;
    if let Some((id, inbox)) = inbox {
        let expected: HashSet<String> = outcome
            .accepted
            .iter()
            .map(|(event, _)| event.clone())
            .collect();
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

/// Starts receiving the deliveries of subscription `id` on its URL's address.
async fn start_inbox(config: &Config, id: &str) -> anyhow::Result<Inbox> {
    let subscriptions = config
        .resolve_subscriptions()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let subscription = subscriptions
        .iter()
        .find(|s| s.id == id)
        .with_context(|| format!("no subscription {id:?} in the config"))?;
    Inbox::start(subscription)
        .await
        .with_context(|| format!("listening on {} for {id}", subscription.url))
}

/// Every source that verifies signatures, with a signer holding its first secret.
fn signed_sources(config: &Config) -> anyhow::Result<Vec<(ResolvedSource, Signer)>> {
    let sources = config
        .resolve_sources()
        .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?;
    Ok(sources
        .into_iter()
        .filter_map(|source| {
            // A `none` source has no secret, so nothing to sign.
            let signer = source.verifier.signer(id_header(&source.dedupe))?;
            Some((source, signer))
        })
        .collect())
}

/// The header a source reads its dedupe key from, which the demo fills with the event id when
/// the provider would not send it on its own.
fn id_header(dedupe: &KeySource) -> Option<String> {
    match dedupe {
        KeySource::Header { name } => Some(name.clone()),
        _ => None,
    }
}

/// Sends every kind of request for [`EVENTS_PER_SOURCE`] events of every source, alternating
/// between the targets.
async fn send_burst(
    sources: &[(ResolvedSource, Signer)],
    targets: &[String],
) -> anyhow::Result<Outcome> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut outcome = Outcome::default();
    let now = unix_seconds(SystemTime::now());
    for (source, signer) in sources {
        for i in 0..EVENTS_PER_SOURCE {
            for (kind, headers, body) in requests(source, signer, i, now) {
                let target = &targets[outcome.sent % targets.len()];
                outcome.sent += 1;
                let url = format!("{}/v1/hooks/{}", target.trim_end_matches('/'), source.name);
                let (status, answer) = post(&client, &url, &headers, body).await?;
                *outcome
                    .tally
                    .entry(kind)
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                if status == 202 {
                    if let Some(id) = answer.get("id").and_then(|v| v.as_str()) {
                        outcome.accepted.push((id.to_owned(), source.topic.clone()));
                    }
                }
            }
        }
    }
    Ok(outcome)
}

/// The requests for event `i` of a source: valid, duplicate, tampered and, where the scheme
/// signs a timestamp, stale; for the first event of a source whose large bodies go to object
/// storage, a large one too.
fn requests(
    resolved: &ResolvedSource,
    signer: &Signer,
    i: usize,
    now: i64,
) -> Vec<(&'static str, Headers, String)> {
    let source = resolved.name.as_str();
    let id = format!("evt_demo_{}", uuid::Uuid::new_v4().simple());
    let body = format!(
        r#"{{"id":"{id}","type":"demo.event","source":"{source}","device":"meter-{}","n":{i}}}"#,
        i % 2
    );
    let signed = signer.headers(&id, now, body.as_bytes());
    let mut kinds = vec![
        ("valid", signed.clone(), body.clone()),
        ("duplicate", signed.clone(), body.clone()),
        ("tampered", signed, body.replace("demo.event", "demo.evil")),
    ];
    if signer.scheme().signs_timestamp() {
        let stale = signer.headers(&id, now - 3600, body.as_bytes());
        kinds.push(("stale", stale, body));
    }
    let large = resolved
        .inline_max_bytes
        .filter(|inline| i == 0 && inline + LARGE_EXTRA_BYTES <= resolved.max_body_bytes);
    if let Some(inline) = large {
        let id = format!("evt_demo_{}", uuid::Uuid::new_v4().simple());
        let pad = "w".repeat(usize::try_from(inline + LARGE_EXTRA_BYTES).unwrap_or(0));
        let body = format!(
            r#"{{"id":"{id}","type":"demo.waveform","source":"{source}","device":"meter-0","samples":"{pad}"}}"#
        );
        kinds.push(("large", signer.headers(&id, now, body.as_bytes()), body));
    }
    kinds
}

/// How much larger than its source's `inline_max_bytes` the demo's large body is.
const LARGE_EXTRA_BYTES: u64 = 64 * 1024;

fn print_answers(outcome: &Outcome, targets: &[String]) {
    println!("sent {} requests to {}", outcome.sent, targets.join(", "));
    println!("{:<10} answers (status x count)", "kind");
    for (kind, statuses) in &outcome.tally {
        let answers: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} x{n}")).collect();
        println!("{kind:<10} {}  ({})", answers.join(", "), explain(kind));
    }
}

/// Prints where each accepted event is in Kafka; an accepted event that is not there fails.
async fn print_in_kafka(config: &Config, accepted: &[(String, String)]) -> anyhow::Result<()> {
    let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, topic) in accepted {
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
                    "  {topic}/{}@{}  id={id}  key={}{}",
                    r.partition,
                    r.offset,
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
                    r.header(headers::OBJECT_URI)
                        .map(|uri| format!("  body in {uri}"))
                        .unwrap_or_default()
                ),
                None => anyhow::bail!("event {id} was answered 202 but is not in {topic}"),
            }
        }
    }
    Ok(())
}

fn explain(kind: &str) -> &'static str {
    match kind {
        "valid" => "202: in Kafka",
        "duplicate" => "200: same event seen, original id returned",
        "tampered" => "401: signature does not match the body",
        "stale" => "400: timestamp outside the replay window",
        "large" => "202: body over inline_max_bytes, in object storage; its record refers to it",
        _ => "",
    }
}

async fn post(
    client: &HttpClient,
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
