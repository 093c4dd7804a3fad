#!/usr/bin/env bash
# `make bench`: criterion micro benchmarks, then the end-to-end sweeps of spillway-loadgen
# against a release `spillway ingress`, the floor server (a claim and a produce, nothing else)
# and the bare baseline on the local stack, then the receiver written by hand in Node.js, then the fleet
# figures (batches split into records, large bodies streamed to the local S3 server), then the
# worker's (202 to receipt, deliveries per core), then where a request's CPU goes (a perf
# profile, the ingress on one core and two), then the console's (index lag at the half rate, catch-up, search at a million events), then
# docs/benchmarks.md and its plot. The last line printed is the headline:
#   max_rate=<rps> p99_ms_at_half=<ms> cpu_us_per_req=<us> bare_cpu_us_per_req=<us> floor_cpu_us_per_req=<us> ingest_vs_bare=<ratio>
# Extra arguments go to `spillway-loadgen bench` (e.g. --rates 1000,2000 --step 3s).
# Before the console's part, `spillway-loadgen quick` repeats the ingress, bare, floor and worker steps at the
# committed run's rate (docs/benchmarks.json) for the noise bands, compares the figures with
# the committed ones, and the report keeps the new ones there.
# `dev/bench.sh --quick` (`make bench-quick`, under five minutes): only that comparison, for a
# change to a hot path; it writes nothing under docs/.
set -euo pipefail
# The overload step opens up to 4000 connections and the ingress accepts them: under a soft
# limit of 1024 open files they would fail as connection errors. Raised to the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$(dirname "$0")/.."
dev/up.sh
# Each part gets a broker of its own, fresh (memory storage), on a free port, so what earlier
# tests or parts left in a broker does not weigh on the figures; it is stopped on exit.
port="" dir=""
stop_broker() {
  if [ -n "$dir" ]; then
    dev/tansu.sh stop --port "$port" --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
  port="" dir=""
}
fresh_broker() {
  stop_broker
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  dev/tansu.sh start --port "$port" --dir "$dir" >&2
  export SPILLWAY_TEST_KAFKA=127.0.0.1:$port
}
trap stop_broker EXIT
# The figures are compared with the committed run's (git's HEAD:docs/benchmarks.json, not the
# working tree's, which an uncommitted run may have rewritten), at its rate so that they
# compare; without one, at half of this run's highest rate.
mkdir -p target/bench
committed=target/bench/committed.json
git show HEAD:docs/benchmarks.json > "$committed" 2>/dev/null || echo '{}' > "$committed"
guard_rate() {
  python3 -c 'import json, sys
try:
    rate = float(json.load(open(sys.argv[1]))["guard_rate"])
    assert rate > 0
    print(rate)
except Exception:
    print(sys.argv[2])' "$committed" "$1"
}
quick() {
  fresh_broker
  target/release/spillway-loadgen quick --spillway-bin target/release/spillway --rate "$1" \
    --compare "$committed" --out target/bench "${@:2}"
}
if [ "${1:-}" = "--quick" ]; then
  cargo build --release -q -p spillway -p spillway-loadgen
  # Exit 2 when a figure moved beyond its band.
  quick "$(guard_rate 3000)" --fail-on-moved "${@:2}"
  exit
fi
cargo build --release -q -p spillway -p spillway-loadgen
for bench in "spillway-signature verify" "spillway-core keys" "spillway-batch split" "spillway-schema check"; do
  read -r package target <<<"$bench"
  cargo bench -q -p "$package" --bench "$target" -- --warm-up-time 1 --measurement-time 2 >&2
done
fresh_broker
target/release/spillway-loadgen bench --spillway-bin target/release/spillway --out target/bench "$@" >&2
# The receiver a team writes by hand in Node.js, swept with its own defaults (the sweep's load,
# connections and step) on a broker of its own. Its failure costs the page only its section.
rm -f target/bench/node.json
if node_receiver=$(dev/node-receiver.sh); then
  fresh_broker
  target/release/spillway-loadgen node --receiver "$node_receiver" --out target/bench >&2 ||
    echo "make bench: the Node.js receiver's sweep failed; the page goes without it" >&2
else
  echo "make bench: the Node.js receiver could not be installed; the page goes without it" >&2
fi
fresh_broker
target/release/spillway-loadgen fleet --spillway-bin target/release/spillway --out target/bench >&2
# The worker (202 to receipt at the ingress's half rate, from the sweep above; then a backlog),
# and the console's index under the same rate, then search at a million indexed events.
half=$(python3 -c 'import json; print(max(100, round(json.load(open("target/bench/benchmarks.json"))["max_rate"] / 2)))')
fresh_broker
rm -f target/bench/worker.json
target/release/spillway-loadgen worker --spillway-bin target/release/spillway --rate "$half" --out target/bench >&2
rm -f target/bench/quick.json
quick "$(guard_rate "$half")" >&2
# Where a request's CPU goes: the ingress at the half rate on two cores, pinned to one, and
# sampled by perf (Debian's linux-perf; the software clock, as this machine has no hardware
# counters). loadtest/report_profile.py sorts the samples.
command -v perf >/dev/null || dev/apt-install.sh linux-perf >&2
fresh_broker
rm -f target/bench/profile.json target/bench/profile.txt
target/release/spillway-loadgen profile --spillway-bin target/release/spillway --rate "$half" --out target/bench >&2
perf script -i target/bench/profile-run/ingress.perf.data -F comm,ip,sym,dso > target/bench/profile.txt \
  2> target/bench/perf-script.log || { cat target/bench/perf-script.log >&2; exit 1; }
fresh_broker
target/release/spillway-loadgen console --spillway-bin target/release/spillway --rate "$half" --out target/bench >&2
python=$(dev/py-tools.sh python bench)
"$python" loadtest/report.py target/bench/benchmarks.json "$committed"
