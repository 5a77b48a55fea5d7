#pragma once
// Private: the CPU attention kernel for bf16 Q, K, V on x86 with AVX512-BF16.
// The same blocking as the fp32 register-tiled kernel (six query rows, 512-key
// score blocks in L1, key blocks sized to L2), but both products are bf16 dot
// products (vdpbf16ps: 32 bf16 pairs into 16 fp32 sums, twice the multiplies
// of an fp32 FMA). Scores, the softmax statistics and the output accumulate
// in fp32; the probabilities are rounded to bf16 for P V, the one rounding
// the fp32 kernel does not make (see local_attention_kernels_test.cpp for
// the parity it keeps).
#include <cstdint>

namespace spdit::detail {

/// Whether bf16 inputs run the bf16 kernel: SPDIT_CPU_BF16_KERNEL when set
/// (avx512_bf16 or convert), else bf16_kernel_faster_here(). Otherwise they
/// are converted to fp32 and run on the fp32 kernel.
/// SPDIT_CPU_BF16_KERNEL=avx512_bf16 on a CPU without AVX512-BF16, or an
/// unknown name, throws std::invalid_argument.
bool bf16_kernel_selected();
/// The CPU has AVX512-BF16 (and AVX512F/BW), whatever the environment says.
bool cpu_has_avx512_bf16();
/// Whether the bf16 kernel beats converting to fp32 on this CPU: AMD CPUs
/// with AVX512-BF16 run vdpbf16ps on two pipes (Zen 5: 1.5x and more the
/// fp32 kernel), Intel's on one port against two for fp32 FMAs (an Intel
/// Xeon with AMX: 0.61x and 0.63x, docs/performance.md), so there it is not
/// chosen until an AMX kernel exists.
bool bf16_kernel_faster_here();

/// The bf16 kernel runs head dims that are a multiple of 16 (one fp32 vector).
bool bf16_kernel_runs(int64_t d);

/// Columns of one register tile: 64 keys in Q K^T, 64 head dims in P V.
constexpr int64_t kBf16Tile = 64;

/// bf16 elements pack_keys_bf16 / pack_values_bf16 write for sk keys of d.
int64_t packed_keys_bf16_size(int64_t sk, int64_t d);
int64_t packed_values_bf16_size(int64_t sk, int64_t d);

/// K (sk rows of d bf16, `ld` apart) in panels of 64 keys, each holding for
/// every pair of head dims (2p, 2p+1) the 64 keys' two values side by side:
/// the operand layout of vdpbf16ps. The last panel is zero-padded.
void pack_keys_bf16(const uint16_t* k, int64_t ld, int64_t sk, int64_t d, uint16_t* kt);

/// V (sk rows of d bf16, `ld` apart) in panels of up to 64 head dims, each
/// holding for every pair of keys (2j, 2j+1) the panel's columns with the two
/// keys' values side by side. An odd last key is paired with zeros.
void pack_values_bf16(const uint16_t* v, int64_t ld, int64_t sk, int64_t d, uint16_t* vp);

/// One head: q and out in place (rows `ldq` bf16 and `ldo` floats apart),
/// K and V packed as above.
struct Bf16HeadOperands {
  const uint16_t* q;
  int64_t ldq;
  const uint16_t* kt;
  const uint16_t* v;
  float* out;
  int64_t ldo;
  float* lse;         // sq floats
  const float* bias;  // sk floats, 0 or -inf per key; null for none
  int64_t sq, sk, d;
  float scale;
  bool resume;        // continue out/lse, as HeadOperands::resume
  int64_t key_block;  // keys per L2 block, a multiple of kScoreBlock
};

/// softmax(q k^T * scale + bias) v into out (fp32) and its LSE; a row with no
/// valid key gets 0 and -inf. Requires bf16_kernel_selected() and
/// bf16_kernel_runs(d).
void bf16_attention(const Bf16HeadOperands& h);

}  // namespace spdit::detail
