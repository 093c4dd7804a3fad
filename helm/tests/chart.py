#!/usr/bin/env python3
"""Renders and checks the Helm chart with Helm's own engine, without a cluster.

Run it with the chart tools' Python (dev/chart.sh does):

    chart.py render [VALUES.yaml ...] [--json]   the rendered objects (YAML stream, or a JSON list)
    chart.py check                               everything `make chart-test` checks (below)
    chart.py generate                            regenerate values.schema.json and README.md from values.yaml,
                                                 and the dashboards from dashboards.py
    chart.py manifests                           regenerate the plain manifests in k8s/base

`check`: `helm lint --strict` and a render of every ci/*-values.yaml scenario; every rendered
object of a Kubernetes kind validated against the Kubernetes JSON schemas in strict mode (unknown
fields are errors) for the oldest and newest supported Kubernetes; values that must be refused
are refused with a message naming the problem (a body budget that does not fit the ingress's
memory limit among them), and values at the edge of a refusal are not; each Deployment's pods
mount the signing secrets their process uses and no others (the ingress the sources', the
workers the subscriptions'); the ingress container is told its memory limit; the README and k8s/
are up to date. The operator kinds (PodMonitor, PrometheusRule, ScaledObject) have no Kubernetes
schema: crates/k8s checks them, and the invariants across objects, on the same renders.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from fnmatch import fnmatchcase
from typing import Any

import helm_python as helm
from dashboards import DASHBOARDS_DIR, dashboard_files
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spillway"
RELEASE = "spillway"
NAMESPACE = "spillway"
# The Chart's kubeVersion floor and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule", "ScaledObject"}
MANIFESTS = ROOT / "k8s" / "base"
MIB = 1024 * 1024

# Values that must be refused, and a part of the message that says why.
REFUSED = [
    ({"ingres": {"replicas": 3}}, "ingres"),
    ({"ingress": {"replicas": "two"}}, "replicas"),
    ({"ingress": {"service": {"type": "Loadbalancer"}}}, "type"),
    ({"image": {"tag": "latest"}}, "latest"),
    (
        {"worker": {"autoscaling": {"hpa": {"enabled": True}, "keda": {"enabled": True}}}},
        "either hpa or keda",
    ),
    ({"ingress": {"tls": {"enabled": True}}}, "ingress.tls.secretName"),
    ({"ingress": {"tls": {"clientCaSecret": "fleet-ca"}}}, "ingress.tls.clientCaSecret"),
    ({"redis": {"tls": {"caSecret": "redis-ca"}}}, "redis.tls: certificates need rediss:// nodes"),
    ({"worker": {"drainSeconds": 50}}, "session timeout"),
    (
        {"signingSecrets": {"create": True, "existingSecret": "mine"}},
        "either create",
    ),
    # The ingress's memory limit holds its body budget and connections: 2 x max_body_memory +
    # max_connections x 64 KiB + 96 MiB (512Mi with 4096 connections: a budget of 80 MiB).
    (
        {"ingress": {"config": {"max_body_memory": 80 * MIB + 1}}},
        "ingress.resources.limits.memory: 512Mi does not hold the body budget and the connections",
    ),
    (
        {"ingress": {"config": {"max_connections": 4609}}},
        "lower ingress.config.max_connections to at most 4608",
    ),
    (
        {"ingress": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "128Mi"}}}},
        "(the default max_body_memory;",
    ),
    (
        {"ingress": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1G"}},
                     "config": {"max_body_memory": 315450625}}},
        "at most 315450624",
    ),
    (
        {"ingress": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "lots"}}}},
        "not a memory quantity",
    ),
    # The workers' memory limit holds 2 x max_record_memory + 2 x the prefetch + 64 MiB (256Mi
    # with 16 MiB of prefetch set: 80 MiB of records; with the prefetch sized from the limit,
    # which shrinks to 1 MiB: 95 MiB of records).
    (
        {"worker": {"config": {"max_record_memory": 80 * MIB + 1, "consumer_prefetch_bytes": 16 * MIB}}},
        "worker.resources.limits.memory: 256Mi does not hold",
    ),
    (
        {"worker": {"config": {"max_record_memory": 95 * MIB + 1}}},
        "worker.resources.limits.memory: 256Mi does not hold",
    ),
    # L-13: a private range the NetworkPolicy opens to subscribers, which the SSRF guard refuses.
    (
        {"networkPolicy": {"subscribers": {"cidrs": ["10.40.0.0/16"]}}},
        "10.40.0.0/16 is a private range the workers' SSRF guard refuses",
    ),
    (
        {"networkPolicy": {"subscribers": {"cidrs": ["172.20.0.0/16"]}}, "worker": {"config": {"allow_cidrs": ["10.40.0.0/16"]}}},
        "172.20.0.0/16 is a private range",
    ),
    # The console without its database, without the Secret its tokens are in, or usable by no one.
    ({"console": {"enabled": True, "tokens": [{"name": "a", "role": "viewer", "key": "a"}], "tokensSecret": "t"}}, "console.database.existingSecret"),
    ({"console": {"enabled": True, "database": {"existingSecret": "db"}, "tokens": [{"name": "a", "role": "viewer", "key": "a"}]}}, "console.tokensSecret"),
    ({"console": {"enabled": True, "database": {"existingSecret": "db"}}}, "nobody can use the console"),
    # A trusted identity header that any pod could send.
    (
        {"console": {"enabled": True, "database": {"existingSecret": "db"},
                     "trustedProxy": {"user_header": "X-Forwarded-Email", "from": ["10.42.0.0/16"]}}},
        "console.networkPolicy.from",
    ),
]

# Values at the edge of a refusal above, which must render.
ACCEPTED: list[dict[str, Any]] = [
    {"worker": {"config": {"max_record_memory": 80 * MIB, "consumer_prefetch_bytes": 16 * MIB}}},
    {"worker": {"config": {"max_record_memory": 95 * MIB}}},
    {"ingress": {"config": {"max_body_memory": 80 * MIB}}},
    {"ingress": {"config": {"max_connections": 4608}}},
    {"ingress": {"config": {"max_body_memory": 32 * MIB, "max_connections": 5632}}},
    {"ingress": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1G"}},
                 "config": {"max_body_memory": 315450624}}},
    {"ingress": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1e9"}},
                 "config": {"max_body_memory": 315450624}}},
    {"ingress": {"resources": {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "0.46875Gi"}}}},
    {"networkPolicy": {"subscribers": {"cidrs": ["10.40.0.0/16", "0.0.0.0/0"]}},
     "worker": {"config": {"allow_cidrs": ["10.40.0.0/16"]}}},
]


def load_values(paths: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    return merged


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for `values`, in template order."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for template in sorted(rendered):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(rendered[template]):
            if doc:
                objects.append(doc)
    return objects


class BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the config file, dashboards) as readable `|` blocks."""


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


BlockDumper.add_representer(str, _string)


def to_yaml_stream(objects: list[dict[str, Any]]) -> str:
    return "".join(
        "---\n" + yaml.dump(o, Dumper=BlockDumper, sort_keys=False, width=1000) for o in objects
    )


# === check ===


def check() -> list[str]:
    problems: list[str] = []
    mounts_checked_with_subscriptions = False
    scenarios = sorted((CHART / "ci").glob("*-values.yaml"))
    if not scenarios:
        problems.append("no ci/*-values.yaml scenarios")
    for scenario in scenarios:
        name = scenario.name
        values = load_values([str(scenario)])
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
        for message in report.get("messages", []):
            if message.get("severity", 0) >= 2:
                problems.append(f"{name}: lint: {message.get('path')}: {message.get('error')}")
        problems += [f"{name}: lint: {e}" for e in report.get("errors", []) or []]
        try:
            objects = render(values)
        except helm.HelmError as e:
            problems.append(f"{name}: render failed: {e}")
            continue
        problems += [f"{name}: {p}" for p in validate(objects)]
        if name == scenarios[0].name and not validate([with_typo(objects)]):
            problems.append("the schema validation let an unknown field through: it checks nothing")
        problems += [f"{name}: {p}" for p in secret_mount_problems(objects)]
        problems += [f"{name}: {p}" for p in extra_roots_problems(objects)]
        if extra_roots_problems(objects) == [] and not extra_roots_problems(without_mount(objects, "extra-roots")):
            if any(o["kind"] == "Deployment" and "extra-roots" in json.dumps(o) for o in objects):
                problems.append(f"{name}: the extra roots check let pods without the mount through: it checks nothing")
        problems += [f"{name}: {p}" for p in redis_tls_problems(objects)]
        if redis_tls_problems(objects) == [] and any("redis-client" in json.dumps(o) for o in objects):
            if not redis_tls_problems(without_mount(objects, "redis-client")):
                problems.append(f"{name}: the Redis TLS check let pods without the mount through: it checks nothing")
        problems += [f"{name}: {p}" for p in memory_limit_problems(objects)]
        if name == scenarios[0].name and not memory_limit_problems(without_memory_limit(objects)):
            problems.append("the memory limit check let an ingress without SPILLWAY_INGRESS__MEMORY_LIMIT through: it checks nothing")
        everything = with_every_signing_key(objects)
        if everything is not None:
            mounts_checked_with_subscriptions = True
            if not secret_mount_problems(everything):
                problems.append("the secret mount check let a mount of every signing key through: it checks nothing")
        print(f"{name}: {len(objects)} objects: {', '.join(sorted({o['kind'] for o in objects}))}")
    if not mounts_checked_with_subscriptions:
        problems.append("no ci/ scenario has a worker and a subscription secret: the secret mount check is idle")
    for values, expected in REFUSED:
        try:
            render(values)
            problems.append(f"values {values} were accepted; expected a refusal naming {expected!r}")
        except helm.HelmError as e:
            if expected not in str(e):
                problems.append(f"values {values} refused without naming {expected!r}: {e}")
    print(f"{len(REFUSED)} bad value sets refused, each with its reason")
    for values in ACCEPTED:
        try:
            render(values)
        except helm.HelmError as e:
            problems.append(f"values {values} were refused: {e}")
    print(f"{len(ACCEPTED)} value sets at the edge of a refusal accepted")
    problems += check_alerts()
    if (CHART / "values.schema.json").read_text() != schema_text():
        problems.append("helm/spillway/values.schema.json is stale: run `dev/chart.sh generate`")
    if (CHART / "README.md").read_text() != readme_text():
        problems.append("helm/spillway/README.md is stale: run `dev/chart.sh generate`")
    for path, text in manifest_files().items():
        if not path.exists() or path.read_text() != text:
            problems.append(f"{path.relative_to(ROOT)} is stale: run `dev/chart.sh manifests`")
    wanted = dashboard_files()
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            problems.append(f"{path.relative_to(ROOT)} is stale: run `dev/chart.sh generate`")
    for path in DASHBOARDS_DIR.glob("*.json"):
        if path not in wanted:
            problems.append(f"{path.relative_to(ROOT)} is not declared in helm/tests/dashboards.py")
    print(f"{len(wanted)} dashboards up to date")
    return problems


def with_typo(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of the first Deployment with a misspelt container field."""
    deployment = json.loads(json.dumps(next(o for o in objects if o["kind"] == "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    return deployment


def validate(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for o in objects:
        what = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        if o.get("kind") in OPERATOR_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{what} (Kubernetes {version}): {e.message} at {list(e.path)}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{what}: no Kubernetes {version} schema for {o.get('apiVersion')}")
    return problems


# === signing secret mounts ===

SECRETS_DIR = "/etc/spillway/secrets"


def signing_files(objects: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The signing secret files under SECRETS_DIR the rendered config names: the sources', then
    the subscriptions'. (Files elsewhere do not come from the chart's signing Secret.)"""
    config = spillway_config(objects)

    def files(secrets: Any) -> set[str]:
        return {
            str(s["file"]) for s in secrets or []
            if isinstance(s, dict) and str(s.get("file", "")).startswith(f"{SECRETS_DIR}/")
        }

    sources = set().union(*(files(s.get("secrets")) for s in (config.get("sources") or {}).values()))
    subscriptions = set().union(*(files(s.get("secrets")) for s in config.get("subscriptions") or []))
    return sources, subscriptions


def visible(deployment: dict[str, Any], path: str) -> bool:
    """Whether the containers of `deployment` see the file `path` in a Secret volume: a volume
    projecting that key, or one without `items` (every key of the Secret) mounted above it."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod.get("containers", []):
        for mount in container.get("volumeMounts", []):
            secret = volumes.get(mount["name"], {}).get("secret")
            if secret is None:
                continue
            base = mount["mountPath"].rstrip("/")
            items = secret.get("items")
            if items is None and path.startswith(f"{base}/"):
                return True
            if any(f"{base}/{item['path']}" == path for item in items or []):
                return True
    return False


def secret_mount_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Each process holds the signing secrets it uses and no others: the ingress pods the
    sources' (never a subscription's), the worker and console pods the subscriptions' (never a
    source's).
    A key both sides name is the operator's choice and may be in both."""
    sources, subscriptions = signing_files(objects)
    wanted = {
        "ingress": (sources, subscriptions - sources),
        "worker": (subscriptions, sources - subscriptions),
        # The console resolves the subscriptions to retry and test them, as the workers do.
        "console": (subscriptions, sources - subscriptions),
    }
    problems = []
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        component = o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        if component not in wanted:
            continue
        needed, foreign = wanted[component]
        what = f"Deployment/{o['metadata']['name']}"
        problems += [f"{what} does not mount {f}, which its process reads" for f in sorted(needed) if not visible(o, f)]
        problems += [f"{what} mounts {f}, a secret its process must not hold" for f in sorted(foreign) if visible(o, f)]
    return problems


def extra_roots_problems(objects: list[dict[str, Any]]) -> list[str]:
    """The file of `worker.extra_roots` is in every pod whose process loads the config as a
    worker's and checks that the file is there: the workers' and the console's."""
    path = (spillway_config(objects).get("worker") or {}).get("extra_roots")
    if not path:
        return []
    problems = []
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        component = o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        if component not in ("worker", "console"):
            continue
        if not mounted(o["spec"]["template"]["spec"], path, "configMap"):
            problems.append(f"Deployment/{o['metadata']['name']} does not mount {path} (worker.extra_roots), which its process checks for")
    return problems


def spillway_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The Spillway config the chart rendered into its ConfigMap."""
    config_map = next(o for o in objects if o["kind"] == "ConfigMap" and "spillway.yaml" in o.get("data", {}))
    return yaml.safe_load(config_map["data"]["spillway.yaml"])


def mounted(pod: dict[str, Any], path: str, source: str) -> bool:
    """Whether a container of `pod` mounts a volume of kind `source` (`configMap`, `secret`)
    over `path`."""
    volumes = {v["name"] for v in pod.get("volumes", []) if source in v}
    return any(
        mount["name"] in volumes and path.startswith(mount["mountPath"].rstrip("/") + "/")
        for container in pod.get("containers", [])
        for mount in container.get("volumeMounts", [])
    )


def redis_tls_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Each file of `redis.tls` is in the ingress pods, from a Secret's volume: the ingress
    reads them at start and stops without them."""
    tls = (spillway_config(objects).get("redis") or {}).get("tls") or {}
    problems = []
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        if o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") != "ingress":
            continue
        for field, path in sorted(tls.items()):
            if not mounted(o["spec"]["template"]["spec"], path, "secret"):
                problems.append(f"Deployment/{o['metadata']['name']} does not mount {path} (redis.tls.{field}) from a Secret")
    return problems


def without_mount(objects: list[dict[str, Any]], volume: str) -> list[dict[str, Any]]:
    """A copy of `objects` whose containers do not mount `volume`."""
    copied = json.loads(json.dumps(objects))
    for o in copied:
        if o["kind"] == "Deployment":
            for container in o["spec"]["template"]["spec"].get("containers", []):
                container["volumeMounts"] = [m for m in container.get("volumeMounts", []) if m["name"] != volume]
    return copied


def with_every_signing_key(objects: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A copy of `objects` whose worker mounts every key of the signing Secret (as the chart once
    did), when the worker has a signing volume and a source secret to leak; else None."""
    sources, subscriptions = signing_files(objects)
    if not (sources - subscriptions):
        return None
    copied = json.loads(json.dumps(objects))
    for o in copied:
        if o["kind"] == "Deployment" and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "worker":
            for volume in o["spec"]["template"]["spec"].get("volumes", []):
                if volume["name"] == "signing-secrets":
                    volume["secret"].pop("items", None)
                    return copied
    return None


# === the ingress's memory limit ===

MEMORY_LIMIT_ENVS = {
    component: {
        "name": f"SPILLWAY_{component.upper()}__MEMORY_LIMIT",
        "valueFrom": {"resourceFieldRef": {"containerName": component, "resource": "limits.memory", "divisor": "1"}},
    }
    for component in ("ingress", "worker")
}


def memory_limit_problems(objects: list[dict[str, Any]]) -> list[str]:
    """The ingress and worker containers are told their own memory limit in bytes (the downward
    API), so that each process checks its memory budgets against it."""
    problems = []
    names = {env["name"] for env in MEMORY_LIMIT_ENVS.values()}
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        component = o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        wanted = MEMORY_LIMIT_ENVS.get(component)
        for container in o["spec"]["template"]["spec"]["containers"]:
            env = [e for e in container.get("env", []) if e["name"] in names]
            what = f"Deployment/{o['metadata']['name']} container {container['name']}"
            if env != ([wanted] if wanted else []):
                problems.append(f"{what} is not given exactly its own memory limit ({wanted}): {env}")
    return problems


def without_memory_limit(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `objects` whose ingress container is not told its memory limit."""
    copied = json.loads(json.dumps(objects))
    for o in copied:
        if o["kind"] == "Deployment":
            for container in o["spec"]["template"]["spec"]["containers"]:
                container["env"] = [e for e in container.get("env", []) if e["name"] != MEMORY_LIMIT_ENVS["ingress"]["name"]]
    return copied


# === alerts ===

# promtool unit tests of files/alerts.yaml: for every alert, series on which it fires and series
# on which it stays quiet. Each case: (alert, {series: values}, eval time, labels of the firing
# alert or None for quiet). Series use promtool's notation, one sample a minute.
REQ = "spillway_http_requests_total"
ALERT_CASES: list[tuple[str, dict[str, str], str, dict[str, str] | None]] = [
    # 9% server errors for over an hour: both windows burn.
    ("SpillwayErrorBudgetBurn",
     {f'{REQ}{{source="a",outcome="accepted"}}': "0+100x90",
      f'{REQ}{{source="a",outcome="kafka_unavailable"}}': "0+10x90"},
     "65m", {"severity": "page"}),
    # A 10-minute burst of 5% errors: the 5 m window burns, the hour does not page.
    ("SpillwayErrorBudgetBurn",
     {f'{REQ}{{source="a",outcome="accepted"}}': "0+100x90",
      f'{REQ}{{source="a",outcome="kafka_unavailable"}}': "0x60 5+5x10"},
     "71m", None),
    # Client errors (401) are no server errors.
    ("SpillwayErrorBudgetBurn",
     {f'{REQ}{{source="a",outcome="accepted"}}': "0+100x90",
      f'{REQ}{{source="a",outcome="unauthorized"}}': "0+50x90"},
     "65m", None),
    # Half the requests slower than 100 ms.
    ("SpillwayLatencyBudgetBurn",
     {'spillway_http_request_duration_seconds_bucket{source="a",le="0.1"}': "0+50x90",
      'spillway_http_request_duration_seconds_count{source="a"}': "0+100x90"},
     "65m", {"severity": "page"}),
    ("SpillwayLatencyBudgetBurn",
     {'spillway_http_request_duration_seconds_bucket{source="a",le="0.1"}': "0+100x90",
      'spillway_http_request_duration_seconds_count{source="a"}': "0+100x90"},
     "65m", None),
    # 2/s failing verification out of 12/s, for more than 10 minutes.
    ("SpillwayVerificationFailureSpike",
     {'spillway_verification_failures_total{source="github",reason="signature_mismatch"}': "0+120x30",
      f'{REQ}{{source="github",outcome="unauthorized"}}': "0+120x30",
      f'{REQ}{{source="github",outcome="accepted"}}': "0+600x30"},
     "15m", {"severity": "ticket", "source": "github"}),
    # A trickle (0.1/s) is noise, not a spike.
    ("SpillwayVerificationFailureSpike",
     {'spillway_verification_failures_total{source="github",reason="signature_mismatch"}': "0+6x30",
      f'{REQ}{{source="github",outcome="accepted"}}': "0+600x30"},
     "15m", None),
    ("SpillwayDedupeFailOpen",
     {'spillway_dedupe_fail_open_events_total{source="meters"}': "0 0 0 5 10"},
     "4m", {"severity": "ticket", "source": "meters"}),
    ("SpillwayDedupeFailOpen", {'spillway_dedupe_fail_open_events_total{source="meters"}': "0x10"}, "8m", None),
    ("SpillwayKafkaProduceErrors",
     {'spillway_kafka_produce_errors_total{topic="t",reason="not_acknowledged"}': "0+60x20"},
     "10m", {"severity": "page", "topic": "t", "reason": "not_acknowledged"}),
    # Errors for less than the 5 minutes the alert waits.
    ("SpillwayKafkaProduceErrors",
     {'spillway_kafka_produce_errors_total{topic="t",reason="not_acknowledged"}': "0+60x3"},
     "3m", None),
    ("SpillwayConsumerLagGrowing",
     {'spillway_consumer_lag_messages{topic="t",partition="0"}': "2000+100x40"},
     "31m", {"severity": "ticket", "topic": "t"}),
    # A large but steady lag (a backlog being worked off at the rate it grows) is not growing.
    ("SpillwayConsumerLagGrowing",
     {'spillway_consumer_lag_messages{topic="t",partition="0"}': "5000x40"},
     "31m", None),
    ("SpillwayDeadLettersGrowing",
     {'spillway_worker_dead_letters_total{subscription="billing",reason="attempts_exhausted"}': "0 0 1 2"},
     "3m", {"severity": "ticket", "subscription": "billing"}),
    ("SpillwayDeadLettersGrowing",
     {'spillway_worker_dead_letters_total{subscription="billing",reason="attempts_exhausted"}': "3x30"},
     "25m", None),
    ("SpillwayCircuitOpen",
     {'spillway_worker_circuit_state{subscription="crm"}': "2x20"},
     "15m", {"severity": "ticket", "subscription": "crm"}),
    # Open, a failed half-open probe, open again: still one outage.
    ("SpillwayCircuitOpen",
     {'spillway_worker_circuit_state{subscription="crm"}': "2x5 1 2x10"},
     "15m", {"severity": "ticket", "subscription": "crm"}),
    # Open for 5 minutes only: a blip, not an outage.
    ("SpillwayCircuitOpen",
     {'spillway_worker_circuit_state{subscription="crm"}': "2x5 0x15"},
     "15m", None),
]


def runbook_anchors() -> set[str]:
    """The anchors GitHub gives the headings of docs/operations.md, where the runbooks are."""
    anchors = set()
    for line in (ROOT / "docs" / "operations.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def check_alerts() -> list[str]:
    """`promtool check rules` and `promtool test rules` on files/alerts.yaml, every alert with a
    case where it fires and one where it stays quiet."""
    rules_file = CHART / "files" / "alerts.yaml"
    rules = {
        r["alert"]: r
        for g in yaml.safe_load(rules_file.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    problems = []
    for name, rule in rules.items():
        for key in ("summary", "description", "runbook_url"):
            if key not in rule.get("annotations", {}):
                problems.append(f"alert {name}: no {key} annotation")
        anchor = rule.get("annotations", {}).get("runbook_url", "").partition("#")[2]
        if anchor not in runbook_anchors():
            problems.append(f"alert {name}: runbook #{anchor} is not a heading of docs/operations.md")
        fires = any(c[0] == name and c[3] is not None for c in ALERT_CASES)
        quiet = any(c[0] == name and c[3] is None for c in ALERT_CASES)
        if not (fires and quiet):
            problems.append(f"alert {name}: needs a case where it fires and one where it stays quiet")
    checked = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    if checked.returncode != 0:
        problems.append(f"promtool check rules: {checked.stdout}{checked.stderr}")
    tests = []
    for name, series, at, labels in ALERT_CASES:
        expected = []
        if labels is not None:
            annotations = {
                k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), v)
                for k, v in rules[name]["annotations"].items()
            }
            expected.append({"exp_labels": labels, "exp_annotations": annotations})
        tests.append({
            "interval": "1m",
            "input_series": [{"series": k, "values": v} for k, v in series.items()],
            "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": expected}],
        })
    with tempfile.TemporaryDirectory() as tmp:
        test_file = Path(tmp) / "alerts_test.yaml"
        test_file.write_text(yaml.safe_dump({
            "rule_files": [str(rules_file)],
            "evaluation_interval": "1m",
            "tests": tests,
        }, sort_keys=False))
        tested = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    if tested.returncode != 0:
        problems.append(f"promtool test rules:\n{tested.stdout}{tested.stderr}")
    print(f"{len(rules)} alerts: promtool check rules ok, {len(ALERT_CASES)} firing and quiet cases"
          + (" pass" if tested.returncode == 0 else " FAIL"))
    return problems


# === readme ===

# helm-docs (a Go binary) is the usual generator; it is not installable here, and this table is
# all the README needs: the keys in file order with their `# --` comments and defaults.
ENTRY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):")


def documented_keys() -> list[tuple[list[str], str]]:
    """The keys of values.yaml with a `# --` comment, in file order, with that comment."""
    documented = []
    path: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and comment:
            comment.append(stripped[1:].strip())
            continue
        match = ENTRY.match(line)
        if not match:
            comment = []
            continue
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, match["key"]))
        if comment:
            documented.append(([k for _, k in path], " ".join(comment)))
        comment = []
    return documented


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def values_table() -> str:
    defaults = default_values()
    table = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for keys, text in documented_keys():
        value: Any = defaults
        for k in keys:
            value = value[k]
        default = json.dumps(value).replace("|", r"\|")
        text = text.replace("|", r"\|")
        table.append(f"| `{'.'.join(keys)}` | {type_name(value)} | `{default}` | {text} |")
    return "\n".join(table) + "\n"


def type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), "null"
    )


def readme_text() -> str:
    template = (CHART / "README.md.tmpl").read_text()
    return template.replace("{{ values_table }}\n", values_table())


# === values.schema.json ===

# Generated from values.yaml (types from the defaults, descriptions from the `# --` comments),
# then these rules: keys whose contents the chart passes through take the schemas below instead
# of their defaults' shape, and the constraints are added to the generated ones. Paths match
# with fnmatch.
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
STRINGS = {"type": "array", "items": {"type": "string"}}
PORT = {"minimum": 1, "maximum": 65535}
PASS_THROUGH: dict[str, dict[str, Any]] = {
    "sources": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object"}},
    "subscriptions": {"type": "array", "items": {"type": "object"}},
    "kafka.properties": STRING_MAP,
    "signingSecrets.values": STRING_MAP,
    "*.config": {"type": "object"},
    "*.annotations": STRING_MAP,
    "*.podAnnotations": STRING_MAP,
    "*.podLabels": STRING_MAP,
    "*.nodeSelector": STRING_MAP,
    "*.additionalLabels": STRING_MAP,
    "metrics.dashboards.labels": STRING_MAP,
    "*.tolerations": {"type": "array", "items": {"type": "object"}},
    "*.affinity": {"type": "object"},
    "*.resources": {
        "type": "object",
        "additionalProperties": False,
        "required": ["requests", "limits"],
        "properties": {"requests": STRING_MAP, "limits": STRING_MAP},
    },
    "podSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "imagePullSecrets": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
    },
    "redis.nodes": {"type": "array", "items": {"type": "string", "pattern": "^rediss?://"}},
    "worker.ingressUrls": {"type": "array", "items": {"type": "string", "pattern": "^https?://"}},
    "networkPolicy.*Cidrs": STRINGS,
    "networkPolicy.subscribers.cidrs": STRINGS,
    "networkPolicy.subscribers.ports": {"type": "array", "items": {"type": "integer", **PORT}},
    "*.pdb.maxUnavailable": {"type": ["integer", "string"], "minimum": 0, "pattern": "^[0-9]+%$"},
    "console.tokens": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "role", "key"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "role": {"enum": ["viewer", "operator"]},
                "key": {"type": "string", "minLength": 1},
            },
        },
    },
    # The config's console.trusted_proxy, in its own snake_case keys.
    "console.trustedProxy": {
        "type": ["object", "null"],
        "additionalProperties": False,
        "required": ["user_header", "from"],
        "properties": {
            "user_header": {"type": "string", "minLength": 1},
            "groups_header": {"type": "string", "minLength": 1},
            "operators": STRINGS,
            "operator_groups": STRINGS,
            "from": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    },
    "console.prometheusUrl": {"type": "string", "pattern": "^(https?://.+)?$"},
    "console.networkPolicy.from": {"type": "array", "items": {"type": "object"}},
    "console.networkPolicy.*Cidrs": STRINGS,
}
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "image.repository": {"minLength": 1},
    "ingress.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "console.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "kafka.brokers": {"minLength": 1},
    "*.port": PORT,
    "*Port": PORT,
    "*.replicas": {"minimum": 0},
    "*.min*Replica*": {"minimum": 1},
    "*.max*Replica*": {"minimum": 1},
    "*Seconds": {"minimum": 0},
    "console.startupSeconds": {"minimum": 5},
    "kafka.deliveryTimeoutSeconds": {"minimum": 1},
    "*.targetCPUUtilizationPercentage": {"minimum": 1, "maximum": 100},
    "*.maxSkew": {"minimum": 1},
    "*.pollingInterval": {"minimum": 1},
    "*.cooldownPeriod": {"minimum": 0},
}


def schema_text() -> str:
    descriptions = {".".join(keys): text for keys, text in documented_keys()}
    schema = schema_of(default_values(), "", descriptions)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Spillway chart values", **schema}
    return json.dumps(schema, indent=2) + "\n"


def schema_of(value: Any, path: str, descriptions: dict[str, str]) -> dict[str, Any]:
    replaced = next((s for p, s in PASS_THROUGH.items() if fnmatchcase(path, p)), None)
    if replaced is not None:
        node = dict(replaced)
    elif isinstance(value, dict):
        node = {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: schema_of(v, f"{path}.{k}" if path else k, descriptions) for k, v in value.items()
            },
        }
    elif isinstance(value, list):
        node = {"type": "array", "items": schema_of(value[0], f"{path}[]", descriptions) if value else {}}
    else:
        node = {"type": type_name(value).replace("int", "integer").replace("bool", "boolean")}
    for pattern, extra in CONSTRAINTS.items():
        if fnmatchcase(path, pattern):
            node.update(extra)
    if path in descriptions:
        node["description"] = descriptions[path]
    return node


# === manifests ===


HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def without_helm_labels(node: Any) -> Any:
    """Plain manifests are not managed by Helm: its own labels are dropped (no selector uses them)."""
    if isinstance(node, dict):
        return {
            k: without_helm_labels(v)
            for k, v in node.items()
            if not (k in HELM_LABELS and isinstance(v, str))
        }
    if isinstance(node, list):
        return [without_helm_labels(v) for v in node]
    return node


def manifest_files() -> dict[Path, str]:
    objects = [without_helm_labels(o) for o in render({})]
    header = (
        "# Generated from helm/spillway with its default values by `dev/chart.sh manifests`;\n"
        "# do not edit: change the chart, or patch these with kustomize overlays.\n"
    )
    kustomization = header + yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["spillway.yaml"],
        },
        sort_keys=False,
    )
    return {
        MANIFESTS / "spillway.yaml": header + to_yaml_stream(objects),
        MANIFESTS / "kustomization.yaml": kustomization,
    }


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "render":
        as_json = "--json" in argv[1:]
        objects = render(load_values([a for a in argv[1:] if a != "--json"]))
        sys.stdout.write(json.dumps(objects) if as_json else to_yaml_stream(objects))
        return 0
    if command == "check":
        problems = check()
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print("chart: ok" if not problems else f"chart: {len(problems)} problems", file=sys.stderr)
        return 1 if problems else 0
    if command == "generate":
        (CHART / "values.schema.json").write_text(schema_text())
        (CHART / "README.md").write_text(readme_text())
        for path, text in dashboard_files().items():
            path.write_text(text)
        return 0
    if command == "manifests":
        MANIFESTS.mkdir(parents=True, exist_ok=True)
        for path, text in manifest_files().items():
            path.write_text(text)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
