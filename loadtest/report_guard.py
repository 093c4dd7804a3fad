"""The worker's section of docs/benchmarks.md, its goals, and the bench's guard: the figures of
the repeated steps (`spillway-loadgen quick`) with their noise bands, how they compare with the
committed run's, and docs/benchmarks.json, which keeps them for the next run to compare with."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path


def num(value: float | None, digits: int = 1) -> str:
    """A figure as text; a phase with nothing to measure has none."""
    return "-" if value is None else f"{value:.{digits}f}"


def worker_phases(r: dict) -> list[tuple[str, dict, dict]]:
    """(protocol, live, backlog) of each protocol worker.json measured."""
    phases = [("HTTP/1.1", r)] + ([("HTTP/2 (TLS)", r["h2"])] if r.get("h2") else [])
    return [(protocol, p["live"], p["backlog"]) for protocol, p in phases]


def worker(path: Path) -> list[str]:
    """The worker section, from `spillway-loadgen worker`'s worker.json at `path`."""
    if not path.exists():
        return ["## The worker", "", "(no worker results found: run `make bench`)", ""]
    r = json.loads(path.read_text())
    rows = []
    for protocol, live, backlog in worker_phases(r):
        rows += [
            f"| {protocol}: 202 to the subscriber's receipt at {live['rate']:.0f}/s ({live['delivered']} of {live['accepted']} delivered) | p50 {num(live['p50_ms'])} ms, p90 {num(live['p90_ms'])} ms, p99 {num(live['p99_ms'])} ms, max {num(live['max_ms'], 0)} ms |",
            f"| {protocol}: worker CPU per delivery at that rate | {live['cpu_us_per_delivery']:.1f} µs |",
            f"| {protocol}: a backlog of {backlog['events']} events ({backlog['delivered']} delivered) | {backlog['seconds']:.1f} s: **{backlog['deliveries_per_s']:.0f} deliveries/s** |",
            f"| {protocol}: worker CPU per delivery on the backlog | {backlog['cpu_us_per_delivery']:.1f} µs: **{backlog['deliveries_per_core_s']:.0f} deliveries per core-second** |",
        ]
    return [
        "## The worker",
        "",
        "`spillway-loadgen worker`: a release ingress and worker on the local stack (a broker of its",
        "own), delivering every event once to a subscriber in the generator's process that answers",
        "200 at once on keep-alive connections. First the ingress takes its half rate",
        "while the worker keeps up: each event's latency runs from the ingress's 202 to the",
        "subscriber's receipt. Then, with no worker running, a backlog is written, and one fresh",
        "worker delivers it: deliveries per second (first to last delivery) and the worker's CPU",
        "per delivery from /proc, its start included. Both phases run twice, each time on an",
        "ingress and worker of their own: to a plain HTTP/1.1 subscriber, then to an HTTPS one",
        "(h2 by ALPN, its certificate signed by a private CA named in `worker.extra_roots`).",
        "",
        "| figure | measured |",
        "|---|---|",
        *rows,
        "",
        f"The worker consumes with `fetch.wait.max.ms` {r.get('fetch_wait_ms', 500)} ms "
        "(`worker.consumer_properties`, for its delivery and registry consumers alike;",
        "librdkafka's default is 500). Kafka answers a fetch as",
        "soon as it has a record, whatever the wait; the local broker (tansu 0.6) sleeps before",
        "it answers even when it found records, for half of the wait, so with the default every",
        "delivery waited about 250 ms behind its 202 and a worker stalled near 1,000",
        "deliveries/s (docs/development.md). A short wait brings tansu close to how Kafka",
        "answers; against Kafka keep the default. A pause drops what librdkafka read ahead for",
        "the partition, so a lane's bounds (`worker.partition_backlog` records, and its share of",
        "`worker.max_record_memory`) should hold one fetch: with 256 records, the default until",
        "2026-12-04, every fetch here (up to 5 MiB, about 3,500 records) paused its partition,",
        "the worker fetched each record several times over, and a backlog went at 900-1,400",
        "deliveries/s and 103-128 µs per delivery. With 4096 a lane pauses at its byte share",
        "(about 2,300 of these records) instead, far less often. Deliveries missing from a count are those tansu",
        "skips after a paused partition resumes; each phase waits 5 s past its last delivery for",
        "them.",
        "",
        "The source topic has 3 partitions (`kafka.partitions`), and each subscription has up to",
        "`worker.delivery_concurrency` (16) deliveries in hand per partition, one per record key",
        "(each event here has a key of its own). Until 2026-12-04 a partition went to each",
        "subscription one request at a time, so each partition delivered one event per round trip",
        "and the worker fell behind over HTTP/2 at the half rate. The same steps with",
        "`spillway-loadgen worker` at 3,500/s, three runs of each build, in the order old, new,",
        "new, new, old, old (medians, the samples in brackets):",
        "",
        "| | one at a time | 16 in hand, one per key |",
        "|---|---|---|",
        "| HTTP/1.1: 202 to receipt p50 | 39.9 ms (19.3, 57.1, 39.9) | 21.1 ms (17.4, 21.3, 21.1) |",
        "| HTTP/1.1: 202 to receipt p99 | 145.2 ms (65.9, 301.1, 145.2) | 64.2 ms (45.2, 64.2, 64.6) |",
        "| HTTP/1.1: worker CPU per delivery on the backlog | 58.2 µs (57.4, 58.2, 73.9) | 49.8 µs (49.8, 47.8, 52.0) |",
        "| HTTP/2: 202 to receipt p50 | 1,694 ms (22.1, 1,694, 4,226) | 20.6 ms (20.6, 19.9, 23.9) |",
        "| HTTP/2: 202 to receipt p99 | 2,109 ms (152, 2,109, 5,725) | 61.8 ms (88.6, 51.5, 61.8) |",
        "| HTTP/2: worker CPU per delivery on the backlog | 102.0 µs (102.0, 95.7, 149.2) | 55.1 µs (59.4, 55.1, 48.9) |",
        "| HTTP/2: backlog deliveries/s | 6,399 (6,399, 6,979, 3,235) | 7,637 (7,637, 7,651, 7,603) |",
        "",
        "In those runs a backlog went at the same 7,500-7,700 deliveries/s over either protocol,",
        "about 0.4 of a core of the worker's: the rest of the two cores went to the broker and the",
        "generator's subscriber. Over HTTP/2 several requests in hand share the connection's",
        "writes, which nearly halved its CPU per delivery.",
        "",
        "What is left of the latency (measured 2026-12-04, one run each): at 300/s the p50 is",
        "17 ms and the p99 25 ms, of which about 13 ms is the local broker's sleep in each fetch",
        "(with `fetch.wait.max.ms` 2 the p50 is 4.1 ms, the p99 10 ms). At 3,500/s a wait of 2 ms",
        "does not help (p50 13-20 ms, p99 56-67 ms, against 17-24 and 45-89 above): there the",
        "tail is the two cores the ingress, the broker, the worker and the generator share.",
        "",
    ]


def worker_targets(path: Path) -> list[tuple[str, str, str, bool]]:
    """The worker's rows of "Where we stand": (what, measured, goal, met)."""
    if not path.exists():
        return []
    rows = []
    for protocol, live, backlog in worker_phases(json.loads(path.read_text())):
        rows += [
            (
                f"worker deliveries per core-second, a backlog over {protocol}",
                f"{backlog['deliveries_per_core_s']:.0f} ({backlog['cpu_us_per_delivery']:.0f} µs per delivery)",
                ">= 10000",
                backlog["deliveries_per_core_s"] >= 10000,
            ),
            (
                f"202 to the subscriber's receipt at {live['rate']:.0f}/s over {protocol}",
                f"p50 {num(live['p50_ms'])} ms, p99 {num(live['p99_ms'])} ms",
                "p99 < 50 ms",
                live["p99_ms"] is not None and live["p99_ms"] < 50,
            ),
        ]
    return rows


def guard(quick_path: Path, committed_path: Path) -> list[str]:
    """The figures with their bands, and the comparison with the committed run (`committed_path`:
    the file as committed before this run, read for its commit and date)."""
    if not quick_path.exists():
        return ["## Noise bands", "", "(no quick results found: run `make bench`)", ""]
    q = json.loads(quick_path.read_text())
    lines = [
        "## Noise bands",
        "",
        f"`spillway-loadgen quick`: the ingress at {q['rate']:.0f}/s, the bare and floor servers at the same",
        f"rate and the worker's live phase, each step run {q['repeats']} times in this run. A figure is the median of",
        "its samples; its band is how far the farthest sample strayed from the median. `make",
        "bench-quick` runs the same steps (under five minutes) and flags a figure whose median moved",
        "further than the widest of its band, the committed run's band, and how far the medians of",
        f"up to {HISTORY} committed runs before that one (kept in docs/benchmarks.json) lay from its",
        "median: runs differ more than one run's samples often show. `make bench` compares",
        "the same way, then keeps this run's figures in docs/benchmarks.json. Only these figures",
        "are guarded: the sweep, sustained, overload, fleet and console figures above are single",
        "measurements, without a band.",
        "",
        "| figure | median | band | samples |",
        "|---|---|---|---|",
    ]
    for f in q["figures"]:
        samples = ", ".join(f"{s:.1f}" for s in f["samples"])
        lines.append(f"| {f['name']} | {f['median']:.2f} {f['unit']} | ±{f['band_pct']:.1f}% | {samples} |")
    lines.append("")
    if q["comparison"]:
        before = json.loads(committed_path.read_text()) if committed_path.exists() else {}
        lines += [
            f"Against the run committed before this one ({before.get('commit', 'unknown')}, {before.get('date', 'unknown')}):",
            "",
            "| figure | committed | now | change | band | moved |",
            "|---|---|---|---|---|---|",
        ]
        compared = {c["name"] for c in q["comparison"]}
        new = [f["name"] for f in q["figures"] if f["name"] not in compared]
        for c in q["comparison"]:
            lines.append(
                f"| {c['name']} | {c['committed']:.2f} {c['unit']} | {c['now']:.2f} {c['unit']} | "
                f"{c['change_pct']:+.1f}% | ±{c['band_pct']:.1f}% | {'**yes**' if c['moved'] else 'no'} |"
            )
        if new:
            lines += ["", f"New in this run, not compared: {', '.join(new)}."]
    else:
        lines.append("No committed figures to compare with: this run's become the first.")
    return [*lines, ""]


# How many committed runs' medians a figure keeps, for the noise between runs.
HISTORY = 5


def with_history(figures: list[dict], before: dict, rate: float) -> list[dict]:
    """`figures` each with the medians of the committed runs before it (`history`, oldest first,
    up to HISTORY): the committed run's history and its median, when it was measured at the
    same rate. The same run written again (its samples unchanged) adds nothing."""
    if before.get("guard_rate") != rate:
        return figures
    earlier = {f["name"]: f for f in before.get("figures", [])}
    kept = []
    for f in figures:
        e = earlier.get(f["name"])
        if e is None:
            kept.append(f)
            continue
        history = list(e.get("history", []))
        if e["samples"] != f["samples"]:
            history.append(e["median"])
        kept.append({**f, "history": history[-HISTORY:]} if history else f)
    return kept


def write_committed(path: Path, r: dict, quick_path: Path, before_path: Path) -> None:
    """docs/benchmarks.json: the headline and this run's guarded figures, with the medians of
    the committed runs before (`before_path`: the file as committed before this run), for the
    next run."""
    if not quick_path.exists():
        return
    q = json.loads(quick_path.read_text())
    before = json.loads(before_path.read_text()) if before_path.exists() else {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    kept = {
        "date": date.today().isoformat(),
        "commit": commit or "unknown",
        "headline": r["headline"],
        "max_rate": r["max_rate"],
        "cpu_us_per_req": r["cpu_us_per_req"],
        "bare_cpu_us_per_req": r["bare_cpu_us_per_req"],
        "floor_cpu_us_per_req": r.get("floor_cpu_us_per_req"),
        "guard_rate": q["rate"],
        "repeats": q["repeats"],
        "figures": with_history(q["figures"], before, q["rate"]),
    }
    path.write_text(json.dumps(kept, indent=2) + "\n")
