//! The fault suite: each case runs the real local stack (ingress, worker, subscriber) under a
//! steady open-model load, injects one fault mid-load, and ends with the same oracle: every
//! acknowledged event is in Kafka exactly once, and reached every matching subscriber at least
//! once. `make test` runs the short form; `make faults` a longer, heavier one and writes
//! docs/faults.md from the figures each case records.
//!
//! What the suite shares with the end-to-end tests (test sources, configs, processes) is in
//! `spillway_testkit::spillway`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod balancer;
mod broker;
mod clients;
mod cluster;
mod harness;
mod memory;
mod partition;
mod probe;
mod redis;
mod retries;
mod worker;
