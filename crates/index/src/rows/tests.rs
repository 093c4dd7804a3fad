use super::*;

fn record(topic: &str, headers: &[(&str, &str)], value: &[u8]) -> ReadRecord {
    ReadRecord {
        topic: topic.into(),
        partition: 2,
        offset: 41,
        key: None,
        value: value.to_vec(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect(),
    }
}

#[test]
fn a_source_record_is_an_event_with_its_place_and_headers() {
    let r = record(
        "spillway.github",
        &[
            (headers::EVENT_ID, "e-1"),
            (headers::SOURCE, "github"),
            (headers::RECEIVED_AT, "1700000000123"),
            (headers::DEDUPE_KEY, "d-1"),
            (headers::CONTENT_TYPE, "application/json"),
            ("x-github-event", "push"),
        ],
        br#"{"a":1}"#,
    );
    let Some(Row::Event(e)) = row_of(TopicKind::Source, &r, &HashMap::new()) else {
        panic!("an event");
    };
    assert_eq!(
        (
            e.event_id.as_str(),
            e.source.as_str(),
            e.dedupe_key.as_deref()
        ),
        ("e-1", "github", Some("d-1"))
    );
    assert_eq!(
        (e.received_ms, e.partition, e.offset, e.body_bytes),
        (1_700_000_000_123, 2, 41, 7)
    );
    assert_eq!(e.event_type, None, "no route, no type");
    assert_eq!(e.quarantine_reason, None);
    assert_eq!(e.headers[5], serde_json::json!(["x-github-event", "push"]));
}

#[test]
fn a_stored_body_counts_its_object_size_and_a_quarantined_one_its_reason() {
    let r = record(
        "spillway.meters.quarantine",
        &[
            (headers::EVENT_ID, "e-2"),
            (headers::SOURCE, "meters"),
            (headers::OBJECT_URI, "s3://b/k"),
            (headers::OBJECT_SIZE, "10485760"),
            (headers::INVALID_REASON, "required"),
            (headers::INVALID_ACTION, "rejected"),
        ],
        b"",
    );
    let Some(Row::Event(e)) = row_of(TopicKind::Quarantine, &r, &HashMap::new()) else {
        panic!("an event");
    };
    assert_eq!(e.body_bytes, 10_485_760);
    assert_eq!(e.object_uri.as_deref(), Some("s3://b/k"));
    assert_eq!(e.quarantine_reason.as_deref(), Some("required (rejected)"));
}

#[test]
fn records_that_are_not_spillways_have_no_row() {
    let foreign = record("spillway.github", &[("x", "y")], b"{}");
    assert_eq!(row_of(TopicKind::Source, &foreign, &HashMap::new()), None);
    let garbled = record("spillway.worker.attempts", &[], b"not json");
    assert_eq!(row_of(TopicKind::Attempts, &garbled, &HashMap::new()), None);
    let anonymous_dead = record(
        "spillway.worker.dead-letter",
        &[(headers::EVENT_ID, "e")],
        b"",
    );
    assert_eq!(
        row_of(TopicKind::DeadLetter, &anonymous_dead, &HashMap::new()),
        None,
        "no subscription"
    );
}

#[test]
fn a_dead_letter_names_its_subscription_reason_and_last_answer() {
    let r = record(
        "spillway.worker.dead-letter",
        &[
            (headers::EVENT_ID, "e-3"),
            (control::SUBSCRIPTION, "billing"),
            (control::ATTEMPT, "8"),
            (control::LAST_STATUS, "500"),
            (control::LAST_ERROR, "answered 500"),
            (control::DEAD_REASON, "attempts_exhausted"),
            (control::DEAD_AT, "1700000000999"),
        ],
        b"{}",
    );
    assert_eq!(
        row_of(TopicKind::DeadLetter, &r, &HashMap::new()),
        Some(Row::DeadLetter(DeadLetterRow {
            event_id: "e-3".into(),
            subscription: "billing".into(),
            attempts: 8,
            last_status: Some(500),
            last_error: Some("answered 500".into()),
            dead_ms: 1_700_000_000_999,
            reason: "attempts_exhausted".into(),
        }))
    );
}

#[test]
fn nul_characters_are_replaced_so_postgresql_takes_the_row() {
    let r = record(
        "spillway.github",
        &[
            (headers::EVENT_ID, "e-\0"),
            (headers::DEDUPE_KEY, "k\0k"),
            ("x-odd", "a\0b"),
        ],
        b"{}",
    );
    let Some(Row::Event(e)) = row_of(TopicKind::Source, &r, &HashMap::new()) else {
        panic!("an event");
    };
    assert_eq!(e.event_id, "e-\u{FFFD}");
    assert_eq!(e.dedupe_key.as_deref(), Some("k\u{FFFD}k"));
    assert!(!e.headers.to_string().contains("\\u0000"), "{}", e.headers);
    let attempt = serde_json::json!({
        "event_id": "e", "source": "s", "subscription": "b", "attempt": 1, "at_ms": 1,
        "latency_ms": 1, "outcome": "failed", "response_head": "bin\0ary",
        "next": { "kind": "done" }
    });
    let r = record(
        "spillway.worker.attempts",
        &[],
        attempt.to_string().as_bytes(),
    );
    let Some(Row::Attempt(a)) = row_of(TopicKind::Attempts, &r, &HashMap::new()) else {
        panic!("an attempt");
    };
    assert_eq!(a.record.response_head.as_deref(), Some("bin\u{FFFD}ary"));
}
