#!/usr/bin/env bash
# The installed `spdit` starts without LD_LIBRARY_PATH: it finds libspdit.so.0
# through its RUNPATH ($ORIGIN/../lib). Usage: installed_binary_test.sh PREFIX
# (an installed tree), or installed_binary_test.sh --install BUILD_DIR (installs
# BUILD_DIR into a temporary prefix first; what CTest runs).
set -euo pipefail
if [ "${1:-}" = "--install" ]; then
  prefix="$(mktemp -d)"
  trap 'rm -rf "$prefix"' EXIT
  cmake --install "$2" --prefix "$prefix" >/dev/null
else
  prefix="$1"
fi
bin="$prefix/bin/spdit"
out="$(env -u LD_LIBRARY_PATH "$bin" --help 2>&1)" || {
  echo "installed $bin does not start without LD_LIBRARY_PATH:"
  echo "$out"
  exit 1
}
echo "$out" | grep -q "launch" || { echo "unexpected --help output: $out"; exit 1; }
out="$(env -u LD_LIBRARY_PATH -u RANK -u WORLD_SIZE "$bin" explain --model flux --preset tiny \
  --height 64 --width 64 --ulysses 2 2>&1)" || { echo "installed spdit explain failed: $out"; exit 1; }
echo "installed binary: starts without LD_LIBRARY_PATH (RUNPATH $(readelf -d "$bin" | sed -n 's/.*R.*PATH.*\[\(.*\)\]/\1/p'))"
