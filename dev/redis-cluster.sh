#!/usr/bin/env bash
# A six-node Redis Cluster (three primaries, three replicas) on 127.0.0.1, from Debian's
# redis-server. Idempotent: `start` on a healthy cluster only reports it.
#
#   dev/redis-cluster.sh start|stop|status [--base-port 7000] [--dir .stack/redis-7000]
#                        [--announce-ports P0,P1,P2,P3,P4,P5] [--tls CERT_DIR]
#
# Nodes listen on base-port .. base-port+5. With --announce-ports, node i tells clients (CLUSTER
# SLOTS, MOVED) and replicas to connect to 127.0.0.1:Pi instead: a proxy in front of it, which
# the tests use to cut the network between a client and the cluster. The cluster bus keeps the
# nodes' own ports (port + 10000), so the nodes still see each other through such a cut. With --tls, every port (clients, replication,
# the cluster bus) takes TLS only, with CERT_DIR's ca.crt, redis.crt and redis.key, and asks
# clients for a certificate signed by that CA (Redis's default, tls-auth-clients yes); the
# nodes show redis.crt to each other too. `stop` shuts the nodes down and removes their
# state, so the next `start` forms a fresh cluster.
set -euo pipefail

cmd=${1:-status}
shift || true
base_port=7000
dir=""
announce=""
tls=""
while [ $# -gt 0 ]; do
  case "$1" in
    --base-port) base_port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --announce-ports) announce=$2; shift 2 ;;
    # Absolute: redis-server reads the files after changing into its --dir.
    --tls) tls=$(cd "$2" && pwd); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$root/.stack/redis-$base_port}
ports=$(seq "$base_port" $((base_port + 5)))

ensure_installed() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "installing redis-server and redis-tools (Debian packages)" >&2
    "$root/dev/apt-install.sh" redis-server redis-tools
  fi
}

# redis-cli on this cluster: over TLS, with the nodes' own certificate, when it takes TLS.
cli() {
  if [ -n "$tls" ]; then
    redis-cli --tls --cacert "$tls/ca.crt" --cert "$tls/redis.crt" --key "$tls/redis.key" "$@"
  else
    redis-cli "$@"
  fi
}

healthy() {
  for p in $ports; do
    cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
    # A replica that has not synced with its primary yet could not take over from it.
    local replication
    replication=$(cli -h 127.0.0.1 -p "$p" info replication 2>/dev/null)
    if grep -q '^role:slave' <<<"$replication"; then
      grep -q '^master_link_status:up' <<<"$replication" || return 1
    fi
  done
}

start() {
  ensure_installed
  if healthy; then
    echo "redis cluster already running on 127.0.0.1:$base_port-$((base_port + 5))"
    return 0
  fi
  # A half-started cluster from an earlier run is cleared rather than repaired.
  stop >/dev/null 2>&1 || true
  local announced=()
  [ -n "$announce" ] && IFS=, read -r -a announced <<<"$announce"
  local i=0
  for p in $ports; do
    mkdir -p "$dir/$p"
    local extra=()
    if [ -n "$announce" ]; then
      extra=(--cluster-announce-ip 127.0.0.1 --cluster-announce-port "${announced[$i]}"
        --cluster-announce-bus-port $((p + 10000)))
    fi
    local listen=(--port "$p")
    if [ -n "$tls" ]; then
      listen=(--port 0 --tls-port "$p" --tls-cluster yes --tls-replication yes
        --tls-cert-file "$tls/redis.crt" --tls-key-file "$tls/redis.key"
        --tls-ca-cert-file "$tls/ca.crt")
    fi
    redis-server "${listen[@]}" --bind 127.0.0.1 --protected-mode yes \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --appendonly no --save "" --daemonize yes --dir "$dir/$p" \
      --logfile "$dir/$p/redis.log" --pidfile "$dir/$p/redis.pid" "${extra[@]}"
    i=$((i + 1))
  done
  for p in $ports; do
    for _ in $(seq 100); do
      cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  nodes=""
  for p in $ports; do nodes="$nodes 127.0.0.1:$p"; done
  # shellcheck disable=SC2086
  cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
    cat "$dir/create.log" >&2
    exit 1
  }
  for _ in $(seq 300); do
    healthy && break
    sleep 0.1
  done
  healthy || { echo "redis cluster did not become healthy" >&2; exit 1; }
  echo "redis cluster running on 127.0.0.1:$base_port-$((base_port + 5))"
}

stop() {
  for p in $ports; do
    cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  for p in $ports; do
    if [ -f "$dir/$p/redis.pid" ]; then
      pid=$(cat "$dir/$p/redis.pid")
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
  echo "redis cluster on 127.0.0.1:$base_port-$((base_port + 5)) stopped"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) if healthy; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status [--base-port N] [--dir D] [--announce-ports P0,...,P5] [--tls CERT_DIR]" >&2; exit 2 ;;
esac
