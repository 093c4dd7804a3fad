#!/usr/bin/env bash
# The tansu Kafka-protocol broker on 127.0.0.1, built once from crates.io and cached.
#
#   dev/tansu.sh install                 build tansu (about 18 minutes the first time), print its path
#   dev/tansu.sh path                    print the binary's path (installing it if needed)
#   dev/tansu.sh start [--port 9092] [--storage memory|sqlite|postgres] [--pg-port 5433]
#                      [--dir .stack/tansu-9092]
#   dev/tansu.sh stop|kill|status [--port 9092] [--dir ...]
#
# memory storage is fastest; sqlite keeps the data in DIR/tansu.db across restarts; postgres
# keeps it in the database of `dev/postgres.sh start --port PG_PORT`, which several brokers
# (on different ports) can share: one cluster whose brokers each answer for every partition.
# `kill` sends SIGKILL, as a crash would; `stop` sends SIGTERM.
set -euo pipefail

TANSU_VERSION=0.6.0
# memory:// is dynostore's; sqlite:// is libsql's; postgres:// is postgres's.
TANSU_FEATURES=libsql,dynostore,postgres
cache=${SPILLWAY_CACHE:-$HOME/.cache/spillway}
root_dir=$cache/tansu-$TANSU_VERSION
bin=$root_dir/bin/tansu

cmd=${1:-status}
shift || true
port=9092
storage=memory
pg_port=5433
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --storage) storage=$2; shift 2 ;;
    --pg-port) pg_port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$repo/.stack/tansu-$port}

install() {
  if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "tansu $TANSU_VERSION" ] &&
    [ "$(cat "$root_dir/features" 2>/dev/null)" = "$TANSU_FEATURES" ]; then
    return 0
  fi
  echo "building tansu $TANSU_VERSION into $root_dir (one time, several minutes)" >&2
  # A separate target dir keeps the broker's build out of the workspace's.
  CARGO_TARGET_DIR=$cache/tansu-build cargo install tansu --version "$TANSU_VERSION" --locked \
    --features "$TANSU_FEATURES" --root "$root_dir" >&2
  echo "$TANSU_FEATURES" >"$root_dir/features"
  rm -rf "$cache/tansu-build"
}

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

start() {
  install
  if listening; then
    echo "tansu already listening on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$dir"
  case "$storage" in
    memory) engine="memory://tansu/" ;;
    # Relative to the broker's working directory, which is $dir.
    sqlite) engine="sqlite://tansu.db" ;;
    postgres) engine=$("$repo/dev/postgres.sh" url --port "$pg_port") ;;
    *) echo "storage must be memory, sqlite or postgres" >&2; exit 2 ;;
  esac
  (
    cd "$dir"
    nohup "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$engine" >"$dir/tansu.log" 2>&1 &
    echo $! >"$dir/tansu.pid"
  )
  for _ in $(seq 200); do
    listening && { echo "tansu listening on 127.0.0.1:$port ($storage)"; return 0; }
    sleep 0.1
  done
  echo "tansu did not start; see $dir/tansu.log" >&2
  tail -20 "$dir/tansu.log" >&2 || true
  exit 1
}

signal() {
  local sig=$1
  [ -f "$dir/tansu.pid" ] || { echo "tansu on port $port: no pid file"; return 0; }
  pid=$(cat "$dir/tansu.pid")
  # A broker that died left its pid behind, which another process may have by now.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != tansu ]; then
    rm -f "$dir/tansu.pid"
    echo "tansu on port $port: not running (stale pid file)"
    return 0
  fi
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do gone "$pid" && break; sleep 0.1; done
  if ! gone "$pid"; then
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 50); do gone "$pid" && break; sleep 0.1; done
  fi
  # Still there (not ours to signal, say): the pid file stays, so a later stop can find it.
  if ! gone "$pid"; then
    echo "tansu on port $port (pid $pid) did not stop" >&2
    return 1
  fi
  rm -f "$dir/tansu.pid"
  echo "tansu on port $port stopped ($sig)"
}

# Whether process $1 has exited (a zombie nobody reaped yet has: its sockets are closed).
gone() {
  [ ! -e "/proc/$1" ] || [ "$(sed -E 's/.*\) ([A-Z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

case "$cmd" in
  install) install; echo "$bin" ;;
  path) install; echo "$bin" ;;
  start) start ;;
  stop) signal TERM ;;
  kill) signal KILL ;;
  status) if listening; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 install|path|start|stop|kill|status [--port N] [--storage memory|sqlite|postgres] [--pg-port N] [--dir D]" >&2; exit 2 ;;
esac
