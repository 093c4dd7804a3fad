//! The writer and the searches against a real PostgreSQL (`dev/postgres.sh`, a private server
//! per test): batches written once whatever is replayed, statuses from attempts and dead
//! letters in any order, filters and pages, retention.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use spillway_core::attempt::{AttemptNext, AttemptOutcome, AttemptRecord};
use spillway_core::time::now_ms;
use spillway_index::rows::{AttemptRow, DeadLetterRow, EventRow, Row};
use spillway_index::search::{self, EventFilter, EventStatus};
use spillway_index::writer::{write_batch, Batch};
use spillway_index::Pool;
use spillway_testkit::Postgres;

async fn index() -> (Postgres, Pool) {
    let postgres = Postgres::start();
    let url = postgres.database("index");
    let pool = spillway_index::pool(&url, 4).expect("pool");
    spillway_index::ensure_schema(&pool).await.expect("schema");
    spillway_index::ensure_schema(&pool)
        .await
        .expect("schema again is harmless");
    (postgres, pool)
}

fn event(id: &str, offset: i64, received_ms: i64) -> EventRow {
    EventRow {
        event_id: id.into(),
        source: if offset % 2 == 0 { "stripe" } else { "github" }.into(),
        event_type: Some("invoice.paid".into()),
        dedupe_key: Some(format!("evt_{id}")),
        received_ms,
        topic: "t.stripe".into(),
        partition: 0,
        offset,
        content_type: Some("application/json".into()),
        body_bytes: 10,
        object_uri: None,
        batch_id: None,
        test_for: None,
        quarantine_reason: None,
        headers: serde_json::json!([["content-type", "application/json"]]),
    }
}

fn attempt(
    id: &str,
    sub: &str,
    n: u32,
    at_ms: u64,
    status: u16,
    next: AttemptNext,
) -> AttemptRecord {
    AttemptRecord {
        event_id: id.into(),
        source: "stripe".into(),
        subscription: sub.into(),
        attempt: n,
        at_ms,
        latency_ms: 3,
        outcome: if status < 300 {
            AttemptOutcome::Delivered
        } else {
            AttemptOutcome::Failed
        },
        http_status: Some(status),
        error: (status >= 300).then(|| format!("answered {status}")),
        response_head: Some("ok".into()),
        next,
        test: false,
    }
}

/// A batch of rows read from `topic` partition 0 from `first` on.
fn batch(topic: &str, first: i64, rows: Vec<Row>) -> Batch {
    let mut b = Batch::default();
    for (i, row) in rows.into_iter().enumerate() {
        b.add(topic, 0, first + i as i64, Some(row));
    }
    b
}

fn attempt_row(offset: i64, record: AttemptRecord) -> Row {
    Row::Attempt(Box::new(AttemptRow {
        partition: 0,
        offset,
        record,
    }))
}

async fn ids(pool: &Pool, filter: EventFilter) -> BTreeSet<String> {
    search::search(pool, &filter, None, 500)
        .await
        .expect("search")
        .events
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn statuses_follow_the_latest_attempt_and_dead_letter_in_any_order() {
    let (_pg, pool) = index().await;
    let mut client = pool.get().await.expect("client");
    let now = now_ms() as i64;
    // Attempts indexed before their events (another topic, read ahead of the source's).
    let attempts = batch(
        "t.worker.attempts",
        0,
        vec![
            attempt_row(0, attempt("a", "billing", 1, 1_000, 200, AttemptNext::Done)),
            attempt_row(
                1,
                attempt(
                    "b",
                    "billing",
                    1,
                    1_000,
                    500,
                    AttemptNext::Retry { due_ms: 2_000 },
                ),
            ),
            attempt_row(
                2,
                attempt(
                    "c",
                    "billing",
                    1,
                    1_000,
                    500,
                    AttemptNext::Retry { due_ms: 2_000 },
                ),
            ),
            attempt_row(3, attempt("c", "audit", 1, 1_000, 200, AttemptNext::Done)),
        ],
    );
    write_batch(&mut client, &attempts).await.expect("attempts");
    let events = batch(
        "t.stripe",
        0,
        ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, id)| Row::Event(Box::new(event(id, i as i64, now - 10 + i as i64))))
            .collect(),
    );
    write_batch(&mut client, &events).await.expect("events");
    let status = async |id: &str| {
        search::event(&pool, id)
            .await
            .expect("read")
            .expect("indexed")
            .summary
            .status
    };
    assert_eq!(status("a").await, EventStatus::Delivered);
    assert_eq!(status("b").await, EventStatus::Retrying);
    assert_eq!(
        status("c").await,
        EventStatus::Retrying,
        "one of two deliveries waits"
    );
    assert_eq!(status("d").await, EventStatus::Pending, "no attempt yet");

    // The dead letter of b (read from its topic before b's last attempt record), then the
    // attempt record itself, older: the later state stands.
    let dead = batch(
        "t.worker.dead-letter",
        0,
        vec![Row::DeadLetter(DeadLetterRow {
            event_id: "b".into(),
            subscription: "billing".into(),
            attempts: 2,
            last_status: Some(503),
            last_error: Some("answered 503".into()),
            dead_ms: 3_000,
            reason: "attempts_exhausted".into(),
        })],
    );
    write_batch(&mut client, &dead).await.expect("dead letter");
    let late = batch(
        "t.worker.attempts",
        4,
        vec![
            attempt_row(
                4,
                attempt(
                    "b",
                    "billing",
                    2,
                    2_500,
                    503,
                    AttemptNext::DeadLetter {
                        reason: "attempts_exhausted".into(),
                    },
                ),
            ),
            attempt_row(5, attempt("c", "billing", 2, 2_500, 200, AttemptNext::Done)),
        ],
    );
    write_batch(&mut client, &late)
        .await
        .expect("late attempts");
    assert_eq!(status("b").await, EventStatus::DeadLettered);
    assert_eq!(status("c").await, EventStatus::Delivered);
    let b = search::event(&pool, "b").await.expect("read").expect("b");
    assert_eq!(b.summary.last_http_status, Some(503));
    assert_eq!(
        b.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        b.deliveries[0].dead_reason.as_deref(),
        Some("attempts_exhausted")
    );

    // The same records written again (an indexer that died before its commit reads them
    // again): nothing doubles.
    write_batch(&mut client, &attempts).await.expect("again");
    write_batch(&mut client, &late).await.expect("again");
    let c = search::event(&pool, "c").await.expect("read").expect("c");
    assert_eq!(c.attempts.len(), 3);
    assert_eq!(
        c.summary.status,
        EventStatus::Delivered,
        "an old attempt again does not undo a later one"
    );
    let offsets = client
        .query(
            "SELECT topic, next_offset FROM spillway.index_offsets ORDER BY topic",
            &[],
        )
        .await
        .expect("offsets");
    let offsets: Vec<(String, i64)> = offsets.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        offsets,
        [
            ("t.stripe".into(), 4),
            ("t.worker.attempts".into(), 6),
            ("t.worker.dead-letter".into(), 1)
        ]
    );
}

#[tokio::test]
async fn filters_pages_and_retention() {
    let (_pg, pool) = index().await;
    let mut client = pool.get().await.expect("client");
    let now = now_ms() as i64;
    let old = now - 10 * 24 * 3600 * 1000;
    let rows = (0..30)
        .map(|i| {
            let received = if i < 5 { old + i } else { now - 1_000 + i };
            Row::Event(Box::new(event(&format!("e{i:02}"), i, received)))
        })
        .collect();
    write_batch(&mut client, &batch("t.stripe", 0, rows))
        .await
        .expect("events");
    let failed = batch(
        "t.worker.attempts",
        0,
        vec![attempt_row(
            0,
            attempt(
                "e07",
                "billing",
                1,
                5,
                404,
                AttemptNext::Retry { due_ms: 9 },
            ),
        )],
    );
    write_batch(&mut client, &failed).await.expect("attempt");

    let filter = |f: &dyn Fn(&mut EventFilter)| {
        let mut filter = EventFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(
        ids(&pool, filter(&|f| f.event_id = Some("e03".into()))).await,
        set(&["e03"])
    );
    assert_eq!(
        ids(&pool, filter(&|f| f.dedupe_key = Some("evt_e04".into()))).await,
        set(&["e04"])
    );
    assert_eq!(
        ids(&pool, filter(&|f| f.http_status = Some(404))).await,
        set(&["e07"])
    );
    assert_eq!(
        ids(&pool, filter(&|f| f.status = Some(EventStatus::Retrying))).await,
        set(&["e07"])
    );
    assert_eq!(
        ids(&pool, filter(&|f| f.subscription = Some("billing".into()))).await,
        set(&["e07"])
    );
    assert_eq!(
        ids(&pool, filter(&|f| f.source = Some("github".into())))
            .await
            .len(),
        15
    );
    assert_eq!(
        ids(&pool, filter(&|f| f.to_ms = Some(now - 24 * 3600 * 1000)))
            .await
            .len(),
        5
    );

    // Pages: newest first, no overlap, no gap.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = search::search(&pool, &EventFilter::default(), before.as_ref(), 7)
            .await
            .expect("page");
        seen.extend(page.events.iter().map(|e| e.event_id.clone()));
        match page.next {
            Some(next) => before = Some(next.parse().expect("cursor")),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("e{i:02}")).collect();
    assert_eq!(seen, expected);

    let targets = search::retry_targets(&pool, &EventFilter::default(), Some(&["retrying"]), 100)
        .await
        .expect("targets");
    assert_eq!(targets.len(), 1);
    assert_eq!(
        (targets[0].event_id.as_str(), targets[0].offset),
        ("e07", 7)
    );

    let deleted = spillway_index::retention::delete_expired(
        &client,
        Duration::from_secs(7 * 24 * 3600),
        Duration::from_secs(90 * 24 * 3600),
    )
    .await
    .expect("retention");
    assert_eq!(
        deleted,
        5 + 1 + 1,
        "five old events, e07's attempt and delivery (at 5 ms)"
    );
    assert_eq!(ids(&pool, EventFilter::default()).await.len(), 25);
}

/// A console whose schema is current runs no DDL; one finding an older schema (another
/// digest) applies this one, adding what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_schema_is_left_alone_and_an_old_one_brought_up_to_date() {
    let (postgres, pool) = index().await;
    let indexes = || {
        postgres.query(
            "index",
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'spillway' AND indexname = 'events_by_source_page'",
        )
    };
    assert_eq!(indexes(), "1");
    // Dropped behind the console's back with the digest current: left alone.
    postgres.query("index", "DROP INDEX spillway.events_by_source_page");
    spillway_index::ensure_schema(&pool).await.expect("schema");
    assert_eq!(indexes(), "0", "a current schema is not applied again");
    // An older schema: applied.
    postgres.query(
        "index",
        "UPDATE spillway.schema_version SET sha256 = 'older'",
    );
    spillway_index::ensure_schema(&pool).await.expect("schema");
    assert_eq!(indexes(), "1");
    assert_ne!(
        postgres.query("index", "SELECT sha256 FROM spillway.schema_version"),
        "older"
    );
}
