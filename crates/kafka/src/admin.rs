//! Topic administration through the Kafka admin API, which works alike on Apache Kafka,
//! Redpanda, MSK and tansu.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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
