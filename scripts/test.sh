#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every CTest
# test, then installs spdit into a scratch prefix and builds and runs a
# consumer project against the installed package.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SPDIT_BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
(cd "$build" && ctest -j2 --output-on-failure --timeout 600)

prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$root/tests/consumer" -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" -j2 >/dev/null
LD_LIBRARY_PATH="$prefix/lib:${LD_LIBRARY_PATH:-}" "$prefix/consumer-build/consumer"
echo "consumer: 1 passed, 0 failed"
