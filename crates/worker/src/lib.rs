//! Spillway's consumer workers.
//!
//! This crate holds the outbound half so far: which subscriptions want an event
//! ([`delivery::wants`]), one signed delivery attempt and its classification
//! ([`delivery::Deliverer`]), when to retry ([`retry::RetryPolicy`]), and the SSRF guard
//! every delivery passes through ([`ssrf`]). The Kafka consumer loop, retry and dead-letter
//! topics build on these.

pub mod delivery;
pub mod retry;
pub mod ssrf;

pub use delivery::{wants, Deliverer, DeliveryOutcome, OutboundEvent};
pub use retry::RetryPolicy;
pub use ssrf::{AddressPolicy, RefusedAddress};
