//! Object storage retention: a stored body lives as long as a record refers to it. Kafka's
//! retention removes records; the sweep then removes the objects that no record of any topic
//! Spillway writes (the sources', the quarantines, the retry tiers, the dead letters) refers
//! to any more, and that are older than a grace period, so that a body whose record is being
//! written right now is not taken for an orphan.
//!
//! An object is only removed on a complete reading: a topic that cannot be read to its end
//! stops the sweep before anything is deleted. The topics are those the cluster has, found by
//! name: a topic that does not exist has no records to refer to anything.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use spillway_config::Config;
use spillway_core::headers;
use spillway_kafka::reader::{read_topic_where, topic_names};
use spillway_objects::Objects;

use crate::topics::{dead_letter_topic, is_retry_tier};
use crate::worker::ConfigProblem;
use crate::WorkerError;

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Objects in the store under the configured prefix.
    pub listed: usize,
    /// Of those, referred to by a record.
    pub referenced: usize,
    /// Not referred to, but younger than the grace period: left for a later sweep.
    pub young: usize,
    /// Not referred to and older than the grace period: removed (or, in a dry run, to be).
    pub orphans: Vec<String>,
}

/// Every topic whose records may refer to a stored body: by name, the sources', the
/// quarantines and the dead letters; from the cluster's listing (`existing`), every retry tier
/// of the prefix, an earlier retry policy's too, whose records still wait.
pub fn referring_topics(config: &Config, existing: &[String]) -> Vec<String> {
    let mut topics = config.topics();
    topics.push(dead_letter_topic(config));
    topics.extend(
        existing
            .iter()
            .filter(|t| is_retry_tier(config, t))
            .cloned(),
    );
    topics.sort();
    topics.dedup();
    topics
}

/// The object URIs the records of every referring topic refer to. A topic the cluster says
/// does not exist refers to nothing; any other failure to read one to its end is an error,
/// since an object is removed only on a complete reading (a topic the listing leaves out
/// because it may not be described is still read by name, and fails). Blocking.
pub fn referenced(config: &Config, timeout: Duration) -> Result<HashSet<String>, WorkerError> {
    let connection = (&config.kafka).into();
    let existing = topic_names(&connection, timeout)?;
    let mut uris = HashSet::new();
    for topic in referring_topics(config, &existing) {
        let read = read_topic_where(&connection, &topic, timeout, |record| {
            if let Some(uri) = record.header(headers::OBJECT_URI) {
                uris.insert(uri.to_owned());
            }
            false
        });
        match read {
            Ok(_) => {}
            Err(e) if e.is_unknown_topic() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(uris)
}

/// Removes the objects no record refers to and last written more than `grace` ago; with
/// `dry_run`, only says which.
pub async fn sweep(
    config: &Config,
    grace: Duration,
    dry_run: bool,
    timeout: Duration,
) -> Result<Swept, WorkerError> {
    let store = config.objects.as_ref().ok_or(ConfigProblem::NoObjects)?;
    let objects = Objects::open(store)?;
    // Listed before the topics are read: an object written after the listing is not seen at
    // all, and one written before it has its record in Kafka by the time the topics are read,
    // or is younger than the grace period.
    let listed = objects.list().await?;
    let started = SystemTime::now();
    let reading = config.clone();
    let uris = tokio::task::spawn_blocking(move || referenced(&reading, timeout)).await??;
    let mut swept = Swept {
        listed: listed.len(),
        ..Swept::default()
    };
    for object in listed {
        if uris.contains(&object.uri) {
            swept.referenced += 1;
        } else if started
            .duration_since(object.modified)
            .is_ok_and(|age| age > grace)
        {
            swept.orphans.push(object.uri);
        } else {
            swept.young += 1;
        }
    }
    if !dry_run {
        for uri in &swept.orphans {
            objects.delete_uri(uri).await?;
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_that_may_refer_to_a_body_is_read_an_earlier_policys_tiers_too() {
        let config = spillway_config::parse_str(
            "kafka: { brokers: k:9092, topic_prefix: hooks. }\n\
             sources:\n  a: { verify: { scheme: none }, dedupe: { from: none } }\n",
        )
        .expect("config");
        let existing: Vec<String> = [
            "hooks.a",
            "hooks.worker.retry.5s",
            "hooks.worker.retry.250ms",
            "hooks.worker.retry.x",
            "hooks.worker.dead-letter",
            "hooks.worker.subscriptions",
            "other.a",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            referring_topics(&config, &existing),
            [
                "hooks.a",
                "hooks.worker.dead-letter",
                "hooks.worker.retry.250ms",
                "hooks.worker.retry.5s"
            ]
        );
        assert_eq!(
            referring_topics(&config, &[]),
            ["hooks.a", "hooks.worker.dead-letter"],
            "the named ones are read whether listed or not"
        );
    }
}
