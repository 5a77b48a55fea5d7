#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every CTest
# test (unit, multi-process, end to end, faults, two hosts), the unit tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, a short soak (40
# consecutive 4-rank jobs, ~2 minutes; SPDIT_SOAK_JOBS=N for another count;
# the long soak is its own command, `bash tests/soak.sh build/spdit 200`), and
# a consumer project built against the installed package.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SPDIT_BUILD_DIR:-$root/build}"
asan="${SPDIT_ASAN_BUILD_DIR:-$root/build-asan}"
bash "$root/scripts/build.sh"
echo "== format"
bash "$root/scripts/check_format.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
(cd "$build" && ctest -j2 --output-on-failure --timeout 600)

echo "== unit tests under ASan + UBSan"
cmake -S "$root" -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPDIT_SANITIZE=ON \
  -DSPDIT_BUILD_BENCH=OFF >/dev/null
cmake --build "$asan" -j"${SPDIT_JOBS:-2}" --target spdit_tests
# LibTorch keeps some allocations for the life of the process on purpose.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$asan/tests/spdit_tests" --gtest_brief=1

echo "== soak"
bash "$root/tests/soak.sh" "$build/spdit" "${SPDIT_SOAK_JOBS:-40}"

echo "== consumer of the installed package"
prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$root/tests/consumer" -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" -j2 >/dev/null
LD_LIBRARY_PATH="$prefix/lib:${LD_LIBRARY_PATH:-}" "$prefix/consumer-build/consumer"
# The installed command must start on its own (RUNPATH), as a user runs it.
bash "$root/tests/installed_binary_test.sh" "$prefix"
echo "consumer: 2 passed, 0 failed"
