#!/usr/bin/env bash
# Installs what is missing, then configures and builds spdit into build/ (Release).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install_deps.sh"
build="${SPDIT_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${SPDIT_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"${SPDIT_JOBS:-2}"
