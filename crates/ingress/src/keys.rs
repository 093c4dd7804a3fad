//! The names of every key the ingress writes to the shared store. Each kind has its own fixed
//! word right after `redis.key_prefix`, so no source name, address or sender-chosen key can
//! make one kind's key equal another's (a source named `block` once could).
//!
//! Dedupe keys name the Kafka cluster and topic the event went to: "done" means "in that
//! topic of that cluster", so two deployments sharing one Redis never answer "duplicate" for
//! an event only the other's Kafka has.

use std::net::IpAddr;

/// Builds the keys under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

// === impl Keys ===

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// A source's rate-limit counter (the window index is appended by the counter).
    pub(crate) fn rate(&self, source: &str) -> String {
        format!("{}rate:{source}", self.prefix)
    }

    /// Until when `client` is blocked.
    pub(crate) fn block(&self, client: IpAddr) -> String {
        format!("{}block:{client}", self.prefix)
    }

    /// `client`'s failed verifications (the window index is appended by the counter).
    pub(crate) fn failures(&self, client: IpAddr) -> String {
        format!("{}failures:{client}", self.prefix)
    }

    /// The claim on an event's dedupe key.
    pub(crate) fn dedupe(&self, cluster: &str, topic: &str, key: &str) -> String {
        format!("{}dedupe:{cluster}:{topic}:{key}", self.prefix)
    }

    /// The claim on an authenticated request's fingerprint, for schemes whose signature
    /// covers neither an id nor a timestamp (a replayed capture is a duplicate).
    pub(crate) fn replay(&self, cluster: &str, topic: &str, fingerprint: &str) -> String {
        format!("{}replay:{cluster}:{topic}:{fingerprint}", self.prefix)
    }

    /// The key readiness probes with a claim-shaped command.
    pub(crate) fn health(&self) -> String {
        format!("{}health", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_source_name_makes_one_kind_of_key_another() {
        let keys = Keys::new("s:");
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        // Before, a source named `block` with dedupe key `192.0.2.1` wrote `s:block:192.0.2.1`.
        let dedupe = keys.dedupe("c1", "spillway.block", "192.0.2.1");
        assert_ne!(dedupe, keys.block(ip));
        assert!(
            dedupe.starts_with("s:dedupe:c1:spillway.block:"),
            "{dedupe}"
        );
        assert_ne!(keys.rate("x"), keys.failures(ip));
        assert_ne!(
            keys.dedupe("cluster-a", "t", "evt_1"),
            keys.dedupe("cluster-b", "t", "evt_1"),
            "two Kafka clusters never share a claim"
        );
    }
}
