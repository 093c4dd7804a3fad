"""Where the ingress's CPU goes, for docs/benchmarks.md: `spillway-loadgen profile`'s steps
(the ingress on two cores and pinned to one) and the samples `perf record` took of it, sorted
into the parts of a request.

Each sample is put in one part by its thread and the function it caught: librdkafka's own
threads (`rdk:*`) and rust-rdkafka's polling thread are the Kafka client whatever they run; on
the runtime's threads a sample in the kernel goes by the system call it is in (socket writes
and reads, wake-ups through futexes or the runtime's eventfd, epoll), and one in user space by
the crate of the function. Without frame pointers the user part of a call
chain is unreliable, so a sample counts where it was caught (self time), not who called:
hashing inside the signature check counts as verification, an allocation made by the Redis
client as the allocator's."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

# (part, patterns looked for in the sampled function's name), first match wins. The order
# matters where a generic function names several crates: `<redis::... as tokio::...>`. A
# pattern matches at the start of a path segment only (`ring::` is not `alloc::string::`).
USER_PARTS = [
    ("Redis Cluster client (claim, commit)", ("redis::", "combine::")),
    ("Kafka client, called from the runtime", ("rdkafka", "rd_kafka")),
    ("signature verification", ("spillway_signature", "sha2::", "hmac::", "ring::", "ring_core", "aws_lc",
                                "subtle::", "base64::", "hex::", "sha256", "sha1")),
    ("metrics", ("prometheus::",)),
    ("logs and traces", ("tracing", "opentelemetry", "valuable")),
    ("HTTP (hyper)", ("hyper", "h2::", "httparse", "http::", "http_body")),
    ("JSON", ("serde_json", "serde::")),
    ("spillway's own code", ("spillway",)),
    ("allocator (jemalloc)", ("_rjem_", "je_", "jemalloc", "tikv_jemallocator")),
    ("async runtime (tokio, mio)", ("tokio::", "mio::", "futures", "parking_lot", "crossbeam")),
    ("memory copies (libc)", ("memcpy", "memmove", "memset", "memcmp", "__memcpy", "__memmove")),
    ("Rust's standard library (strings, collections, formatting)", ("alloc::", "core::", "std::", "hashbrown::")),
]

# Kernel samples on the runtime's threads, by the first of these parts whose functions
# appear anywhere in the sample's kernel frames (system call entry points are often inlined,
# so the work itself names the part). A socket write on loopback includes the receiving
# side's TCP processing, which the kernel does in the sender's context.
KERNEL_PARTS = [
    ("kernel: page faults (memory touched for the first time)", ("asm_exc_page_fault", "handle_mm_fault")),
    ("kernel: thread wake-ups and sleeps (futex, eventfd, pipes)",
     ("futex_", "do_futex", "eventfd_", "anon_pipe_", "pipe_write", "pipe_read")),
    ("kernel: epoll", ("ep_poll", "do_epoll_", "ep_send_events")),
    ("kernel: socket writes (loopback delivery included)",
     ("tcp_sendmsg", "sock_write_iter", "__sys_sendto", "sock_sendmsg", "do_writev")),
    ("kernel: socket reads", ("tcp_recvmsg", "sock_read_iter", "__sys_recvfrom", "sock_recvmsg")),
    ("kernel: network receive (softirq)", ("net_rx_action", "__netif_receive_skb", "tcp_v4_rcv")),
    ("kernel: scheduling (context switches, preemption)", ("__schedule", "finish_task_switch")),
]

# Threads of the Kafka client: librdkafka's (`rdk:main`, `rdk:broker1`, ...) and the one
# rust-rdkafka's FutureProducer polls delivery reports on (`producer polling thread`, cut to 15).
KAFKA_THREADS = ("rdk:", "producer pollin")

FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")


def samples(text: str):
    """(thread name, frames) for each sample of `perf script -F comm,ip,sym,dso` output, the
    sampled frame first; a frame is (function, object)."""
    comm, frames = None, []
    for line in text.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif line[0].isspace():
            m = FRAME.match(line)
            if m:
                frames.append((m.group(1), m.group(2)))
        else:
            if comm is not None:
                yield comm, frames
            comm, frames = line.strip(), []
    if comm is not None:
        yield comm, frames


def is_kernel(obj: str) -> bool:
    """Whether a frame's object is the kernel: `[kernel.kallsyms]`, or a module (`[virtio_net]`)."""
    return obj.startswith("[") and obj not in ("[unknown]", "[vdso]", "[vsyscall]")


def names(function: str, pattern: str) -> bool:
    """Whether `pattern` starts a path segment of `function` (or the name itself)."""
    return re.search(r"(?:^|[^\w])" + re.escape(pattern), function) is not None


def part_of(comm: str, frames: list[tuple[str, str]]) -> str:
    """The part of a request one sample is counted in."""
    if comm.startswith(KAFKA_THREADS):
        return "Kafka client (its own threads)"
    if not frames:
        return "other"
    function, obj = frames[0]
    if is_kernel(obj):
        kernel = [name for name, o in frames if is_kernel(o)]
        for part, markers in KERNEL_PARTS:
            if any(name.startswith(markers) for name in kernel):
                return part
        return "kernel: other"
    if function.startswith("rd_"):
        return "Kafka client, called from the runtime"
    for part, patterns in USER_PARTS:
        if any(names(function, p) for p in patterns):
            return part
    if "libc" in obj:
        return "memory copies (libc)" if function.startswith("__mem") else "libc, other"
    return "other"


def shares(text: str) -> tuple[Counter, int]:
    """Samples per part, and the total."""
    counted = Counter(part_of(comm, frames) for comm, frames in samples(text))
    return counted, sum(counted.values())


def expectations(two: dict | None, one: dict | None) -> list[str]:
    """What a user should expect per ingress core on their own Kafka and Redis."""
    if not two:
        return []
    per_core = 1e6 / max(two["cpu_us_per_req"], 0.001)
    pinned = ""
    if one:
        wrong = one["unexpected"] + one["errors"]
        change = one["cpu_us_per_req"] / max(two["cpu_us_per_req"], 0.001) - 1
        verdict = (
            "about the same cost as on two, so capacity grows with the cores given to the ingress"
            " (and with ingress pods behind the load balancer)"
            if abs(change) <= 0.15
            else f"{change * 100:+.0f}% against two cores"
        )
        pinned = (
            f" Pinned to one core it spent {one['cpu_us_per_req']:.1f} µs per request"
            f" ({'every answer right' if wrong == 0 else f'{wrong} wrong answers'}, p99 {one['p99_ms']:.1f} ms):"
            f" {verdict}."
        )
    return [
        f"**What to expect per core.** At this rate one ingress core carries about {per_core:,.0f}"
        f" signed, deduplicated, acknowledged requests a second.{pinned} Here the broker, Redis and"
        " the generator share the same two cores; against a Kafka cluster and a Redis Cluster of"
        " their own, the ingress's cores are its own, its CPU per request stays about the same (it"
        " falls as the rate rises: fuller produce batches, fewer wake-ups per request, see the"
        " sweep), and what the network adds is latency (one Redis round trip and one"
        " `acks=all` produce before each answer; the commit follows it), not CPU. TLS on the listener adds the handshakes of new"
        " connections; keep-alive senders pay it once.",
    ]


def profile(bench_dir: Path) -> list[str]:
    """The section of docs/benchmarks.md, from profile.json and profile.txt in `bench_dir`."""
    path, script = bench_dir / "profile.json", bench_dir / "profile.txt"
    if not path.exists():
        return ["## Where a request's CPU goes", "", "(no profile found: run `make bench`)", ""]
    r = json.loads(path.read_text())
    steps = {s["case"]: s for s in r["steps"]}
    two, one = steps.get("two cores"), steps.get("one core")
    lines = [
        "## Where a request's CPU goes",
        "",
        f"`spillway-loadgen profile`: the ingress at {r['rate']:.0f}/s (the half rate) for a step free to run",
        "on both cores, a step with every thread pinned to one core (`taskset`), and a step",
        "sampled by `perf record` on the software clock. The other processes (broker, Redis, the",
        "generator) stay free to use both cores throughout.",
        "",
        "| ingress on | CPU per request | p50 | p99 | one core's worth of requests |",
        "|---|---|---|---|---|",
    ]
    for label, step in (("two cores", two), ("one core", one)):
        if step:
            lines.append(
                f"| {label} | {step['cpu_us_per_req']:.1f} µs | {step['p50_ms']:.2f} ms | {step['p99_ms']:.2f} ms "
                f"| {1e6 / max(step['cpu_us_per_req'], 0.001):,.0f} /s |"
            )
    lines += ["", *expectations(two, one), ""]
    sampled = steps.get("sampled")
    if not (sampled and script.exists()):
        return [*lines, "(no samples: perf was not run)", ""]
    counted, total = shares(script.read_text(errors="replace"))
    if total == 0:
        return [*lines, "(perf recorded no samples)", ""]
    cost = sampled["cpu_us_per_req"]
    wrong = sampled["unexpected"] + sampled["errors"]
    lines += [
        f"Where the CPU of the sampled step ({cost:.1f} µs per request, p99 {sampled['p99_ms']:.1f} ms,"
        f" {wrong} wrong answers, {total} samples at {r.get('sample_hz', 199)} Hz) went. Each sample counts",
        "where it was caught, not who called: see loadtest/report_profile.py.",
        *(
            [
                "",
                "This sampled step fell behind (perf shares the two cores): requests queued, the",
                "process grew, and the shares lean toward what a backlog costs (page faults, copies);",
                "the unsampled steps above are the cost per request.",
            ]
            if wrong
            else []
        ),
        "",
        "| part | share | µs per request |",
        "|---|---|---|",
        *[
            f"| {part} | {n / total * 100:.1f}% | {n / total * cost:.1f} |"
            for part, n in counted.most_common()
        ],
        "",
    ]
    return lines


if __name__ == "__main__":
    import sys

    for line in profile(Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")):
        print(line)
