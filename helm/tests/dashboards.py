"""Spillway's Grafana dashboards, declared once here and written to helm/spillway/dashboards/ by
`dev/chart.sh generate` (`dev/chart.sh check` fails when the files are stale).

Four dashboards: the overview by source; dedupe and verification; the Kafka and Redis
dependencies; the workers. Every panel queries only metrics of the catalog
(crates/telemetry/src/catalog.rs; a Rust test checks that), and the end-to-end test
crates/cli/tests/e2e/dashboards.rs runs each query against a real Prometheus scraping a loaded
ingress and worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "spillway" / "dashboards"

RATE = "$__rate_interval"
SRC = 'source=~"$source"'
SUB = 'subscription=~"$subscription"'
FIVE_XX = 'outcome=~"kafka_unavailable|redis_unavailable|overloaded|internal"'


def q(expr: str, legend: str = "") -> dict[str, str]:
    return {"expr": expr, "legend": legend}


def panel(title: str, unit: str, *targets: dict[str, str], kind: str = "timeseries",
          description: str = "") -> dict[str, Any]:
    return {"title": title, "unit": unit, "targets": list(targets), "type": kind,
            "description": description}


def quantiles(metric: str, by: str, selector: str = "") -> list[dict[str, str]]:
    """p50 and p99 of a histogram, by one label."""
    sel = "{" + selector + "}" if selector else ""
    return [
        q(f"histogram_quantile({p}, sum by ({by}, le) (rate({metric}_bucket{sel}[{RATE}])))",
          f"p{int(p * 100)} {{{{{by}}}}}")
        for p in (0.5, 0.99)
    ]


def variable(name: str, label: str, metric: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": f"label_values({metric}, {name})", "refId": f"{name}-values"},
        "definition": f"label_values({metric}, {name})",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
    }


SOURCE_VAR = variable("source", "Source", "spillway_http_requests_total")
SUBSCRIPTION_VAR = variable("subscription", "Subscription", "spillway_worker_deliveries_total")

# (file stem, title, description, variables, rows of panels)
DASHBOARDS: list[tuple[str, str, str, list[dict[str, Any]], list[list[dict[str, Any]]]]] = [
    ("spillway-overview", "Spillway / Overview",
     "Ingest by source: rate, errors, latency; and whether the workers keep up.",
     [SOURCE_VAR],
     [
         [
             panel("Accepted events", "reqps",
                   q(f'sum(rate(spillway_http_requests_total{{outcome="accepted",{SRC}}}[{RATE}]))',
                     "accepted"), kind="stat"),
             panel("Server errors (5xx share)", "percentunit",
                   q(f"sum(rate(spillway_http_requests_total{{{FIVE_XX},{SRC}}}[{RATE}])) / "
                     f"sum(rate(spillway_http_requests_total{{{SRC}}}[{RATE}]))", "5xx"),
                   kind="stat", description="Answers that ask the sender to retry: Kafka or Redis unavailable, overload, bugs."),
             panel("Answer latency p99", "s",
                   q(f"histogram_quantile(0.99, sum by (le) (rate(spillway_http_request_duration_seconds_bucket{{{SRC}}}[{RATE}])))",
                     "p99"), kind="stat"),
             panel("Consumer lag", "short",
                   q("sum(spillway_consumer_lag_messages)", "lag"), kind="stat",
                   description="Records accepted and not yet consumed by the workers."),
         ],
         [
             panel("Requests by source and outcome", "reqps",
                   q(f"sum by (source, outcome) (rate(spillway_http_requests_total{{{SRC}}}[{RATE}]))",
                     "{{source}} {{outcome}}")),
             panel("Server errors by source (5xx share)", "percentunit",
                   q(f"sum by (source) (rate(spillway_http_requests_total{{{FIVE_XX},{SRC}}}[{RATE}])) / "
                     f"sum by (source) (rate(spillway_http_requests_total{{{SRC}}}[{RATE}]))", "{{source}}")),
         ],
         [
             panel("Answer latency by source", "s",
                   *quantiles("spillway_http_request_duration_seconds", "source", SRC)),
             panel("In flight and shed", "short",
                   q("sum(spillway_http_in_flight_requests)", "in flight"),
                   q(f"sum(rate(spillway_http_shed_requests_total{{{SRC}}}[{RATE}]))", "shed / s")),
         ],
         [
             panel("Accepted vs delivered", "reqps",
                   q(f'sum(rate(spillway_http_requests_total{{outcome="accepted"}}[{RATE}]))', "accepted"),
                   q(f'sum(rate(spillway_worker_deliveries_total{{outcome="delivered"}}[{RATE}]))', "delivered"),
                   description="Delivered counts each subscription: with fan-out it is a multiple of accepted."),
             panel("Running processes", "short",
                   q("count by (process, version) (spillway_build_info)", "{{process}} {{version}}")),
         ],
     ]),
    ("spillway-dedupe-verification", "Spillway / Dedupe and verification",
     "Who is refused and why; how many retries are folded into their first delivery.",
     [SOURCE_VAR],
     [
         [
             panel("Verification failures by source and reason", "reqps",
                   q(f"sum by (source, reason) (rate(spillway_verification_failures_total{{{SRC}}}[{RATE}]))",
                     "{{source}} {{reason}}")),
             panel("Verification failure share by source", "percentunit",
                   q(f"sum by (source) (rate(spillway_verification_failures_total{{{SRC}}}[{RATE}])) / "
                     f"sum by (source) (rate(spillway_http_requests_total{{{SRC}}}[{RATE}]))", "{{source}}"),
                   description="A spike for one source: a rotated secret not yet configured, or forged traffic."),
         ],
         [
             panel("Duplicates folded by source", "reqps",
                   q(f"sum by (source, state) (rate(spillway_dedupe_hits_total{{{SRC}}}[{RATE}]))",
                     "{{source}} {{state}}")),
             panel("Duplicate share by source", "percentunit",
                   q(f"sum by (source) (rate(spillway_dedupe_hits_total{{{SRC}}}[{RATE}])) / "
                     f"sum by (source) (rate(spillway_http_requests_total{{{SRC}}}[{RATE}]))", "{{source}}")),
         ],
         [
             panel("Dedupe fail-open bypasses", "reqps",
                   q(f"sum by (source) (rate(spillway_dedupe_fail_open_events_total{{{SRC}}}[{RATE}]))",
                     "{{source}}"),
                   description="Events accepted without a claim while Redis was unavailable: duplicates may pass."),
             panel("Claims in flight", "short",
                   q("sum(spillway_dedupe_in_flight_claims)", "claims")),
         ],
         [
             panel("Body size by source", "bytes",
                   *quantiles("spillway_http_request_body_bytes", "source", SRC)),
             panel("Refused requests by outcome", "reqps",
                   q(f'sum by (outcome) (rate(spillway_http_requests_total{{outcome=~"unauthorized|bad_request|unknown_source|method_not_allowed|too_large|body_timeout|loop_detected",{SRC}}}[{RATE}]))',
                     "{{outcome}}")),
         ],
     ]),
    ("spillway-dependencies", "Spillway / Kafka and Redis",
     "The two dependencies of every accepted event, as the ingress sees them.",
     [],
     [
         [
             panel("Kafka produce latency by topic", "s",
                   *quantiles("spillway_kafka_produce_duration_seconds", "topic")),
             panel("Kafka produce errors by reason", "reqps",
                   q(f"sum by (topic, reason) (rate(spillway_kafka_produce_errors_total[{RATE}]))",
                     "{{topic}} {{reason}}")),
         ],
         [
             panel("Producer queue", "short",
                   q("sum(spillway_kafka_producer_queue_messages)", "queued"),
                   description="Records handed to librdkafka and not yet acknowledged by the brokers."),
             panel("Answers refused for a dependency", "reqps",
                   q(f'sum by (outcome) (rate(spillway_http_requests_total{{outcome=~"kafka_unavailable|redis_unavailable"}}[{RATE}]))',
                     "{{outcome}}")),
         ],
         [
             panel("Redis command latency", "s",
                   *quantiles("spillway_redis_command_duration_seconds", "command")),
             panel("Redis errors by command", "reqps",
                   q(f"sum by (command) (rate(spillway_redis_errors_total[{RATE}]))", "{{command}}")),
         ],
         [
             panel("Dedupe commands on direct routes", "reqps",
                   q(f'sum(rate(spillway_redis_command_duration_seconds_count{{command=~"claim|commit|release"}}[{RATE}]))',
                     "claims, commits, releases"),
                   q(f"sum(rate(spillway_redis_direct_commands_total[{RATE}]))", "on direct routes"),
                   description="Commands sent straight to their key's primary, past the cluster client's "
                               "driver (cheaper per command). The two lines apart for long: the routes "
                               "cannot be built or used (the addresses the cluster announces do not "
                               "reach the nodes); see the fallbacks."),
             panel("Direct-route fallbacks", "reqps",
                   q(f"sum(rate(spillway_redis_direct_fallbacks_total[{RATE}]))", "fallbacks"),
                   description="Commands a direct connection refused as misrouted or failed, sent "
                               "through the cluster connection instead. A few after a failover or "
                               "resharding; a steady rate means routes are built and refused again."),
         ],
     ]),
    ("spillway-workers", "Spillway / Workers",
     "Delivery to subscribers: outcomes, latency, lag, retries, dead letters, circuit breakers.",
     [SUBSCRIPTION_VAR],
     [
         [
             panel("Deliveries by subscription and outcome", "reqps",
                   q(f"sum by (subscription, outcome) (rate(spillway_worker_deliveries_total{{{SUB}}}[{RATE}]))",
                     "{{subscription}} {{outcome}}")),
             panel("Delivery success share", "percentunit",
                   q(f'sum by (subscription) (rate(spillway_worker_deliveries_total{{outcome="delivered",{SUB}}}[{RATE}])) / '
                     f"sum by (subscription) (rate(spillway_worker_deliveries_total{{{SUB}}}[{RATE}]))",
                     "{{subscription}}")),
         ],
         [
             panel("Delivery latency", "s",
                   *quantiles("spillway_worker_delivery_duration_seconds", "subscription", SUB)),
             panel("Consumer lag by topic", "short",
                   q("sum by (topic) (spillway_consumer_lag_messages)", "{{topic}}")),
         ],
         [
             panel("Retries by subscription", "reqps",
                   q(f"sum by (subscription) (rate(spillway_worker_retries_total{{{SUB}}}[{RATE}]))",
                     "{{subscription}}")),
             panel("Dead letters by subscription and reason", "short",
                   q(f"sum by (subscription, reason) (increase(spillway_worker_dead_letters_total{{{SUB}}}[{RATE}]))",
                     "{{subscription}} {{reason}}")),
         ],
         [
             panel("Circuit breakers (0 closed, 1 half-open, 2 open)", "short",
                   q(f"max by (subscription) (spillway_worker_circuit_state{{{SUB}}})", "{{subscription}}")),
         ],
     ]),
]


def dashboard_json(stem: str, title: str, description: str, variables: list[dict[str, Any]],
                   rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    panels = []
    y = 0
    next_id = 1
    for row in rows:
        width = 24 // len(row)
        height = 4 if all(p["type"] == "stat" for p in row) else 8
        for i, p in enumerate(row):
            panels.append({
                "id": next_id,
                "type": p["type"],
                "title": p["title"],
                "description": p["description"],
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"x": i * width, "y": y, "w": width, "h": height},
                "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
                "options": ({"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
                            if p["type"] == "stat"
                            else {"legend": {"displayMode": "list", "placement": "bottom"}}),
                "targets": [
                    {"refId": chr(ord("A") + n), "expr": t["expr"], "legendFormat": t["legend"]}
                    for n, t in enumerate(p["targets"])
                ],
            })
            next_id += 1
        y += height
    return {
        "uid": stem,
        "title": title,
        "description": description,
        "tags": ["spillway"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [{"title": "Spillway", "type": "dashboards", "tags": ["spillway"], "asDropdown": True}],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            *variables,
        ]},
        "panels": panels,
    }


def dashboard_files() -> dict[Path, str]:
    return {
        DASHBOARDS_DIR / f"{stem}.json":
            json.dumps(dashboard_json(stem, title, description, variables, rows), indent=2) + "\n"
        for stem, title, description, variables, rows in DASHBOARDS
    }
