//! Topics as Spillway creates them promise acks=all two copies (H-5), and the start-up check
//! reads that back: replicas from metadata, `min.insync.replicas` from DescribeConfigs.
//!
//! tansu has no replication: it reports as many replicas as a topic was created with (all on
//! its one node) and the settings given at creation, which is what is asserted here. That
//! Apache Kafka enforces them is Kafka's part.

use std::time::Duration;

use spillway_config::TopicCheck;
use spillway_kafka::durability::{check_topics, inspect_topics, TopicRules, TopicState};
use spillway_kafka::{admin, Connection};

use super::brokers;

fn topic(tag: &str) -> String {
    format!("spillway.it.durability.{tag}.{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn created_topics_get_min_insync_replicas_of_two_where_they_have_two_replicas() {
    let connection = Connection::plain(&brokers());
    let (three, one, registry, missing) = (
        topic("three"),
        topic("one"),
        topic("registry"),
        topic("missing"),
    );
    admin::ensure_topics(&connection, std::slice::from_ref(&three), 2, 3)
        .await
        .expect("create");
    admin::ensure_topics(&connection, std::slice::from_ref(&one), 1, 1)
        .await
        .expect("create");
    admin::ensure_compacted_topic(&connection, &registry, 3)
        .await
        .expect("create");
    let all = [
        three.clone(),
        one.clone(),
        registry.clone(),
        missing.clone(),
    ];
    let states = inspect_topics(&connection, &all, Duration::from_secs(10))
        .await
        .expect("inspect");
    let state = |replicas, min| TopicState {
        exists: true,
        replicas: Some(replicas),
        min_insync: Some(min),
    };
    assert_eq!(states[&three], state(3, 2));
    assert_eq!(states[&registry], state(3, 2), "the registry too");
    assert_eq!(states[&one], state(1, 1));
    assert!(!states[&missing].exists, "{:?}", states[&missing]);
    // The check: refused when told to, a missing topic refused where it must exist.
    let rules = |check, single_replica, must_exist| TopicRules {
        check,
        single_replica,
        must_exist,
    };
    let check = |topics: Vec<String>, rules| {
        let connection = connection.clone();
        async move { check_topics(&connection, &topics, rules, Duration::from_secs(10)).await }
    };
    assert!(
        check(vec![three.clone()], rules(TopicCheck::Refuse, false, true))
            .await
            .is_ok()
    );
    let refused = check(
        vec![three.clone(), one.clone()],
        rules(TopicCheck::Refuse, false, false),
    )
    .await
    .expect_err("one replica refused");
    assert_eq!(refused.0.len(), 1, "{refused}");
    assert!(refused.0[0].starts_with(&one), "{refused}");
    assert!(
        check(vec![one.clone()], rules(TopicCheck::Refuse, true, false))
            .await
            .is_ok(),
        "kafka.single_replica accepts it"
    );
    assert!(
        check(vec![one.clone()], rules(TopicCheck::Warn, false, false))
            .await
            .is_ok(),
        "warned about only"
    );
    let missing_refused = check(vec![missing.clone()], rules(TopicCheck::Off, true, true))
        .await
        .expect_err("missing");
    assert!(
        missing_refused.to_string().contains("does not exist"),
        "{missing_refused}"
    );
    assert!(check(vec![missing], rules(TopicCheck::Warn, true, false))
        .await
        .is_ok());
}
