#!/usr/bin/env bash
# Installs Debian packages, refreshing the package lists once if they are missing or the first
# attempt fails. Needs root (as on the project's machines and CI).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@"
fi
