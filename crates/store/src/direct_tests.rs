//! The slot function, the `CLUSTER SLOTS` table and the routes' states.

use super::*;

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
    Value::Array(vec![
        Value::Int(start),
        Value::Int(end),
        Value::Array(vec![bulk(host), Value::Int(port), bulk("node-id")]),
        // A replica, which the table ignores.
        Value::Array(vec![bulk("10.0.0.9"), Value::Int(7009), bulk("replica-id")]),
    ])
}

#[test]
fn slots_follow_the_cluster_specification() {
    // The reference vector of the Redis Cluster specification: CRC16 of "123456789"
    // (XMODEM) is 0x31C3.
    assert_eq!(slot_of(b"123456789"), 0x31C3 % SLOTS);
    // Hash tags, as the specification describes them.
    assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
    assert_eq!(slot_of(b"{user1000}.followers"), slot_of(b"user1000"));
    // An empty tag: the whole key is hashed.
    assert_eq!(
        slot_of(b"foo{}{bar}"),
        crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS
    );
    assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
    assert_eq!(slot_of(b"foo{bar}{zap}"), slot_of(b"bar"));
}

#[test]
fn cluster_slots_become_a_table_of_primaries() {
    let answer = Value::Array(vec![
        range(0, 5460, "10.0.0.1", 7000),
        range(5461, 10922, "10.0.0.2", 7001),
        range(10923, 16383, "10.0.0.1", 7000),
    ]);
    let (owner, primaries) = parse_slots(&answer).expect("parsed");
    assert_eq!(
        primaries.len(),
        2,
        "a primary serving two ranges is one primary"
    );
    assert_eq!((owner[0], owner[5460], owner[5461]), (0, 0, 1));
    assert_eq!((owner[10922], owner[10923], owner[16383]), (1, 0, 0));
    assert_eq!(primaries[1].host, "10.0.0.2");
    assert_eq!(primaries[1].port, 7001);
}

#[test]
fn a_primary_without_a_usable_address_leaves_its_slots_unserved() {
    let answer = Value::Array(vec![
        range(0, 99, "?", 7000),
        range(100, 199, "", 7001),
        range(200, 299, "0.0.0.0", 7002),
        range(300, 16383, "10.0.0.1", 7003),
    ]);
    let (owner, primaries) = parse_slots(&answer).expect("parsed");
    assert_eq!(primaries.len(), 1);
    assert_eq!(
        (owner[0], owner[150], owner[299]),
        (UNSERVED, UNSERVED, UNSERVED)
    );
    assert_eq!(owner[300], 0);
}

#[test]
fn a_malformed_answer_is_refused() {
    for answer in [
        Value::Array(vec![range(10, 5, "10.0.0.1", 7000)]),
        Value::Array(vec![range(0, 16384, "10.0.0.1", 7000)]),
        Value::Array(vec![range(0, 100, "10.0.0.1", 70000)]),
        Value::Array(vec![Value::Int(1)]),
        bulk("no"),
    ] {
        assert!(parse_slots(&answer).is_err(), "{answer:?}");
    }
}

/// Routes to two primaries: slots below 8192 to the first (connection 1), the rest to the
/// second (connection 2, or none).
fn two_primaries(second: Option<u32>) -> Routes<u32> {
    halves(Some(Node::new(1)), second.map(Node::new))
}

/// Routes that send slots below 8192 to the first node given, the rest to the second.
fn halves(low: Option<Arc<Node<u32>>>, high: Option<Arc<Node<u32>>>) -> Routes<u32> {
    let owner = (0..SLOTS).map(|slot| u16::from(slot >= 8192)).collect();
    let primaries = [7000, 7001].map(|port| Primary {
        host: "10.0.0.1".into(),
        port,
    });
    Routes::new(owner, primaries.to_vec(), vec![low, high])
}

/// A key of each half of the slot space.
fn keys() -> (String, String) {
    let low = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| slot_of(k.as_bytes()) < 8192);
    let high = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| slot_of(k.as_bytes()) >= 8192);
    (low.expect("low"), high.expect("high"))
}

fn lease(route: Route<u32>) -> Lease<u32> {
    match route {
        Route::Direct(lease) => lease,
        Route::Build(_) => panic!("a build, not a connection"),
        Route::Cluster => panic!("the cluster connection, not a direct one"),
    }
}

fn ticket(route: Route<u32>) -> BuildTicket<u32> {
    match route {
        Route::Build(ticket) => ticket,
        _ => panic!("expected to be picked to build"),
    }
}

#[tokio::test(start_paused = true)]
async fn one_caller_builds_and_a_failed_build_waits() {
    let direct = Arc::new(Direct::new());
    let first = ticket(direct.route("k"));
    assert!(
        matches!(direct.route("k"), Route::Cluster),
        "one build at a time"
    );
    drop(first);
    assert!(
        matches!(direct.route("k"), Route::Cluster),
        "a failed build waits"
    );
    tokio::time::advance(REBUILD_AFTER).await;
    ticket(direct.route("k")).finish(Some(two_primaries(Some(2))));
    let (low, high) = keys();
    assert_eq!(*lease(direct.route(&low)).connection(), 1);
    assert_eq!(*lease(direct.route(&high)).connection(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_takes_out_its_primary_only_and_only_in_the_routes_it_was_sent_by() {
    let direct = Arc::new(Direct::new());
    ticket(direct.route("k")).finish(Some(two_primaries(Some(2))));
    let (low, high) = keys();
    let old = lease(direct.route(&low));
    let also_old = lease(direct.route(&low));
    direct.failed(&old);
    assert!(
        matches!(direct.route(&low), Route::Cluster),
        "out for a while"
    );
    assert_eq!(
        *lease(direct.route(&high)).connection(),
        2,
        "the other primary's connection stays, and what was sent on it keeps its order"
    );
    assert_eq!(
        direct
            .reusable()
            .iter()
            .map(|(_, node)| node.connection)
            .collect::<Vec<_>>(),
        vec![2],
        "a rebuild keeps the connection still in use, not the failed one"
    );
    tokio::time::advance(REBUILD_AFTER).await;
    ticket(direct.route(&low)).finish(Some(two_primaries(Some(3))));
    // A command sent on the old routes fails late: the new ones stay whole.
    direct.failed(&also_old);
    assert_eq!(*lease(direct.route(&low)).connection(), 1);
    assert_eq!(*lease(direct.route(&high)).connection(), 3);
    assert_eq!(direct.counts(), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_build_that_finds_a_failure_since_it_started_installs_nothing() {
    let direct = Arc::new(Direct::new());
    ticket(direct.route("k")).finish(Some(two_primaries(None)));
    let (low, high) = keys();
    tokio::time::advance(REBUILD_AFTER).await;
    let stale = ticket(direct.route(&high));
    direct.failed(&lease(direct.route(&low)));
    stale.finish(Some(two_primaries(Some(9))));
    assert!(
        matches!(direct.route(&high), Route::Cluster),
        "not installed"
    );
    assert!(matches!(direct.route(&low), Route::Cluster));
}

#[tokio::test(start_paused = true)]
async fn an_incomplete_table_is_built_again_only_after_the_wait_from_the_end_of_its_build() {
    let direct = Arc::new(Direct::new());
    let slow = ticket(direct.route("k"));
    // The build outlasts the wait (a primary that does not answer its connect).
    tokio::time::advance(REBUILD_AFTER * 3).await;
    slow.finish(Some(Routes::new(
        vec![UNSERVED; usize::from(SLOTS)],
        Vec::new(),
        Vec::new(),
    )));
    assert!(
        matches!(direct.route("k"), Route::Cluster),
        "no build back to back"
    );
    tokio::time::advance(REBUILD_AFTER).await;
    assert!(matches!(direct.route("k"), Route::Build(_)));
}

#[tokio::test(start_paused = true)]
async fn timeouts_keep_the_routes_until_one_primary_answers_nothing_in_a_row() {
    let direct = Arc::new(Direct::new());
    ticket(direct.route("k")).finish(Some(two_primaries(Some(2))));
    let (low, high) = keys();
    for _ in 1..WEDGED_AFTER {
        direct.timed_out(&lease(direct.route(&low)));
    }
    direct.answered(&lease(direct.route(&low)));
    for _ in 1..WEDGED_AFTER {
        direct.timed_out(&lease(direct.route(&low)));
    }
    assert_eq!(
        *lease(direct.route(&low)).connection(),
        1,
        "one answer reset the count"
    );
    direct.timed_out(&lease(direct.route(&low)));
    assert!(matches!(direct.route(&low), Route::Cluster), "wedged: out");
    assert_eq!(*lease(direct.route(&high)).connection(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_primary_missing_from_the_table_is_built_again_after_the_wait() {
    let direct = Arc::new(Direct::new());
    ticket(direct.route("k")).finish(Some(two_primaries(None)));
    let (low, high) = keys();
    assert_eq!(
        *lease(direct.route(&low)).connection(),
        1,
        "the table is used"
    );
    assert!(matches!(direct.route(&high), Route::Cluster));
    tokio::time::advance(REBUILD_AFTER).await;
    ticket(direct.route(&high)).finish(Some(two_primaries(Some(2))));
    assert_eq!(*lease(direct.route(&high)).connection(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_kept_connection_keeps_its_count_of_timeouts_in_a_new_table() {
    let direct = Arc::new(Direct::new());
    ticket(direct.route("k")).finish(Some(two_primaries(Some(2))));
    let (low, _) = keys();
    for _ in 1..WEDGED_AFTER {
        direct.timed_out(&lease(direct.route(&low)));
    }
    // A rebuild after a failure on the other primary keeps this one's connection.
    let (_, high) = keys();
    direct.failed(&lease(direct.route(&high)));
    let kept: Vec<_> = direct
        .reusable()
        .into_iter()
        .map(|(_, node)| node)
        .collect();
    assert_eq!(kept.len(), 1);
    tokio::time::advance(REBUILD_AFTER).await;
    ticket(direct.route(&high))
        .finish(Some(halves(Some(Arc::clone(&kept[0])), Some(Node::new(3)))));
    assert_eq!(*lease(direct.route(&low)).connection(), 1);
    direct.timed_out(&lease(direct.route(&low)));
    assert!(
        matches!(direct.route(&low), Route::Cluster),
        "the 16th timeout in a row counts across the rebuild"
    );
}
