#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs `spdit run` with
# its defaults (flux small, 1024x1024, 8 steps, 2 local ranks, Ulysses 2).
# Extra arguments go to `spdit run`, e.g. `bash scripts/run.sh --check --out spdit.png`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/build.sh"
exec "${SPDIT_BUILD_DIR:-$root/build}/spdit" run "$@"
