#pragma once
// Private: the CPU hot loop of local attention — one (query block x key
// block) update of the online softmax, fused so that each score is read and
// written once while it is in cache.
#include <cstdint>

namespace spdit::detail {

/// For each of `rows` rows of raw scores q.k (row stride `ld`, `cols` used),
/// after adding `bias` (per column, 0 or -inf for masked keys; may be null),
/// with the softmax scale applied inside the exponent:
///   m_new = max(m, max(row)); row = exp((row - m_new) * scale);
///   l = l * exp((m - m_new) * scale) + sum(row)
/// m stays in unscaled units (the LSE is m * scale + log l); `alpha` returns
/// exp((m - m_new) * scale) (0 when the row had no valid key before, 1 when it
/// still has none). Entries equal to -inf give exactly 0.
void online_softmax_rows(float* scores, int64_t rows, int64_t cols, int64_t ld, const float* bias,
                         float scale, float* m, float* l, float* alpha);

/// acc[r, 0:d] *= alpha[r] for rows `ld` floats apart.
void scale_rows(float* acc, int64_t rows, int64_t d, int64_t ld, const float* alpha);

}  // namespace spdit::detail
