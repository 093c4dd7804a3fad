//! The worker against the real local stack and real local subscribers.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod consuming;
mod delivery;
mod https;
mod registry;
mod rig;
mod stored;
mod topics;
