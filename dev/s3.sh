#!/usr/bin/env bash
# A local S3-compatible object store on 127.0.0.1: s3s-fs (crates.io, built once into the
# cache), which checks SigV4 signatures, takes multipart uploads and serves presigned URLs,
# over a directory. The bucket `spillway` exists from the start. Idempotent: `start` on a
# running server only reports it.
#
#   dev/s3.sh start|stop|status|env [--port 9000] [--dir .stack/s3-9000]
#
# `env` prints the variables the tests and the demo read (endpoint, bucket, keys). The keys
# are fixed test keys for a loopback-only server, not secrets.
set -euo pipefail

VERSION=0.14.1   # the last release that builds with Rust 1.95 (0.15 needs 1.96)
ACCESS_KEY=spillway-local
SECRET_KEY=spillway-local-secret
BUCKET=spillway

cmd=${1:-status}
shift || true
port=9000
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$root/.stack/s3-$port}
cache=${SPILLWAY_CACHE:-$HOME/.cache/spillway}
install_root=$cache/s3s-fs-$VERSION
bin=$install_root/bin/s3s-fs

install() {
  [ -x "$bin" ] && return 0
  echo "building s3s-fs $VERSION into $install_root (one time, a few minutes)" >&2
  cargo install s3s-fs --version "$VERSION" --features binary --locked --root "$install_root" >&2
}

running() {
  [ -f "$dir/s3s.pid" ] && kill -0 "$(cat "$dir/s3s.pid")" 2>/dev/null
}

answers() {
  # It accepts connections (bash's /dev/tcp: no client tool needed).
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

start() {
  install
  if running && answers; then
    echo "s3s-fs already running on 127.0.0.1:$port"
    return 0
  fi
  # A server that died leaves its pid file: only that process is ended, the data is kept.
  if [ -f "$dir/s3s.pid" ] && [ "$(cat "/proc/$(cat "$dir/s3s.pid")/comm" 2>/dev/null)" = s3s-fs ]; then
    kill "$(cat "$dir/s3s.pid")" 2>/dev/null || true
  fi
  mkdir -p "$dir/data/$BUCKET"
  nohup "$bin" --host 127.0.0.1 --port "$port" --access-key "$ACCESS_KEY" \
    --secret-key "$SECRET_KEY" "$dir/data" >"$dir/s3s.log" 2>&1 &
  echo $! >"$dir/s3s.pid"
  for _ in $(seq 100); do
    answers && { echo "s3s-fs running on 127.0.0.1:$port (bucket $BUCKET)"; return 0; }
    sleep 0.1
  done
  echo "s3s-fs did not start; see $dir/s3s.log" >&2
  exit 1
}

# Ends the server and removes its data, as the other local-stack scripts do.
stop() {
  if [ -f "$dir/s3s.pid" ] && [ "$(cat "/proc/$(cat "$dir/s3s.pid")/comm" 2>/dev/null)" = s3s-fs ]; then
    kill "$(cat "$dir/s3s.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) if running && answers; then echo "running on 127.0.0.1:$port"; else echo "not running"; exit 1; fi ;;
  env)
    echo "SPILLWAY_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "SPILLWAY_S3_BUCKET=$BUCKET"
    echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
    ;;
  *) echo "usage: dev/s3.sh start|stop|status|env [--port 9000] [--dir DIR]" >&2; exit 2 ;;
esac
