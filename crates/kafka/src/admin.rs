//! Topic administration through the Kafka admin API, which works alike on Apache Kafka,
//! Redpanda, MSK and tansu: creating topics, and reading a topic's size limit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{client_error, ClientError, Connection};

/// An admin client dropped off the async runtime, also when the future using it is dropped
/// mid-request (a start-up check aborted at shutdown): dropping an rdkafka client joins its
/// threads (`rd_kafka_destroy`), which can block for as long as a broker takes to let go.
struct Admin(Option<AdminClient<DefaultClientContext>>);

impl Admin {
    fn new(connection: &Connection) -> Result<Self, ClientError> {
        let client = connection
            .client_config()
            .create()
            .map_err(client_error("create admin client"))?;
        Ok(Self(Some(client)))
    }

    /// The client; only `drop` takes it out, so this never fails in practice.
    fn client(&self) -> Result<&AdminClient<DefaultClientContext>, ClientError> {
        self.0.as_ref().ok_or_else(|| ClientError {
            context: "use an admin client already released".into(),
            source: rdkafka::error::KafkaError::Canceled,
        })
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(client))),
            Err(_) => drop(client),
        }
    }
}

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
    let admin = Admin::new(connection)?;
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
        .client()?
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

/// The largest record batch the broker takes for each of `topics` (its `max.message.bytes`),
/// by topic, read with one DescribeConfigs request (a topic named twice is asked once; the
/// broker would answer it twice and librdkafka fail the request), for a startup check against
/// the producer's [`crate::EventProducer::message_max_bytes`]: when a topic's limit is lower,
/// the broker refuses batches the producer built. Per topic `Ok(None)` when the broker does not
/// tell it (no DescribeConfigs, no such entry as with tansu 0.6, and with rdkafka 0.39 also a
/// per-topic refusal, which it reports as an empty answer); an error for all when the request
/// fails.
pub async fn topics_max_message_bytes(
    connection: &Connection,
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Result<Option<u64>, ClientError>>, ClientError> {
    let topics: Vec<String> = topics
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let admin = Admin::new(connection)?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let specifiers: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let answered = admin
        .client()?
        .describe_configs(&specifiers, &options)
        .await;
    max_message_bytes(&topics, answered)
}

/// What a DescribeConfigs answer (its results in the order of `topics`, as librdkafka returns
/// them) says of each topic's `max.message.bytes`.
fn max_message_bytes(
    topics: &[String],
    answered: rdkafka::error::KafkaResult<Vec<ConfigResourceResult>>,
) -> Result<BTreeMap<String, Result<Option<u64>, ClientError>>, ClientError> {
    let resources = match answered {
        Ok(resources) => resources,
        Err(e) if unsupported(request_code(&e)) => {
            return Ok(topics.iter().map(|t| (t.clone(), Ok(None))).collect())
        }
        Err(e) => return Err(client_error("describe the configs of the source topics")(e)),
    };
    let mut resources = resources.into_iter();
    Ok(topics
        .iter()
        .map(|topic| {
            let limit = match resources.next() {
                None => Ok(None),
                Some(resource) => topic_max_message_bytes(topic, resource),
            };
            (topic.clone(), limit)
        })
        .collect())
}

/// What one topic's DescribeConfigs result says of its `max.message.bytes`.
fn topic_max_message_bytes(
    topic: &str,
    resource: ConfigResourceResult,
) -> Result<Option<u64>, ClientError> {
    let resource = match resource {
        Ok(resource) => resource,
        Err(code) if unsupported(Some(code)) => return Ok(None),
        Err(code) => {
            return Err(ClientError {
                context: format!("describe the configs of topic {topic}"),
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
        let topics = ["t".to_owned(), "u".to_owned(), "v".to_owned()];
        let told = resource(&[
            ("cleanup.policy", "delete"),
            ("max.message.bytes", "1048588"),
        ]);
        // tansu 0.6: an answer without entries; then a topic the broker does not know.
        let answers = vec![
            told,
            resource(&[]),
            Err(RDKafkaErrorCode::UnknownTopicOrPartition),
        ];
        let per_topic = max_message_bytes(&topics, Ok(answers)).expect("answered");
        assert_eq!(per_topic["t"].as_ref().ok(), Some(&Some(1_048_588)));
        assert_eq!(per_topic["u"].as_ref().ok(), Some(&None));
        assert!(per_topic["v"].is_err(), "{:?}", per_topic["v"]);
        // A broker without DescribeConfigs, for the whole request or for topics.
        let unsupported = Err(KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedVersion));
        let none = max_message_bytes(&topics, unsupported).expect("not a failure");
        assert!(none.values().all(|t| matches!(t, Ok(None))), "{none:?}");
        let per_topic = vec![Err(RDKafkaErrorCode::UnsupportedVersion)];
        let none = max_message_bytes(&topics[..1], Ok(per_topic)).expect("answered");
        assert!(matches!(none["t"], Ok(None)), "{none:?}");
        // A request that failed fails for all.
        let timed_out = Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut));
        assert!(max_message_bytes(&topics, timed_out).is_err());
    }
}
