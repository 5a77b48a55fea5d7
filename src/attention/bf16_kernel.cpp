#include "bf16_kernel.h"

#include "exp2_lanes.h"
#include "online_softmax_cpu.h"
#include "register_tiled_kernel.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#define SPDIT_BF16_KERNEL 1
#include <immintrin.h>
#endif

namespace spdit::detail {

#ifdef SPDIT_BF16_KERNEL
namespace {

// Every function that touches a vector is compiled for AVX512-BF16 and
// inlined into attend_bf16, the one entry point, which is only called after
// cpuid said yes: the rest of the library stays baseline x86-64.
#define SPDIT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define SPDIT_BF16_INLINE SPDIT_BF16_TARGET __attribute__((always_inline)) inline
// exp2_nonpositive_lanes<__m512> is instantiated outside the target
// attribute but always inlined into it: no call passes a vector.
#pragma GCC diagnostic ignored "-Wpsabi"

constexpr int64_t kKeyBlock = kScoreBlock;

// c[r, 0:16*NV] (+)= sum_p a[r, 2p:2p+2] . b[p, 0:16*NV, 0:2] for r < R:
// each step broadcasts a pair of a's bf16 values (one 32-bit word) and
// multiplies it into NV vectors of 16 pairs from b, one dot product per
// accumulator. a rows are `lda` bf16 apart; b steps are `ldb` bf16 apart.
template <int R, int NV, bool kAccumulate>
SPDIT_BF16_INLINE void dot_tile(float* c, int64_t ldc, const uint16_t* a, int64_t lda,
                                const uint16_t* b, int64_t ldb, int64_t pairs) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      acc[r][j] = kAccumulate ? _mm512_loadu_ps(c + r * ldc + 16 * j) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh bp[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bp[j] = (__m512bh)_mm512_loadu_si512(b + p * ldb + 32 * j);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * p, sizeof(pair));
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], ar, bp[j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(c + r * ldc + 16 * j, acc[r][j]);
  }
}

// The last `nv` (< NV) vectors of an output row.
template <int R, int NV>
SPDIT_BF16_INLINE void dot_tile_tail(int nv, float* c, int64_t ldc, const uint16_t* a, int64_t lda,
                                     const uint16_t* b, int64_t ldb, int64_t pairs) {
  if constexpr (NV > 1) {
    if (nv == NV - 1) return dot_tile<R, NV - 1, true>(c, ldc, a, lda, b, ldb, pairs);
    dot_tile_tail<R, NV - 1>(nv, c, ldc, a, lda, b, ldb, pairs);
  }
}

typedef int32_t Int16Lanes __attribute__((vector_size(64)));

// The softmax's exponential pass writing bf16 probabilities for P V in one
// instruction per 32 (vcvtne2ps2bf16, round to nearest even): the integer
// rounding and narrowing a portable pass needs took as long as the
// exponentials themselves. The tail is masked: lanes past n give 0.
SPDIT_BF16_TARGET float exp_to_bf16(const float* row, int64_t n, float shift, float scale,
                                    uint16_t* out) {
  const __m512 k = _mm512_set1_ps(scale * 1.44269504088896341f);
  const __m512 offset = _mm512_set1_ps(-shift * scale * 1.44269504088896341f);
  __m512 sum = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512 e0 = exp2_nonpositive_lanes<__m512, Int16Lanes>(
        _mm512_fmadd_ps(_mm512_loadu_ps(row + j), k, offset));
    const __m512 e1 = exp2_nonpositive_lanes<__m512, Int16Lanes>(
        _mm512_fmadd_ps(_mm512_loadu_ps(row + j + 16), k, offset));
    sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
    _mm512_storeu_si512(out + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
  }
  for (; j < n; j += 16) {
    const __mmask16 keep = n - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(keep, row + j);
    const __m512 e = _mm512_maskz_mov_ps(
        keep, exp2_nonpositive_lanes<__m512, Int16Lanes>(_mm512_fmadd_ps(x, k, offset)));
    sum = _mm512_add_ps(sum, e);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), (__m256i)_mm512_cvtneps_pbh(e));
  }
  // Not _mm512_reduce_add_ps: GCC 12 warns about its undefined upper half.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0.0f;
  for (float x : lanes) total += x;
  return total;
}

// Rows i0 .. i0+R over keys k0 .. k1, continuing m, l and the output rows:
// the fp32 kernel's row_group with bf16 products.
template <int R>
SPDIT_BF16_INLINE void row_group(const Bf16HeadOperands& h, int64_t i0, int64_t k0, int64_t k1,
                                 float* s, uint16_t* p, float* m, float* l) {
  constexpr int NV = kBf16Tile / 16;
  const uint16_t* q = h.q + i0 * h.ldq;
  float* o = h.out + i0 * h.ldo;
  m += i0;
  l += i0;
  float alpha[R];
  const int64_t full = h.d / kBf16Tile * kBf16Tile;
  const int tail = static_cast<int>((h.d - full) / 16);
  const int64_t sk2 = (h.sk + 1) / 2 * 2;  // V is packed in key pairs
  for (int64_t ks = k0; ks < k1; ks += kKeyBlock) {
    const int64_t bk = std::min(kKeyBlock, k1 - ks);
    for (int64_t j = 0; j < bk; j += kBf16Tile) {
      dot_tile<R, NV, false>(s + j, kKeyBlock, q, h.ldq, h.kt + (ks + j) * h.d, 2 * kBf16Tile,
                             h.d / 2);
    }
    online_softmax_rows(s, R, bk, kKeyBlock, h.bias ? h.bias + ks : nullptr, h.scale, m, l, alpha,
                        exp_to_bf16, p, kKeyBlock);
    scale_rows(o, R, h.d, h.ldo, alpha);
    const int64_t pairs = (bk + 1) / 2;
    for (int64_t c = 0; c < full; c += kBf16Tile) {
      dot_tile<R, NV, true>(o + c, h.ldo, p, kKeyBlock, h.v + c * sk2 + ks * kBf16Tile,
                            2 * kBf16Tile, pairs);
    }
    if (tail) {
      const int64_t w = h.d - full;
      dot_tile_tail<R, NV>(tail, o + full, h.ldo, p, kKeyBlock, h.v + full * sk2 + ks * w, 2 * w,
                           pairs);
    }
  }
}

template <int R>
SPDIT_BF16_INLINE void last_rows(const Bf16HeadOperands& h, int64_t i0, int64_t rows, int64_t k0,
                                 int64_t k1, float* s, uint16_t* p, float* m, float* l) {
  if constexpr (R > 0) {
    if (rows == R) return row_group<R>(h, i0, k0, k1, s, p, m, l);
    last_rows<R - 1>(h, i0, rows, k0, k1, s, p, m, l);
  }
}

// 6 x 4 accumulators, 4 loaded vectors and a broadcast: 29 of 32 registers.
constexpr int kRows = 6;

SPDIT_BF16_TARGET void attend_bf16(const Bf16HeadOperands& h) {
  alignas(64) float s[kRows * kKeyBlock];
  alignas(64) uint16_t p[kRows * kKeyBlock];
  std::vector<float> state(2 * h.sq);
  float* m = state.data();
  float* l = m + h.sq;
  begin_rows(h.out, h.ldo, h.lse, h.sq, h.d, h.scale, h.resume, m, l);
  const int64_t block = std::max(kKeyBlock, h.key_block / kKeyBlock * kKeyBlock);
  for (int64_t k0 = 0; k0 < h.sk; k0 += block) {
    const int64_t k1 = std::min(h.sk, k0 + block);
    int64_t i = 0;
    for (; i + kRows <= h.sq; i += kRows) row_group<kRows>(h, i, k0, k1, s, p, m, l);
    if (i < h.sq) last_rows<kRows - 1>(h, i, h.sq - i, k0, k1, s, p, m, l);
  }
  finish_rows(h.out, h.ldo, h.lse, h.sq, h.d, h.scale, m, l);
}

}  // namespace

bool cpu_has_avx512_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

bool bf16_kernel_faster_here() {
  __builtin_cpu_init();
  return cpu_has_avx512_bf16() && __builtin_cpu_is("amd");
}

#else

bool cpu_has_avx512_bf16() { return false; }
bool bf16_kernel_faster_here() { return false; }

#endif

bool bf16_kernel_selected() {
  // Read on every call, as SPDIT_CPU_KERNEL is, so a test or benchmark can
  // compare the two ways within one process.
  const char* want = std::getenv("SPDIT_CPU_BF16_KERNEL");
  const std::string name = want ? want : "";
  if (name.empty()) return bf16_kernel_faster_here();
  if (name == "convert") return false;
  if (name == "avx512_bf16") {
    if (!cpu_has_avx512_bf16()) {
      throw std::invalid_argument(
          "spdit: SPDIT_CPU_BF16_KERNEL=avx512_bf16, but this CPU has no AVX512-BF16 (cpuid); "
          "unset the variable to convert bf16 to fp32 here");
    }
    return true;
  }
  throw std::invalid_argument(
      "spdit: SPDIT_CPU_BF16_KERNEL=" + name +
      " is neither avx512_bf16 nor convert (unset it for the CPU's fastest)");
}

bool bf16_kernel_runs(int64_t d) { return d > 0 && d % 16 == 0; }

int64_t packed_keys_bf16_size(int64_t sk, int64_t d) {
  return (sk + kBf16Tile - 1) / kBf16Tile * kBf16Tile * d;
}

int64_t packed_values_bf16_size(int64_t sk, int64_t d) { return (sk + 1) / 2 * 2 * d; }

void pack_keys_bf16(const uint16_t* k, int64_t ld, int64_t sk, int64_t d, uint16_t* kt) {
  for (int64_t j0 = 0; j0 < sk; j0 += kBf16Tile) {
    const int64_t n = std::min(kBf16Tile, sk - j0);
    uint16_t* out = kt + j0 * d;  // (d/2 x 64 x 2)
    for (int64_t j = 0; j < n; ++j) {
      const uint16_t* row = k + (j0 + j) * ld;
      for (int64_t pr = 0; pr < d / 2; ++pr) {
        out[pr * 2 * kBf16Tile + 2 * j] = row[2 * pr];
        out[pr * 2 * kBf16Tile + 2 * j + 1] = row[2 * pr + 1];
      }
    }
    for (int64_t pr = 0; pr < d / 2; ++pr) {
      std::fill(out + pr * 2 * kBf16Tile + 2 * n, out + (pr + 1) * 2 * kBf16Tile, uint16_t{0});
    }
  }
}

void pack_values_bf16(const uint16_t* v, int64_t ld, int64_t sk, int64_t d, uint16_t* vp) {
  const int64_t sk2 = (sk + 1) / 2 * 2;
  for (int64_t c0 = 0; c0 < d; c0 += kBf16Tile) {
    const int64_t w = std::min(kBf16Tile, d - c0);
    uint16_t* out = vp + c0 * sk2;  // (sk2/2 x w x 2)
    for (int64_t j = 0; j < sk2; j += 2) {
      const uint16_t* a = v + j * ld + c0;
      const uint16_t* b = j + 1 < sk ? v + (j + 1) * ld + c0 : nullptr;
      uint16_t* o = out + j * w;
      for (int64_t c = 0; c < w; ++c) {
        o[2 * c] = a[c];
        o[2 * c + 1] = b ? b[c] : uint16_t{0};
      }
    }
  }
}

void bf16_attention(const Bf16HeadOperands& h) {
  if (!bf16_kernel_runs(h.d))
    throw std::logic_error("spdit: bf16_attention called outside its domain");
  if (!cpu_has_avx512_bf16())
    throw std::logic_error("spdit: bf16_attention on a CPU without AVX512-BF16");
#ifdef SPDIT_BF16_KERNEL
  attend_bf16(h);
#endif
}

}  // namespace spdit::detail
