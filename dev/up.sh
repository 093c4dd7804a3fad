#!/usr/bin/env bash
# Starts the local stack on 127.0.0.1: the tansu broker (memory storage) on 9092 and the Redis
# Cluster on 7000-7005. Installs what is missing. Idempotent.
set -euo pipefail
dev=$(cd "$(dirname "$0")" && pwd)
if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
  "$dev/apt-install.sh" build-essential
fi
"$dev/tansu.sh" start --port 9092 --storage memory
"$dev/redis-cluster.sh" start --base-port 7000
