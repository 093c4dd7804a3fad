//! `spillway-loadgen`: an open-model load generator for Spillway.
//!
//! - [`plan`]: what each request is (valid, duplicate, tampered, stale; body sizes), seeded,
//!   and which answers each kind should get;
//! - [`signing`]: a Spillway config's sources as a sender sees them, each with the
//!   `spillway-signature` signer of its first secret;
//! - [`run`]: the constant-arrival-rate driver, latency measured from each request's due time;
//! - [`report`]: HdrHistogram percentiles, statuses, errors, thresholds; text and JSON;
//! - [`verify`]: reconciliation of the answers with what is in Kafka;
//! - [`bare`]: the bare hyper baseline server; [`floor`]: the least a receiver does per
//!   request with the same engines (a claim and a produce), measured by [`floor_steps`];
//!   [`cpu`]: a process's CPU time from /proc; [`node_steps`]: the receiver a team writes by
//!   hand in Node.js, swept on a broker of its own (`spillway-loadgen node`);
//! - [`bench`]: the rate sweeps of `make bench`, with the headline's medians of repeated
//!   steps at the half rate from [`headline`]; [`fleet`]: its batch and large-body figures;
//!   [`console`]: the console's index lag, catch-up and search figures; [`worker`]: the
//!   worker's deliveries per core and the latency from a 202 to the subscriber, to the
//!   subscriber in [`sink`]; [`quick`]:
//!   `make bench-quick`, repeated steps as figures with noise bands, which [`guard`] compares
//!   with the committed run's; [`profile`]: the ingress on one core and two, and sampled
//!   by `perf` for where its CPU goes; [`stage`]: what those runs (and the Node.js sweep)
//!   start from;
//!   [`server`]: the processes they measure.

pub mod bare;
pub mod bench;
pub mod console;
pub mod cpu;
pub mod fleet;
pub mod floor;
mod floor_steps;
pub mod guard;
mod headline;
pub mod node_steps;
pub mod overload;
pub mod plan;
pub mod profile;
pub mod quick;
pub mod report;
pub mod run;
pub mod server;
pub mod signing;
mod sink;
pub mod stage;
pub mod verify;
pub mod worker;
