#!/usr/bin/env bash
# Python tools in cached virtualenvs, one per set, installed once with pinned versions:
#   chart   helm-python-sdk (Helm v4's Go SDK: render, lint, values schema, no helm binary),
#           kubernetes-validate (the Kubernetes JSON schemas, strict), pyyaml
#   bench   matplotlib (the benchmark plot)
#   protobuf  Google's protobuf runtime (the fleet schema vectors' JSON, dev/fleet-schemas)
#   schemathesis  Schemathesis (the console API fuzzed from its OpenAPI document)
#
#   dev/py-tools.sh python chart|bench|protobuf|schemathesis
#                                                   print the set's python (installing it if needed)
set -euo pipefail

cache=${SPILLWAY_CACHE:-$HOME/.cache/spillway}
set_name=${2:-chart}
case "$set_name" in
  chart) want="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 pyyaml==6.0.3" ;;
  bench) want="matplotlib==3.10.7" ;;
  protobuf) want="protobuf==6.33.1" ;;
  schemathesis) want="schemathesis==4.32.5" ;;
  *) echo "unknown tool set $set_name (chart, bench, protobuf or schemathesis)" >&2; exit 2 ;;
esac
venv=$cache/$set_name-venv
stamp=$venv/.spillway-versions

install() {
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    return 0
  fi
  echo "installing the $set_name tools into $venv (one time)" >&2
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    "$(dirname "$0")/apt-install.sh" python3-venv python3-pip
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC2086 # $want is a list of requirements
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
  echo "$want" > "$stamp"
}

case "${1:-python}" in
  python) install; echo "$venv/bin/python" ;;
  *) echo "usage: dev/py-tools.sh python chart|bench|protobuf|schemathesis" >&2; exit 2 ;;
esac
