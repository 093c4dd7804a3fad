#!/usr/bin/env bash
# Runs every cargo-fuzz target for the given seconds each (default 10: the short run of
# `make test`; `make fuzz` runs longer). Installs cargo-fuzz when missing. libFuzzer needs
# nightly-only compiler flags, so the build sets RUSTC_BOOTSTRAP=1 on the stable toolchain, and
# runs without a sanitizer (`-s none`): Spillway has no unsafe code of its own to check, and a
# panic or a failed assertion is what the targets look for.
# Inputs in fuzz/regressions/<target>/ (crashes found earlier) are run first, every time.
set -euo pipefail
seconds=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi
# The pipeline target serves on loopback against the local stack.
"$root/dev/up.sh" >/dev/null
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz build -s none; then
  # The build compiles a second OpenSSL (the fuzz build has its own target directory): when that
  # fails on a machine, its free disk and memory are the first things to know.
  echo "fuzz build failed; disk: $(df -hP . | tail -1 | awk '{print $4 " free of " $2}')," \
    "memory: $(free -m | awk '/^Mem:/ {print $7 " MiB available of " $2}')" >&2
  exit 1
fi
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target" "regressions/$target" artifacts
  echo "fuzz $target for ${seconds}s"
  log="artifacts/$target.log"
  if ! cargo fuzz run -s none "$target" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=30 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz $target failed: the input is in fuzz/artifacts/$target/; add it to" \
      "fuzz/regressions/$target/ and a unit test beside the code it broke" >&2
    exit 1
  fi
  grep -E '^Done' "$log" || true
done
