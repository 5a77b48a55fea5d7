#pragma once
// Private: the CPU hot loop of local attention — one (query block x key
// block) update of the online softmax, fused so that each score is read and
// written once while it is in cache.
#include <cstdint>

namespace spdit::detail {

/// An exponential pass that writes bf16: out[j] = bf16(exp((row[j] - shift) *
/// scale)) for j < n, zeros after n up to the next multiple of 16 at most,
/// returning the fp32 sum. Supplied by a kernel compiled for an instruction
/// set with a bf16 conversion (bf16_kernel.cpp).
using Bf16ExpPass = float (*)(const float* row, int64_t n, float shift, float scale, uint16_t* out);

/// For each of `rows` rows of raw scores q.k (row stride `ld`, `cols` used),
/// after adding `bias` (per column, 0 or -inf for masked keys; may be null),
/// with the softmax scale applied inside the exponent:
///   m_new = max(m, max(row)); row = exp((row - m_new) * scale);
///   l = l * exp((m - m_new) * scale) + sum(row)
/// m stays in unscaled units (the LSE is m * scale + log l); `alpha` returns
/// exp((m - m_new) * scale) (0 when the row had no valid key before, 1 when it
/// still has none). Entries equal to -inf give exactly 0. With `bf16_exp`,
/// that function is the exponential pass and writes the probabilities to
/// `probs` as bf16 bits (rows `ldp` apart; an odd count is followed by one
/// zero) instead of over the scores; l sums them in fp32.
void online_softmax_rows(float* scores, int64_t rows, int64_t cols, int64_t ld, const float* bias,
                         float scale, float* m, float* l, float* alpha,
                         Bf16ExpPass bf16_exp = nullptr, uint16_t* probs = nullptr,
                         int64_t ldp = 0);

/// acc[r, 0:d] *= alpha[r] for rows `ld` floats apart.
void scale_rows(float* acc, int64_t rows, int64_t d, int64_t ld, const float* alpha);

/// The state of `rows` query rows before their first key: resuming, a row
/// with output O and LSE L (an earlier result over other keys) continues as
/// running max L/scale, running sum 1 and accumulator O, which is exactly
/// the state the online softmax would have reached; otherwise (and for rows
/// with L = -inf) m = -inf, l = 0 and a zero output row. Rows `ldo` apart.
void begin_rows(float* out, int64_t ldo, const float* lse, int64_t rows, int64_t d, float scale,
                bool resume, float* m, float* l);

/// After the last key: out /= l and lse = m * scale + log l, or 0 and -inf
/// for a row that saw no valid key.
void finish_rows(float* out, int64_t ldo, float* lse, int64_t rows, int64_t d, float scale,
                 const float* m, const float* l);

}  // namespace spdit::detail
