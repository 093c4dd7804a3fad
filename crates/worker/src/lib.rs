//! Spillway's consumer workers.
//!
//! - [`consumer::Worker`]: consumer groups over the source topics and the retry tiers,
//!   at-least-once, one lane per partition, drained on rebalance and shutdown;
//! - [`registry`]: the subscription registry (a compacted topic every worker follows) and
//!   [`api`]: its bearer-token HTTP API on the admin listener;
//! - [`delivery`]: which subscriptions want an event, one signed attempt and its outcome;
//! - [`breaker`]: a circuit breaker per subscription;
//! - [`dlq`]: listing and redriving dead letters;
//! - [`replay`]: re-delivering a range of a source topic;
//! - [`retry`]: when to try again; [`topics`]: the retry tiers and the dead-letter topic;
//! - [`ssrf`]: the guard every delivery passes through.

pub mod api;
pub mod breaker;
pub mod consumer;
pub mod delivery;
pub mod dlq;
pub mod registry;
pub mod replay;
pub mod retry;
pub mod ssrf;
pub mod topics;

pub use consumer::{control, Worker, WorkerError};
pub use delivery::{wants, Deliverer, DeliveryOutcome, OutboundEvent};
pub use retry::RetryPolicy;
pub use ssrf::{AddressPolicy, RefusedAddress};
