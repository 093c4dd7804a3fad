//! What the topics Spillway writes promise an acks=all write: whether each exists, how many
//! replicas its partitions have and its `min.insync.replicas`, read at start from metadata
//! and DescribeConfigs; and the verdict, so a process can warn or refuse to start (H-5).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;

use spillway_config::TopicCheck;

use crate::{admin, client_error, ClientError, Connection};

/// Topics a process will not write to, each with why.
#[derive(Debug, thiserror::Error)]
#[error("topics that cannot take this process's writes: {}", .0.join("; "))]
pub struct UnfitTopics(pub Vec<String>);

/// How a process checks the topics it writes at start.
#[derive(Debug, Clone, Copy)]
pub struct TopicRules {
    /// `kafka.topic_check`: what to do about a topic that cannot honour acks=all.
    pub check: TopicCheck,
    /// `kafka.single_replica`: one replica is acceptable.
    pub single_replica: bool,
    /// A missing topic is refused whatever `check` says (the workers: a retry tier or the
    /// dead-letter topic missing would leave deliveries with nowhere to go, M-2).
    pub must_exist: bool,
}

/// Checks `topics` by `rules`: logs every weakness, and returns the ones `rules` refuse. When
/// the cluster cannot be asked, nothing can be judged: that is logged, not refused (the
/// process's own readiness covers an unreachable cluster).
pub async fn check_topics(
    connection: &Connection,
    topics: &[String],
    rules: TopicRules,
    timeout: Duration,
) -> Result<(), UnfitTopics> {
    if rules.check == TopicCheck::Off && !rules.must_exist {
        return Ok(());
    }
    let states = match inspect_topics(connection, topics, timeout).await {
        Ok(states) => states,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the topics this process writes");
            return Ok(());
        }
    };
    let mut refused = Vec::new();
    for (topic, state) in &states {
        let Some(why) = weakness(state, rules.single_replica) else {
            continue;
        };
        let fatal = if state.exists {
            rules.check == TopicCheck::Refuse
        } else {
            rules.must_exist || rules.check == TopicCheck::Refuse
        };
        if fatal {
            tracing::error!(topic, why, "topic unfit for this process's writes");
            refused.push(format!("{topic} {why}"));
        } else if rules.check != TopicCheck::Off {
            tracing::warn!(topic, why, "topic cannot honour acks=all as Spillway expects (kafka.topic_check: refuse makes this fatal)");
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(UnfitTopics(refused))
    }
}

/// What the cluster says of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// False when the broker does not know the topic.
    pub exists: bool,
    /// The fewest replicas any of its partitions has.
    pub replicas: Option<usize>,
    /// Its `min.insync.replicas`, when the broker tells it (tansu 0.6 tells only what was set
    /// at creation).
    pub min_insync: Option<u32>,
}

/// `min.insync.replicas` for a topic of `replicas` replicas: two copies when there are two,
/// so that an acknowledged write survives the loss of any one broker.
pub fn min_insync_for(replicas: i32) -> i32 {
    replicas.clamp(1, 2)
}

/// Why a topic in `state` cannot honour acks=all, if it cannot. `single_replica` accepts one
/// replica (a development cluster).
pub fn weakness(state: &TopicState, single_replica: bool) -> Option<String> {
    if !state.exists {
        return Some("does not exist".into());
    }
    let replicas = state.replicas?;
    match state.min_insync {
        Some(min) if min as usize > replicas => Some(format!(
            "min.insync.replicas {min} is more than its {replicas} replicas: every write fails \
             with NOT_ENOUGH_REPLICAS"
        )),
        _ if replicas == 1 && !single_replica => Some(
            "has one replica: an acknowledged event rests on one broker's disk (set \
             kafka.single_replica only for development)"
                .into(),
        ),
        Some(1) if replicas > 1 => Some(format!(
            "min.insync.replicas is 1 with {replicas} replicas: acks=all is met by the leader \
             alone once the others fall behind; set it to 2"
        )),
        _ => None,
    }
}

/// The state of each of `topics`: metadata for existence and replicas (a consumer's, which
/// never creates a topic it asks about), then one DescribeConfigs for `min.insync.replicas`.
pub async fn inspect_topics(
    connection: &Connection,
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, TopicState>, ClientError> {
    let config = connection.client_config();
    let wanted = topics.to_vec();
    let replicas = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(client_error("create a metadata client"))?;
        let mut found = BTreeMap::new();
        for topic in &wanted {
            let metadata = consumer
                .fetch_metadata(Some(topic), timeout)
                .map_err(client_error(format!("metadata of topic {topic}")))?;
            let state = metadata.topics().first().and_then(|t| {
                let missing = t
                    .error()
                    .is_some_and(|e| e == RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
                (!missing && !t.partitions().is_empty())
                    .then(|| t.partitions().iter().map(|p| p.replicas().len()).min())
            });
            found.insert(topic.clone(), state);
        }
        Ok::<_, ClientError>(found)
    })
    .await
    .map_err(|e| ClientError {
        context: format!("metadata task: {e}"),
        source: rdkafka::error::KafkaError::Canceled,
    })??;
    let existing: Vec<String> = replicas
        .iter()
        .filter(|(_, r)| r.is_some())
        .map(|(t, _)| t.clone())
        .collect();
    let min_insync = if existing.is_empty() {
        BTreeMap::new()
    } else {
        admin::topics_config_value(connection, &existing, "min.insync.replicas", timeout).await?
    };
    Ok(replicas
        .into_iter()
        .map(|(topic, replicas)| {
            let state = TopicState {
                exists: replicas.is_some(),
                replicas: replicas.flatten(),
                min_insync: min_insync
                    .get(&topic)
                    .and_then(|v| v.as_ref().ok())
                    .and_then(|v| v.as_deref())
                    .and_then(|v| v.trim().parse().ok()),
            };
            (topic, state)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: usize, min_insync: Option<u32>) -> TopicState {
        TopicState {
            exists: true,
            replicas: Some(replicas),
            min_insync,
        }
    }

    #[test]
    fn two_replicas_in_sync_honour_acks_all_and_less_does_not() {
        assert_eq!(weakness(&state(3, Some(2)), false), None);
        assert_eq!(weakness(&state(2, Some(2)), false), None);
        // The broker does not tell: only what is known is judged.
        assert_eq!(weakness(&state(3, None), false), None);
        let weak = |s: &TopicState, single| weakness(s, single).unwrap_or_default();
        assert!(weak(&state(3, Some(1)), false).contains("min.insync.replicas is 1"));
        assert!(weak(&state(1, Some(1)), false).contains("one replica"));
        assert!(weak(&state(1, None), false).contains("one replica"));
        assert_eq!(
            weakness(&state(1, Some(1)), true),
            None,
            "a development cluster"
        );
        assert!(weak(&state(2, Some(3)), true).contains("NOT_ENOUGH_REPLICAS"));
        let missing = TopicState {
            exists: false,
            replicas: None,
            min_insync: None,
        };
        assert_eq!(weak(&missing, true), "does not exist");
    }

    #[test]
    fn min_insync_is_two_where_there_are_two_replicas() {
        assert_eq!(min_insync_for(1), 1);
        assert_eq!(min_insync_for(2), 2);
        assert_eq!(min_insync_for(3), 2);
        assert_eq!(min_insync_for(5), 2);
    }
}
