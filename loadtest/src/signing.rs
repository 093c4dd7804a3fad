//! Requests signed the way each provider signs them, from a Spillway config's sources: what the
//! load generator and `spillway demo` send.

use spillway_config::{read_secret, Config, FieldError};
use spillway_core::key::KeySource;
use spillway_signature::{sign, Scheme};

/// One source as a sender sees it: where to post, how to sign.
#[derive(Debug, Clone)]
pub struct SignedSource {
    pub name: String,
    pub topic: String,
    pub scheme: Scheme,
    key: Vec<u8>,
    dedupe: KeySource,
}

// === impl SignedSource ===

impl SignedSource {
    /// Every source of `config` that verifies signatures, with its first secret.
    pub fn from_config(config: &Config) -> Result<Vec<Self>, Vec<FieldError>> {
        let mut signed = Vec::new();
        for source in config.resolve_sources()? {
            let scheme = source.verifier.scheme().clone();
            let Some(secret) = config.sources[&source.name].secrets.first() else {
                continue; // a `none` source: nothing to sign
            };
            let secret = read_secret(&scheme, secret).map_err(|message| {
                vec![FieldError {
                    path: format!("sources.{}.secrets[0]", source.name),
                    message,
                }]
            })?;
            signed.push(Self {
                name: source.name,
                topic: source.topic,
                scheme,
                key: secret.key,
                dedupe: source.dedupe,
            });
        }
        Ok(signed)
    }

    /// The provider's headers for `body` sent as event `id` at `timestamp`, plus the dedupe
    /// header when the source reads its key from one the provider would not send on its own.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        self.headers_with_key(&self.key, id, timestamp, body)
    }

    /// As [`SignedSource::headers`], signed with another key (a tampered request).
    pub fn headers_with_key(
        &self,
        key: &[u8],
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut headers = sign(&self.scheme, key, id, timestamp, body);
        headers.push(("content-type".into(), "application/json".into()));
        if let KeySource::Header { name } = &self.dedupe {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                headers.push((name.clone(), id.to_owned()));
            }
        }
        headers
    }

    /// Whether the scheme signs a timestamp, so that a stale request can be made.
    pub fn has_timestamp(&self) -> bool {
        match &self.scheme {
            Scheme::StandardWebhooks | Scheme::Stripe | Scheme::Slack => true,
            Scheme::Generic(g) => g.timestamp_header.is_some(),
            Scheme::Github | Scheme::Shopify | Scheme::None => false,
        }
    }
}
