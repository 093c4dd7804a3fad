#!/usr/bin/env bash
# `make faults`: the fault suite under a heavier, longer load than the short form `make test`
# runs, one case at a time, then docs/faults.md from the figures each case recorded.
# SPILLWAY_FAULT_RATE (requests/s, default 200) and SPILLWAY_FAULT_SECONDS (default 30) shape it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export SPILLWAY_FAULT_RATE=${SPILLWAY_FAULT_RATE:-200}
export SPILLWAY_FAULT_SECONDS=${SPILLWAY_FAULT_SECONDS:-30}
export SPILLWAY_FAULT_RESULTS="$root/target/faults"
# tansu's memory storage skips records when a consumer fetches from inside a batch; one record
# per batch keeps that bug out of the figures (see docs/development.md).
export SPILLWAY_FAULT_ONE_RECORD_BATCHES=1
rm -rf "$SPILLWAY_FAULT_RESULTS"
# A broker with nothing in it: one that had served `make test` (hundreds of topics and groups)
# answered this load far slower (p99 28 s against 6 ms for the balancer case), and the figures
# would measure that, not the fault.
dev/up.sh --fresh-broker
status=0
cargo nextest run -p spillway --test faults --profile faults || status=$?
# The report is written either way: a case that failed is listed with its reason.
python3 dev/faults_report.py "$SPILLWAY_FAULT_RESULTS" target/nextest/faults/junit.xml docs/faults.md
echo "wrote docs/faults.md"
exit "$status"
