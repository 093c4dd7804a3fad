//! End-to-end tests: real `spillway ingress` processes against the real local stack (`make up`),
//! asserting on what users see: statuses, bodies, and what is in Kafka.
//!
//! What the suites share (test sources, configs, processes) is in `spillway_testkit::spillway`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod admission;
mod batches;
mod broker_restart;
mod burst;
mod check_config;
mod console;
mod dashboards;
mod delivery_loop;
mod drain;
mod fronts;
mod hostile;
mod large_bodies;
mod malformed;
mod mutual_tls;
mod package;
mod providers;
mod quarantine;
mod redis_down;
mod redis_tls;
mod reload;
mod sizes;
mod sns;
mod subscriptions;
mod tls_and_http2;
mod traces;
mod worker_killed;
mod worker_reload;
