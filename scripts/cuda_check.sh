#!/usr/bin/env bash
# Builds spdit against the LibTorch of a CUDA PyTorch wheel (the python3 on
# PATH), runs the test suite with it and the attention benchmark on the GPU.
# Logs and figures go to $OUT (default /tmp/spdit-cuda-check).
#
#   bash scripts/cuda_check.sh
#
# Where the machine lacks spdit's other build dependencies and cannot install
# them, SPDIT_DEBS names a folder of Debian packages to unpack into a private
# prefix (nothing is installed), and SPDIT_GLOO_INCLUDE_DIR a copy of Gloo's
# headers (CUDA wheels ship none). SPDIT_ONLY_TARGET=<test binary> with
# SPDIT_GTEST_FILTER builds just that binary and the command, runs the filter
# and the GPU bench: a quick recheck. Each step has a time limit so that the
# logs come back even when one runs long.
set -uo pipefail
out=${OUT:-/tmp/spdit-cuda-check}
mkdir -p "$out"
build=${SPDIT_CUDA_BUILD:-build-cuda}
jobs=$(nproc)
step() { echo "== $(date +%T) $*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
# The host CPU too: its features decide the CPU kernels (AMX, AVX512-BF16).
lscpu | grep -E "^Model name|^CPU\(s\)" | tee "$out/cpu.txt"
grep -o -w -E "avx512f|avx512_bf16|amx_tile|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' ' | tee -a "$out/cpu.txt"
echo
(g++ --version | head -1; cmake --version | head -1; ninja --version; grep PRETTY /etc/os-release) 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
torch_dir=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')

prefix_path=$torch_cmake
extra=()
if [ -n "${SPDIT_DEBS:-}" ]; then
  step "unpacking $(ls "$SPDIT_DEBS"/*.deb | wc -l) Debian packages into a private prefix"
  deps=/tmp/spdit-deps
  mkdir -p $deps
  for f in "$SPDIT_DEBS"/*.deb; do dpkg -x "$f" $deps; done
  arch=x86_64-linux-gnu
  export PKG_CONFIG_SYSROOT_DIR=$deps
  export PKG_CONFIG_LIBDIR=$deps/usr/lib/$arch/pkgconfig:$deps/usr/share/pkgconfig
  export LD_LIBRARY_PATH=$deps/usr/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  prefix_path="$deps/usr;$torch_cmake"
  command -v pkg-config > /dev/null || extra+=(-DPKG_CONFIG_EXECUTABLE=$deps/usr/bin/pkgconf)
fi
if [ -e "$torch_dir/include/gloo/algorithm.h" ]; then
  echo "the wheel ships Gloo's headers"
elif [ -n "${SPDIT_GLOO_INCLUDE_DIR:-}" ]; then
  echo "the wheel ships no Gloo headers: using $SPDIT_GLOO_INCLUDE_DIR"
  extra+=(-DSPDIT_GLOO_INCLUDE_DIR="$SPDIT_GLOO_INCLUDE_DIR")
fi
# The wheel's libtorch_cpu exports the std::filesystem of the libstdc++ it
# links statically (pytorch/pytorch#133437); programs that bind to it crash
# in std::filesystem::path. Loading the system's libstdc++ first avoids that
# (seen on torch 2.11: the crashing tests pass with it).
export LD_PRELOAD=$(g++ -print-file-name=libstdc++.so.6)${LD_PRELOAD:+:$LD_PRELOAD}
nccl_h=$(find / -xdev -name nccl.h -path '*include*' 2> /dev/null | head -1)
[ -n "$nccl_h" ] && extra+=(-DNCCL_INCLUDE_DIR="$(dirname "$nccl_h")")

step "configure"
timeout 120 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix_path" -DSPDIT_WITH_FFMPEG=OFF "${extra[@]}" \
  > "$out/configure.log" 2>&1
rc=$?
grep -E "spdit:|Torch|CUDA|Error|error" "$out/configure.log" | head -20
[ $rc -eq 0 ] || { tail -30 "$out/configure.log"; exit 1; }

if [ -n "${SPDIT_ONLY_TARGET:-}" ]; then  # a quick recheck: one test binary, one filter, the GPU bench
  step "build $SPDIT_ONLY_TARGET and the command"
  timeout "${SPDIT_BUILD_LIMIT:-300}" ninja -C "$build" -j "$jobs" "$SPDIT_ONLY_TARGET" spdit_cli \
    > "$out/build.log" 2>&1 || {
    grep -E "error:|FAILED:" "$out/build.log" | head -20
    exit 1
  }
  step "run it"
  timeout "${SPDIT_TEST_LIMIT:-150}" "$build/tests/$SPDIT_ONLY_TARGET" \
    --gtest_filter="${SPDIT_GTEST_FILTER:-*}" > "$out/gtest.log" 2>&1
  echo "tests rc=$?"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[       OK|Failure|Expected|Which is|actual|error" \
    "$out/gtest.log" | head -60
  step "attention on the GPU"
  timeout 120 "$build/spdit" bench attention --device cuda --repeats 5 \
    --json "$out/bench_attention_cuda.json" 2>&1 | tee "$out/bench_attention_cuda.txt"
  exit
fi

# The command first (the GPU bench needs only it), then everything else.
step "build the command ($jobs jobs)"
timeout "${SPDIT_BUILD_LIMIT:-300}" ninja -C "$build" -k 0 -j "$jobs" spdit_cli > "$out/build.log" 2>&1
echo "build rc=$?"
grep -E "error:|FAILED:" "$out/build.log" | head -40

if [ -x "$build/spdit" ]; then
  step "attention on the GPU"
  timeout 90 "$build/spdit" bench attention --device cuda --repeats 5 \
    --json "$out/bench_attention_cuda.json" 2>&1 | tee "$out/bench_attention_cuda.txt"
fi

step "build the rest"
SECONDS=0
timeout "${SPDIT_REST_LIMIT:-200}" ninja -C "$build" -k 0 -j "$jobs" >> "$out/build.log" 2>&1
echo "build rc=$? in ${SECONDS} s"
grep -E "error:|FAILED:" "$out/build.log" | sort -u | head -40

step "tests"
# MP4 output needs FFmpeg (off in this build); the rest runs as in CI.
timeout "${SPDIT_TEST_LIMIT:-150}" ctest --test-dir "$build" -j "$jobs" --timeout 150 --output-on-failure \
  -E "${SPDIT_TEST_EXCLUDE:-Mp4Writer|prompt_to_mp4}" > "$out/ctest.log" 2>&1
echo "ctest rc=$?"
grep -E "tests passed|Failed|\*\*\*|Not Run|Timeout" "$out/ctest.log" | head -40
step "done"
