"""The part of docs/benchmarks.md that compares Spillway's ingress with the receiver a team
writes by hand in Node.js (`spillway-loadgen node`'s node.json): its row in the goals table
and its section."""

from __future__ import annotations

import json
from pathlib import Path

# Issue 21's aim: a hand-written receiver must be far enough behind for a team to switch.
RATIO_GOAL = 8


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def ratio(r: dict, node: dict) -> str:
    """The ingress's highest rate over the receiver's: a range when the receiver's lies between
    the rate it held and the one that ended its sweep, an upper bound when it held them all."""
    held, missed = node["max_rate"], node.get("first_missed")
    if not missed:
        return f"at most {r['max_rate'] / held:.1f}x"
    return f"{r['max_rate'] / missed:.1f}-{r['max_rate'] / held:.1f}x"


def rates(node: dict) -> str:
    """What the receiver held and what ended its sweep."""
    missed = node.get("first_missed")
    return f"held {node['max_rate']:.0f} /s" + (
        f" and missed {missed:.0f} /s" if missed else ", every rate of its sweep"
    )


def row(r: dict, node: dict | None) -> tuple[str, bool]:
    """The goals table's value, and whether the goal is met by the lower end of the range
    (unknown, so not met, when the receiver held every rate)."""
    if node is None:
        return "not run", False
    if node["max_rate"] <= 0:
        return "the Node.js receiver held no rate", False
    value = f"{ratio(r, node)} ({r['max_rate']:.0f} /s; the Node.js receiver {rates(node)})"
    missed = node.get("first_missed")
    return value, bool(missed) and r["max_rate"] >= RATIO_GOAL * missed


def common_rate(steps: list[dict], node_steps: list[dict]) -> float | None:
    """The highest rate both the ingress's sweep and the receiver's held: CPU per request falls
    as the rate rises, so the two are compared at one rate."""
    held = lambda ss, target: {s["rate"] for s in ss if s["target"] == target and s["case"] == "sweep" and s["held"]}
    both = held(steps, "ingress") & held(node_steps, "node")
    return max(both) if both else None


def held_text(step: dict) -> str:
    if step["held"]:
        return "yes"
    return "no, measured again" if step["case"] == "sweep (missed)" else "no"


def section(r: dict, steps: list[dict], node: dict | None) -> list[str]:
    if node is None:
        return []
    sweep = [s for s in node["steps"] if s["case"] in ("sweep", "sweep (missed)")]
    rate = common_rate(steps, node["steps"])
    at = lambda ss, target: next(
        s for s in ss if s["target"] == target and s["case"] == "sweep" and s["rate"] == rate and s["held"]
    )
    lines = [
        "### A receiver written by hand in Node.js",
        "",
        "loadtest/node-receiver is the receiver a team writes without Spillway: express reads the",
        "body, the provider's signature is checked over it (the three schemes of the mix), the",
        "event's id is claimed with `SET NX` in the Redis Cluster (ioredis, released if the",
        "produce fails), the body is produced with `acks=all` (kafkajs, one produce request per",
        "record) and the answer is 202. One Node.js process, as such receivers usually run (one",
        "JavaScript thread; V8 and libuv add a few helper threads, and its CPU per request counts",
        "them all, as the ingress's does). It keeps no metrics, logs or limits, writes no envelope or",
        "trace headers, makes no commit after the answer and no second claim for GitHub's",
        "scheme. `spillway-loadgen node` sweeps it with the same load on a broker of its own,",
        "started fresh as the ingress's was, at finer rates than the ingress's sweep (its highest",
        "rate is the ratio's denominator), after a 2 s warm-up step that is not kept (V8",
        "compiling the hot path); a rate missed is measured once more, as in the ingress's sweep.",
        "Its records carry no Spillway envelope, so the steps are not reconciled with Kafka; its",
        "test (loadtest/tests/loadgen.rs) checks that every 202 is one record keyed by its event id.",
        "",
        "| rate | achieved | p50 | p99 | CPU per request | resident | held |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {s['rate']:.0f} /s | {s['achieved']:.0f} /s | {s['p50_ms']:.2f} ms | {s['p99_ms']:.2f} ms | "
            f"{s['cpu_us_per_req']:.1f} µs | {s['rss_mib']:.1f} MiB | {held_text(s)} |"
            for s in sweep
        ),
        "",
        (
            f"Spillway's ingress held {r['max_rate']:.0f} /s: {ratio(r, node)} the Node.js receiver, which "
            f"{rates(node)} (goal: {RATIO_GOAL}x, by the lower end)."
            if node["max_rate"] > 0
            else "The Node.js receiver held none of its rates."
        ),
    ]
    if rate:
        ingress_at, node_at = at(steps, "ingress"), at(node["steps"], "node")
        lines.append(
            f"At {rate:.0f} /s, the highest rate both held, the ingress used {ingress_at['cpu_us_per_req']:.1f} µs of "
            f"CPU per request and the Node.js receiver {node_at['cpu_us_per_req']:.1f} µs "
            f"({node_at['cpu_us_per_req'] / max(ingress_at['cpu_us_per_req'], 0.001):.1f}x)."
        )
    return lines + [""]
