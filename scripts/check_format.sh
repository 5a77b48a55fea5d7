#!/usr/bin/env bash
# Checks every tracked C++ file against the root .clang-format (exit 1 and the
# first differences when one is off); with --fix, formats them in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cc' '*.hpp')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}" 2> /tmp/spdit-format.$$; then
  head -40 /tmp/spdit-format.$$
  echo "check_format: $(grep -c 'error:' /tmp/spdit-format.$$) lines differ from .clang-format; run: bash scripts/check_format.sh --fix"
  rm -f /tmp/spdit-format.$$
  exit 1
fi
rm -f /tmp/spdit-format.$$
echo "check_format: ${#files[@]} files follow .clang-format"
