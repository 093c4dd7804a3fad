//! Validation of a whole config, section by section, for the process that will run it. Every
//! problem is collected as a [`FieldError`], so that `check-config` names them all at once.
//!
//! Every process checks every section, so a mistake anywhere stops each of them the same way;
//! what differs is only what each reads from outside the config: a process reads the secrets
//! and files it uses itself, and no others (it need not mount them).

mod console;
mod ingress;
mod kafka;
mod objects;
mod redis;
mod sizes;
mod telemetry;
mod worker;

pub use sizes::{
    CONNECTION_BYTES, DEFAULT_MESSAGE_MAX_BYTES, MEMORY_HEADROOM_BYTES, RECORD_OVERHEAD_BYTES,
};
pub use worker::WORKER_BASE_BYTES;

use crate::field::{err, FieldError};
use crate::model::Config;
use crate::resolve::{source_errors, subscription_errors};
use crate::secrets::SecretAccess;

/// The Spillway process a config is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `spillway ingress`: reads the sources' signing secrets and its TLS files, never the
    /// subscriptions' secrets.
    Ingress,
    /// `spillway worker`: reads the subscriptions' signing secrets, never the sources' secrets
    /// or the ingress's TLS files.
    Worker,
    /// `spillway check-config`: reads everything either process would.
    All,
}

// === impl Process ===

impl Process {
    pub(crate) fn source_secrets(self) -> SecretAccess {
        match self {
            Self::Ingress | Self::All => SecretAccess::Read,
            Self::Worker => SecretAccess::NameOnly,
        }
    }

    pub(crate) fn subscription_secrets(self) -> SecretAccess {
        match self {
            Self::Worker | Self::All => SecretAccess::Read,
            Self::Ingress => SecretAccess::NameOnly,
        }
    }

    /// Whether it loads the config as the workers do, and so checks for `worker.extra_roots`:
    /// the worker, and (mapped to [`Process::Worker`] by the binary) the console and the
    /// commands that run beside a worker (`dlq`, `replay`, `subscriptions`, ...).
    pub(crate) fn loads_as_worker(self) -> bool {
        matches!(self, Self::Worker | Self::All)
    }

    /// Whether it serves webhooks, and so needs the listener's TLS files.
    pub(crate) fn serves_webhooks(self) -> bool {
        matches!(self, Self::Ingress | Self::All)
    }
}

// === impl Config ===

impl Config {
    /// Every problem in the configuration, every secret read; empty when it is valid. The same
    /// as [`Config::validate_for`] with [`Process::All`].
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_for(Process::All)
    }

    /// Every problem in the configuration as `process` sees it: every section is checked, but
    /// only the secrets and files `process` uses are read. Empty when it is valid.
    pub fn validate_for(&self, process: Process) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.sources.is_empty() {
            errors.push(err("sources", "at least one source is required"));
        }
        ingress::validate(self, process.serves_webhooks(), &mut errors);
        kafka::validate(&self.kafka, &mut errors);
        sizes::check_records(self, &mut errors);
        redis::validate(self, process.serves_webhooks(), &mut errors);
        objects::validate(self, &mut errors);
        errors.append(&mut source_errors(self, process.source_secrets()));
        errors.append(&mut subscription_errors(
            self,
            process.subscription_secrets(),
        ));
        worker::validate(&self.worker, process.loads_as_worker(), &mut errors);
        telemetry::validate(&self.telemetry, &mut errors);
        console::validate(&self.console, &mut errors);
        errors
    }
}
