//! Single records read back by offset from the local broker, inside batches and at their
//! starts, one fetcher serving many reads.

use std::time::Duration;

use spillway_kafka::fetch::RecordFetcher;

use super::*;

#[tokio::test]
async fn records_are_read_back_by_offset_from_inside_batches_too() {
    let topic = new_topic().await;
    let producer = producer_of(&brokers(), Duration::from_secs(10), &[("linger.ms", "50")]);
    let sent: Vec<Envelope> = (0..40).map(envelope).collect();
    // Sent at once and lingered: a few batches of many records each.
    let sends = sent.iter().map(|e| producer.send(&topic, e));
    for result in futures::future::join_all(sends).await {
        result.expect("acknowledged");
    }
    let connection = Connection::plain(&brokers());
    let found = tokio::task::spawn_blocking(move || {
        let fetcher = RecordFetcher::new(&connection, Duration::from_secs(10)).expect("fetcher");
        let mut found = Vec::new();
        for offset in [39, 0, 17, 18, 5, 38] {
            found.push((offset, fetcher.fetch(&topic, 0, offset).expect("read")));
        }
        let beyond = fetcher.fetch(&topic, 0, 40).expect("read");
        (found, beyond)
    })
    .await
    .expect("task");
    let (found, beyond) = found;
    for (offset, record) in found {
        let record = record.unwrap_or_else(|| panic!("offset {offset} found"));
        assert_eq!(record.offset, offset);
        let id = sent[offset as usize].id.to_string();
        assert_eq!(record.header(headers::EVENT_ID), Some(id.as_str()));
        assert_eq!(record.value, sent[offset as usize].body.to_vec());
    }
    assert!(beyond.is_none(), "past the end: none");
}
