//! Topic administration through the Kafka admin API, which works alike on Apache Kafka,
//! Redpanda, MSK and tansu: creating topics (replicated, with `min.insync.replicas`), and
//! reading a topic's settings such as its size limit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigResourceResult, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::durability::min_insync_for;
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

/// Creates `topics` with `replication` replicas (-1: the broker's default) and
/// `min.insync.replicas` = min(2, replicas), so an acks=all write is on two brokers wherever
/// there are two. With the broker's default the factor is only known once the topic exists,
/// so its `min.insync.replicas` is set right after.
async fn create(
    connection: &Connection,
    topics: &[String],
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<(), ClientError> {
    let admin = Admin::new(connection)?;
    let min_insync = min_insync_for(replication).to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = configs.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(replication)),
                |topic, (k, v)| topic.set(k, v),
            );
            if replication > 0 {
                topic.set("min.insync.replicas", &min_insync)
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .client()?
        .create_topics(&new_topics, &options)
        .await
        .map_err(client_error("create topics"))?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ClientError {
                    context: format!("create topic {topic}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
            }
        }
    }
    if replication < 1 && !created.is_empty() {
        set_min_insync(connection, &admin, &created, configs).await?;
    }
    Ok(())
}

/// Sets `min.insync.replicas` of topics just created with the broker's replication factor.
/// AlterConfigs replaces a topic's settings as a whole, so the creation's `configs` go along.
async fn set_min_insync(
    connection: &Connection,
    admin: &Admin,
    created: &[String],
    configs: &[(&str, &str)],
) -> Result<(), ClientError> {
    let states =
        crate::durability::inspect_topics(connection, created, Duration::from_secs(10)).await?;
    let values: Vec<(String, String)> = states
        .into_iter()
        .filter_map(|(topic, state)| {
            let replicas = i32::try_from(state.replicas?).ok()?;
            Some((topic, min_insync_for(replicas).to_string()))
        })
        .collect();
    let alterations: Vec<AlterConfig<'_>> = values
        .iter()
        .map(|(topic, min)| {
            configs.iter().fold(
                AlterConfig::new(ResourceSpecifier::Topic(topic)).set("min.insync.replicas", min),
                |alter, (k, v)| alter.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .client()?
        .alter_configs(&alterations, &options)
        .await
        .map_err(client_error("set min.insync.replicas"))?;
    for result in results {
        if let Err((specifier, code)) = result {
            return Err(ClientError {
                context: format!("set min.insync.replicas of {specifier:?}"),
                source: rdkafka::error::KafkaError::AdminOp(code),
            });
        }
    }
    Ok(())
}

/// The largest record batch the broker takes for each of `topics` (its `max.message.bytes`),
/// by topic, for a startup check against the producer's
/// [`crate::EventProducer::message_max_bytes`]: when a topic's limit is lower, the broker
/// refuses batches the producer built. Read as [`topics_config_value`] reads.
pub async fn topics_max_message_bytes(
    connection: &Connection,
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Result<Option<u64>, ClientError>>, ClientError> {
    let values = topics_config_value(connection, topics, "max.message.bytes", timeout).await?;
    Ok(values
        .into_iter()
        .map(|(topic, value)| {
            let limit = value.map(|v| v.and_then(|v| v.trim().parse().ok()));
            (topic, limit)
        })
        .collect())
}

/// The setting `name` of each of `topics`, by topic, read with one DescribeConfigs request
/// (a topic named twice is asked once; the broker would answer it twice and librdkafka fail
/// the request). Per topic `Ok(None)` when the broker does not tell it (no DescribeConfigs, no
/// such entry as with tansu 0.6, and with rdkafka 0.39 also a per-topic refusal, which it
/// reports as an empty answer); an error for all when the request fails.
pub async fn topics_config_value(
    connection: &Connection,
    topics: &[String],
    name: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, Result<Option<String>, ClientError>>, ClientError> {
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
    config_values(&topics, name, answered)
}

/// What a DescribeConfigs answer (its results in the order of `topics`, as librdkafka returns
/// them) says of each topic's setting `name`.
fn config_values(
    topics: &[String],
    name: &str,
    answered: rdkafka::error::KafkaResult<Vec<ConfigResourceResult>>,
) -> Result<BTreeMap<String, Result<Option<String>, ClientError>>, ClientError> {
    let resources = match answered {
        Ok(resources) => resources,
        Err(e) if unsupported(request_code(&e)) => {
            return Ok(topics.iter().map(|t| (t.clone(), Ok(None))).collect())
        }
        Err(e) => return Err(client_error("describe the configs of topics")(e)),
    };
    let mut resources = resources.into_iter();
    Ok(topics
        .iter()
        .map(|topic| {
            let value = match resources.next() {
                None => Ok(None),
                Some(resource) => topic_config_value(topic, name, resource),
            };
            (topic.clone(), value)
        })
        .collect())
}

/// What one topic's DescribeConfigs result says of its setting `name`.
fn topic_config_value(
    topic: &str,
    name: &str,
    resource: ConfigResourceResult,
) -> Result<Option<String>, ClientError> {
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
    Ok(resource.get(name).and_then(|entry| entry.value.clone()))
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

    fn max_message_bytes(
        topics: &[String],
        answered: rdkafka::error::KafkaResult<Vec<ConfigResourceResult>>,
    ) -> Result<BTreeMap<String, Result<Option<String>, ClientError>>, ClientError> {
        config_values(topics, "max.message.bytes", answered)
    }

    #[test]
    fn the_value_when_told_none_when_not_an_error_when_refused() {
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
        assert_eq!(
            per_topic["t"].as_ref().ok(),
            Some(&Some("1048588".to_owned()))
        );
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
