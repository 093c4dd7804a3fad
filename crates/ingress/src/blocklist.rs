//! Blocking clients that keep failing verification: their failures are counted per address in
//! the Redis Cluster, so every pod adds to one count, and past the limit the address is
//! blocked there for a while, so every pod refuses it.
//!
//! Each pod remembers what it learnt of an address for `block_check_interval`, so a busy
//! sender costs one Redis lookup per interval, not one per request. A block set by another pod
//! is therefore seen within that interval. Redis unreachable: nobody is blocked (the block
//! protects against brute force; it must not turn a Redis outage into an ingest outage).

use std::net::IpAddr;
use std::time::Duration;

use spillway_config::BlockConfig;
use spillway_store::SharedStore;
use spillway_telemetry::{IngressMetrics, RedisCommand};

use spillway_core::time::{millis, now_ms};

use crate::store::{count_hit, timed};

#[derive(Debug)]
pub struct Blocklist {
    config: BlockConfig,
    store: SharedStore,
    key_prefix: String,
    /// Blocked until (ms since the epoch; 0 or past: not blocked), as last learnt.
    known: moka::sync::Cache<IpAddr, u64>,
}

/// The most addresses a pod remembers; beyond it the least used are forgotten (and asked
/// about again).
const REMEMBERED: u64 = 100_000;

impl Blocklist {
    pub fn new(
        config: BlockConfig,
        store: SharedStore,
        key_prefix: String,
        check_interval: Duration,
    ) -> Self {
        Self {
            config,
            store,
            key_prefix,
            known: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(check_interval)
                .build(),
        }
    }

    fn block_key(&self, client: IpAddr) -> String {
        format!("{}block:{client}", self.key_prefix)
    }

    /// How long `client` stays blocked, if it is.
    pub async fn blocked_for(&self, client: IpAddr, metrics: &IngressMetrics) -> Option<Duration> {
        let now = now_ms();
        let until = match self.known.get(&client) {
            Some(until) => until,
            None => {
                let key = self.block_key(client);
                let read = timed(metrics, RedisCommand::BlockCheck, self.store.read(&key)).await;
                let until = match read {
                    Ok(value) => value.and_then(|v| v.parse().ok()).unwrap_or(0),
                    Err(_) => return None,
                };
                self.known.insert(client, until);
                until
            }
        };
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Counts a failed verification by `client`; the one past the limit blocks it.
    pub async fn failed(&self, client: IpAddr, source: &str, metrics: &IngressMetrics) {
        let counted = count_hit(
            &self.store,
            metrics,
            RedisCommand::BlockCount,
            &format!("{}failures:{client}", self.key_prefix),
            self.config.window,
        )
        .await;
        if counted.map(|hit| hit.count).ok() != Some(self.config.failures + 1) {
            return;
        }
        let until = now_ms() + millis(self.config.duration);
        let written = timed(
            metrics,
            RedisCommand::BlockCount,
            self.store.write(
                &self.block_key(client),
                &until.to_string(),
                self.config.duration,
            ),
        )
        .await;
        if written.is_ok() {
            self.known.insert(client, until);
            metrics.client_blocked(source);
            tracing::warn!(%client, source, failures = self.config.failures + 1, window = ?self.config.window, blocked_for = ?self.config.duration, "client blocked for failing verification");
        }
    }
}

#[cfg(test)]
mod tests {
    use spillway_store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn the_failure_past_the_limit_blocks_the_client_for_every_pod() {
        let store = SharedStore::Memory(MemoryStore::new(
            Duration::from_secs(30),
            Duration::from_secs(60),
        ));
        let config = BlockConfig {
            failures: 3,
            window: Duration::from_secs(3600),
            duration: Duration::from_secs(600),
        };
        let metrics = IngressMetrics::new().expect("metrics");
        // Two pods sharing one store; the second never caches "not blocked" for long.
        let pod_a = Blocklist::new(config, store.clone(), "t:".into(), Duration::from_secs(60));
        let pod_b = Blocklist::new(config, store, "t:".into(), Duration::ZERO);
        let attacker: IpAddr = "192.0.2.66".parse().expect("ip");
        let bystander: IpAddr = "192.0.2.67".parse().expect("ip");
        for _ in 0..3 {
            pod_a.failed(attacker, "github", &metrics).await;
            assert_eq!(pod_a.blocked_for(attacker, &metrics).await, None);
        }
        pod_b.failed(attacker, "github", &metrics).await;
        let left = pod_b
            .blocked_for(attacker, &metrics)
            .await
            .expect("blocked");
        assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
        assert_eq!(pod_b.blocked_for(bystander, &metrics).await, None);
        let text = String::from_utf8(metrics.encode()).expect("utf8");
        assert!(
            text.contains("spillway_blocked_clients_total{source=\"github\"} 1"),
            "{text}"
        );
    }
}
