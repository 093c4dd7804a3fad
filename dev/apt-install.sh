#!/usr/bin/env bash
# Installs Debian packages, refreshing the package lists once if they are missing or the first
# attempt fails. Needs root (as on the project's machines and CI).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Packages that ship a service (nginx, HAProxy, Redis, PostgreSQL) must not start it on
# install: the tests start their own, on loopback. policy-rc.d answering 101 forbids it.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@"
fi
