//! Warnings: settings that are legal but probably wrong, which `spillway check-config` prints
//! without failing. Blocking failing clients while every client may share one address, and
//! secret files (or a config file holding secrets) that group or others can read.
//!
//! File modes are warned about, not refused: Kubernetes mounts Secret and ConfigMap volumes
//! `0644` by default, and with an `fsGroup` a pod's process can only read them through the
//! group, so a refusal would stop every pod of the chart while protecting little inside a
//! one-user container. Where several users share a host, the warning says what to `chmod`.

use std::collections::BTreeMap;
use std::path::Path;

use figment::providers::{Format, Yaml};
use figment::Figment;

use crate::model::Config;
use crate::redact::{is_secret_key, redact_url_credentials};
use crate::secrets::SecretAccess;
use crate::validate::Process;

/// Something legal that is probably a mistake, e.g.
/// `ingress.block_failing_clients: on while ingress.trusted_proxies is empty: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The field (or, for the config file itself, the file's path) it is about.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A source whose preset signs the URL it called, without `public_url`: the URL is rebuilt
/// from the Host header, which the sender chooses. A request signed for another endpoint of
/// the same account would verify here if resent with that endpoint's Host.
fn url_from_host(config: &Config, warnings: &mut Vec<Warning>) {
    for (name, source) in &config.sources {
        let signs_url = spillway_providers::find(&source.verify.scheme)
            .is_some_and(|p| p.scheme.template.uses(&spillway_signature::Part::Url));
        if signs_url && source.public_url.is_none() {
            warnings.push(Warning {
                path: format!("sources.{name}.public_url"),
                message: format!(
                    "scheme {} signs the URL it called; without public_url it is rebuilt from \
                     the Host header, which the sender chooses: set it to the https://host the \
                     provider was given",
                    source.verify.scheme
                ),
            });
        }
    }
}

/// `store_handshakes` on a source whose provider makes no authenticated handshake: nothing
/// would be stored (unsigned handshakes never are).
fn handshakes_to_store(config: &Config, warnings: &mut Vec<Warning>) {
    for (name, source) in &config.sources {
        let signed = spillway_providers::find(&source.verify.scheme)
            .and_then(|p| p.handshake)
            .is_some_and(|h| h.is_storable());
        if source.store_handshakes && !signed {
            warnings.push(Warning {
                path: format!("sources.{name}.store_handshakes"),
                message: format!(
                    "scheme {} has no authenticated handshake to store (unsigned handshakes are \
                     never stored): the setting does nothing",
                    source.verify.scheme
                ),
            });
        }
    }
}

// === impl Config ===

impl Config {
    /// What in this config is legal but probably wrong for `process`: the settings it uses,
    /// and the modes of the secret files it reads (on Unix). Empty when nothing is.
    pub fn warnings_for(&self, process: Process) -> Vec<Warning> {
        let mut warnings = Vec::new();
        if process.serves_webhooks() {
            blocking_without_proxies(self, &mut warnings);
            url_from_host(self, &mut warnings);
            handshakes_to_store(self, &mut warnings);
        }
        for (path, file) in secret_files(self, process) {
            if let Some(mode) = open_to_others(file) {
                warnings.push(Warning {
                    path,
                    message: format!(
                        "{} holds a secret and its mode {mode:04o} lets group or others read \
                         it: chmod 600 it (or 640 for a group of its own)",
                        file.display()
                    ),
                });
            }
        }
        warnings
    }
}

/// H-3: blocks are keyed on the client address, which without `trusted_proxies` is the TCP
/// peer, so behind a proxy one failing sender blocks every sender.
fn blocking_without_proxies(config: &Config, warnings: &mut Vec<Warning>) {
    let ingress = &config.ingress;
    if ingress.block_failing_clients.is_some() && ingress.trusted_proxies.is_empty() {
        warnings.push(Warning {
            path: "ingress.block_failing_clients".into(),
            message: "on while ingress.trusted_proxies is empty: a client is known by its TCP \
                      peer address, so behind a load balancer, an Ingress controller or a \
                      Service that SNATs (externalTrafficPolicy: Cluster) every sender shares \
                      one address, and one client failing verification gets all of them \
                      refused with 403 client_blocked. Set trusted_proxies to the proxies' \
                      addresses, or leave blocking off unless clients connect directly"
                .into(),
        });
    }
}

/// The secret files `process` reads, each with the field that names it.
fn secret_files(config: &Config, process: Process) -> Vec<(String, &Path)> {
    let mut files: Vec<(String, &Path)> = Vec::new();
    if process.source_secrets() == SecretAccess::Read {
        for (name, source) in &config.sources {
            for (i, secret) in source.secrets.iter().enumerate() {
                if let Some(file) = &secret.file {
                    files.push((format!("sources.{name}.secrets[{i}].file"), file));
                }
            }
        }
    }
    if process.serves_webhooks() {
        if let Some(tls) = &config.ingress.tls {
            files.push(("ingress.tls.key_file".into(), &tls.key_file));
        }
        if let Some(key_file) = &config.redis.tls.client_key_file {
            files.push(("redis.tls.client_key_file".into(), key_file));
        }
    }
    if process.subscription_secrets() == SecretAccess::Read {
        for (i, subscription) in config.subscriptions.iter().enumerate() {
            for (j, secret) in subscription.secrets.iter().enumerate() {
                if let Some(file) = &secret.file {
                    files.push((format!("subscriptions[{i}].secrets[{j}].file"), file));
                }
            }
        }
        if let Some(file) = config
            .worker
            .api_token
            .as_ref()
            .and_then(|t| t.file.as_ref())
        {
            files.push(("worker.api_token.file".into(), file));
        }
    }
    if let Some(file) = &config.kafka.properties_file {
        files.push(("kafka.properties_file".into(), file));
    }
    files
}

/// The config file at `path`, when group or others can read it and it holds secret values
/// itself (secret Kafka properties, Redis URLs with credentials).
pub(crate) fn config_file(path: &Path) -> Option<Warning> {
    let mode = open_to_others(path)?;
    let held = inline_secrets(path);
    if held.is_empty() {
        return None;
    }
    Some(Warning {
        path: path.display().to_string(),
        message: format!(
            "holds secrets ({}) and its mode {mode:04o} lets group or others read it: chmod 600 \
             it, or move them out (kafka.properties_file, SPILLWAY_REDIS__NODES from a Secret)",
            held.join(", ")
        ),
    })
}

/// The fields of the file at `path` (environment overrides aside) that hold a secret value.
fn inline_secrets(path: &Path) -> Vec<String> {
    let file = Figment::from(Yaml::file_exact(path));
    let properties = file
        .extract_inner::<BTreeMap<String, figment::value::Value>>("kafka.properties")
        .unwrap_or_default();
    let nodes = file
        .extract_inner::<Vec<String>>("redis.nodes")
        .unwrap_or_default();
    let mut held: Vec<String> = properties
        .keys()
        .filter(|key| is_secret_key(key))
        .map(|key| format!("kafka.properties.{key}"))
        .collect();
    held.extend(
        nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| redact_url_credentials(node) != node.as_str())
            .map(|(i, _)| format!("redis.nodes[{i}]")),
    );
    held
}

/// The permission bits of the file at `path` when group or others have any (`mode & 0o077`);
/// `None` when they have none, when it cannot be read, and off Unix.
#[cfg(unix)]
fn open_to_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn open_to_others(_path: &Path) -> Option<u32> {
    None
}
