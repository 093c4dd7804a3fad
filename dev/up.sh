#!/usr/bin/env bash
# Starts the local stack on 127.0.0.1: the tansu broker (memory storage) on 9092, the Redis
# Cluster on 7000-7005 and the S3-compatible object store (s3s-fs) on 9000. Installs what is missing (and Prometheus, HAProxy, nginx, PostgreSQL and
# Chromium, which tests start themselves, cargo-deb, and the packages of the Node.js receiver
# that `make bench` compares with).
# Idempotent. `--fresh-broker` stops the broker on 9092 first, so it starts empty: tansu's
# memory storage slows down as topics and groups pile up in it (docs/development.md), and
# `make test` and `make faults` measure the code, not a broker aged by earlier runs.
set -euo pipefail
dev=$(cd "$(dirname "$0")" && pwd)
fresh_broker=false
for arg in "$@"; do
  case "$arg" in
    --fresh-broker) fresh_broker=true ;;
    *) echo "usage: dev/up.sh [--fresh-broker]" >&2; exit 2 ;;
  esac
done
if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
  "$dev/apt-install.sh" build-essential
fi
# Prometheus (and promtool): the dashboard and alert tests run a real one on loopback.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  "$dev/apt-install.sh" prometheus
fi
# HAProxy: the fault suite runs two ingress processes behind one on loopback.
if ! command -v haproxy >/dev/null; then
  "$dev/apt-install.sh" haproxy
fi
# nginx: the e2e test `fronts` runs deploy/nginx/spillway.conf in front of two ingresses.
if ! command -v nginx >/dev/null; then
  "$dev/apt-install.sh" nginx
fi
# ip: the e2e test `fronts` gives its clients addresses of their own. systemd-analyze and
# cargo-deb: the e2e test `package` checks the units and builds the package.
if ! command -v ip >/dev/null; then
  "$dev/apt-install.sh" iproute2
fi
if ! command -v systemd-analyze >/dev/null; then
  "$dev/apt-install.sh" systemd
fi
"$dev/deb.sh" --tool
# PostgreSQL: the store of the tansu cluster that a broker fault case starts (dev/postgres.sh).
"$dev/postgres.sh" install
# Chromium and Playwright's driver: the console's page test runs a headless browser.
"$dev/browser.sh" install
# The receiver written by hand in Node.js that `make bench` compares with; its test runs it.
"$dev/node-receiver.sh" >/dev/null
if "$fresh_broker"; then
  "$dev/tansu.sh" stop --port 9092
  # Something still on the port (a broker this checkout did not start) would be taken for
  # the fresh one.
  if "$dev/tansu.sh" status --port 9092 >/dev/null; then
    echo "dev/up.sh --fresh-broker: 127.0.0.1:9092 still answers after the stop; stop what listens there" >&2
    exit 1
  fi
fi
"$dev/tansu.sh" start --port 9092 --storage memory
"$dev/redis-cluster.sh" start --base-port 7000
"$dev/s3.sh" start --port 9000
