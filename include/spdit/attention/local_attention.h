#pragma once
// The attention kernel every path runs locally: softmax(q k^T * scale) v with
// its log-sum-exp, computed in blocks with an online softmax so memory grows
// with S*D, not S*S. Layout (B, S, H, D); fp32 accumulation. bf16 q, k, v on
// a CPU with AVX512-BF16 multiply in bf16 (probabilities rounded to bf16 for
// P V; parity with fp32 in tests/local_attention_kernels_test.cpp); elsewhere
// they are converted to fp32.
#include <ATen/ATen.h>

#include <optional>
#include <string>

namespace spdit {

struct LocalAttentionOptions {
  /// Softmax scale; default 1/sqrt(D).
  std::optional<double> scale;
  /// bool (B, Sk) or (1, Sk): true for keys that may be attended to.
  at::Tensor key_padding_mask;
  /// bool, broadcastable to (B, H, Sq, Sk): true where attention is allowed.
  at::Tensor attn_mask;
  /// Output dtype: fp32 when true, the input dtype otherwise. LSE is always fp32.
  bool out_fp32 = false;
  /// Query and key block sizes of the online softmax: a 512 x 512 fp32 score
  /// block (1 MB) per thread measured fastest here (`spdit bench attention
  /// --block-q/--block-k`).
  int64_t block_q = 512;
  int64_t block_k = 512;
};

/// Output (B, Sq, H, D) and LSE (B, H, Sq). A query row whose keys are all
/// masked gets output 0 and LSE -inf (it then adds nothing in a merge).
struct AttentionState {
  at::Tensor out;
  at::Tensor lse;
};

AttentionState local_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const LocalAttentionOptions& options = {});

/// The implementations behind local_attention. kFusedCpu: the CPU kernels
/// below (forward only: they have no backward). kFusedDevice: on a CUDA
/// device, LibTorch's fused kernels that also return the LSE (cuDNN's or
/// flash, or memory-efficient for fp32 and key padding masks; LibTorch 2.1+,
/// head dims a multiple of 8 up to 256). kAtenOps: the same blocked online softmax
/// from ATen ops (matmul, exp, sums), which autograd differentiates; it runs
/// everywhere else, with attn_mask, and whenever autograd is recording
/// (grad mode on and q, k or v requiring grad), as in `spdit train-demo`.
/// All compute the same forward (tested).
enum class LocalAttentionPath { kFusedCpu, kFusedDevice, kAtenOps };
LocalAttentionPath local_attention_path(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v,
                                        const LocalAttentionOptions& options = {});

/// The kernel local attention runs for these inputs: "cpu" (the CPU kernels
/// above), "cudnn", "flash" or "efficient" (kFusedDevice), or "aten" (kAtenOps). The environment
/// variable SPDIT_DEVICE_ATTENTION picks one by that name, to compare them; a name that cannot take
/// the inputs is an error that says why.
std::string local_attention_device_kernel(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v,
                                          const LocalAttentionOptions& options = {});

/// Continues `acc` (the attention of these queries over other keys) with the
/// keys k, v: the result of merge_attention_(acc, local_attention(q, k, v, o))
/// in `acc`. On CPU with an fp32 `acc` the kernel resumes the online softmax
/// from acc's output and LSE, so neither a second output nor a merge pass is
/// needed; elsewhere it computes the part and merges it. o.out_fp32 is
/// ignored: acc keeps its dtype.
void local_attention_(AttentionState& acc, const at::Tensor& q, const at::Tensor& k,
                      const at::Tensor& v, const LocalAttentionOptions& o = {});

/// The CPU kernel local attention runs on this machine: "avx512" or "avx2"
/// (register-tiled, for head dims that are a multiple of 16 or 8 floats) or
/// "blas" (BLAS GEMMs per block; every other case). The environment variable
/// SPDIT_CPU_KERNEL picks one by that name, to compare them; a name this CPU
/// cannot run is an error at the next attention call.
std::string local_attention_cpu_kernel();

/// What the CPU kernel does on this machine for one head dim and input
/// dtype, for benchmarks and logs: the kernel ("avx512", "avx2", "blas", or
/// for bf16 inputs "avx512_bf16": bf16 dot products, fp32 accumulation; bf16
/// inputs on a CPU without AVX512-BF16 are converted and run the fp32
/// kernel), and how it blocks keys: key_block keys of packed K and V at a
/// time, sized to half the per-core L2 read at run time (0 for "blas", which
/// blocks by LocalAttentionOptions::block_k). SPDIT_CPU_BF16_KERNEL=convert
/// sends bf16 inputs to the fp32 kernel, to compare;
/// SPDIT_ATTENTION_KEY_BLOCK sets key_block.
struct LocalAttentionCpuPlan {
  std::string kernel;
  int64_t key_block = 0;
  int64_t l1d_bytes = 0, l2_bytes = 0;
  std::string cache_source;  // where the cache sizes came from
};
LocalAttentionCpuPlan local_attention_cpu_plan(int64_t head_dim, at::ScalarType dtype);

/// Merges the attention of the same queries over two disjoint key sets:
///   w   = sigmoid(lse_b - lse_a)        (b's share of the joint softmax mass)
///   out = out_a + w * (out_b - out_a)
///   lse = logaddexp(lse_a, lse_b)
/// in the dtype of `a.out` (callers choose fp32 or the input dtype). Rows with
/// LSE -inf on one side take the other side unchanged; rows empty on both
/// sides stay zero with LSE -inf.
AttentionState merge_attention(const AttentionState& a, const AttentionState& b);

/// The same merge into `acc`, in place: no temporaries of the output's size,
/// which is what lets Ring attention merge each step without growing its peak.
/// `acc.out` must not be shared with a tensor the caller still needs.
void merge_attention_(AttentionState& acc, const AttentionState& b);

}  // namespace spdit
