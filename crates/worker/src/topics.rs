//! The workers' own topics, beside the source topics: retry tiers, the dead-letter topic, the
//! attempts topic and the subscription registry.
//! Their names contain a '.', which source names cannot, so they never collide with
//! `<prefix><source>`.

use std::time::Duration;

use spillway_config::Config;

use crate::RetryPolicy;

/// A retry tier: a topic whose records all wait about the same delay, so that its due times
/// rise with its offsets and a consumer only ever waits for the head record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTier {
    pub topic: String,
    pub delay: Duration,
}

/// The retry tiers of a config.
pub fn retry_tiers(config: &Config) -> Vec<RetryTier> {
    tiers_for(
        &RetryPolicy::from(&config.worker),
        &config.kafka.topic_prefix,
    )
}

/// The tiers for a policy: the initial delay doubled until the cap.
pub(crate) fn tiers_for(policy: &RetryPolicy, prefix: &str) -> Vec<RetryTier> {
    let mut tiers = Vec::new();
    let mut delay = policy.initial;
    loop {
        tiers.push(RetryTier {
            topic: format!("{prefix}worker.retry.{}", label(delay)),
            delay,
        });
        if delay >= policy.max_delay || tiers.len() >= 32 {
            return tiers;
        }
        delay = (delay * 2).min(policy.max_delay);
    }
}

/// The tier a delay waits in: the shortest tier at least as long as it (the longest tier for
/// a delay longer than every tier). A record waits exactly its tier's delay, never less than
/// asked for (a subscriber's Retry-After is honoured) and never more than one doubling.
pub fn tier_for(tiers: &[RetryTier], delay: Duration) -> Option<&RetryTier> {
    tiers
        .iter()
        .find(|t| t.delay >= delay)
        .or_else(|| tiers.last())
}

/// A subscription pattern (librdkafka's, a regular expression for it starts with `^`) that
/// matches every retry tier topic of the config's prefix, whatever retry policy made it.
pub fn retry_tier_pattern(config: &Config) -> String {
    let prefix: String = config
        .kafka
        .topic_prefix
        .chars()
        .flat_map(|c| {
            let escape = !(c.is_ascii_alphanumeric() || c == '_' || c == '-');
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect();
    format!("^{prefix}worker\\.retry\\.[0-9]+m?s$")
}

/// Whether `topic` is a retry tier topic of the config's prefix, whatever retry policy made it
/// (what [`retry_tier_pattern`] matches).
pub fn is_retry_tier(config: &Config, topic: &str) -> bool {
    let tier = format!("{}worker.retry.", config.kafka.topic_prefix);
    topic.strip_prefix(&tier).is_some_and(|delay| {
        let unit = delay.strip_suffix("ms").or_else(|| delay.strip_suffix('s'));
        unit.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

pub fn dead_letter_topic(config: &Config) -> String {
    format!("{}worker.dead-letter", config.kafka.topic_prefix)
}

/// The attempts topic: one record per delivery attempt, for the console's index.
pub fn attempts_topic(config: &Config) -> String {
    format!("{}worker.attempts", config.kafka.topic_prefix)
}

/// The subscription registry (compacted, one partition).
pub fn registry_topic(config: &Config) -> String {
    format!("{}worker.subscriptions", config.kafka.topic_prefix)
}

/// Every topic the workers write to, except the registry, which is created compacted.
pub fn worker_topics(config: &Config) -> Vec<String> {
    let mut topics: Vec<String> = retry_tiers(config).into_iter().map(|t| t.topic).collect();
    topics.push(dead_letter_topic(config));
    if config.worker.record_attempts {
        topics.push(attempts_topic(config));
    }
    topics
}

fn label(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial: Duration, max: Duration) -> RetryPolicy {
        RetryPolicy {
            initial,
            max_delay: max,
            max_attempts: 10,
        }
    }

    #[test]
    fn tiers_double_up_to_the_cap_and_are_named_by_their_delay() {
        let t = tiers_for(
            &policy(Duration::from_secs(1), Duration::from_secs(600)),
            "spillway.",
        );
        let secs: Vec<u64> = t.iter().map(|t| t.delay.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600]);
        assert_eq!(t[0].topic, "spillway.worker.retry.1s");
        let fast = tiers_for(
            &policy(Duration::from_millis(250), Duration::from_secs(1)),
            "p.",
        );
        let names: Vec<&str> = fast.iter().map(|t| t.topic.as_str()).collect();
        assert_eq!(
            names,
            [
                "p.worker.retry.250ms",
                "p.worker.retry.500ms",
                "p.worker.retry.1s"
            ]
        );
    }

    #[test]
    fn a_delay_waits_in_the_shortest_tier_at_least_as_long_as_it() {
        let t = tiers_for(
            &policy(Duration::from_secs(1), Duration::from_secs(600)),
            "",
        );
        let pick = |s: f64| tier_for(&t, Duration::from_secs_f64(s)).map(|t| t.delay.as_secs());
        assert_eq!(pick(0.0), Some(1));
        assert_eq!(pick(0.5), Some(1), "shorter than every tier: the first");
        assert_eq!(pick(1.0), Some(1));
        assert_eq!(pick(3.9), Some(4));
        assert_eq!(pick(4.0), Some(4));
        assert_eq!(pick(4.2), Some(8));
        assert_eq!(pick(511.0), Some(512), "a Retry-After of 511 s is honoured");
        assert_eq!(pick(599.0), Some(600));
        assert_eq!(pick(3600.0), Some(600), "longer than every tier: the last");
        assert_eq!(tier_for(&[], Duration::from_secs(1)), None);
    }
}
