#pragma once
// Private: the CPU attention kernel for x86 with AVX-512 or AVX2. Six query
// rows at a time go through Q K^T, the online softmax and P V while their
// scores (6 x 512 floats) stay in L1; both products are register-tiled outer
// products. Keys go in blocks sized to L2, each walked by all query rows
// before the next. K and V are packed once per head, and nothing per block, the way
// a BLAS call must (the BLAS path in local_attention.cpp spent a tenth of its
// time packing the score block for P V).
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

/// Columns of one register tile, for keys in Q K^T and for head dims in P V:
/// 64 for AVX-512, 16 for AVX2 (0 for blas). K and V are packed in panels of
/// this width, so that a tile reads its operand as one sequential stream.
int64_t tile_columns(CpuKernel kernel);

/// Floats that pack_keys writes for sk keys of head dim d.
int64_t packed_keys_size(int64_t sk, int64_t d, int64_t panel);

/// Writes K (sk rows of d floats, `ld` apart) transposed, in panels of
/// `panel` keys, each (d x panel) and contiguous, the last zero-padded.
void pack_keys(const float* k, int64_t ld, int64_t sk, int64_t d, int64_t panel, float* kt);

/// Writes V (sk rows of d floats, `ld` apart) in panels of `panel` columns:
/// columns c0 .. c0+w (w = min(panel, d - c0)) as one contiguous (sk x w)
/// block at vp + c0 * sk.
void pack_values(const float* v, int64_t ld, int64_t sk, int64_t d, int64_t panel, float* vp);

/// One head, fp32, rows of q, v and out `ld*` floats apart.
struct HeadOperands {
  const float* q;
  int64_t ldq;
  const float* kt;  // from pack_keys
  const float* v;   // from pack_values
  int64_t panel;    // the panel width both were packed with: tile_columns(kernel)
  float* out;
  int64_t ldo;
  float* lse;         // sq floats
  const float* bias;  // sk floats, 0 or -inf per key; null for none
  int64_t sq, sk, d;
  float scale;
  /// Continue out/lse (an earlier result over other keys) instead of
  /// starting afresh; see local_attention.cpp.
  bool resume;
  /// Keys per L2 block (see cache_blocking.h): every query row visits a
  /// block before any row goes on to the next.
  int64_t key_block;
};

/// Keys per score block: a row group's scores stay in L1 through both
/// products. Key blocks (HeadOperands::key_block) are multiples of it.
constexpr int64_t kScoreBlock = 512;

/// softmax(q k^T * scale + bias) v into out and its LSE into lse; a row
/// with no valid key gets 0 and -inf. Requires register_tiled(kernel, d).
void register_tiled_attention(CpuKernel kernel, const HeadOperands& h);

}  // namespace spdit::detail
