//! Search latency over a large index: the index is filled with synthetic events in PostgreSQL
//! itself (a million through Kafka and the indexer would take the bench most of an hour on
//! this machine), spread over six days, five sources, twenty event types and three
//! subscriptions, a few percent retrying and dead-lettered, one delivery and one attempt
//! each; then each search the page makes is timed through the console's API.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde::Serialize;
use spillway_testkit::{Client, ConsoleProcess, Postgres};

/// Times each search is made (enough for a p99 that is not the maximum).
const ROUNDS: usize = 200;

/// What the searches took.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// Events in the index when searched.
    pub events: u64,
    /// How long filling the index took (SQL), seconds.
    pub fill_seconds: f64,
    pub searches: Vec<Search>,
}

/// One search, `ROUNDS` times.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    pub name: String,
    pub path: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Fills the console's database `database` with `events` synthetic events and times the
/// searches against `console`.
pub async fn run(
    postgres: &Postgres,
    database: &str,
    console: &ConsoleProcess,
    token: &str,
    events: u64,
) -> anyhow::Result<SearchResults> {
    let started = Instant::now();
    postgres.query(database, &fill_sql(events));
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!("console search: {events} synthetic events written by SQL in {fill_seconds:.0} s");
    let client = Client::http1();
    let headers = [("authorization".to_owned(), format!("Bearer {token}"))];
    let get = async |path: &str| -> anyhow::Result<(Duration, serde_json::Value)> {
        let started = Instant::now();
        let reply = client
            .send(Method::GET, &console.url(path), &headers, Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        let took = started.elapsed();
        anyhow::ensure!(reply.status == 200, "{path}: {}", reply.status);
        Ok((took, reply.json()))
    };
    // A cursor from the middle of the index: the page after it.
    let (_, newest) = get("/v1/events?limit=1").await?;
    let newest_ms = newest["events"][0]["received_ms"].as_i64().unwrap_or(0);
    // The synthetic events span `events` x 518 ms back from the newest.
    let middle_ms = newest_ms - (events as i64) * 518 / 2;
    let middle = format!("/v1/events?limit=1&to_ms={middle_ms}");
    let (_, page) = get(&middle).await?;
    let cursor = page["next"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no page after the middle of the index: {page}"))?
        .to_owned();
    let half = events / 2;
    let searches = [
        ("newest page", "/v1/events?limit=50".to_owned()),
        (
            "by event id",
            format!("/v1/events?event_id=synthetic-{half}"),
        ),
        (
            "by dedupe key",
            format!("/v1/events?dedupe_key=key-{}", half + 7),
        ),
        ("by source", "/v1/events?source=github&limit=50".to_owned()),
        (
            "by source and type",
            "/v1/events?source=stripe&event_type=type.10&limit=50".to_owned(),
        ),
        (
            "dead-lettered",
            "/v1/events?status=dead_lettered&limit=50".to_owned(),
        ),
        (
            "last HTTP status 503",
            "/v1/events?http_status=503&limit=50".to_owned(),
        ),
        (
            "by subscription",
            "/v1/events?subscription=crm&limit=50".to_owned(),
        ),
        (
            "one hour, half-way back",
            format!(
                "/v1/events?from_ms={}&to_ms={middle_ms}&limit=50",
                middle_ms - 3_600_000
            ),
        ),
        (
            "a page in the middle",
            format!("/v1/events?limit=50&before={cursor}"),
        ),
        (
            "health per subscription (1 h)",
            "/v1/health/subscriptions".to_owned(),
        ),
        ("health per source (1 h)", "/v1/health/sources".to_owned()),
    ];
    let mut out = Vec::new();
    for (name, path) in searches {
        let mut took = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            took.push(get(&path).await?.0.as_secs_f64() * 1000.0);
        }
        took.sort_by(f64::total_cmp);
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
        let search = Search {
            name: name.to_owned(),
            path,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: took[took.len() - 1],
        };
        eprintln!(
            "console search: {name}: p50 {:.1} ms p99 {:.1} ms",
            search.p50_ms, search.p99_ms
        );
        out.push(search);
    }
    Ok(SearchResults {
        events,
        fill_seconds,
        searches: out,
    })
}

/// The SQL writing `events` synthetic events, their deliveries and attempts, newest now and
/// one every 518 ms back (a million span six days).
fn fill_sql(events: u64) -> String {
    format!(
        "CREATE TEMP TABLE fill AS SELECT g, \
           (extract(epoch from now()) * 1000)::bigint - g * 518 AS at_ms, \
           CASE WHEN g % 50 = 0 THEN 'dead_lettered' WHEN g % 33 = 0 THEN 'retrying' ELSE 'delivered' END AS status, \
           CASE WHEN g % 50 = 0 THEN 500 WHEN g % 33 = 0 THEN 503 ELSE 200 END AS http_status, \
           (ARRAY['billing','crm','archive'])[1 + g % 3] AS subscription \
         FROM generate_series(1, {events}) g;\n\
         INSERT INTO spillway.events (event_id, source, event_type, dedupe_key, received_ms, topic, \
           partition, record_offset, content_type, body_bytes, headers, status, last_http_status, last_attempt_ms) \
         SELECT 'synthetic-' || g, (ARRAY['stripe','github','shopify','meters','slack'])[1 + g % 5], \
           'type.' || (g % 20), 'key-' || g, at_ms, 'bench.synthetic', (g % 12)::int, g / 12, \
           'application/json', 1024, '[]'::jsonb, status, http_status, at_ms + 40 FROM fill;\n\
         INSERT INTO spillway.deliveries (event_id, subscription, status, attempts, last_http_status, last_ms) \
         SELECT 'synthetic-' || g, subscription, status, 1, http_status, at_ms + 40 FROM fill;\n\
         INSERT INTO spillway.attempts (partition, record_offset, event_id, subscription, attempt, at_ms, \
           latency_ms, outcome, http_status, next_kind, test) \
         SELECT 1000 + (g % 12)::int, g, 'synthetic-' || g, subscription, 1, at_ms + 10, 5 + g % 200, \
           CASE WHEN http_status = 200 THEN 'delivered' ELSE 'failed' END, http_status, \
           CASE status WHEN 'delivered' THEN 'done' WHEN 'retrying' THEN 'retry' ELSE 'dead_letter' END, false FROM fill;\n\
         ANALYZE spillway.events; ANALYZE spillway.deliveries; ANALYZE spillway.attempts;\n"
    )
}
