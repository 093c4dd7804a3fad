"""The fleet and console sections of docs/benchmarks.md, from `spillway-loadgen fleet`'s
fleet.json and `spillway-loadgen console`'s console.json (see report.py)."""

from __future__ import annotations

import json
from pathlib import Path


def fleet(path: Path) -> list[str]:
    """The batch and large-body sections, from `spillway-loadgen fleet`'s fleet.json at `path`."""
    if not path.exists():
        return ["## Fleet ingest", "", "(no fleet results found: run `make bench`)", ""]
    f = json.loads(path.read_text())
    lines = [
        "## Fleet ingest",
        "",
        "`spillway-loadgen fleet`, each part through a release ingress of its own, on a broker fresh",
        "for the fleet run.",
        "These are closed loops (each sender waits for its answer before sending again): they",
        "measure capacity, not latency under a fixed arrival rate.",
        "",
        "### Batches",
        "",
        "Signed NDJSON batches of readings (Standard Webhooks HMAC over the whole body), split into",
        "one Kafka record per reading, each deduplicated on the Redis Cluster by its own id and",
        "partitioned by its device. Each batch size is sent for a few seconds by 2,000 / size senders",
        "(at least 2, at most 64: 64 readings in flight for single readings, 640 for batches of 10,",
        "2,000 above); then every acknowledged reading is looked up in Kafka (`lost` counts those",
        "missing). Latencies are of the batches accepted whole; CPU is the ingress process's.",
        "The steps run in order on one ingress, and RSS is its resident memory after each. It",
        "follows the readings in flight and is given back (not re-measured by each run): on",
        "2026-12-05, batches of 1,000 alone held 66 to 84 MiB while they were sent, and the single",
        "readings sent after them brought it down to 51 MiB within 25 s (jemalloc returns freed",
        "pages after its decay time). On 2026-12-02, with another allocator, it had grown from step",
        "to step to 348 MiB. The memory target above covers the sweeps' workload only.",
        "",
        "| readings per batch | bytes each | senders | readings/s | batches/s | p50 ms | p99 ms | CPU µs/reading | CPU µs/batch | RSS MiB | failed batches | in Kafka | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in f["batches"]:
        if b["batches"] == 0:
            # Nothing accepted: no latency or cost to show, only the failure.
            b = {**b, "p50_ms": float("nan"), "p99_ms": float("nan")}
        lines.append(
            f"| {b['records_per_batch']} | {b['record_bytes']} | {b['senders']} | {b['records_per_s']:.0f} | "
            f"{b['batches_per_s']:.1f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['cpu_us_per_record']:.1f} | "
            f"{b['cpu_us_per_batch']:.0f} | {b['rss_mib']:.1f} | {b['failed']} | {b['in_kafka']} | {b['lost']} |"
        )
    lines += [
        "",
        "### Large bodies",
        "",
        "Signed bodies streamed through the ingress to the local S3 server (s3s-fs, on the same",
        "disk and cores) in parts of the default 5 MiB, their records carrying the reference; first one upload at",
        "a time, then several. The peak is the ingress's VmHWM after the step, the idle figure its",
        "VmHWM before the first upload. [fleet.md](fleet.md#large-payloads-by-reference) bounds what",
        "one streamed body adds to the peak (three parts and 16 MiB); the bound column is the idle",
        "figure plus that bound for each upload at once. With a couple of dozen uploads a step, the",
        "slowest upload is shown rather than a p99. Every acknowledged body's record and object are",
        "checked, then the objects are removed.",
        "",
        "| uploads at once | body MiB | uploads | MiB/s | p50 ms | max ms | CPU ms/upload | idle peak MiB | peak MiB | bound MiB | failed | in Kafka | stored |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for u in f["uploads"]:
        if u["uploads"] == 0:
            u = {**u, "p50_ms": float("nan"), "max_ms": float("nan")}
        # Results written before the bound was recorded used the defaults: 3 x 5 MiB + 16 MiB.
        bound = u["idle_peak_mib"] + u["senders"] * u.get("bound_mib_per_upload", 31.0)
        lines.append(
            f"| {u['senders']} | {u['body_bytes'] / 1048576:.0f} | {u['uploads']} | {u['mib_per_s']:.1f} | "
            f"{u['p50_ms']:.0f} | {u['max_ms']:.0f} | {u['cpu_ms_per_upload']:.1f} | {u['idle_peak_mib']:.1f} | "
            f"{u['peak_mib']:.1f} | {bound:.0f} | {u['failed']} | {u['in_kafka']} | {u['stored']} |"
        )
    return [*lines, ""]


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def console(path: Path) -> list[str]:
    """The console section, from `spillway-loadgen console`'s console.json at `path`."""
    if not path.exists():
        return ["## The console", "", "(no console results found: run `make bench`)", ""]
    c = json.loads(path.read_text())
    live, catch, search = c["live"], c["catch_up"], c["search"]
    lines = [
        "## The console",
        "",
        "`spillway-loadgen console`: a release ingress, worker and console on the local stack and a",
        "private PostgreSQL 17, all on the same cores. The ingress takes a steady rate (the half",
        f"rate of the sweep above) of signed 1 KiB webhooks for {live['duration_s']:.0f} s, the worker delivers each to a",
        "fast subscriber (one attempt each), and the console indexes events and attempts.",
        "Deliveries short of the accepted count are tansu's, not Spillway's: when the worker pauses a",
        "busy partition and resumes it, tansu answers from the next record batch and the rest of the",
        "current one is never fetched ([development.md](development.md)); Kafka does not do this.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| load | {live['rate']:.0f} requests/s, {live['accepted']} accepted, {live['attempts']} attempts indexed (one per delivery) |",
        f"| index lag (age of the newest indexed event, sampled every 250 ms) | p50 {ms(live['lag_p50_ms'])}, p99 {ms(live['lag_p99_ms'])}, max {ms(live['lag_max_ms'])} |",
        f"| every accepted event indexed | {live['events_indexed_after_ms']:.0f} ms after the load ended |",
        f"| every attempt indexed (the worker's backlog delivered) | {live['drained_after_ms']:.0f} ms after the load ended |",
        f"| rows written during the load and the drain | {live['rows_per_s']:.0f} events and attempts/s |",
        f"| console CPU per indexed row | {live['console_cpu_us_per_row']:.1f} µs |",
        f"| a fresh indexer catching up on all of it (load stopped) | {catch['events']} events and {catch['attempts']} attempts in {catch['seconds']:.1f} s: **{catch['rows_per_s']:.0f} rows/s** |",
        "",
        f"Search latency with **{search['events']:,} events** in the index (synthetic rows written by SQL in",
        f"{search['fill_seconds']:.0f} s, spread over six days, five sources, twenty event types and three",
        "subscriptions, one delivery and one attempt each; the newest are the live run's, all of",
        "one source and one subscription), each search 200 times in a row through the API, as the",
        "page makes it. A filter on a source or subscription that is common overall but absent",
        "among the newest events walks those first (the by-source and by-subscription rows).",
        "",
        "| search | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
    ]
    for q in search["searches"]:
        lines.append(f"| {q['name']} (`{q['path'].split('?')[0]}`) | {q['p50_ms']:.1f} | {q['p99_ms']:.1f} | {q['max_ms']:.1f} |")
    return [*lines, ""]
