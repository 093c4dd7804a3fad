//! What Spillway's Helm chart renders, as typed Kubernetes objects, and the invariants a cluster
//! would only reveal at the worst moment: selectors that match no pod, autoscalers aimed at
//! nothing, a grace period shorter than the drain, a container that may run as root.
//!
//! The objects come from `dev/chart.sh render --json` (Helm's own engine); schema validity is
//! checked there with the Kubernetes JSON schemas, so this crate checks what no schema can.

mod egress;
pub mod operator;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use operator::{PodMonitor, PrometheusRule, ScaledObject};

/// The config file's key in the chart's ConfigMap.
pub const CONFIG_KEY: &str = "spillway.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("object {index}: no kind")]
    NoKind { index: usize },
    #[error("object {index}: the chart is not expected to render a {kind}")]
    UnexpectedKind { index: usize, kind: String },
    #[error("{kind} {name}: {source}")]
    Invalid {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Every object of one render, by kind.
#[derive(Debug, Default, Clone)]
pub struct Rendered {
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    pub service_accounts: Vec<ServiceAccount>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub network_policies: Vec<NetworkPolicy>,
    pub pod_monitors: Vec<PodMonitor>,
    pub prometheus_rules: Vec<PrometheusRule>,
    pub scaled_objects: Vec<ScaledObject>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `Kind/name` of the object at fault.
    pub object: String,
    /// A stable name of the invariant, e.g. `pdb-selector`.
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]: {}", self.object, self.rule, self.message)
    }
}

// === impl Rendered ===

impl Rendered {
    /// Sorts the objects of a render into their types; a kind the chart should not render is
    /// an error, and so is an operator object with an unknown field.
    pub fn parse(objects: Vec<serde_json::Value>) -> Result<Self, ParseError> {
        let mut rendered = Self::default();
        for (index, object) in objects.into_iter().enumerate() {
            let kind = object
                .get("kind")
                .and_then(|k| k.as_str())
                .ok_or(ParseError::NoKind { index })?
                .to_owned();
            let name = object
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_owned();
            let invalid = |source| ParseError::Invalid {
                kind: kind.clone(),
                name: name.clone(),
                source,
            };
            macro_rules! into {
                ($list:ident) => {
                    rendered
                        .$list
                        .push(serde_json::from_value(object).map_err(invalid)?)
                };
            }
            match kind.as_str() {
                "ConfigMap" => into!(config_maps),
                "Secret" => into!(secrets),
                "ServiceAccount" => into!(service_accounts),
                "Deployment" => into!(deployments),
                "Service" => into!(services),
                "HorizontalPodAutoscaler" => into!(hpas),
                "PodDisruptionBudget" => into!(pdbs),
                "NetworkPolicy" => into!(network_policies),
                "PodMonitor" => into!(pod_monitors),
                "PrometheusRule" => into!(prometheus_rules),
                "ScaledObject" => into!(scaled_objects),
                _ => return Err(ParseError::UnexpectedKind { index, kind }),
            }
        }
        Ok(rendered)
    }

    /// The Spillway config file the chart renders.
    pub fn config(&self) -> Option<Result<spillway_config::Config, spillway_config::ConfigError>> {
        self.config_maps
            .iter()
            .find_map(|c| c.data.as_ref()?.get(CONFIG_KEY))
            .map(|text| spillway_config::parse_str(text))
    }

    /// Every broken invariant.
    pub fn violations(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        let config = match self.config() {
            Some(Ok(config)) => Some(config),
            Some(Err(e)) => {
                found.push(violation(
                    "ConfigMap",
                    "config",
                    format!("{CONFIG_KEY} does not parse: {e}"),
                ));
                None
            }
            None => {
                found.push(violation(
                    "ConfigMap",
                    "config",
                    format!("no ConfigMap holds {CONFIG_KEY}"),
                ));
                None
            }
        };
        for deployment in &self.deployments {
            found.extend(check_deployment(deployment, config.as_ref()));
        }
        if let Some(config) = &config {
            found.extend(egress::check_sns_egress(&self.network_policies, config));
        }
        found.extend(self.check_selectors());
        found.extend(self.check_autoscalers());
        found
    }

    fn pod_labels(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.deployments
            .iter()
            .map(|d| {
                let labels = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                (name_of(&d.metadata), labels)
            })
            .collect()
    }

    /// PDBs, Services, NetworkPolicies and the PodMonitor select the pods of exactly the
    /// Deployment they are for (PodMonitor: at least one).
    fn check_selectors(&self) -> Vec<Violation> {
        let pods = self.pod_labels();
        let selected = |selector: &BTreeMap<String, String>| -> Vec<String> {
            pods.iter()
                .filter(|(_, labels)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
                .map(|(name, _)| name.clone())
                .collect()
        };
        let exactly_one = |object: String, rule, selector: &BTreeMap<String, String>| {
            let matched = selected(selector);
            (selector.is_empty() || matched.len() != 1).then(|| Violation {
                object,
                rule,
                message: format!(
                    "selector {selector:?} must select the pods of exactly one Deployment; it selects {matched:?}"
                ),
            })
        };
        let mut found = Vec::new();
        for pdb in &self.pdbs {
            let selector = match_labels(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()));
            let object = format!("PodDisruptionBudget/{}", name_of(&pdb.metadata));
            found.extend(exactly_one(object, "pdb-selector", &selector));
        }
        for policy in &self.network_policies {
            let selector = match_labels(policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref()));
            let object = format!("NetworkPolicy/{}", name_of(&policy.metadata));
            found.extend(exactly_one(object, "networkpolicy-selector", &selector));
        }
        for service in &self.services {
            let selector = service
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default();
            let object = format!("Service/{}", name_of(&service.metadata));
            found.extend(exactly_one(object.clone(), "service-selector", &selector));
            // Its ports reach ports the selected pods declare.
            let matched = selected(&selector);
            let Some(deployment) = matched.first().and_then(|n| self.deployment(n)) else {
                continue;
            };
            let declared: Vec<String> = containers(deployment)
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| p.name.clone())
                .collect();
            for port in service.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
                if let Some(IntOrString::String(target)) = &port.target_port {
                    if !declared.contains(target) {
                        found.push(violation(
                            &object,
                            "service-port",
                            format!("targetPort {target:?} is not a port of the selected pods ({declared:?})"),
                        ));
                    }
                }
            }
        }
        for monitor in &self.pod_monitors {
            let matched = selected(&match_labels(Some(&monitor.spec.selector)));
            if matched.is_empty() {
                found.push(violation(
                    &format!("PodMonitor/{}", name_of(&monitor.metadata)),
                    "podmonitor-selector",
                    "selects no pods".into(),
                ));
            }
        }
        found
    }

    /// HPAs and ScaledObjects scale an existing Deployment that does not fix its own replicas,
    /// and no Deployment has two autoscalers.
    fn check_autoscalers(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let hpa_targets = self.hpas.iter().map(|h| {
            let target = h.spec.as_ref().map(|s| &s.scale_target_ref);
            (
                format!("HorizontalPodAutoscaler/{}", name_of(&h.metadata)),
                target.map(|t| t.kind.clone()),
                target.and_then(|t| t.api_version.clone()),
                target.map(|t| t.name.clone()).unwrap_or_default(),
            )
        });
        let keda_targets = self.scaled_objects.iter().map(|s| {
            let target = &s.spec.scale_target_ref;
            (
                format!("ScaledObject/{}", name_of(&s.metadata)),
                target.kind.clone(),
                target.api_version.clone(),
                target.name.clone(),
            )
        });
        for (object, kind, api_version, name) in hpa_targets.chain(keda_targets) {
            let aimed_right =
                kind.as_deref() == Some("Deployment") && api_version.as_deref() == Some("apps/v1");
            match self.deployment(&name) {
                Some(deployment) if aimed_right => {
                    if deployment.spec.as_ref().and_then(|s| s.replicas).is_some() {
                        found.push(violation(
                            &object,
                            "autoscaler-target",
                            format!("Deployment {name} also sets spec.replicas: every upgrade would reset what the autoscaler chose"),
                        ));
                    }
                    targets.entry(name).or_default().push(object);
                }
                _ => found.push(violation(
                    &object,
                    "autoscaler-target",
                    format!("targets {kind:?} {api_version:?} {name:?}, not a Deployment (apps/v1) of this release"),
                )),
            }
        }
        for (deployment, scalers) in targets {
            if scalers.len() > 1 {
                found.push(violation(
                    &format!("Deployment/{deployment}"),
                    "one-autoscaler",
                    format!("scaled by {scalers:?}: two autoscalers fight over its replicas"),
                ));
            }
        }
        found
    }

    fn deployment(&self, name: &str) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| name_of(&d.metadata) == name)
    }
}

/// The checks on one Deployment's pods: grace period, probes, security, image, resources.
fn check_deployment(
    deployment: &Deployment,
    config: Option<&spillway_config::Config>,
) -> Vec<Violation> {
    let object = format!("Deployment/{}", name_of(&deployment.metadata));
    let mut found = Vec::new();
    let mut flag = |rule, message: String| found.push(violation(&object, rule, message));
    let Some(pod) = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
    else {
        flag("pod", "has no pod template spec".into());
        return found;
    };
    let role = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get("app.kubernetes.io/component"))
        .cloned()
        .unwrap_or_default();
    if let Some(config) = config {
        let pre_stop: i64 = pod
            .containers
            .iter()
            .filter_map(|c| c.lifecycle.as_ref()?.pre_stop.as_ref()?.sleep.as_ref())
            .map(|s| s.seconds)
            .max()
            .unwrap_or(0);
        // After its drain the ingress settles its durable sections and flushes the producer
        // within delivery_timeout + 5 s (spillway_ingress::SHUTDOWN_MARGIN); the worker's
        // last produce is bounded by the delivery timeout.
        let (drain, margin) = match role.as_str() {
            "ingress" => (config.ingress.drain_timeout, Duration::from_secs(5)),
            "worker" => (config.worker.drain_timeout, Duration::ZERO),
            // The console flushes its producer (retries, test events) for up to 5 s.
            "console" => (Duration::ZERO, Duration::from_secs(5)),
            other => {
                flag("component", format!("unknown component label {other:?}"));
                (Duration::ZERO, Duration::ZERO)
            }
        };
        let needed = Duration::from_secs(u64::try_from(pre_stop).unwrap_or(0))
            + drain
            + config.kafka.delivery_timeout
            + margin;
        let grace = pod.termination_grace_period_seconds.unwrap_or(30);
        if Duration::from_secs(u64::try_from(grace).unwrap_or(0)) < needed {
            flag(
                "grace-period",
                format!("terminationGracePeriodSeconds {grace} is shorter than preStop {pre_stop} s + drain {drain:?} + settle and flush {:?}", config.kafka.delivery_timeout + margin),
            );
        }
    }
    if pod.automount_service_account_token != Some(false) {
        flag(
            "service-account-token",
            "mounts a Kubernetes API token it never uses".into(),
        );
    }
    check_pod_security(pod, &mut flag);
    // The console has no admin port: its one port serves the API, the page and the probes.
    let probe_port = if role == "console" { "http" } else { "admin" };
    for container in &pod.containers {
        check_container(container, probe_port, &mut flag);
    }
    found
}

/// The restricted Pod Security Standard, at pod and container level.
fn check_pod_security(pod: &PodSpec, flag: &mut impl FnMut(&'static str, String)) {
    let context = pod.security_context.as_ref();
    if context.and_then(|c| c.run_as_non_root) != Some(true) {
        flag(
            "restricted",
            "pod securityContext.runAsNonRoot is not true".into(),
        );
    }
    let pod_seccomp = context
        .and_then(|c| c.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    for container in &pod.containers {
        let c = container.security_context.as_ref();
        let name = &container.name;
        if c.and_then(|c| c.allow_privilege_escalation) != Some(false) {
            flag(
                "restricted",
                format!("{name}: allowPrivilegeEscalation is not false"),
            );
        }
        if c.and_then(|c| c.privileged) == Some(true) {
            flag("restricted", format!("{name}: privileged"));
        }
        if c.and_then(|c| c.read_only_root_filesystem) != Some(true) {
            flag(
                "restricted",
                format!("{name}: readOnlyRootFilesystem is not true"),
            );
        }
        let caps = c.and_then(|c| c.capabilities.as_ref());
        if !caps
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        {
            flag(
                "restricted",
                format!("{name}: capabilities do not drop ALL"),
            );
        }
        if caps
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| !a.is_empty())
        {
            flag("restricted", format!("{name}: adds capabilities"));
        }
        let seccomp = c
            .and_then(|c| c.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            flag(
                "restricted",
                format!("{name}: seccomp profile is not RuntimeDefault"),
            );
        }
    }
}

/// A pinned image, requests and limits, probes on `probe_port` (the admin port).
fn check_container(
    container: &Container,
    probe_port: &str,
    flag: &mut impl FnMut(&'static str, String),
) {
    let name = &container.name;
    let image = container.image.as_deref().unwrap_or_default();
    let tag = image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(_, t)| t);
    if !image.contains('@') && matches!(tag, None | Some("latest")) {
        flag(
            "image-tag",
            format!("{name}: image {image:?} is not pinned to a version"),
        );
    }
    let resources = container.resources.as_ref();
    for (what, set) in [
        ("requests", resources.and_then(|r| r.requests.as_ref())),
        ("limits", resources.and_then(|r| r.limits.as_ref())),
    ] {
        for resource in ["cpu", "memory"] {
            if !set.is_some_and(|s| s.contains_key(resource)) {
                flag("resources", format!("{name}: no {resource} in {what}"));
            }
        }
    }
    for (what, probe) in [
        ("readiness", container.readiness_probe.as_ref()),
        ("liveness", container.liveness_probe.as_ref()),
    ] {
        let on_port = probe
            .and_then(|p| p.http_get.as_ref())
            .is_some_and(|g| g.port == IntOrString::String(probe_port.into()));
        if !on_port {
            flag(
                "probes",
                format!("{name}: no {what} probe on the {probe_port} port"),
            );
        }
    }
}

fn containers(deployment: &Deployment) -> &[Container] {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default()
}

fn match_labels(selector: Option<&LabelSelector>) -> BTreeMap<String, String> {
    selector
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default()
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn violation(object: &str, rule: &'static str, message: String) -> Violation {
    Violation {
        object: object.to_owned(),
        rule,
        message,
    }
}
