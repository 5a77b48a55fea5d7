#!/usr/bin/env bash
# The main job: installs what is missing, builds, then draws a picture with the
# demo model spdit ships (models/shapes-demo, a tiny FLUX.1 trained on shapes)
# on 2 local ranks (Ulysses 2), checked against one rank:
#   bash scripts/run.sh                      # "a red circle on a blue background" -> spdit-demo.png
#   bash scripts/run.sh --prompt "a yellow triangle on a green background" --out tri.png
# Other arguments go to `spdit run` (--seed, --steps, --nproc, ...). Given
# --model-dir, --model or --preset, no demo defaults are added: the old
# `spdit run` defaults (random flux small) are `bash scripts/run.sh --preset small`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/build.sh"
has() {  # has FLAG ARGS...: whether FLAG (or FLAG=...) is among ARGS
  local flag="$1" a
  shift
  for a in "$@"; do
    if [ "$a" = "$flag" ] || [ "${a#"$flag"=}" != "$a" ]; then return 0; fi
  done
  return 1
}
demo=()
if ! has --model-dir "$@" && ! has --model "$@" && ! has --preset "$@" && ! has --weights "$@"; then
  demo+=(--model-dir "$root/models/shapes-demo")
  has --prompt "$@" || has --prompt-embeds "$@" || demo+=(--prompt "a red circle on a blue background")
  has --out "$@" || demo+=(--out spdit-demo.png)
  has --nproc "$@" || demo+=(--nproc 2)
  has --ulysses "$@" || has --ring "$@" || demo+=(--ulysses 2)
  has --check "$@" || demo+=(--check)
fi
exec "${SPDIT_BUILD_DIR:-$root/build}/spdit" run "${demo[@]+"${demo[@]}"}" "$@"
