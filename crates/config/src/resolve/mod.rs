//! Resolution: the sources and subscriptions of a config turned into the values the ingress
//! and the workers run with (schemes built, defaults filled in, names normalised, secrets read
//! by the process that uses them).

mod scheme;
mod source;
mod subscription;

pub use source::{ResolvedSource, SourceRoute};
pub use subscription::ResolvedSubscription;

pub(crate) use source::source_errors;
pub(crate) use subscription::subscription_errors;

#[cfg(test)]
pub(crate) use scheme::build as build_scheme;
