//! Spillway's outbound HTTP. Every request Spillway makes to an address a user or a sender
//! chose (a subscriber's URL, an SNS signing certificate, an SNS SubscribeURL) goes through
//! the same SSRF guard, so none can reach the cluster's own network.
//!
//! - [`guard`]: which addresses may be reached, and the resolver that enforces it.
//! - [`client`]: HTTPS connectors behind the guard, trusting the roots the caller chose.

pub mod client;
pub mod guard;

pub use client::{
    error_chain, guarded_connector, literal_ip, refused_by_guard, GuardedConnector, Roots, TlsError,
};
pub use guard::{AddressPolicy, GuardedResolver, RefusedAddress};
