//! Reading credentials and signing secrets from environment variables or files, and checking
//! how a secret is named without reading it, for a process that must never hold it.

use std::time::SystemTime;

use spillway_signature::{Scheme, Secret};

use crate::error::{ApiTokenError, CredentialError, SigningSecretError, MIN_API_TOKEN_CHARS};
use crate::model::{CredentialConfig, SecretConfig, StoredSecret};

/// Whether resolving a section reads the secrets it names, or only checks how they are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretAccess {
    /// Read and decode every secret, as the process that signs or verifies with them does.
    Read,
    /// Check ids and `env`/`file`/`value` only: the process does not mount these secrets.
    NameOnly,
}

/// Where a subscription's signing secret comes from.
pub trait SubscriptionSecret {
    /// The decoded Standard Webhooks key, or why it cannot be had.
    fn resolve(&self) -> Result<Secret, SigningSecretError>;

    /// What can be checked without reading the secret from the environment or a file.
    fn check_name(&self) -> Result<(), SigningSecretError> {
        self.resolve().map(drop)
    }
}

impl SubscriptionSecret for SecretConfig {
    fn resolve(&self) -> Result<Secret, SigningSecretError> {
        self.read(&Scheme::standard_webhooks())
    }

    fn check_name(&self) -> Result<(), SigningSecretError> {
        check_secret_name(self)
    }
}

/// The registry holds the secret itself, so resolving it reads nothing.
impl SubscriptionSecret for StoredSecret {
    fn resolve(&self) -> Result<Secret, SigningSecretError> {
        if self.id.is_empty() {
            return Err(SigningSecretError::EmptyId);
        }
        Ok(Secret {
            id: self.id.clone(),
            key: Scheme::standard_webhooks().decode_secret(&self.secret)?,
            not_after: self.not_after.map(SystemTime::from),
        })
    }
}

// === impl SecretConfig ===

impl SecretConfig {
    /// Reads and decodes this secret, as the verifier will use it. The demo and the load
    /// generator sign with it, as the provider would.
    pub fn read(&self, scheme: &Scheme) -> Result<Secret, SigningSecretError> {
        check_secret_name(self)?;
        let text = CredentialConfig {
            env: self.env.clone(),
            file: self.file.clone(),
        }
        .read()?;
        Ok(Secret {
            id: self.id.clone(),
            key: scheme.decode_secret(&text)?,
            not_after: self.not_after.map(SystemTime::from),
        })
    }
}

// === impl CredentialConfig ===

impl CredentialConfig {
    /// Reads the credential from its environment variable or file; a trailing newline is
    /// dropped.
    pub fn read(&self) -> Result<String, CredentialError> {
        let text = match (&self.env, &self.file) {
            (Some(_), Some(_)) => return Err(CredentialError::Both),
            (None, None) => return Err(CredentialError::Neither),
            (Some(var), None) => std::env::var(var).map_err(|source| CredentialError::Env {
                var: var.clone(),
                source,
            })?,
            (None, Some(path)) => crate::files::read_small_file(path)
                .map_err(|source| CredentialError::File { source })?,
        };
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Reads it as the subscription API's bearer token: at least [`MIN_API_TOKEN_CHARS`]
    /// characters.
    pub fn read_api_token(&self) -> Result<String, ApiTokenError> {
        let text = self.read()?;
        if text.len() < MIN_API_TOKEN_CHARS {
            return Err(ApiTokenError::TooShort);
        }
        Ok(text)
    }
}

/// Reads a credential from its environment variable or file; [`CredentialConfig::read`].
pub fn read_credential(credential: &CredentialConfig) -> Result<String, CredentialError> {
    credential.read()
}

/// The checks of [`SecretConfig::read`] that come before reading, in the same order, so that
/// a process that does not mount a secret reports the same naming mistakes as one that does.
pub(crate) fn check_secret_name(secret: &SecretConfig) -> Result<(), SigningSecretError> {
    if secret.id.is_empty() {
        return Err(SigningSecretError::EmptyId);
    }
    if secret.value.is_some() {
        return Err(SigningSecretError::Inline);
    }
    match (&secret.env, &secret.file) {
        (Some(_), Some(_)) => Err(CredentialError::Both.into()),
        (None, None) => Err(CredentialError::Neither.into()),
        _ => Ok(()),
    }
}
