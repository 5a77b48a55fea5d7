#include "online_softmax_cpu.h"

#include <cmath>
#include <cstring>
#include <limits>

// GCC builds each of these for AVX-512, AVX2 and plain x86-64 and picks one at
// load time, so the library runs on any x86-64 and is fast where it can be.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SPDIT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPDIT_CLONES
#endif

namespace spdit::detail {
namespace {

// 2^t for t <= 0 (-inf included, giving exactly 0) to about 1.6 ulp:
// 2^n * p(f), n = round(t), f = t - n in [-1/2, 1/2], p of degree 6 (Cephes'
// exp2f coefficients). In base 2 the range reduction is one subtraction, where
// e^x needs two steps. t is first raised to -127, where n = -127 makes the
// exponent bits 0, so 2^n * p is exactly 0: below about 2^-126 (and at -inf)
// the result is 0 without a select. Written without branches or library calls
// so that it vectorises.
inline float exp2_nonpositive(float t) {
  const float tc = t > -127.0f ? t : -127.0f;
  // Round to nearest by the 1.5 * 2^23 trick: no floor() call, so every
  // instruction set vectorises it.
  const float n = (tc + 12582912.0f) - 12582912.0f;
  const float f = tc - n;
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // n in [-127, 0]: no overflow
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Reductions keep kLanes independent partial results, so the compiler can
// vectorise them without reassociating floating-point math (no -ffast-math:
// -inf must stay -inf).
constexpr int kLanes = 16;

// A vector of kLanes floats (GCC's vector extension: each clone lowers it to
// its own registers). row_max is written with it because GCC's vectoriser
// leaves the same loop over a part[kLanes] array scalar (16 vmaxss per 16
// scores, as costly as the exponentials).
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));

SPDIT_CLONES float row_max(const float* row, int64_t n) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  Lanes part = neg_inf - Lanes{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    Lanes x;
    std::memcpy(&x, row + j, sizeof(x));
    part = x > part ? x : part;
  }
  float mx = neg_inf;
  for (int t = 0; t < kLanes; ++t) mx = part[t] > mx ? part[t] : mx;
  for (; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
  return mx;
}

SPDIT_CLONES float exp_shift_sum(float* row, int64_t n, float shift, float scale) {
  // exp((x - shift) * scale) = 2^(x * k + offset) with k = scale * log2(e):
  // one multiply-add per score before the exponential. shift is finite here,
  // so -inf scores (masked keys) stay -inf and give exactly 0.
  const float k = scale * 1.44269504088896341f;
  const float offset = -shift * k;
  float part[kLanes] = {0};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int t = 0; t < kLanes; ++t) {
      const float e = exp2_nonpositive(row[j + t] * k + offset);
      row[j + t] = e;
      part[t] += e;
    }
  }
  float sum = 0.0f;
  for (int t = 0; t < kLanes; ++t) sum += part[t];
  for (; j < n; ++j) {
    row[j] = exp2_nonpositive(row[j] * k + offset);
    sum += row[j];
  }
  return sum;
}

SPDIT_CLONES void add_bias(float* row, const float* bias, int64_t n) {
  for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
}

SPDIT_CLONES void scale_row(float* row, int64_t n, float a) {
  for (int64_t j = 0; j < n; ++j) row[j] *= a;
}

}  // namespace

void online_softmax_rows(float* scores, int64_t rows, int64_t cols, int64_t ld, const float* bias,
                         float scale, float* m, float* l, float* alpha, Bf16ExpPass bf16_exp,
                         uint16_t* probs, int64_t ldp) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < rows; ++i) {
    float* row = scores + i * ld;
    uint16_t* p = bf16_exp ? probs + i * ldp : nullptr;
    // An odd count's last pair gets a zero partner (the bf16 products read
    // probabilities two at a time).
    if (p && cols % 2) p[cols] = 0;
    if (bias) add_bias(row, bias, cols);
    const float m_new = std::max(m[i], row_max(row, cols));
    if (m_new == neg_inf) {  // every key so far masked: contributes nothing
      p ? std::memset(p, 0, sizeof(uint16_t) * cols) : std::memset(row, 0, sizeof(float) * cols);
      alpha[i] = 1.0f;
      continue;
    }
    alpha[i] = m[i] == neg_inf ? 0.0f : std::exp((m[i] - m_new) * scale);
    l[i] = l[i] * alpha[i] +
           (p ? bf16_exp(row, cols, m_new, scale, p) : exp_shift_sum(row, cols, m_new, scale));
    m[i] = m_new;
  }
}

void scale_rows(float* acc, int64_t rows, int64_t d, int64_t ld, const float* alpha) {
  for (int64_t i = 0; i < rows; ++i) {
    if (alpha[i] != 1.0f) scale_row(acc + i * ld, d, alpha[i]);
  }
}

void begin_rows(float* out, int64_t ldo, const float* lse, int64_t rows, int64_t d, float scale,
                bool resume, float* m, float* l) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const bool seen = resume && lse[r] != neg_inf;
    m[r] = seen ? lse[r] / scale : neg_inf;
    l[r] = seen ? 1.0f : 0.0f;
    if (!seen) std::memset(out + r * ldo, 0, sizeof(float) * d);
  }
}

void finish_rows(float* out, int64_t ldo, float* lse, int64_t rows, int64_t d, float scale,
                 const float* m, const float* l) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    scale_row(out + r * ldo, d, l[r] > 0 ? 1.0f / l[r] : 0.0f);
    lse[r] = l[r] > 0 ? m[r] * scale + std::log(l[r]) : neg_inf;
  }
}

}  // namespace spdit::detail
