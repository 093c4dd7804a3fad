#!/usr/bin/env bash
# Stops the demo ingress processes and the local stack, and takes away the test client
# addresses.
set -euo pipefail
dev=$(cd "$(dirname "$0")" && pwd)
"$dev/run.sh" stop || true
"$dev/tansu.sh" stop --port 9092 || true
"$dev/redis-cluster.sh" stop --base-port 7000 || true
"$dev/s3.sh" stop --port 9000 || true
# The client addresses the e2e test `fronts` puts on the loopback interface.
for ip in 198.51.100.7 198.51.100.8 198.51.100.9; do
  ip addr del "$ip/32" dev lo 2>/dev/null || true
done
