#!/usr/bin/env bash
# The chart's check tools in a Python virtualenv, installed once and cached (pinned versions):
#   helm-python-sdk      Helm v4's Go SDK (render, lint, values schema) without a helm binary
#   kubernetes-validate  the Kubernetes JSON schemas, strict (unknown fields are errors)
#
#   dev/chart-tools.sh python     print the virtualenv's python (installing it if needed)
set -euo pipefail

HELM_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
PYYAML_VERSION=6.0.3
cache=${SPILLWAY_CACHE:-$HOME/.cache/spillway}
venv=$cache/chart-venv
stamp=$venv/.spillway-versions
want="helm-python-sdk==$HELM_SDK_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION pyyaml==$PYYAML_VERSION"

install() {
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    return 0
  fi
  echo "installing the chart tools into $venv (one time)" >&2
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
  *) echo "usage: dev/chart-tools.sh python" >&2; exit 2 ;;
esac
