//! Topic administration through the Kafka admin API, which works alike on Apache Kafka,
//! Redpanda, MSK and tansu: creating topics, and reading a topic's size limit.

use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{client_error, ClientError, Connection};

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(
    connection: &Connection,
    topics: &[String],
    partitions: i32,
    replication: i32,
) -> Result<(), ClientError> {
    create(connection, topics, partitions, replication, &[]).await
}

/// Creates a compacted single-partition topic (a keyed table such as the subscription
/// registry: the latest record per key wins, a tombstone deletes it) unless it exists.
pub async fn ensure_compacted_topic(
    connection: &Connection,
    topic: &str,
    replication: i32,
) -> Result<(), ClientError> {
    create(
        connection,
        &[topic.to_owned()],
        1,
        replication,
        &[("cleanup.policy", "compact")],
    )
    .await
}

async fn create(
    connection: &Connection,
    topics: &[String],
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<(), ClientError> {
    let admin: AdminClient<DefaultClientContext> = connection
        .client_config()
        .create()
        .map_err(client_error("create admin client"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            configs.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(replication)),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(client_error("create topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ClientError {
                    context: format!("create topic {topic}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

/// The largest record batch the broker takes for `topic` (its `max.message.bytes`), read with
/// DescribeConfigs, for a startup check against the producer's
/// [`crate::EventProducer::message_max_bytes`]: when the topic's limit is lower, the broker
/// refuses batches the producer built. `Ok(None)` when the broker does not answer it (no
/// DescribeConfigs, or no such entry, as with tansu 0.6); an error when the request fails or
/// the broker refuses it for this topic (unknown topic, no authorization).
pub async fn topic_max_message_bytes(
    connection: &Connection,
    topic: &str,
    timeout: Duration,
) -> Result<Option<u64>, ClientError> {
    let admin: AdminClient<DefaultClientContext> = connection
        .client_config()
        .create()
        .map_err(client_error("create admin client"))?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let answered = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await;
    max_message_bytes(topic, answered)
}

/// What a DescribeConfigs answer says of `max.message.bytes`.
fn max_message_bytes(
    topic: &str,
    answered: rdkafka::error::KafkaResult<Vec<ConfigResourceResult>>,
) -> Result<Option<u64>, ClientError> {
    let context = || format!("describe the configs of topic {topic}");
    let resources = match answered {
        Ok(resources) => resources,
        Err(e) if unsupported(request_code(&e)) => return Ok(None),
        Err(e) => return Err(client_error(context())(e)),
    };
    let Some(resource) = resources.into_iter().next() else {
        return Ok(None);
    };
    let resource = match resource {
        Ok(resource) => resource,
        Err(code) if unsupported(Some(code)) => return Ok(None),
        Err(code) => {
            return Err(ClientError {
                context: context(),
                source: rdkafka::error::KafkaError::AdminOp(code),
            })
        }
    };
    Ok(resource
        .get("max.message.bytes")
        .and_then(|entry| entry.value.as_deref())
        .and_then(|value| value.trim().parse().ok()))
}

/// The code of a failed admin request (which `rdkafka_error_code` leaves out for admin errors).
fn request_code(e: &rdkafka::error::KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        rdkafka::error::KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// The answers of a broker without DescribeConfigs (or without it for topics).
fn unsupported(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::UnsupportedFeature
                | RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::InvalidRequest
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::admin::{ConfigEntry, ConfigResource, ConfigSource, OwnedResourceSpecifier};
    use rdkafka::error::KafkaError;

    fn resource(entries: &[(&str, &str)]) -> ConfigResourceResult {
        Ok(ConfigResource {
            specifier: OwnedResourceSpecifier::Topic("t".into()),
            entries: entries
                .iter()
                .map(|(name, value)| ConfigEntry {
                    name: (*name).into(),
                    value: Some((*value).into()),
                    source: ConfigSource::DynamicTopic,
                    is_read_only: false,
                    is_default: false,
                    is_sensitive: false,
                })
                .collect(),
        })
    }

    #[test]
    fn the_limit_when_told_none_when_not_an_error_when_refused() {
        let told = resource(&[
            ("cleanup.policy", "delete"),
            ("max.message.bytes", "1048588"),
        ]);
        assert_eq!(
            max_message_bytes("t", Ok(vec![told])).ok(),
            Some(Some(1_048_588))
        );
        // tansu 0.6: an answer without entries.
        assert_eq!(
            max_message_bytes("t", Ok(vec![resource(&[])])).ok(),
            Some(None)
        );
        // A broker without DescribeConfigs.
        let unsupported = Err(KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedVersion));
        assert_eq!(max_message_bytes("t", unsupported).ok(), Some(None));
        let per_topic = Err(RDKafkaErrorCode::UnsupportedVersion);
        assert_eq!(max_message_bytes("t", Ok(vec![per_topic])).ok(), Some(None));
        // Refusals and failures are errors.
        let unknown = Err(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(max_message_bytes("t", Ok(vec![unknown])).is_err());
        let timed_out = Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut));
        assert!(max_message_bytes("t", timed_out).is_err());
    }
}
