//! The ledger's rule on an offset recorder: offsets stored in order, never past an unsettled
//! record, whatever order records settle in; and what a hand-back or an abandon leaves stored.

use super::*;
use crate::test_support::OffsetRecorder;

fn ledger() -> Ledger {
    Ledger::new("spillway.github".into(), 2)
}

#[test]
fn nothing_is_stored_while_the_first_record_is_unsettled() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    let first = ledger.open(10, 1);
    let _second = ledger.open(11, 1);
    ledger.store_settled(&store);
    assert!(store.offsets().is_empty());
    first.settle_one(&ledger.settled());
    ledger.store_settled(&store);
    assert_eq!(
        store.offsets(),
        [10],
        "not past the unsettled second record"
    );
}

#[test]
fn the_record_s_own_topic_partition_and_offset_are_stored() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    ledger.open(41, 0);
    ledger.store_settled(&store);
    // The ledger stores the record's own offset; librdkafka adds the 1.
    assert_eq!(store.stored(), [("spillway.github".to_owned(), 2, 41)]);
}

#[test]
fn records_settled_in_order_are_stored_in_order() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    let settled = ledger.settled();
    let records: Vec<_> = (0..4).map(|o| ledger.open(o, 1)).collect();
    for record in &records {
        record.settle_one(&settled);
        ledger.store_settled(&store);
    }
    assert_eq!(store.offsets(), [0, 1, 2, 3]);
}

#[test]
fn a_record_settled_early_waits_for_the_ones_before_it() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    let settled = ledger.settled();
    let r: Vec<_> = (10..13).map(|o| ledger.open(o, 1)).collect();
    r[2].settle_one(&settled);
    ledger.store_settled(&store);
    assert!(store.offsets().is_empty(), "12 settled, 10 and 11 not");
    r[0].settle_one(&settled);
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [10]);
    r[1].settle_one(&settled);
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [10, 11, 12], "11 frees the settled 12 too");
}

#[test]
fn every_order_of_settlement_stores_each_offset_once_in_order() {
    // All 24 orders in which four records can settle.
    let mut orders = vec![vec![]];
    for n in 0..4usize {
        orders = orders
            .into_iter()
            .flat_map(|o: Vec<usize>| {
                (0..=o.len()).map(move |at| {
                    let mut o = o.clone();
                    o.insert(at, n);
                    o
                })
            })
            .collect();
    }
    assert_eq!(orders.len(), 24);
    for order in orders {
        let (mut ledger, store) = (ledger(), OffsetRecorder::default());
        let settled = ledger.settled();
        let records: Vec<_> = (0..4).map(|o| ledger.open(o, 1)).collect();
        let mut done = [false; 4];
        for &i in &order {
            records[i].settle_one(&settled);
            done[i] = true;
            ledger.store_settled(&store);
            let prefix = done.iter().take_while(|d| **d).count();
            let expected: Vec<i64> = (0..4).take(prefix).collect();
            assert_eq!(store.offsets(), expected, "settling in the order {order:?}");
        }
    }
}

#[test]
fn a_record_is_stored_only_once_all_its_deliveries_settled() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    let settled = ledger.settled();
    let fanned_out = ledger.open(5, 3);
    for _ in 0..2 {
        fanned_out.settle_one(&settled);
        ledger.store_settled(&store);
        assert!(store.offsets().is_empty());
    }
    fanned_out.settle_one(&settled);
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [5]);
}

#[test]
fn a_record_no_subscription_wants_is_settled_from_the_start() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    let settled = ledger.settled();
    let wanted = ledger.open(0, 1);
    ledger.open(1, 0);
    ledger.store_settled(&store);
    assert!(store.offsets().is_empty(), "it still waits for record 0");
    wanted.settle_one(&settled);
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [0, 1]);
}

#[test]
fn storing_again_stores_nothing_twice() {
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    ledger.open(0, 0);
    ledger.store_settled(&store);
    ledger.store_settled(&store);
    ledger.open(1, 0);
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [0, 1]);
}

#[test]
fn an_offset_the_consumer_refuses_does_not_hold_up_the_next() {
    // After a revoke the consumer refuses offsets of the partition; the records are the new
    // owner's then, and the ledger moves on rather than retrying for ever.
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    store.refuse(1);
    for o in 0..3 {
        ledger.open(o, 0);
    }
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [0, 2]);
    assert_eq!(store.attempted(), [0, 1, 2]);
}

#[test]
fn records_left_unsettled_are_never_stored() {
    // What an abandoned lane leaves: deliveries that never settle. Whatever settles after
    // them stays unstored, so the next owner reads them again.
    let (mut ledger, store) = (ledger(), OffsetRecorder::default());
    let settled = ledger.settled();
    let r: Vec<_> = (0..4).map(|o| ledger.open(o, 1)).collect();
    r[0].settle_one(&settled);
    r[2].settle_one(&settled);
    r[3].settle_one(&settled);
    ledger.store_settled(&store);
    assert_eq!(store.offsets(), [0]);
    drop(r);
    ledger.store_settled(&store);
    assert_eq!(
        store.offsets(),
        [0],
        "dropping the unsettled record settles nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn settling_wakes_the_lane() {
    let mut ledger = ledger();
    let settled = ledger.settled();
    let record = ledger.open(0, 1);
    let waiting = tokio::spawn({
        let settled = settled.clone();
        async move { settled.notified().await }
    });
    record.settle_one(&settled);
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .is_ok(),
        "the lane waiting on `settled` is woken"
    );
}
