#!/usr/bin/env bash
# Installs the packages of loadtest/node-receiver (express, ioredis, kafkajs, pinned by its
# package-lock.json) with `npm ci` when they are missing or the lock changed, and prints the
# receiver's directory. `make up` runs it; `make bench` compares Spillway with the receiver, and
# its test in loadtest/tests/loadgen.rs runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."
receiver=loadtest/node-receiver
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "the Node.js receiver needs $tool on the PATH" >&2; exit 1; }
done
if [ ! "$receiver/node_modules/.package-lock.json" -nt "$receiver/package-lock.json" ]; then
  npm ci --prefix "$receiver" --no-audit --no-fund --loglevel=error >&2
fi
echo "$PWD/$receiver"
