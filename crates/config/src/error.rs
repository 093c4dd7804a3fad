//! The typed failures of the helpers that read what a config names (files, environment
//! variables, signing secrets) or build a verification scheme from it.
//!
//! Each one's text is the message a [`FieldError`](crate::FieldError) shows, word for word as
//! `check-config` has always printed it. A variant that wraps another error keeps it as its
//! `#[source]`; one that only adds a prefix shows the source in its text too, and one that adds
//! nothing is `transparent`.

use std::path::PathBuf;

/// Why a file the config names could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Past `limit` (`MAX_REFERENCED_FILE_BYTES`): a device or a huge file named by mistake.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
}

/// Why `kafka.properties_file` could not be merged into the Kafka properties (shown as the
/// field error of `kafka.properties_file`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PropertiesError {
    #[error(transparent)]
    File(#[from] FileError),
    /// `line` counts from 1.
    #[error("{}:{line}: expected key=value", path.display())]
    Syntax { path: PathBuf, line: usize },
}

/// Why a credential (`{env: VAR}` or `{file: PATH}`) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("set either env or file, not both")]
    Both,
    #[error("set env (an environment variable) or file")]
    Neither,
    /// Unset, or not valid Unicode (the source tells which).
    #[error("env: environment variable {var} is not set")]
    Env {
        var: String,
        #[source]
        source: std::env::VarError,
    },
    #[error("file: {source}")]
    File {
        #[source]
        source: FileError,
    },
}

/// Why the subscription API's bearer token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("must be at least {MIN_API_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)")]
    TooShort,
}

/// The shortest subscription API token accepted.
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// Why a signing secret (a source's or a subscription's) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningSecretError {
    #[error("id: must not be empty")]
    EmptyId,
    #[error(
        "inline secret values are not accepted; put the secret in an environment variable \
         (env:) or a file (file:)"
    )]
    Inline,
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The text is not a key of the scheme (empty, or not base64 after `whsec_`).
    #[error(transparent)]
    Decode(#[from] spillway_signature::SecretError),
}

/// Why a source's `verify` section does not make a scheme (shown as the field error of
/// `sources.<name>.verify`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemeError {
    #[error("unknown scheme {name:?}; `spillway providers` lists the presets (starting alike: {close}), or use hmac or none")]
    Unknown { name: String, close: String },
    #[error("{field} describes an hmac scheme; {scheme} takes none")]
    NotGeneric { field: &'static str, scheme: String },
    #[error("scheme hmac needs {0}")]
    Missing(&'static str),
    #[error("{name:?} is not a header name")]
    HeaderName {
        name: String,
        #[source]
        source: http::header::InvalidHeaderName,
    },
    #[error("template: {source}")]
    Template {
        #[source]
        source: spillway_signature::TemplateError,
    },
}
