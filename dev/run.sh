#!/usr/bin/env bash
# `make run`: the local stack, two ingress processes (8080/9090 and 8081/9091), a worker, the
# topics, and a signed demo burst whose events the worker delivers to the demo's inbox
# (127.0.0.1:8099). A second run reuses what is installed and running.
#
#   dev/run.sh          start what is missing and send the demo burst
#   dev/run.sh stop     stop the ingress processes and the worker
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dev=$root/dev
state=$root/.stack/ingress
bin=$root/target/release/spillway
config=$dev/spillway.yaml
mkdir -p "$state"

set -a
# shellcheck source=/dev/null
. "$dev/demo-secrets.env"
set +a

ready() { curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

stop() {
  for name in ingress-0 ingress-1 worker; do
    if [ -f "$state/$name.pid" ]; then
      kill -TERM "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  echo "ingress processes and worker stopped"
}

if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

command -v curl >/dev/null || "$dev/apt-install.sh" curl
"$dev/up.sh"
echo "building spillway (release)"
cargo build --release -q -p spillway
"$bin" --log-format text topics create --config "$config"

# Running processes are reused only while they run this binary with this config.
fingerprint=$(cat "$bin" "$config" "$dev/demo-secrets.env" | sha256sum | cut -c1-16)
if [ "$(cat "$state/fingerprint" 2>/dev/null)" != "$fingerprint" ] && { ready 9090 || ready 9091 || alive worker; }; then
  echo "binary or config changed: restarting the ingress processes"
  stop
  for _ in $(seq 100); do ready 9090 || ready 9091 || alive worker || break; sleep 0.2; done
fi
echo "$fingerprint" >"$state/fingerprint"

for i in 0 1; do
  port=$((8080 + i)); admin=$((9090 + i))
  if ready "$admin"; then
    echo "ingress $i already running on 127.0.0.1:$port (admin $admin)"
    continue
  fi
  SPILLWAY_INGRESS__LISTEN=127.0.0.1:$port SPILLWAY_ADMIN__LISTEN=127.0.0.1:$admin \
    nohup "$bin" ingress --config "$config" >"$state/ingress-$i.out" 2>"$state/ingress-$i.log" &
  echo $! >"$state/ingress-$i.pid"
  for _ in $(seq 100); do ready "$admin" && break; sleep 0.2; done
  ready "$admin" || { echo "ingress $i did not become ready; see $state/ingress-$i.log" >&2; tail "$state/ingress-$i.log" >&2; exit 1; }
  echo "ingress $i running on 127.0.0.1:$port (admin 127.0.0.1:$admin, logs $state/ingress-$i.log)"
done

if alive worker; then
  echo "worker already running (logs $state/worker.log)"
else
  nohup "$bin" worker --config "$config" >"$state/worker.out" 2>"$state/worker.log" &
  echo $! >"$state/worker.pid"
  echo "worker running (logs $state/worker.log)"
fi

echo
"$bin" --log-format text demo --config "$config" --inbox demo-inbox \
  --target http://127.0.0.1:8080 --target http://127.0.0.1:8081
echo
echo "Try it yourself: see the README's curl example. Metrics: curl -s 127.0.0.1:9090/metrics | grep spillway_"
echo "Stop everything with: make down"
