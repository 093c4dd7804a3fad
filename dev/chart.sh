#!/usr/bin/env bash
# The Helm chart's checks and generators, run with the cached chart tools (dev/py-tools.sh):
#   dev/chart.sh check                       lint, render every ci/ scenario, validate strictly, ...
#   dev/chart.sh render [VALUES...] [--json] print what the chart renders
#   dev/chart.sh generate                    regenerate values.schema.json, README.md and the dashboards
#   dev/chart.sh manifests                   regenerate the plain manifests in k8s/base
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$("$here/py-tools.sh" python chart)
# promtool (Debian's prometheus package) tests the alert rules.
if [ "${1:-check}" = check ] && ! command -v promtool >/dev/null; then
  "$here/apt-install.sh" prometheus >&2
fi
exec "$python" "$here/../helm/tests/chart.py" "$@"
