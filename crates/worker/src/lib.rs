//! Spillway's consumer workers.
//!
//! - [`Worker`] (`worker`): consumer groups over the source topics and the retry tiers,
//!   at-least-once; `lanes`: one lane per partition, drained on rebalance and shutdown;
//!   `ledger`: offsets stored in order, never past an unsettled record; `handling`: one
//!   delivery's attempt and settlement (retry tier or dead letter); [`control`]: the headers
//!   of parked records; `spans`: the tracing around an attempt; `attempts`: the record of
//!   each attempt on the attempts topic, for the console;
//! - [`registry`]: the subscription registry (a compacted topic every worker follows) and
//!   [`api`]: its bearer-token HTTP API on the admin listener;
//! - [`delivery`]: which subscriptions want an event, one signed attempt and its outcome;
//! - [`breaker`]: a circuit breaker per subscription;
//! - [`dlq`]: listing and redriving dead letters;
//! - [`replay`]: re-delivering a range of a source topic; `reload`: new sources without a
//!   restart;
//! - [`sweep`]: removing the stored bodies no record refers to any more;
//! - [`retry`]: when to try again; [`topics`]: the retry tiers and the dead-letter topic;
//! - the SSRF guard every delivery passes through lives in `spillway-egress`.

pub mod api;
mod attempts;
pub mod breaker;
pub mod control;
pub mod delivery;
pub mod dlq;
mod handling;
mod lanes;
mod ledger;
pub mod quarantine;
pub mod registry;
mod reload;
pub mod replay;
pub mod retry;
mod spans;
pub mod sweep;
pub mod topics;
mod worker;

#[cfg(test)]
mod test_support;

pub use delivery::{
    wants, Answered, Deliverer, DeliveryOutcome, HttpDeliverer, MemoryAnswer, MemoryDeliverer,
    MemoryDelivery, OutboundEvent,
};
pub use retry::RetryPolicy;
pub use spillway_egress::{AddressPolicy, RefusedAddress, Roots};
pub use worker::{ConfigProblem, Worker, WorkerError};
