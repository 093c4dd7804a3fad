#!/usr/bin/env bash
# Stops the demo ingress processes and the local stack.
set -euo pipefail
dev=$(cd "$(dirname "$0")" && pwd)
"$dev/run.sh" stop || true
"$dev/tansu.sh" stop --port 9092 || true
"$dev/redis-cluster.sh" stop --base-port 7000 || true
"$dev/s3.sh" stop --port 9000 || true
