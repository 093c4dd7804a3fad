#!/usr/bin/env python3
"""Turns `spillway-loadgen bench` results and the criterion micro benchmarks into
docs/benchmarks.md and docs/benchmarks-latency.png, and prints the summary table with the
headline as its last line. Run by `make bench` (dev/bench.sh) with the bench tools' Python.
What was measured by hand, not by each run, is kept in loadtest/measured-by-hand.md and put
on the page as it is."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from report_fleet import console, fleet
from report_guard import guard, worker, worker_targets, write_committed
from report_node import load as load_node, row as node_row, section as node_section
from report_overload import answered_met, answered_row, recovery_met, recovery_row, tries as overload_tries
from report_profile import profile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks-latency.png"
COMMITTED = ROOT / "docs" / "benchmarks.json"
CRITERION = ROOT / "target" / "criterion"

TARGETS = [
    ("sustained ingest at 1 KiB, verified, no loss", "sustained", ">= 10000 /s"),
    ("highest rate held with p99 under 50 ms", "max_rate", "(none set)"),
    ("ingress CPU per request vs bare, at half the highest rate (medians of three steps each)", "cpu_ratio", "<= 2.5x"),
    ("the floor's CPU per request vs bare (one claim, one produce, nothing else)", "floor_ratio", "(none set)"),
    ("ingress CPU per request vs the floor's", "ingress_vs_floor", "(none set)"),
    ("p99 at half the highest rate (median of three steps)", "p99_ms_at_half", "< 20 ms"),
    ("memory per ingress process", "rss_mib_at_max", "< 100 MiB"),
    ("overload at twice the highest rate: answered (202 or 503) within 1 s", "overload_answered", ">= 95%"),
    ("recovery once the overload drops to half the rate", "overload_recovery", "<= 10 s"),
    ("highest rate held vs a receiver written by hand in Node.js", "node_ratio", ">= 8x"),
]


def command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return [
        f"- CPU: {cpu}, {command('nproc')} cores (shared by the broker, the Redis Cluster, the ingress and the generator)",
        f"- Memory: {mem_kib / 1024 / 1024:.0f} GiB; kernel {platform.release()}",
        f"- {command('rustc', '--version')}; release build",
        f"- Kafka protocol: {command(str(Path.home() / '.cache/spillway/tansu-0.6.0/bin/tansu'), '--version') or 'tansu'} (memory storage); "
        f"Redis: {command('redis-server', '--version').split(' ')[2] if command('redis-server', '--version') else 'unknown'} (6-node cluster)",
    ]


def micro() -> list[str]:
    rows = ["| benchmark | mean |", "|---|---|"]
    # Groups nest one or two levels (`verify/github/1024`, `schema_check/json_valid`).
    for estimates in sorted(p for p in CRITERION.rglob("new/estimates.json") if "report" not in p.parts):
        name = "/".join(estimates.parts[len(CRITERION.parts) : -2])
        mean_ns = json.loads(estimates.read_text())["mean"]["point_estimate"]
        rows.append(f"| {name} | {mean_ns / 1000:.2f} µs |" if mean_ns >= 1000 else f"| {name} | {mean_ns:.0f} ns |")
    return rows if len(rows) > 2 else ["(no criterion results found: run `make bench`)"]


def table(steps: list[dict]) -> list[str]:
    rows = [
        "| target | case | offered /s | achieved /s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | wrong answers | errors | lost | CPU µs/req | RSS MiB | held |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lost = "-" if s["lost"] is None else str(s["lost"])
        rows.append(
            f"| {s['target']} | {s['case']} | {s['rate']:.0f} | {s['achieved']:.0f} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | "
            f"{s['p99_ms']:.2f} | {s['p999_ms']:.2f} | {s['max_ms']:.1f} | {s['unexpected']} | {s['errors']} | {lost} | "
            f"{s['cpu_us_per_req']:.1f} | {s['rss_mib']:.1f} | {'yes' if s['held'] else 'no'} |"
        )
    return rows


def bare_line(r: dict, steps: list[dict]) -> str:
    bare = [s for s in steps if s["target"] == "bare" and s["case"] == "sweep"]
    topped = bool(bare) and all(s["held"] for s in bare)
    held = f"{r['bare_max_rate']:.0f} /s"
    if topped:
        return (
            f"The bare baseline held every rate of the sweep, up to {held}: its limit (and the "
            f"generator's, which shares the cores) lies higher, so ingest's "
            f"{r['max_rate'] / max(r['bare_max_rate'], 1):.2f} of it is an upper bound."
        )
    return f"Highest rate held by the bare baseline: {held}; ingest reaches {r['max_rate'] / max(r['bare_max_rate'], 1):.2f} of it."


def half_medians(steps: list[dict], target: str) -> dict | None:
    """The medians of `target`'s steps at the half rate (its p50 and p99)."""
    half = [s for s in steps if s["target"] == target and s["case"] == "half"]
    if not half:
        return None
    return {key: statistics.median(s[key] for s in half) for key in ("p50_ms", "p99_ms")}


def floor_section(r: dict, steps: list[dict]) -> list[str]:
    """What the floor server is, what each of its round trips costs, and what that says about
    the 2.5x goal."""
    floor, bare, ingress = r.get("floor_cpu_us_per_req") or 0.0, r["bare_cpu_us_per_req"], r["cpu_us_per_req"]
    if not floor or not bare:
        return []
    ratio = floor / bare
    verdict = (
        [
            f"A receiver that makes only these two round trips, with these libraries, already costs {ratio:.2f}x",
            "the bare server here: the goal of 2.5x lies below what the work itself costs on this machine.",
        ]
        if ratio > 2.5
        else [
            f"The floor is {ratio:.1f}x the bare server: the 2.5x goal leaves",
            f"{2.5 * bare - floor:.1f} µs for what Spillway adds on top of it.",
        ]
    )
    alone = {s["case"]: s for s in steps if s["target"] == "floor" and s["case"] != "half"}
    committed = alone.get("committed")
    if committed:
        cost = committed["cpu_us_per_req"]
        verdict += [
            "A receiver that keeps a claim past its 202 (so that a sender's retry after it is",
            "still dropped) also commits it, here one `SET XX` after the answer: the floor with",
            f"its commit used {cost:.1f} µs in one step, {cost / bare:.2f}x the bare server"
            + (", above the goal before anything else is done." if cost > 2.5 * bare else "."),
        ]
    at_half = {target: half_medians(steps, target) for target in ("bare", "floor", "ingress")}
    latency = lambda m: f"{m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms" if m else " | "
    rows = [
        f"| floor, {label} | {s['cpu_us_per_req']:.1f} µs | {s['cpu_us_per_req'] - bare:+.1f} µs | {latency(s)} |"
        for case, label in (("claim only", "the claim alone (one step)"), ("produce only", "the produce alone (one step)"))
        if (s := alone.get(case))
    ]
    return [
        "### The floor: what " + ("one claim, one produce and one commit cost" if committed else "one claim and one produce cost"),
        "",
        "`spillway-loadgen floor` (loadtest/src/floor.rs) is the least a receiver with Spillway's",
        "guarantees does per request, written by hand on the same libraries: hyper reads the body,",
        "redis-rs claims a new key with one `SET NX` on a connection to the key's primary,",
        "rust-rdkafka produces the body (idempotent, `acks=all`, the same linger, topics shaped as",
        "the sources') and the answer is a 202 once the broker has it. It verifies no signature,",
        "writes no headers or envelope, keeps no metrics or logs, commits nothing after the answer",
        ("(but in one step, below) " if committed else "") + "and limits nothing. It runs at the ingress's half rate after the",
        "ingress's last step, on the same broker (so that what it writes does not slow the broker",
        "down for the ingress's steps), and like the bare server on glibc's allocator (the ingress",
        "uses jemalloc; see \"The allocator\" below: no difference beyond the noise).",
        f"It used {floor:.1f} µs per request against the bare server's {bare:.1f} µs.",
        *verdict,
        "What Spillway adds on top of the floor is",
        f"{ingress - floor:+.1f} µs ({ingress / floor:.2f}x the floor): signature verification, the envelope and trace",
        "headers, admission and limits, metrics, the commit after the answer, and for GitHub's",
        "scheme (signed without an id or a timestamp) a second claim, on the request's fingerprint"
        + (
            f" ({ingress - committed['cpu_us_per_req']:+.1f} µs, {ingress / committed['cpu_us_per_req']:.2f}x, over the floor with its commit)."
            if committed
            else "."
        ),
        "The bench runs the ingress with `RUST_LOG=warn`, so it writes no access log; with the",
        "default (`info`) the access log adds about 5-10 µs a request (\"The log writer\" below).",
        "Each server ran three steps at the half rate, and the figures are their medians (the",
        "headline's: CPU per request falls as the rate rises, and one step of a shared machine is",
        "noisy); the claim alone, the produce alone"
        + (", and both with the commit ran one step each:" if committed else " ran one step each:"),
        "",
        "| server at the half rate | CPU per request | over the bare server | p50 | p99 |",
        "|---|---|---|---|---|",
        f"| bare: the HTTP exchange | {bare:.1f} µs | - | {latency(at_half['bare'])} |",
        *rows,
        f"| floor, the claim and the produce | {floor:.1f} µs | {floor - bare:+.1f} µs | {latency(at_half['floor'])} |",
        *(
            [f"| floor, the claim, the produce and the commit (one step) | {committed['cpu_us_per_req']:.1f} µs | {committed['cpu_us_per_req'] - bare:+.1f} µs | {latency(committed)} |"]
            if committed
            else []
        ),
        f"| Spillway's ingress | {ingress:.1f} µs | {ingress - bare:+.1f} µs | {latency(at_half['ingress'])} |",
        "",
    ]


def limits(r: dict, steps: list[dict]) -> list[str]:
    # The highest rate held, where every request was accepted: the sustained step's cost per
    # request is lowered by the cheap 503s it sheds.
    held = [
        s for s in steps
        if s["target"] == "ingress" and s["case"] == "sweep" and s["held"] and s["rate"] == r["max_rate"]
    ]
    lines = [
        "Everything shares two cores: the broker, the six Redis nodes, the ingress and the load",
        "generator itself. The ingress's own cost is its CPU time per request (from /proc):",
    ]
    if held:
        step = held[-1]
        cores = step["achieved"] * step["cpu_us_per_req"] / 1e6
        lines.append(
            f"at {step['achieved']:.0f}/s, the highest rate held, it used {step['cpu_us_per_req']:.0f} µs per request, "
            f"{cores:.2f} of a core, so one ingress core would carry about "
            f"{1e6 / max(step['cpu_us_per_req'], 1):.0f} requests/s on its own."
        )
    else:
        lines.append("no rate of the sweep was held, so there is no cost per request to read here.")
    lines += [
        "The rest of the two cores go to the local broker (the largest share: tansu spends well over",
        "100 µs of CPU per record), the generator and Redis; that, not the ingress, is what bends",
        "the latency curve first. Within the ingress, the Redis Cluster client is the largest cost:",
        "in a profiling run at 4,000/s (2026-11-23) the same sources with `dedupe: { from: none }`",
        "used 47 µs per request against 90 µs with dedupe, the claim and the commit being two",
        "round trips through redis-rs. A perf profile at 8,000/s put 46% of the ingress's time in",
        "the kernel (socket I/O and thread wake-ups for HTTP, Redis and Kafka) and spread the rest",
        "thinly. The allocator is jemalloc: see \"The allocator\" below for why.",
    ]
    return lines


# Not re-measured by each run: what was measured by hand, each section with its date and method.
MEASURED_BY_HAND = Path(__file__).with_name("measured-by-hand.md")


def plot(steps: list[dict]) -> None:
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for target, style in (("ingress", "-"), ("bare", "--")):
        sweep = [s for s in steps if s["target"] == target and s["case"] == "sweep"]
        if not sweep:
            continue
        rates = [s["rate"] for s in sweep]
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
            ax.plot(rates, [s[key] for s in sweep], style, marker="o", label=f"{target} {label}")
    ax.axhline(50, color="grey", linewidth=0.8, linestyle=":", label="50 ms bound")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("latency from intended send time (ms)")
    ax.set_title("Spillway ingress vs bare hyper baseline, one process, 1 KiB, 2 shared cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT)


def committed_before(committed: str | None) -> Path:
    """docs/benchmarks.json as committed before this run: the file given (dev/bench.sh gives
    git's HEAD version), else git's HEAD version, else the working tree's."""
    if committed:
        return Path(committed)
    shown = subprocess.run(
        ["git", "show", "HEAD:docs/benchmarks.json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        return COMMITTED
    path = ROOT / "target" / "bench" / "committed-head.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shown.stdout)
    return path


def main(path: str, committed: str | None = None) -> int:
    before = committed_before(committed)
    r = json.loads(Path(path).read_text())
    bench_dir = Path(path).parent
    quick_path = bench_dir / "quick.json"
    steps = r["steps"]
    node = load_node(bench_dir / "node.json")
    node_value, node_met = node_row(r, node)
    cpu_ratio = r["cpu_us_per_req"] / max(r["bare_cpu_us_per_req"], 0.001)
    floor_cpu = r.get("floor_cpu_us_per_req") or 0.0
    values = {**r, "cpu_ratio": cpu_ratio}
    achieved, sustained_p99, sustained_lost = r["sustained"] or (0.0, 0.0, 0)
    sustained_step = next((s for s in steps if s["case"] == "sustained"), None)
    # Sent is not ingested: a request answered other than 202 (shed with a 503 under load) was
    # not taken in, so the accepted rate is what the goal is held against.
    refused = sustained_step["unexpected"] + sustained_step["errors"] if sustained_step else 0
    accepted = achieved * (1 - refused / max(sustained_step["requests"], 1)) if sustained_step else 0.0
    shown = {
        "sustained": f"{accepted:.0f} /s accepted of {sustained_step['rate']:.0f} offered ({refused} not accepted, p99 {sustained_p99:.0f} ms, lost {sustained_lost})"
        if sustained_step
        else "not run",
        "max_rate": f"{r['max_rate']:.0f} /s",
        "cpu_ratio": f"{cpu_ratio:.1f}x ({r['cpu_us_per_req']:.1f} vs {r['bare_cpu_us_per_req']:.1f} µs)",
        "floor_ratio": (
            f"{floor_cpu / max(r['bare_cpu_us_per_req'], 0.001):.1f}x ({floor_cpu:.1f} vs {r['bare_cpu_us_per_req']:.1f} µs)"
            if floor_cpu
            else "not run"
        ),
        "ingress_vs_floor": (
            f"{r['cpu_us_per_req'] / floor_cpu:.2f}x ({r['cpu_us_per_req']:.1f} vs {floor_cpu:.1f} µs)"
            if floor_cpu
            else "not run"
        ),
        "p99_ms_at_half": f"{r['p99_ms_at_half']:.2f} ms",
        "rss_mib_at_max": f"{r['rss_mib_at_max']:.1f} MiB",
        "overload_answered": answered_row(r.get("overload")),
        "overload_recovery": recovery_row(r.get("overload")),
        "node_ratio": node_value,
    }
    met = {
        "sustained": bool(sustained_step) and sustained_step["rate"] >= 10000 and accepted >= 0.99 * sustained_step["rate"]
        and sustained_lost == 0,
        "max_rate": True,
        "floor_ratio": True,
        "ingress_vs_floor": True,
        "cpu_ratio": cpu_ratio <= 2.5,
        "p99_ms_at_half": r["p99_ms_at_half"] < 20,
        "rss_mib_at_max": r["rss_mib_at_max"] < 100,
        "overload_answered": bool(r.get("overload")) and answered_met(r["overload"]),
        "overload_recovery": bool(r.get("overload")) and recovery_met(r["overload"]),
        "node_ratio": node_met,
    }
    plot(steps)
    doc = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (loadtest/report.py); every figure below is from the run that wrote",
        "this page. Throughput on a shared machine moves from run to run, so the ingress is measured",
        "against a bare hyper server on the same machine in the same run, and as CPU time per request",
        "of the server process (from /proc), which the broker and Redis sharing the cores do not distort.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Where we stand",
        "",
        "| target | measured | goal | met |",
        "|---|---|---|---|",
        *[
            f"| {label} | {shown[key]} | {goal} | {('yes' if met[key] else 'no') if goal != '(none set)' else '-'} |"
            for label, key, goal in TARGETS
        ],
        *[
            f"| {label} | {measured} | {goal} | {'yes' if ok else 'no'} |"
            for label, measured, goal, ok in worker_targets(bench_dir / "worker.json")
        ],
        "",
        bare_line(r, steps),
        "",
        *floor_section(r, steps),
        *node_section(r, steps, node),
        "## How it is measured",
        "",
        "`spillway-loadgen` sends at a constant arrival rate (open model) on up to 1024 HTTP/1.1",
        "keep-alive connections, and measures each request's latency from the moment it was due, so",
        "a server that falls behind shows its queueing instead of slowing the generator down. The",
        "requests are 1 KiB JSON webhooks signed by three providers' schemes in turn (Standard",
        "Webhooks, GitHub, Stripe), each a new event, deduplicated on the Redis Cluster and written",
        "to Kafka with `acks=all`. Each step holds its rate for a few seconds; a rate is *held* when",
        "p99 stays under 50 ms, every request gets the right answer, the generator sends at least 95%",
        "of the rate, and `--verify` finds every acknowledged event in Kafka exactly once (`lost`",
        "counts anything else). The sweep stops at the first rate not held. Then the ingress runs at",
        "half its highest rate, three steps whose medians are the headline's (p99, CPU per request; the",
        "floor and the bare server run three steps at that rate too), then with 50% duplicates",
        "(retries of earlier events: 200, or 503 `in_flight`",
        "while the original is in flight, are the right answers), and finally at 10,000/s for 20 s",
        "whatever its latency (the *sustained* step), verified like the others. Last, the *overload*",
        "step offers twice the highest rate held for 20 s and then half of it for 20 s: it counts the",
        "requests answered within one second (a fast 503 with Retry-After counts; a sender's timeout",
        "does not), the p99 of those admitted, and the seconds until every one-second window of",
        "answers is accepted (no 503) with its p99 within the bound again, the test a held rate",
        "passes. Both its phases send on up to 4000 connections (`--overload-connections`): by Little's law an ingress answering X",
        "requests/s within L holds X x L of them, and with 1024 senders an ingress serving about",
        "9,000/s within about 115 ms never saw the overload, which queued in the generator instead",
        "(2026-12-04: nothing refused, 5.8% answered within 1 s). More senders than that is what an",
        "overloaded receiver faces and what its shedding must answer. A try that misses a goal is",
        "measured once more, as a missed rate of the sweep is, and the page shows both tries with",
        "the overload's seconds of the one that missed.",
        "",
        *overload_tries(r),
        "The ingress runs with `kafka.linger: 5ms` and one partition per source topic, against a",
        "broker of its own started fresh for the run: the local broker (tansu, memory storage)",
        "spends CPU per produce request and per batch, and slows down as its memory fills, so fewer,",
        "bigger batches and a fresh start let it keep up on two shared cores. Against a real Kafka",
        "cluster use more partitions (they bound the workers' parallelism).",
        "",
        "## What limits it here",
        "",
        *limits(r, steps),
        "",
        *MEASURED_BY_HAND.read_text().split("\n"),
        "![latency against offered rate](benchmarks-latency.png)",
        "",
        "## Steps",
        "",
        *table(steps),
        "",
        *fleet(Path(path).parent / "fleet.json"),
        *worker(bench_dir / "worker.json"),
        *guard(quick_path, before),
        *profile(bench_dir),
        *console(Path(path).parent / "console.json"),
        "## Micro benchmarks (criterion)",
        "",
        "Signature verification per scheme (1 KiB and 64 KiB bodies), dedupe key extraction, the",
        "Kafka record's headers, splitting batches and checking records against a schema:",
        "",
        *micro(),
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench   # local stack, release builds, criterion, the sweeps; rewrites this page",
        "```",
        "",
        f"Last line of that run: `{r['headline']}`",
        "",
    ]
    DOC.write_text("\n".join(doc))
    write_committed(COMMITTED, r, quick_path, before)
    print("\n".join(table(steps)))
    print()
    for label, key, goal in TARGETS:
        print(f"{label:<48} {shown[key]:<36} goal {goal:<12} {'met' if met[key] else 'NOT met'}")
    print(f"wrote {DOC.relative_to(ROOT)}, {COMMITTED.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")
    print(r["headline"])
    return 0


if __name__ == "__main__":
    sys.exit(
        main(
            sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "bench" / "benchmarks.json"),
            sys.argv[2] if len(sys.argv) > 2 else None,
        )
    )
