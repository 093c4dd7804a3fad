//! `spillway-loadgen`: an open-model load generator for Spillway.
//!
//! - [`plan`]: what each request is (valid, duplicate, tampered, stale; body sizes), seeded;
//! - [`signing`]: requests signed as each provider signs them, from a Spillway config;
//! - [`run`]: the constant-arrival-rate driver, latency measured from each request's due time;
//! - [`report`]: HdrHistogram percentiles, statuses, errors, thresholds; text and JSON;
//! - [`verify`]: reconciliation of the answers with what is in Kafka;
//! - [`bare`]: the bare hyper baseline server; [`cpu`]: a process's CPU time from /proc;
//! - [`bench`]: the rate sweeps of `make bench`.

pub mod bare;
pub mod bench;
pub mod cpu;
pub mod plan;
pub mod report;
pub mod run;
pub mod signing;
pub mod verify;
