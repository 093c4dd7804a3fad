#!/usr/bin/env bash
# Installs the packages of loadtest/node-receiver (express, ioredis, kafkajs, pinned by its
# package-lock.json) with `npm ci` when they are missing or the lock changed, and prints the
# receiver's directory. Used by `make bench`, which compares Spillway with it, and by its test.
set -euo pipefail
cd "$(dirname "$0")/.."
receiver=loadtest/node-receiver
command -v node >/dev/null || { echo "the Node.js receiver needs node on the PATH" >&2; exit 1; }
if [ ! "$receiver/node_modules/.package-lock.json" -nt "$receiver/package-lock.json" ]; then
  npm ci --prefix "$receiver" --no-audit --no-fund --loglevel=error >&2
fi
echo "$PWD/$receiver"
