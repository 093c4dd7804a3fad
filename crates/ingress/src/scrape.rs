//! What the admin listener's `/metrics` serves: the ingress's metrics, with the counts the
//! shared store keeps itself (commands on direct routes to the Redis primaries) brought up to
//! date first. The end-to-end burst test reads them from a running ingress.

use std::sync::Arc;

use spillway_store::SharedStore;
use spillway_telemetry::{Encode, IngressMetrics};

/// The ingress's metrics and the store whose counts they export.
pub(crate) struct Scrape {
    pub(crate) metrics: Arc<IngressMetrics>,
    pub(crate) store: Option<SharedStore>,
}

impl Encode for Scrape {
    fn encode(&self) -> Vec<u8> {
        if let Some((answered, fallbacks)) =
            self.store.as_ref().and_then(SharedStore::direct_counts)
        {
            self.metrics.sync_direct_routes(answered, fallbacks);
        }
        self.metrics.encode()
    }
}
