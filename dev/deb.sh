#!/usr/bin/env bash
# `make deb`: the Debian package for virtual machines, built by cargo-deb from the release
# build: target/debian/spillway_<version>-1_<arch>.deb. What it holds is in docs/deploying-vm.md;
# its metadata is [package.metadata.deb] in crates/cli/Cargo.toml.
# `dev/deb.sh --tool` only installs the pinned cargo-deb (`make up` runs it: the e2e test
# `package` builds the package from the test build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION from crates.io" >&2
  cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
if [ "${1:-}" = "--tool" ]; then
  exit 0
fi
cd "$root"
cargo deb --locked -p spillway
