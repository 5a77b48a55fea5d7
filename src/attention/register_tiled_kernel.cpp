#include "register_tiled_kernel.h"

#include "online_softmax_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#define SPDIT_X86_KERNELS 1
#endif

namespace spdit::detail {
namespace {

// Columns of a register tile: 4 vectors of 16 floats, 2 of 8.
constexpr int64_t kAvx512Tile = 64, kAvx2Tile = 16;

#ifdef SPDIT_X86_KERNELS

// GCC vector extensions: one body for both instruction sets, compiled for
// each by the target attribute of the function it is inlined into.
typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));

template <class V>
constexpr int64_t kLanes = sizeof(V) / sizeof(float);

#define SPDIT_INLINE __attribute__((always_inline)) inline
// The helpers below pass vectors by value but are always inlined into a
// function compiled for the vector width, so no call ever uses that ABI.
#pragma GCC diagnostic ignored "-Wpsabi"

template <class V>
SPDIT_INLINE V load(const float* p) {
  V x;
  std::memcpy(&x, p, sizeof(V));  // an unaligned vector load
  return x;
}

template <class V>
SPDIT_INLINE void store(float* p, V x) {
  std::memcpy(p, &x, sizeof(V));
}

// c[r, 0:NV*lanes] (+)= sum_k a[r, k] * b[k, 0:NV*lanes] for r < R: an outer
// product per k, R x NV accumulators held in registers throughout, each
// a[r, k] broadcast, each b row loaded once for all R rows.
template <class V, int R, int NV, bool kAccumulate>
SPDIT_INLINE void tile(float* c, int64_t ldc, const float* a, int64_t lda, const float* b,
                       int64_t ldb, int64_t n) {
  V acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      acc[r][j] = kAccumulate ? load<V>(c + r * ldc + j * kLanes<V>) : V{};
  }
  for (int64_t k = 0; k < n; ++k) {
    V bk[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bk[j] = load<V>(b + k * ldb + j * kLanes<V>);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float ar = a[r * lda + k];
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[r][j] += ar * bk[j];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) store<V>(c + r * ldc + j * kLanes<V>, acc[r][j]);
  }
}

// The last `nv` (< NV) vectors of a row of d columns.
template <class V, int R, int NV>
SPDIT_INLINE void tile_tail(int nv, float* c, int64_t ldc, const float* a, int64_t lda,
                            const float* b, int64_t ldb, int64_t n) {
  if constexpr (NV > 1) {
    if (nv == NV - 1) return tile<V, R, NV - 1, true>(c, ldc, a, lda, b, ldb, n);
    tile_tail<V, R, NV - 1>(nv, c, ldc, a, lda, b, ldb, n);
  }
}

// Key columns per score block: a group's scores (R x kKeyBlock floats,
// 12 KB) stay in L1 from Q K^T through P V.
constexpr int64_t kKeyBlock = kScoreBlock;

// Rows i0 .. i0+R of one head over keys k0 .. k1, continuing their online
// softmax state m, l (indexed by row) and their output rows in h.out.
template <class V, int R, int NV>
SPDIT_INLINE void row_group(const HeadOperands& h, int64_t i0, int64_t k0, int64_t k1, float* s,
                            float* m, float* l) {
  constexpr int64_t kTile = NV * kLanes<V>;
  static_assert(kKeyBlock % kTile == 0, "tiles must divide the score block");
  const float* q = h.q + i0 * h.ldq;
  float* o = h.out + i0 * h.ldo;
  m += i0;
  l += i0;
  float alpha[R];
  const int64_t full = h.d / kTile * kTile;
  const int tail = static_cast<int>((h.d - full) / kLanes<V>);
  for (int64_t ks = k0; ks < k1; ks += kKeyBlock) {
    const int64_t bk = std::min(kKeyBlock, k1 - ks);
    // Whole tiles, one key panel each: the last panel is zero-padded, and
    // the softmax below reads only the bk valid columns.
    for (int64_t j = 0; j < bk; j += kTile) {
      tile<V, R, NV, false>(s + j, kKeyBlock, q, h.ldq, h.kt + (ks + j) * h.d, kTile, h.d);
    }
    online_softmax_rows(s, R, bk, kKeyBlock, h.bias ? h.bias + ks : nullptr, h.scale, m, l, alpha);
    scale_rows(o, R, h.d, h.ldo, alpha);
    // One value panel per tile of output columns (the tail's panel is narrower).
    for (int64_t c = 0; c < full; c += kTile) {
      tile<V, R, NV, true>(o + c, h.ldo, s, kKeyBlock, h.v + c * h.sk + ks * kTile, kTile, bk);
    }
    if (tail) {
      const int64_t w = h.d - full;
      tile_tail<V, R, NV>(tail, o + full, h.ldo, s, kKeyBlock, h.v + full * h.sk + ks * w, w, bk);
    }
  }
}

// The last rows (fewer than a group), by the group size that fits them.
template <class V, int R, int NV>
SPDIT_INLINE void last_rows(const HeadOperands& h, int64_t i0, int64_t rows, int64_t k0, int64_t k1,
                            float* s, float* m, float* l) {
  if constexpr (R > 0) {
    if (rows == R) return row_group<V, R, NV>(h, i0, k0, k1, s, m, l);
    last_rows<V, R - 1, NV>(h, i0, rows, k0, k1, s, m, l);
  }
}

// R x NV accumulators plus NV loaded rows and one broadcast fit the register
// file: 6 x 4 + 4 + 1 of AVX-512's 32, 6 x 2 + 2 + 1 of AVX2's 16.
// Keys go in L2-sized blocks (h.key_block), each visited by every row group
// before the next, so K and V come from L2 for all row groups but the first;
// the rows' softmax state waits in m and l between blocks.
template <class V, int R, int NV>
SPDIT_INLINE void attend(const HeadOperands& h) {
  alignas(64) float s[R * kKeyBlock];
  std::vector<float> state(2 * h.sq);
  float* m = state.data();
  float* l = m + h.sq;
  begin_rows(h.out, h.ldo, h.lse, h.sq, h.d, h.scale, h.resume, m, l);
  const int64_t block = std::max(kKeyBlock, h.key_block / kKeyBlock * kKeyBlock);
  for (int64_t k0 = 0; k0 < h.sk; k0 += block) {
    const int64_t k1 = std::min(h.sk, k0 + block);
    int64_t i = 0;
    for (; i + R <= h.sq; i += R) row_group<V, R, NV>(h, i, k0, k1, s, m, l);
    if (i < h.sq) last_rows<V, R - 1, NV>(h, i, h.sq - i, k0, k1, s, m, l);
  }
  finish_rows(h.out, h.ldo, h.lse, h.sq, h.d, h.scale, m, l);
}

__attribute__((target("avx512f,fma"))) void attend_avx512(const HeadOperands& h) {
  attend<V16, 6, kAvx512Tile / kLanes<V16>>(h);
}
__attribute__((target("avx2,fma"))) void attend_avx2(const HeadOperands& h) {
  attend<V8, 6, kAvx2Tile / kLanes<V8>>(h);
}

bool cpu_has(CpuKernel k) {
  __builtin_cpu_init();
  switch (k) {
    case CpuKernel::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case CpuKernel::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuKernel::kBlas:
      return true;
  }
  return false;
}

#else

bool cpu_has(CpuKernel k) { return k == CpuKernel::kBlas; }

#endif

int64_t lanes(CpuKernel k) { return k == CpuKernel::kAvx512 ? 16 : k == CpuKernel::kAvx2 ? 8 : 0; }

}  // namespace

const char* cpu_kernel_name(CpuKernel kernel) {
  switch (kernel) {
    case CpuKernel::kAvx512:
      return "avx512";
    case CpuKernel::kAvx2:
      return "avx2";
    case CpuKernel::kBlas:
      return "blas";
  }
  return "?";
}

CpuKernel selected_cpu_kernel() {
  // Read on every call (one getenv per attention call) so that a benchmark
  // or test can compare kernels within one process.
  const char* want = std::getenv("SPDIT_CPU_KERNEL");
  if (want && *want) {
    for (auto k : {CpuKernel::kBlas, CpuKernel::kAvx2, CpuKernel::kAvx512}) {
      if (std::string(want) != cpu_kernel_name(k)) continue;
      if (!cpu_has(k)) {
        std::string runnable;
        for (auto r : {CpuKernel::kAvx512, CpuKernel::kAvx2, CpuKernel::kBlas}) {
          if (cpu_has(r))
            runnable += std::string(runnable.empty() ? "" : ", ") + cpu_kernel_name(r);
        }
        throw std::invalid_argument(std::string("spdit: SPDIT_CPU_KERNEL=") + want +
                                    " names a kernel this CPU cannot run; it runs " + runnable +
                                    " (unset the variable for the fastest)");
      }
      return k;
    }
    throw std::invalid_argument(std::string("spdit: SPDIT_CPU_KERNEL=") + want +
                                " is none of blas, avx2, avx512 (unset it for the CPU's fastest)");
  }
  static const CpuKernel best = cpu_has(CpuKernel::kAvx512) ? CpuKernel::kAvx512
                                : cpu_has(CpuKernel::kAvx2) ? CpuKernel::kAvx2
                                                            : CpuKernel::kBlas;
  return best;
}

bool register_tiled(CpuKernel kernel, int64_t d) {
  return kernel != CpuKernel::kBlas && d > 0 && d % lanes(kernel) == 0;
}

int64_t tile_columns(CpuKernel kernel) {
  return kernel == CpuKernel::kAvx512 ? kAvx512Tile : kernel == CpuKernel::kAvx2 ? kAvx2Tile : 0;
}

int64_t packed_keys_size(int64_t sk, int64_t d, int64_t panel) {
  return (sk + panel - 1) / panel * panel * d;
}

void pack_keys(const float* k, int64_t ld, int64_t sk, int64_t d, int64_t panel, float* kt) {
  for (int64_t j0 = 0; j0 < sk; j0 += panel) {
    const int64_t n = std::min(panel, sk - j0);
    float* out = kt + j0 * d;  // (d x panel)
    // 16 keys at a time: their rows stay in L1 while the panel's d rows take
    // 16 floats each.
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
      const int64_t m = std::min<int64_t>(16, n - i0);
      for (int64_t c = 0; c < d; ++c) {
        for (int64_t i = 0; i < m; ++i) out[c * panel + i0 + i] = k[(j0 + i0 + i) * ld + c];
      }
    }
    for (int64_t c = 0; c < d; ++c) std::fill(out + c * panel + n, out + (c + 1) * panel, 0.0f);
  }
}

void pack_values(const float* v, int64_t ld, int64_t sk, int64_t d, int64_t panel, float* vp) {
  for (int64_t c0 = 0; c0 < d; c0 += panel) {
    const int64_t w = std::min(panel, d - c0);
    float* out = vp + c0 * sk;
    for (int64_t j = 0; j < sk; ++j) std::memcpy(out + j * w, v + j * ld + c0, sizeof(float) * w);
  }
}

void register_tiled_attention(CpuKernel kernel, const HeadOperands& h) {
  if (!register_tiled(kernel, h.d) || h.panel != tile_columns(kernel)) {
    throw std::logic_error("spdit: register_tiled_attention called outside its domain");
  }
#ifdef SPDIT_X86_KERNELS
  if (kernel == CpuKernel::kAvx512) return attend_avx512(h);
  if (kernel == CpuKernel::kAvx2) return attend_avx2(h);
#endif
}

}  // namespace spdit::detail
