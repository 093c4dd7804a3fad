//! The configured sources as the load generator sends to them: each source's name and topic,
//! with a [`Signer`] holding its first secret. How each provider signs, and whether its scheme
//! signs a timestamp, is `spillway-signature`'s ([`Signer`], [`Scheme::signs_timestamp`]).
//!
//! [`Scheme::signs_timestamp`]: spillway_signature::Scheme::signs_timestamp

use spillway_config::{Config, FieldError};
use spillway_core::key::KeySource;
pub use spillway_signature::Signer;

/// One source as a sender sees it: where to post, how to sign.
#[derive(Debug, Clone)]
pub struct SignedSource {
    pub name: String,
    pub topic: String,
    pub signer: Signer,
}

// === impl SignedSource ===

impl SignedSource {
    /// Every source of `config` that verifies signatures, with its first secret.
    pub fn from_config(config: &Config) -> Result<Vec<Self>, Vec<FieldError>> {
        let sources = config.resolve_sources()?;
        Ok(sources
            .into_iter()
            .filter_map(|source| {
                // A `none` source has no secret, so nothing to sign.
                let signer = source.verifier.signer(id_header(&source.dedupe))?;
                Some(Self {
                    name: source.name,
                    topic: source.topic,
                    signer,
                })
            })
            .collect())
    }
}

/// The header a source reads its dedupe key from, which the sender fills with the event id
/// when the provider would not send it on its own.
fn id_header(dedupe: &KeySource) -> Option<String> {
    match dedupe {
        KeySource::Header { name } => Some(name.clone()),
        _ => None,
    }
}
