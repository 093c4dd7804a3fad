#!/usr/bin/env bash
# Headless Chromium for the console's page test: Debian's `chromium` package and Playwright's
# driver (`playwright-core` from npm, pinned), with no browser download. Installed once.
#
#   dev/browser.sh install                 both, if missing
#   dev/browser.sh node SCRIPT [ARGS...]   node running SCRIPT with playwright-core requirable,
#                                          CHROMIUM naming the browser
set -euo pipefail

# The driver whose bundled Chromium is Debian 12's (148): Playwright drives the Chromium it
# was released with, and neighbouring ones in practice. Move both together.
PLAYWRIGHT=playwright-core@1.60.0
dev=$(cd "$(dirname "$0")" && pwd)
cache=${SPILLWAY_CACHE:-$HOME/.cache/spillway}
modules=$cache/playwright
stamp=$modules/.spillway-version

install() {
  if ! command -v chromium >/dev/null; then
    echo "installing Debian's chromium (one time)" >&2
    "$dev/apt-install.sh" chromium
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$PLAYWRIGHT" ]; then
    echo "installing $PLAYWRIGHT into $modules (one time)" >&2
    rm -rf "$modules"
    mkdir -p "$modules"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$modules" --no-audit --no-fund \
      --silent "$PLAYWRIGHT" >&2
    echo "$PLAYWRIGHT" > "$stamp"
  fi
}

case "${1:-install}" in
  install) install ;;
  node)
    shift
    install
    CHROMIUM=$(command -v chromium) NODE_PATH=$modules/node_modules exec node "$@"
    ;;
  *) echo "usage: dev/browser.sh install | node SCRIPT [ARGS...]" >&2; exit 2 ;;
esac
