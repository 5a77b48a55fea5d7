#pragma once
// Private: the CPU attention kernel for x86 with AVX-512 or AVX2. Six query
// rows at a time go through Q K^T, the online softmax and P V while their
// scores (6 x 512 floats) stay in L1; both products are register-tiled outer
// products that read their operands where they lie, so nothing is repacked
// per block the way a BLAS call must (the BLAS path in local_attention.cpp
// spent a tenth of its time packing the score block for P V).
#include <cstdint>

namespace spdit::detail {

enum class CpuKernel { kBlas, kAvx2, kAvx512 };

/// The kernel local attention runs on this CPU: the widest it supports, or
/// the one SPDIT_CPU_KERNEL names (blas, avx2, avx512), which is how
/// benchmarks and tests compare them. Naming one this CPU cannot run, or an
/// unknown name, throws std::invalid_argument.
CpuKernel selected_cpu_kernel();
const char* cpu_kernel_name(CpuKernel kernel);

/// Whether `kernel` is register-tiled and can run head dim `d` (a multiple
/// of its vector width).
bool register_tiled(CpuKernel kernel, int64_t d);

/// Keys are transposed in panels of this many keys.
constexpr int64_t kKeyPanel = 64;

/// Floats that pack_keys writes for sk keys of head dim d.
int64_t packed_keys_size(int64_t sk, int64_t d);

/// Writes K (sk rows of d floats, `ld` apart) transposed, in panels of
/// kKeyPanel keys, each (d x kKeyPanel) and contiguous, the last zero-padded:
/// a tile of Q K^T then reads one compact panel instead of d rows a whole
/// sequence apart (which share a handful of L1 sets).
void pack_keys(const float* k, int64_t ld, int64_t sk, int64_t d, float* kt);

/// Copies V (sk rows of d floats, `ld` apart) into contiguous rows.
void pack_values(const float* v, int64_t ld, int64_t sk, int64_t d, float* vp);

/// One head, fp32, rows of q, v and out `ld*` floats apart.
struct HeadOperands {
  const float* q;
  int64_t ldq;
  const float* kt;  // from pack_keys
  const float* v;   // from pack_values: rows d floats apart
  float* out;
  int64_t ldo;
  float* lse;         // sq floats
  const float* bias;  // sk floats, 0 or -inf per key; null for none
  int64_t sq, sk, d;
  float scale;
  /// Continue out/lse (an earlier result over other keys) instead of
  /// starting afresh; see local_attention.cpp.
  bool resume;
};

/// softmax(q k^T * scale + bias) v into out and its LSE into lse; a row
/// with no valid key gets 0 and -inf. Requires register_tiled(kernel, d).
void register_tiled_attention(CpuKernel kernel, const HeadOperands& h);

}  // namespace spdit::detail
