//! The Helm chart as rendered by Helm's own engine (`dev/chart.sh render`), checked as typed
//! objects: every ci/ scenario keeps the invariants, its config file is a valid Spillway
//! config, and each invariant check fires on an object that breaks it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use spillway_k8s::{Rendered, CONFIG_KEY};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart rendered with these values files (none: the defaults).
fn render(values: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(repo().join("dev/chart.sh"))
        .arg("render")
        .args(values)
        .arg("--json")
        .output()
        .expect("dev/chart.sh runs");
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list of objects")
}

fn scenarios() -> Vec<(String, Vec<PathBuf>)> {
    let mut all = vec![("defaults".to_owned(), Vec::new())];
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("helm/spillway/ci"))
        .expect("ci/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the ci/ scenarios: {files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        all.push((name, vec![file]));
    }
    all
}

#[test]
fn every_scenario_keeps_the_invariants_and_renders_a_valid_spillway_config() {
    for (name, values) in scenarios() {
        let rendered = Rendered::parse(render(&values)).expect("typed objects");
        let violations = rendered.violations();
        assert!(
            violations.is_empty(),
            "{name}:\n{}",
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_valid_config(&name, &rendered);
    }
}

#[test]
fn the_scenarios_render_what_they_promise() {
    let kinds = |file: &str| {
        let objects = render(&[repo().join("helm/spillway/ci").join(file)]);
        let rendered = Rendered::parse(objects).expect("typed objects");
        (
            rendered.deployments.len(),
            rendered.hpas.len(),
            rendered.scaled_objects.len(),
            rendered.pdbs.len(),
            rendered.pod_monitors.len() + rendered.prometheus_rules.len(),
        )
    };
    // (deployments, HPAs, ScaledObjects, PDBs, monitoring objects)
    assert_eq!(kinds("minimal-values.yaml"), (2, 1, 0, 2, 0));
    assert_eq!(kinds("production-values.yaml"), (2, 1, 1, 2, 2));
    assert_eq!(kinds("monitoring-values.yaml"), (2, 2, 0, 2, 2));
    assert_eq!(kinds("everything-off-values.yaml"), (1, 0, 0, 0, 0));
    // The console: its own Deployment, Service and NetworkPolicy, and its config section.
    assert_eq!(kinds("console-values.yaml"), (3, 1, 0, 2, 0));
    let console = Rendered::parse(render(&[
        repo().join("helm/spillway/ci/console-values.yaml")
    ]))
    .expect("typed objects");
    let named = |name: &str| {
        console
            .services
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name))
            && console
                .network_policies
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(name))
    };
    assert!(
        named("spillway-console"),
        "the console's Service and NetworkPolicy"
    );
    let config = console.config().expect("a config").expect("valid");
    assert_eq!(config.console.listen.port(), 9096);
    assert_eq!(config.console.tokens.len(), 2);
    assert!(config.console.trusted_proxy.is_some());
    assert_eq!(config.console.bulk_retry_limit, 5000);
    let production = Rendered::parse(render(&[
        repo().join("helm/spillway/ci/production-values.yaml")
    ]))
    .expect("typed objects");
    let alerts: Vec<String> = production.prometheus_rules[0]
        .spec
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().filter_map(|r| r.alert.clone()))
        .collect();
    for alert in [
        "SpillwayErrorBudgetBurn",
        "SpillwayLatencyBudgetBurn",
        "SpillwayVerificationFailureSpike",
        "SpillwayDedupeFailOpen",
        "SpillwayKafkaProduceErrors",
        "SpillwayConsumerLagGrowing",
        "SpillwayDeadLettersGrowing",
        "SpillwayCircuitOpen",
    ] {
        assert!(alerts.iter().any(|a| a == alert), "{alert} in {alerts:?}");
    }
    assert!(production.prometheus_rules[0]
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .all(|r| r.annotations.get("runbook_url").is_some_and(
            |u| u.starts_with("https://github.com/spillway/spillway/blob/main/docs/operations.md#")
        )));
}

/// Loads the rendered config as a pod would: its files where the pod mounts them (here under
/// a temporary directory), and the environment the chart sets.
fn assert_valid_config(name: &str, rendered: &Rendered) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().display().to_string();
    let text = rendered
        .config_maps
        .iter()
        .find_map(|c| c.data.as_ref()?.get(CONFIG_KEY).cloned())
        .expect("the config file")
        .replace("/etc/spillway/", &format!("{root}/"));
    // Every file the config names, as the mounted Secrets would provide it.
    for word in text.split_whitespace() {
        let path = word.trim_matches(|c| c == ',' || c == '}' || c == '"');
        if let Some(rest) = path.strip_prefix(&format!("{root}/")) {
            let file = dir.path().join(rest);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            let content = if rest.starts_with("kafka/") {
                "sasl.username=spillway\nsasl.password=secret\n"
            } else {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
            };
            std::fs::write(file, content).unwrap();
        }
    }
    let config_file = dir.path().join("spillway.yaml");
    std::fs::write(&config_file, &text).unwrap();
    // What the chart puts in the pods' environment from Secrets.
    let redis_from_secret = rendered.deployments.iter().any(|d| {
        serde_json::to_string(d)
            .unwrap()
            .contains("SPILLWAY_REDIS__NODES")
    });
    if redis_from_secret {
        // A node list with certificates for it in `redis.tls` is a TLS cluster's.
        let nodes = if text.contains("redis-ca/") || text.contains("redis-client/") {
            "[\"rediss://:pw@redis:6379\"]"
        } else {
            "[\"redis://:pw@redis:6379\"]"
        };
        std::env::set_var("SPILLWAY_REDIS__NODES", nodes);
    } else {
        std::env::remove_var("SPILLWAY_REDIS__NODES");
    }
    if let Err(e) = spillway_config::load(&config_file) {
        panic!("{name}: the rendered config is not valid: {e}\n{text}");
    }
}

/// The defaults, broken by `breaking`, and the rule that must then fire.
fn fires(rule: &str, breaking: impl FnOnce(&mut Vec<Value>)) {
    let mut objects = render(&[]);
    breaking(&mut objects);
    let violations = Rendered::parse(objects).expect("typed").violations();
    assert!(
        violations.iter().any(|v| v.rule == rule),
        "{rule} did not fire; violations: {violations:?}"
    );
}

fn object<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn ingress_container(objects: &mut [Value]) -> &mut Value {
    &mut object(objects, "Deployment", "spillway-ingress")["spec"]["template"]["spec"]["containers"]
        [0]
}

#[test]
fn each_invariant_check_fires_when_broken() {
    fires("pdb-selector", |o| {
        object(o, "PodDisruptionBudget", "spillway-worker")["spec"]["selector"]["matchLabels"]
            ["app.kubernetes.io/component"] = json!("workers");
    });
    fires("service-selector", |o| {
        object(o, "Service", "spillway-ingress")["spec"]["selector"] = json!({});
    });
    fires("service-port", |o| {
        object(o, "Service", "spillway-ingress")["spec"]["ports"][0]["targetPort"] =
            json!("webhook");
    });
    fires("networkpolicy-selector", |o| {
        object(o, "NetworkPolicy", "spillway-ingress")["spec"]["podSelector"]["matchLabels"]
            ["app.kubernetes.io/instance"] = json!("other");
    });
    fires("autoscaler-target", |o| {
        object(o, "HorizontalPodAutoscaler", "spillway-ingress")["spec"]["scaleTargetRef"]
            ["name"] = json!("spillway-ingres");
    });
    fires("autoscaler-target", |o| {
        object(o, "Deployment", "spillway-ingress")["spec"]["replicas"] = json!(2);
    });
    fires("one-autoscaler", |o| {
        let mut second = object(o, "HorizontalPodAutoscaler", "spillway-ingress").clone();
        second["metadata"]["name"] = json!("spillway-ingress-2");
        o.push(second);
    });
    fires("grace-period", |o| {
        object(o, "Deployment", "spillway-ingress")["spec"]["template"]["spec"]
            ["terminationGracePeriodSeconds"] = json!(20);
    });
    fires("image-tag", |o| {
        ingress_container(o)["image"] = json!("ghcr.io/spillway/spillway:latest");
    });
    fires("image-tag", |o| {
        ingress_container(o)["image"] = json!("registry:5000/spillway");
    });
    fires("resources", |o| {
        ingress_container(o)["resources"]
            .as_object_mut()
            .unwrap()
            .remove("limits");
    });
    fires("restricted", |o| {
        ingress_container(o)["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    });
    fires("restricted", |o| {
        ingress_container(o)["securityContext"]["capabilities"] = json!({"add": ["NET_ADMIN"]});
    });
    fires("restricted", |o| {
        object(o, "Deployment", "spillway-worker")["spec"]["template"]["spec"]["securityContext"]
            ["runAsNonRoot"] = json!(false);
    });
    fires("probes", |o| {
        ingress_container(o)
            .as_object_mut()
            .unwrap()
            .remove("readinessProbe");
    });
    fires("service-account-token", |o| {
        object(o, "Deployment", "spillway-worker")["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("automountServiceAccountToken");
    });
    fires("config", |o| {
        object(o, "ConfigMap", "spillway")["data"][CONFIG_KEY] = json!("ingress: {listn: x}\n");
    });
}

#[test]
fn an_unknown_kind_or_operator_field_is_refused() {
    let mut objects = render(&[]);
    objects.push(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}}));
    assert!(Rendered::parse(objects).is_err());
    let monitoring = render(&[repo().join("helm/spillway/ci/monitoring-values.yaml")]);
    let mut broken = monitoring.clone();
    object(&mut broken, "PodMonitor", "spillway")["spec"]["podMetricEndpoints"] = json!([]);
    let err = Rendered::parse(broken).expect_err("a misspelt PodMonitor field");
    assert!(err.to_string().contains("podMetricEndpoints"), "{err}");
    assert!(Rendered::parse(monitoring).is_ok());
}

#[test]
fn an_sns_source_opens_https_out_of_the_ingress_and_its_check_fires_without_it() {
    let production = vec![repo().join("helm/spillway/ci/production-values.yaml")];
    let mut objects = render(&production);
    let policy = object(&mut objects, "NetworkPolicy", "spillway-ingress");
    let egress = policy["spec"]["egress"].as_array_mut().expect("egress");
    let https = |rule: &Value| rule["ports"][0]["port"] == 443;
    assert!(egress.iter().any(https), "443 is open: {egress:?}");
    egress.retain(|rule| !https(rule));
    let violations = Rendered::parse(objects).expect("typed").violations();
    assert!(
        violations.iter().any(|v| v.rule == "sns-egress"),
        "{violations:?}"
    );
    // Without an aws-sns source the port stays closed.
    let defaults = render(&[]);
    let policy = defaults
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "spillway-ingress")
        .expect("policy");
    let open: Vec<&Value> = policy["spec"]["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .filter(|rule| rule["ports"][0]["port"] == 443)
        .collect();
    assert!(open.is_empty(), "{open:?}");
}
