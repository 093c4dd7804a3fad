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

use ipnet::IpNet;

use spillway_config::BlockConfig;
use spillway_store::SharedStore;
use spillway_telemetry::{IngressMetrics, RedisCommand};

use spillway_core::time::{millis, now_ms};

use crate::budget::{client_key, shared_address};
use crate::keys::Keys;
use crate::store::{count_hit, timed};

#[derive(Debug)]
pub struct Blocklist {
    config: BlockConfig,
    store: SharedStore,
    keys: Keys,
    /// Never blocked: every sender arrives through them.
    trusted_proxies: Vec<IpNet>,
    /// Blocked until (ms since the epoch; 0 or past: not blocked), as last learnt.
    known: moka::sync::Cache<IpAddr, u64>,
}

/// The most addresses a pod remembers; beyond it the least used are forgotten (and asked
/// about again).
const REMEMBERED: u64 = 100_000;

impl Blocklist {
    pub(crate) fn new(
        config: BlockConfig,
        store: SharedStore,
        keys: Keys,
        check_interval: Duration,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        Self {
            config,
            store,
            keys,
            trusted_proxies,
            known: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(check_interval)
                .build(),
        }
    }

    /// The address `client` is counted and blocked by, or None when it is never blocked.
    fn blockable(&self, client: IpAddr) -> Option<IpAddr> {
        let client = client.to_canonical();
        if self.trusted_proxies.iter().any(|net| net.contains(&client)) || shared_address(client) {
            return None;
        }
        Some(client_key(client))
    }

    /// How long `client` stays blocked, if it is.
    pub async fn blocked_for(&self, client: IpAddr, metrics: &IngressMetrics) -> Option<Duration> {
        let client = self.blockable(client)?;
        let now = now_ms();
        let until = match self.known.get(&client) {
            Some(until) => until,
            None => {
                let key = self.keys.block(client);
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

    /// Counts a failed verification by `client`; any past the limit blocks it (not only the
    /// first one past it: that one's block write may have failed, or raced another pod's).
    pub async fn failed(&self, client: IpAddr, source: &str, metrics: &IngressMetrics) {
        let Some(client) = self.blockable(client) else {
            return;
        };
        let counted = count_hit(
            &self.store,
            metrics,
            RedisCommand::BlockCount,
            &self.keys.failures(client),
            self.config.window,
        )
        .await;
        if counted.map_or(true, |hit| hit.count <= self.config.failures) {
            return;
        }
        if self
            .known
            .get(&client)
            .is_some_and(|until| until > now_ms())
        {
            return;
        }
        let until = now_ms() + millis(self.config.duration);
        let written = timed(
            metrics,
            RedisCommand::BlockCount,
            self.store.write(
                &self.keys.block(client),
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

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn pod(failures: u64, trusted: &[&str]) -> (Blocklist, IngressMetrics) {
        let store = SharedStore::Memory(MemoryStore::new(secs(30), secs(60)));
        let config = BlockConfig {
            failures,
            window: secs(3600),
            duration: secs(600),
        };
        let trusted = trusted.iter().map(|n| n.parse().expect("net")).collect();
        let metrics = IngressMetrics::new().expect("metrics");
        let pod = Blocklist::new(config, store, Keys::new("t:"), Duration::ZERO, trusted);
        (pod, metrics)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[tokio::test]
    async fn proxies_and_private_addresses_are_never_blocked() {
        let (pod, m) = pod(1, &["198.51.100.0/24"]);
        for addr in [
            "198.51.100.7",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.3.4",
            "169.254.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            for _ in 0..3 {
                pod.failed(ip(addr), "github", &m).await;
            }
            assert_eq!(pod.blocked_for(ip(addr), &m).await, None, "{addr}");
        }
        let public = ip("203.0.113.9");
        for _ in 0..2 {
            pod.failed(public, "github", &m).await;
        }
        assert!(pod.blocked_for(public, &m).await.is_some());
    }

    #[tokio::test]
    async fn an_ipv6_client_is_blocked_by_its_64() {
        let (pod, m) = pod(2, &[]);
        // Three failures from three addresses of one /64: rotating does not escape the count.
        for host in ["2001:db8:7:1::1", "2001:db8:7:1::2", "2001:db8:7:1:abcd::3"] {
            pod.failed(ip(host), "github", &m).await;
        }
        assert!(pod.blocked_for(ip("2001:db8:7:1::99"), &m).await.is_some());
        assert_eq!(pod.blocked_for(ip("2001:db8:7:2::1"), &m).await, None);
    }

    #[tokio::test]
    async fn a_count_already_past_the_limit_still_blocks() {
        // Another pod counted past the limit but its block write was lost: the next failure
        // here blocks (it used to block only on the count exactly one past the limit).
        let (pod, m) = pod(3, &[]);
        let attacker = ip("203.0.113.50");
        for _ in 0..4 {
            count_hit(
                &pod.store,
                &m,
                RedisCommand::BlockCount,
                &pod.keys.failures(attacker),
                secs(3600),
            )
            .await
            .expect("count");
        }
        pod.failed(attacker, "github", &m).await;
        assert!(pod.blocked_for(attacker, &m).await.is_some());
    }

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
        let pod_a = Blocklist::new(config, store.clone(), Keys::new("t:"), secs(60), vec![]);
        let pod_b = Blocklist::new(config, store, Keys::new("t:"), Duration::ZERO, vec![]);
        let attacker: IpAddr = "203.0.113.66".parse().expect("ip");
        let bystander: IpAddr = "203.0.113.67".parse().expect("ip");
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
